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
//
// That socketpair is made once per descriptor table, not per install: a
// channel's tracee end stays at a number at the top of the placeholder
// range (close-on-exec), and each install is then one message and one
// injected recvmsg, which puts the descriptor at the lowest free number as
// open(2) would (a dup3 to a chosen number and a close follow only when a
// number is asked for; the first channel costs four more). Before use,
// kcmp(KCMP_FILE) checks that the tracee's number still holds that very
// socket (a program may close or replace it, an exec drops it); if not,
// a new channel is made. A fork shares its parent's, as it shares the
// file: installs are one at a time on the tracer thread, so one message
// is queued at most, and a failed receive takes it back.
#include "CShim.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <linux/kcmp.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <linux/sockios.h>
#include <sched.h>
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

// A channel: the supervisor's end, its copy of the tracee's end (for
// kcmp and for taking back a message not received) and the tracee's number.
struct channel {
    int mine, copy, number;
    pid_t receiving;   // a thread whose stub has yet to receive its message (0: none)
};
enum { CHANNELS = 32 };
static struct channel channels[CHANNELS];   // most recently used first
static int channels_used;
static atomic_int channel_number = -1;

void cshim_ptrace_channel_at(int number)
{
    atomic_store(&channel_number, number);
}

int cshim_tracee_io(pid_t tid, uint64_t at, void *buf, size_t len, int write)
{
    struct iovec local = {buf, len}, remote = {(void *)(uintptr_t)at, len};
    ssize_t n = write ? process_vm_writev(tid, &local, 1, &remote, 1, 0) : process_vm_readv(tid, &local, 1, &remote, 1, 0);
    return n == (ssize_t)len ? 0 : -1;
}

int cshim_ptrace_block_signals(pid_t tid, uint64_t *mask)
{
    uint64_t all = ~(uint64_t)0;
    return ptrace(PTRACE_GETSIGMASK, tid, sizeof *mask, mask) == 0 &&
           ptrace(PTRACE_SETSIGMASK, tid, sizeof all, &all) == 0;
}

void cshim_ptrace_unblock_signals(pid_t tid, int blocked, uint64_t mask)
{
    if (blocked)
        (void)ptrace(PTRACE_SETSIGMASK, tid, sizeof mask, &mask);
}

uint64_t cshim_ptrace_below_red_zone(const cshim_ptrace_stop *stop, size_t size)
{
    return (REG(&stop->regs, rsp) - 128 - size) & ~(uint64_t)15;
}

static int pidfd_of(pid_t tid);

// Sends `source` with one byte on `mine` (cshim_send_fd: the channel holds
// one message at most, so it never waits); 0 or a negative errno.
static int send_on(int mine, int source)
{
    char byte = 0;
    return cshim_send_fd(mine, source, &byte, 1) == 0 ? 0 : -errno;
}

// Sends `source` on the tracee's end `fd` of its new socketpair (through a
// copy of that end taken with pidfd_getfd).
static int send_to_tracee(pid_t tid, int fd, int source)
{
    int pidfd = pidfd_of(tid);
    if (pidfd < 0)
        return -errno;
    int mine = (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0);
    int e = errno;
    close(pidfd);
    if (mine < 0)
        return -e;
    int r = send_on(mine, source);
    close(mine);
    return r;
}

static int pidfd_of(pid_t tid)
{
    int pidfd = (int)syscall(SYS_pidfd_open, tid, 0x80 /* PIDFD_THREAD */);
    return pidfd >= 0 ? pidfd : (int)syscall(SYS_pidfd_open, tid, 0);
}

// The channel `tid`'s descriptor table still holds, moved to the front.
static struct channel *find_channel(pid_t tid)
{
    static pid_t self;   // getpid() is a syscall each time; the tracer never forks
    if (self == 0)
        self = getpid();
    for (int i = 0; i < channels_used; i++) {
        struct channel c = channels[i];
        if (syscall(SYS_kcmp, self, tid, KCMP_FILE, c.copy, c.number) != 0)
            continue;
        memmove(&channels[1], &channels[0], (size_t)i * sizeof c);
        channels[0] = c;
        return &channels[0];
    }
    return NULL;
}

// Makes a channel for `tid`'s descriptor table (the socketpair injected in
// `s`, the tracee's stack at `at`); NULL if it cannot be had.
static struct channel *make_channel(cshim_ptrace_stop *stop, int *at_exit, int *signal, uint64_t at,
                                    struct scratch *s)
{
    int wanted = atomic_load(&channel_number);
    pid_t tid = stop->tid;
    if (wanted < 0 || cshim_ptrace_inject(stop, at_exit, signal, SYS_socketpair, AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC,
                                          0, at + offsetof(struct scratch, sv)) != 0 ||
        cshim_tracee_io(tid, at, s, sizeof *s, 0) != 0)
        return NULL;
    struct channel c = {-1, -1, -1, 0};
    int pidfd = pidfd_of(tid);
    if (pidfd >= 0) {
        c.mine = (int)syscall(SYS_pidfd_getfd, pidfd, s->sv[1], 0);
        c.copy = (int)syscall(SYS_pidfd_getfd, pidfd, s->sv[0], 0);
        close(pidfd);
    }
    if (c.mine >= 0 && c.copy >= 0) {
        int64_t n = cshim_ptrace_inject(stop, at_exit, signal, SYS_fcntl, (uint64_t)s->sv[0], F_DUPFD_CLOEXEC,
                                        (uint64_t)wanted, 0);
        c.number = n >= 0 && n <= INT32_MAX ? (int)n : -1;
    }
    (void)cshim_ptrace_inject(stop, at_exit, signal, SYS_close, (uint64_t)s->sv[0], 0, 0, 0);
    (void)cshim_ptrace_inject(stop, at_exit, signal, SYS_close, (uint64_t)s->sv[1], 0, 0, 0);
    if (c.number < 0) {
        if (c.mine >= 0)
            close(c.mine);
        if (c.copy >= 0)
            close(c.copy);
        return NULL;
    }
    if (channels_used == CHANNELS) {
        channels_used--;
        close(channels[channels_used].mine);
        close(channels[channels_used].copy);
    }
    memmove(&channels[1], &channels[0], (size_t)channels_used * sizeof c);
    channels[0] = c;
    channels_used++;
    return &channels[0];
}

// A message the tracee did not receive is taken back (its descriptor closed).
static void take_back(const struct channel *c)
{
    char byte;
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {&byte, 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
    while (recvmsg(c->copy, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) >= 0) {
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        if (cm && cm->cmsg_type == SCM_RIGHTS) {
            int fd;
            memcpy(&fd, CMSG_DATA(cm), sizeof fd);
            close(fd);
        }
        msg.msg_controllen = sizeof ctl.buf;
    }
}

// Whether `c` is free for the next message: a thread that went on to run
// the stub (an answered install) has received its own by now, or is gone
// or stopped again at `tid`'s stop (then a message still there was never
// received, as when no number was free: it is taken back). Waits for it a
// little; false if it has not (stopped, or not yet run): the next install
// then takes a socketpair of its own, as a message on `c` could be
// received by the wrong thread.
static int channel_free(struct channel *c, pid_t tid)
{
    if (c->receiving == tid) {
        take_back(c);
        c->receiving = 0;
    }
    for (int i = 0; c->receiving && i < 1000; i++) {
        int queued = 0;
        if (ioctl(c->copy, SIOCINQ, &queued) == 0 && queued == 0) {
            c->receiving = 0;
        } else if (syscall(SYS_tkill, c->receiving, 0) != 0 && errno == ESRCH) {
            take_back(c);
            c->receiving = 0;
        } else {
            sched_yield();
        }
    }
    return !c->receiving;
}

// The install by the stub (cshim_ptrace_stub.c) through the table's
// channel `c`, when it has one and a number is asked for: 1 when done
// (*result set, *answered when the stub also answered the call and the
// thread runs on), 0 when the caller must inject instead.
static int install_by_stub(cshim_ptrace_stop *stop, int *at_exit, int *signal, struct channel *c, int source,
                           int target, int cloexec, int respond, const uint64_t *mask, int64_t *result, int *answered,
                           int *busy)
{
    if (!c || target < 0)
        return 0;
    if (!channel_free(c, stop->tid)) {
        *busy = 1;
        return 0;
    }
    if ((*result = send_on(c->mine, source)) != 0)
        return 1;
    int back = respond && mask != NULL;
    int r = cshim_ptrace_stub_install(stop, at_exit, signal, c->number, target, cloexec, back, mask ? *mask : 0,
                                      result);
    if (r == 1) {
        take_back(c);
        return 0;
    }
    if (r < 0)
        *result = errno == ESRCH ? INT64_MIN : -errno;
    if (*result < 0)
        take_back(c);
    *answered = r == 0 && back;
    if (*answered)
        c->receiving = stop->tid;
    return 1;
}

// Makes the table's channel on the stack borrowed at rsp (saved and given
// back before this returns, as the stub may answer and let the thread run
// on); false if it could not be had.
static int make_channel_borrowing(cshim_ptrace_stop *stop, int *at_exit, int *signal)
{
    uint64_t at = REG(&stop->regs, rsp);
    struct scratch saved, s;
    memset(&s, 0, sizeof s);
    if (cshim_tracee_io(stop->tid, at, &saved, sizeof saved, 0) != 0 || cshim_tracee_io(stop->tid, at, &s, sizeof s, 1) != 0)
        return 0;
    int made = make_channel(stop, at_exit, signal, at, &s) != NULL;
    return cshim_tracee_io(stop->tid, at, &saved, sizeof saved, 1) == 0 && made;
}

int64_t cshim_ptrace_install(cshim_ptrace_stop *stop, int *at_exit, int *signal, int source, int target,
                             int cloexec, int respond, int *answered)
{
    pid_t tid = stop->tid;
    *answered = 0;
    uint64_t mask;
    int masked = cshim_ptrace_block_signals(tid, &mask);
    int64_t result;
    int busy = 0, made = 1;
    // The table's first install makes its channel first, so the stub serves
    // it too (a channel made is the first in the list).
    struct channel *c = target >= 0 ? find_channel(tid) : NULL;
    if (target >= 0 && !c && (made = make_channel_borrowing(stop, at_exit, signal)))
        c = &channels[0];
    if (install_by_stub(stop, at_exit, signal, c, source, target, cloexec, respond, masked ? &mask : NULL, &result,
                        answered, &busy)) {
        // Answered by the stub, which puts the mask back itself.
        if (!*answered)
            cshim_ptrace_unblock_signals(tid, masked, mask);
        return result == INT64_MIN ? -ESRCH : result;
    }
    uint64_t at = REG(&stop->regs, rsp);
    struct scratch saved, s;
    if (cshim_tracee_io(tid, at, &saved, sizeof saved, 0) != 0) {
        cshim_ptrace_unblock_signals(tid, masked, mask);
        return -EFAULT;
    }
    memset(&s, 0, sizeof s);
    s.iov.iov_base = (void *)(uintptr_t)(at + offsetof(struct scratch, byte));
    s.iov.iov_len = 1;
    s.msg.msg_iov = (struct iovec *)(uintptr_t)(at + offsetof(struct scratch, iov));
    s.msg.msg_iovlen = 1;
    s.msg.msg_control = (void *)(uintptr_t)(at + offsetof(struct scratch, ctl));
    s.msg.msg_controllen = sizeof s.ctl.buf;
    int got = -1, placed = 0;
    if (cshim_tracee_io(tid, at, &s, sizeof s, 1) != 0) {
        result = -EFAULT;
        goto out;
    }
    c = busy ? NULL : find_channel(tid);
    if (!c && !busy && made)
        c = make_channel(stop, at_exit, signal, at, &s);
    if (c && !channel_free(c, tid))
        c = NULL;
    if (c) {
        // The channel is at the top of the range, so the descriptor lands
        // at the lowest free number, where open(2) would put it: with no
        // `target`, recvmsg alone is the install (one injected syscall).
        placed = target < 0;
        result = send_on(c->mine, source);
        if (result == 0)
            result = cshim_ptrace_inject(stop, at_exit, signal, SYS_recvmsg, (uint64_t)c->number,
                                         at + offsetof(struct scratch, msg),
                                         placed && !cloexec ? 0 : MSG_CMSG_CLOEXEC, 0);
        if (result == 1 && cshim_tracee_io(tid, at, &s, sizeof s, 0) == 0 && s.ctl.align.cmsg_type == SCM_RIGHTS)
            memcpy(&got, CMSG_DATA(&s.ctl.align), sizeof(int));
        else if (result == 1 && (s.msg.msg_flags & MSG_CTRUNC))
            result = -EMFILE;   // no free number under RLIMIT_NOFILE
        else if (result >= 0)
            result = -EIO;
        if (got < 0)
            take_back(c);
    } else if ((result = cshim_ptrace_inject(stop, at_exit, signal, SYS_socketpair, AF_UNIX,
                                             SOCK_DGRAM | SOCK_CLOEXEC, 0, at + offsetof(struct scratch, sv))) == 0 &&
               (result = cshim_tracee_io(tid, at, &s, sizeof s, 0) == 0 ? 0 : -EFAULT) == 0) {
        result = send_to_tracee(tid, s.sv[1], source);
        if (result == 0)
            result = cshim_ptrace_inject(stop, at_exit, signal, SYS_recvmsg, (uint64_t)s.sv[0],
                                         at + offsetof(struct scratch, msg), MSG_CMSG_CLOEXEC, 0);
        if (result == 1 && cshim_tracee_io(tid, at, &s, sizeof s, 0) == 0 && s.ctl.align.cmsg_type == SCM_RIGHTS)
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
        if (placed) {
            // Already where it belongs, close-on-exec as asked.
        } else if (target < 0) {
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
out:
    if (cshim_tracee_io(tid, at, &saved, sizeof saved, 1) != 0 && result >= 0)
        result = -EFAULT;
    cshim_ptrace_unblock_signals(tid, masked, mask);
    return result == INT64_MIN ? -ESRCH : result;
}
