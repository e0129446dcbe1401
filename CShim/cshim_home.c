// The home node's process edge: signals as a descriptor, the standby
// deputy's parent-death signal, accepting without blocking.
#include "CShim.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
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

int cshim_accept_nonblocking(int listener, void *addr, uint32_t *addrlen) {
    socklen_t len = *addrlen;
    int fd = accept4(listener, (struct sockaddr *)addr, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    *addrlen = len;
    return fd;
}
