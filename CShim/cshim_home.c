// The home node's process edge: signals as a descriptor, the standby
// deputy's parent-death signal, dropping to a user, shedding capabilities.
#include "CShim.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

int cshim_signalfd_for(const int *signals, size_t count) {
    sigset_t set;
    sigemptyset(&set);
    for (size_t i = 0; i < count; i++)
        sigaddset(&set, signals[i]);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
        return -1;
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

int cshim_signalfd_next(int fd) {
    struct signalfd_siginfo info;
    ssize_t n = read(fd, &info, sizeof info);
    if (n != (ssize_t)sizeof info)
        return -1;
    return (int)info.ssi_signo;
}

int cshim_parent_death_signal(int sig, pid_t expected_parent) {
    if (prctl(PR_SET_PDEATHSIG, (unsigned long)sig, 0, 0, 0) != 0)
        return -1;
    // The parent may have died before the prctl: then nobody will signal us.
    if (sig != 0 && expected_parent > 0 && getppid() != expected_parent) {
        errno = ESRCH;
        return -1;
    }
    return 0;
}

int cshim_drop_to_user(const char *name, uint32_t uid, uint32_t gid, int *stage) {
    *stage = 1;
    if (initgroups(name, gid) != 0)
        return -1;
    *stage = 2;
    if (setresgid(gid, gid, gid) != 0)
        return -1;
    *stage = 3;
    if (setresuid(uid, uid, uid) != 0)
        return -1;
    // Check rather than trust: every id is the user's, and there is no way back.
    *stage = 4;
    uid_t r, e, s;
    gid_t rg, eg, sg;
    if (getresuid(&r, &e, &s) != 0 || getresgid(&rg, &eg, &sg) != 0)
        return -1;
    if (r != uid || e != uid || s != uid || rg != gid || eg != gid || sg != gid) {
        errno = EPERM;
        return -1;
    }
    if (uid != 0 && (setuid(0) == 0 || (gid != 0 && setegid(0) == 0))) {
        errno = EPERM;
        return -1;
    }
    return 0;
}

int cshim_keep_capabilities(uint64_t keep) {
    // The bounding set first (needs CAP_SETPCAP, dropped with the rest
    // below): it limits what an exec'd child running as root gets.
    for (int cap = 0; cap < 64; cap++) {
        if (keep & (1ULL << cap))
            continue;
        if (prctl(PR_CAPBSET_READ, (unsigned long)cap, 0, 0, 0) < 0)
            break;   // past the kernel's last capability
        if (prctl(PR_CAPBSET_DROP, (unsigned long)cap, 0, 0, 0) != 0)
            return -1;
    }
    struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    data[0].effective = data[0].permitted = (uint32_t)keep;
    data[1].effective = data[1].permitted = (uint32_t)(keep >> 32);
    return (int)syscall(SYS_capset, &header, data);
}

int cshim_accept_nonblocking(int listener, void *addr, uint32_t *addrlen) {
    socklen_t len = *addrlen;
    int fd = accept4(listener, (struct sockaddr *)addr, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    *addrlen = len;
    return fd;
}
