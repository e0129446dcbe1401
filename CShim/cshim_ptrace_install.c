// CShim: the ptrace engine's placeholders: a descriptor of the supervisor
// installed in a stopped tracee thread without SECCOMP_IOCTL_NOTIF_ADDFD,
// by syscalls injected with cshim_ptrace_inject (cshim_ptrace.c): a
// socketpair, the supervisor's SCM_RIGHTS message on it (sent through a
// pidfd_getfd copy of the tracee's end), recvmsg, then dup3 or fcntl to
// the number asked for, and close. Tracer thread only. The thread's signal
// mask is all signals meanwhile (PTRACE_SETSIGMASK, put back after): a
// signal sent then stays pending in the kernel, queued or coalesced as it
// would be, and comes once the thread goes on, rather than at a
// signal-delivery-stop between two injected calls (where only one signal
// could be held back: a second, a queued real-time one above all, was lost).
#include "CShim.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <unistd.h>

#define REG(regs, field) (((struct user_regs_struct *)(regs)->r)->field)

// The tracee's stack at its rsp, borrowed for the injected socketpair and
// recvmsg (saved and put back: nothing of the tracee runs meanwhile).
struct scratch {
    int sv[2];
    struct msghdr msg;
    struct iovec iov;
    char byte[8];
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctl;
};

static int tracee_io(pid_t tid, uint64_t at, void *buf, size_t len, int write)
{
    struct iovec local = {buf, len}, remote = {(void *)(uintptr_t)at, len};
    ssize_t n = write ? process_vm_writev(tid, &local, 1, &remote, 1, 0) : process_vm_readv(tid, &local, 1, &remote, 1, 0);
    return n == (ssize_t)len ? 0 : -1;
}

// Sends `source` with one byte on the tracee's end `fd` of its new socketpair.
static int send_to_tracee(pid_t tid, int fd, int source)
{
    int pidfd = (int)syscall(SYS_pidfd_open, tid, 0x80 /* PIDFD_THREAD */);
    if (pidfd < 0)
        pidfd = (int)syscall(SYS_pidfd_open, tid, 0);
    if (pidfd < 0)
        return -errno;
    int mine = (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0);
    int e = errno;
    close(pidfd);
    if (mine < 0)
        return -e;
    char byte = 0;
    struct iovec iov = {&byte, 1};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &source, sizeof(int));
    ssize_t n = sendmsg(mine, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    e = errno;
    close(mine);
    return n == 1 ? 0 : -e;
}

int64_t cshim_ptrace_install(const cshim_ptrace_stop *stop, int *at_exit, int *signal, int source, int target,
                             int cloexec)
{
    pid_t tid = stop->tid;
    uint64_t at = REG(&stop->regs, rsp);
    struct scratch saved, s;
    if (tracee_io(tid, at, &saved, sizeof saved, 0) != 0)
        return -EFAULT;
    memset(&s, 0, sizeof s);
    s.iov.iov_base = (void *)(uintptr_t)(at + offsetof(struct scratch, byte));
    s.iov.iov_len = 1;
    s.msg.msg_iov = (struct iovec *)(uintptr_t)(at + offsetof(struct scratch, iov));
    s.msg.msg_iovlen = 1;
    s.msg.msg_control = (void *)(uintptr_t)(at + offsetof(struct scratch, ctl));
    s.msg.msg_controllen = sizeof s.ctl.buf;
    if (tracee_io(tid, at, &s, sizeof s, 1) != 0)
        return -EFAULT;
    uint64_t mask, all = ~(uint64_t)0;
    int masked = ptrace(PTRACE_GETSIGMASK, tid, sizeof mask, &mask) == 0 &&
                 ptrace(PTRACE_SETSIGMASK, tid, sizeof all, &all) == 0;
    int64_t result = cshim_ptrace_inject(stop, at_exit, signal, SYS_socketpair, AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0,
                                         at + offsetof(struct scratch, sv));
    int got = -1;
    if (result == 0 && (result = tracee_io(tid, at, &s, sizeof s, 0) == 0 ? 0 : -EFAULT) == 0) {
        result = send_to_tracee(tid, s.sv[1], source);
        if (result == 0)
            result = cshim_ptrace_inject(stop, at_exit, signal, SYS_recvmsg, (uint64_t)s.sv[0],
                                         at + offsetof(struct scratch, msg), MSG_CMSG_CLOEXEC, 0);
        if (result == 1 && tracee_io(tid, at, &s, sizeof s, 0) == 0 && s.ctl.align.cmsg_type == SCM_RIGHTS)
            memcpy(&got, CMSG_DATA(&s.ctl.align), sizeof(int));
        else if (result >= 0)
            result = -EIO;
        (void)cshim_ptrace_inject(stop, at_exit, signal, SYS_close, (uint64_t)s.sv[0], 0, 0, 0);
        (void)cshim_ptrace_inject(stop, at_exit, signal, SYS_close, (uint64_t)s.sv[1], 0, 0, 0);
    }
    if (got >= 0) {
        // It came close-on-exec, past the socketpair's two numbers: moved
        // to the lowest free number or to `target`.
        result = got;
        if (target < 0) {
            result = cshim_ptrace_inject(stop, at_exit, signal, SYS_fcntl, (uint64_t)got,
                                         cloexec ? F_DUPFD_CLOEXEC : F_DUPFD, 0, 0);
            (void)cshim_ptrace_inject(stop, at_exit, signal, SYS_close, (uint64_t)got, 0, 0, 0);
        } else if (target != got) {
            result = cshim_ptrace_inject(stop, at_exit, signal, SYS_dup3, (uint64_t)got, (uint64_t)target,
                                         cloexec ? O_CLOEXEC : 0, 0);
            (void)cshim_ptrace_inject(stop, at_exit, signal, SYS_close, (uint64_t)got, 0, 0, 0);
        } else if (!cloexec) {
            (void)cshim_ptrace_inject(stop, at_exit, signal, SYS_fcntl, (uint64_t)got, F_SETFD, 0, 0);
        }
    }
    if (tracee_io(tid, at, &saved, sizeof saved, 1) != 0 && result >= 0)
        result = -EFAULT;
    if (masked)
        (void)ptrace(PTRACE_SETSIGMASK, tid, sizeof mask, &mask);
    return result == INT64_MIN ? -ESRCH : result;
}
