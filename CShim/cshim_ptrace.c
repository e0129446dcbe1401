// CShim: the ptrace engine's requests (x86_64, Linux >= 5.3 for
// PTRACE_GET_SYSCALL_INFO, which injections use to find their exit stop).
//
// The tracee runs the supervisor's BPF program with SECCOMP_RET_TRACE where
// the seccomp engine has USER_NOTIF, so a syscall the table does not list
// never stops. Every request here comes from the one thread that seized the
// tracees (the kernel ties a tracee to its tracer thread), the Swift
// `PtraceTracer`'s loop; nothing here allocates or locks.
//
// Answering a stop:
//  - a value: at the seccomp stop, orig_rax = -1 skips the syscall and rax is
//    its result (Linux >= 4.8 runs seccomp after the syscall-entry-stop, and
//    a changed syscall is checked by the filter again, TRACE counting as
//    ALLOW). A restart code (ERESTARTSYS...) needs orig_rax to be the
//    syscall's number when the signal is delivered, so then getpid runs in
//    its place and the code is put in rax at its syscall-exit-stop.
//  - natively: PTRACE_CONT. After injections the thread sits at a
//    syscall-exit-stop past the syscall instruction: it is put back before
//    it, and its next seccomp stop for the same call at the same address is
//    resumed here without the supervisor seeing it (the `rerun` table).
//  - injected syscalls (placeholders: cshim_ptrace_install.c): set at the seccomp
//    stop in place of the syscall, later ones by putting the thread back at
//    the syscall instruction with rax = nr; each runs to its exit stop. A
//    signal that arrives meanwhile is held back and sent again (tkill) just
//    before the thread is resumed for good.
#include "CShim.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ptrace.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/ptrace.h>

_Static_assert(sizeof(cshim_ptrace_regs) == sizeof(struct user_regs_struct), "user_regs_struct mirror");

#define REG(regs, field) (((struct user_regs_struct *)(regs)->r)->field)

static const long options = PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACESECCOMP | PTRACE_O_TRACEFORK |
                            PTRACE_O_TRACEVFORK | PTRACE_O_TRACECLONE | PTRACE_O_TRACEEXEC |
                            PTRACE_O_TRACEEXIT | PTRACE_O_EXITKILL;

// Threads put back before a syscall the supervisor let run natively, with
// the call's number and address: their next seccomp stop for it is resumed
// here. Open addressing on the tid; touched only by the tracer thread.
#define RERUN_SLOTS 4096
static struct {
    pid_t tid;
    int32_t nr;
    uint64_t ip;
} rerun[RERUN_SLOTS];
// Entries in use. Usually 0 (an entry lives from a native answer after
// injections to the thread's next stop): then every stop's look-up is
// this one test, not a walk of the whole table (a miss walks all of it,
// since freed slots do not end a probe sequence).
static unsigned rerun_live;

static void rerun_free(int h)
{
    rerun[h].tid = 0;
    rerun_live--;
}

static int rerun_find(pid_t tid)
{
    if (rerun_live == 0)
        return -1;
    for (unsigned i = 0, h = (unsigned)tid % RERUN_SLOTS; i < RERUN_SLOTS; i++, h = (h + 1) % RERUN_SLOTS)
        if (rerun[h].tid == tid)
            return (int)h;
    return -1;
}

static void rerun_add(pid_t tid, int32_t nr, uint64_t ip)
{
    int h = rerun_find(tid);
    for (unsigned i = 0, k = (unsigned)tid % RERUN_SLOTS; h < 0 && i < RERUN_SLOTS; i++, k = (k + 1) % RERUN_SLOTS)
        if (rerun[k].tid == 0)
            h = (int)k;
    if (h < 0)
        return;   // full: the call comes to the supervisor again, which lets it run
    if (rerun[h].tid == 0)
        rerun_live++;
    rerun[h].tid = tid;
    rerun[h].nr = nr;
    rerun[h].ip = ip;
}

static void rerun_drop(pid_t tid)
{
    int h = rerun_find(tid);
    if (h >= 0)
        rerun_free(h);
}

// Exits that run_to_exit's waitpid took (the thread died during injected
// calls): cshim_ptrace_next reports them as the loop's own waitpid would
// have (an attached process's status is learnt there). Tracer thread only.
#define LOST_EXITS 16
static struct {
    pid_t tid;
    int status;
} lost_exits[LOST_EXITS];
static int lost_count;

static int is_group_stop_signal(int sig)
{
    return sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
}

int cshim_ptrace_descriptors(int *ready, int *answer, int *child)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    *ready = eventfd(0, EFD_SEMAPHORE | EFD_CLOEXEC);
    *answer = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    *child = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    return *ready >= 0 && *answer >= 0 && *child >= 0 ? 0 : -1;
}

int cshim_wake_fd(void)
{
    return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

int cshim_epoll_of(int a, int b)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        return -1;
    struct epoll_event ev = { .events = EPOLLIN };
    ev.data.fd = a;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, a, &ev) == 0) {
        ev.data.fd = b;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, b, &ev) == 0)
            return ep;
    }
    close(ep);
    return -1;
}

void cshim_drain(int fd)
{
    // One read empties an eventfd (8 bytes) or a signalfd holding fewer
    // signals than fit; a full buffer may have left some.
    char buf[512];
    while (read(fd, buf, sizeof buf) == (ssize_t)sizeof buf) {
    }
}

int cshim_ptrace_start(pid_t pid, int sock, int *stage, int *err)
{
    *stage = 0;
    *err = 0;
    int rc = -1;
    if (ptrace(PTRACE_SEIZE, pid, 0, options) != 0) {
        int e = errno;
        close(sock);
        errno = e;
        return -1;
    }
    char go = 1;
    if (write(sock, &go, 1) != 1) {
        int e = errno;
        close(sock);
        errno = e;
        return -1;
    }
    for (;;) {
        int status;
        pid_t got = waitpid(pid, &status, __WALL);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (WIFEXITED(status) || WIFSIGNALED(status)) {
            // The child reported its failed step before exiting 127.
            int report[2] = {0, 0};
            if (recv(sock, report, sizeof report, MSG_DONTWAIT) == (ssize_t)sizeof report) {
                *stage = report[0];
                *err = report[1];
                rc = 1;
            } else {
                errno = ECHILD;
            }
            break;
        }
        if (!WIFSTOPPED(status))
            continue;
        int event = (unsigned)status >> 16, sig = WSTOPSIG(status);
        if (event == PTRACE_EVENT_EXEC) {
            rc = ptrace(PTRACE_CONT, pid, 0, 0) == 0 ? 0 : -1;
            break;
        }
        // The shim's own syscalls and the stop after seizing run on.
        int pass = event == 0 && sig != (SIGTRAP | 0x80) ? sig : 0;
        if (event == PTRACE_EVENT_STOP && is_group_stop_signal(sig))
            (void)ptrace(PTRACE_LISTEN, pid, 0, 0);
        else
            (void)ptrace(PTRACE_CONT, pid, 0, pass);
    }
    int e = errno;
    close(sock);
    errno = e;
    return rc;
}

// The tracee's ptrace: refused (a tracee has one tracer), said once.
static void refuse_ptrace(cshim_ptrace_stop *stop)
{
    static int said;
    if (!said) {
        said = 1;
        static const char text[] = "wrap-and-run: the program's ptrace calls fail with EPERM under the ptrace "
                                   "engine (a debugger or strace inside needs --engine seccomp)\n";
        (void)write(2, text, sizeof text - 1);
    }
    (void)cshim_ptrace_finish(stop, 0, 0, -EPERM, 0);
}

int cshim_ptrace_next(cshim_ptrace_stop *out, int wait)
{
    if (lost_count > 0) {
        lost_count--;
        out->tid = lost_exits[lost_count].tid;
        out->nr = -1;
        out->args[0] = (uint32_t)lost_exits[lost_count].status;
        return 1;
    }
    for (;;) {
        int status;
        pid_t tid = cshim_ptrace_waitpid(-1, &status, __WALL | __WNOTHREAD | (wait ? 0 : WNOHANG));
        if (tid == 0)
            return 0;
        if (tid < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (WIFEXITED(status) || WIFSIGNALED(status)) {
            rerun_drop(tid);
            out->tid = tid;
            out->nr = -1;
            out->args[0] = (uint32_t)status;
            return 1;
        }
        if (!WIFSTOPPED(status))
            continue;
        int event = (unsigned)status >> 16, sig = WSTOPSIG(status);
        if (event == PTRACE_EVENT_SECCOMP) {
            // The registers say what PTRACE_GET_SYSCALL_INFO would (orig_rax,
            // the arguments, rip past the syscall), and an answer needs them.
            if (ptrace(PTRACE_GETREGS, tid, 0, out->regs.r) != 0) {
                (void)ptrace(PTRACE_CONT, tid, 0, 0);
                continue;
            }
            const struct user_regs_struct *r = (const struct user_regs_struct *)out->regs.r;
            int h = rerun_find(tid);
            if (h >= 0) {
                rerun_free(h);
                if (rerun[h].nr == (int32_t)r->orig_rax && rerun[h].ip == r->rip) {
                    (void)cshim_ptrace_resume(tid, 0);
                    continue;
                }
            }
            out->tid = tid;
            out->nr = (int32_t)r->orig_rax;
            const uint64_t args[6] = {r->rdi, r->rsi, r->rdx, r->r10, r->r8, r->r9};
            memcpy(out->args, args, sizeof args);
            if (out->nr == SYS_ptrace) {
                refuse_ptrace(out);
                continue;
            }
            if (cshim_ptrace_is_fence(out->nr)) {   // resumed as it is: see cshim_ptrace_resume
                (void)ptrace(PTRACE_CONT, tid, 0, 0);
                continue;
            }
            return 1;
        }
        if (event == PTRACE_EVENT_STOP) {
            // Group-stop: stay stopped but let SIGCONT through, as strace does.
            // Otherwise the first stop of a new thread, or after SIGCONT.
            if (!is_group_stop_signal(sig) || ptrace(PTRACE_LISTEN, tid, 0, 0) != 0)
                (void)ptrace(PTRACE_CONT, tid, 0, 0);
            continue;
        }
        if (event != 0 || sig == (SIGTRAP | 0x80)) {
            // fork, vfork, clone, exec (a new image: its old rerun is void), exit.
            if (event == PTRACE_EVENT_EXEC)
                rerun_drop(tid);
            (void)ptrace(PTRACE_CONT, tid, 0, 0);
            continue;
        }
        // A signal-delivery-stop: the signal goes on.
        (void)ptrace(PTRACE_CONT, tid, 0, sig);
    }
}

// Resumes `tid` with `request` until its syscall-exit-stop (PTRACE_SYSCALL)
// or its next seccomp stop (PTRACE_CONT: the install stub's trap); a signal
// that would be delivered meanwhile is held in *signal. -1 when it is gone
// (errno ESRCH), or when a fault stops it (EFAULT: only the stub can fault).
static int run_to(pid_t tid, int *signal, int request)
{
    if (ptrace(request, tid, 0, 0) != 0)
        return -1;
    for (;;) {
        int status;
        pid_t got = cshim_ptrace_waitpid(tid, &status, __WALL);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (!WIFSTOPPED(status)) {
            // Its exit is consumed here: reported by the loop's next cshim_ptrace_next.
            rerun_drop(tid);
            if (lost_count < LOST_EXITS)
                lost_exits[lost_count].tid = tid, lost_exits[lost_count++].status = status;
            errno = ESRCH;
            return -1;
        }
        int event = (unsigned)status >> 16, sig = WSTOPSIG(status), pass = 0;
        if (event == 0 && sig == (SIGTRAP | 0x80)) {
            struct ptrace_syscall_info info;
            if (ptrace(PTRACE_GET_SYSCALL_INFO, tid, sizeof info, &info) > 0 && info.op == PTRACE_SYSCALL_INFO_EXIT)
                return 0;
        } else if (event == PTRACE_EVENT_SECCOMP && request == PTRACE_CONT) {
            return 0;
        } else if (event == 0 && request == PTRACE_CONT &&
                   (sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGTRAP)) {
            errno = EFAULT;   // not passed on: the fault was the stub's
            return -1;
        } else if (event == 0) {
            if (*signal == 0)
                *signal = sig;   // held back; cshim_ptrace_finish sends it again
        } else if (event == PTRACE_EVENT_EXIT) {
            (void)ptrace(PTRACE_CONT, tid, 0, 0);
            errno = ESRCH;
            return -1;
        }
        if (ptrace(request, tid, 0, pass) != 0)
            return -1;
    }
}

static int run_to_exit(pid_t tid, int *signal)
{
    return run_to(tid, signal, PTRACE_SYSCALL);
}

int cshim_ptrace_run_to_trap(pid_t tid, int *signal)
{
    return run_to(tid, signal, PTRACE_CONT);
}

int64_t cshim_ptrace_inject6(cshim_ptrace_stop *stop, int *at_exit, int *signal, long nr, const uint64_t a[6])
{
    cshim_ptrace_regs regs = stop->regs;
    if (*at_exit) {
        REG(&regs, rip) -= 2;   // back onto the syscall instruction
        REG(&regs, rax) = (uint64_t)nr;
    }
    REG(&regs, orig_rax) = (uint64_t)nr;
    REG(&regs, rdi) = a[0];
    REG(&regs, rsi) = a[1];
    REG(&regs, rdx) = a[2];
    REG(&regs, r10) = a[3];
    REG(&regs, r8) = a[4];
    REG(&regs, r9) = a[5];
    if (ptrace(PTRACE_SETREGS, stop->tid, 0, regs.r) != 0 || run_to_exit(stop->tid, signal) != 0 ||
        ptrace(PTRACE_GETREGS, stop->tid, 0, regs.r) != 0)
        return INT64_MIN;
    *at_exit = 1;
    return (int64_t)REG(&regs, rax);
}

int64_t cshim_ptrace_inject(cshim_ptrace_stop *stop, int *at_exit, int *signal, long nr,
                            uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3)
{
    const uint64_t a[6] = {a0, a1, a2, a3, REG(&stop->regs, r8), REG(&stop->regs, r9)};
    return cshim_ptrace_inject6(stop, at_exit, signal, nr, a);
}

static int is_restart(int64_t v)
{
    return v == -512 || v == -513 || v == -514 || v == -516;
}

int cshim_ptrace_finish(cshim_ptrace_stop *stop, int at_exit, int native, int64_t value, int signal)
{
    pid_t tid = stop->tid;
    if (native && !at_exit) {
        if (signal)
            (void)syscall(SYS_tkill, tid, signal);
        return (int)cshim_ptrace_resume(tid, 0);
    }
    cshim_ptrace_regs regs = stop->regs;
    if (!at_exit && is_restart(value)) {
        // getpid in its place, then the code at the exit stop (see the top).
        REG(&regs, orig_rax) = SYS_getpid;
        if (ptrace(PTRACE_SETREGS, tid, 0, regs.r) != 0 || run_to_exit(tid, &signal) != 0)
            return -1;
        regs = stop->regs;
        at_exit = 1;
    }
    if (native) {
        REG(&regs, rip) -= 2;
        REG(&regs, rax) = REG(&regs, orig_rax);
        rerun_add(tid, stop->nr, REG(&stop->regs, rip));
    } else if (at_exit) {
        REG(&regs, rax) = (uint64_t)value;
    } else {
        REG(&regs, orig_rax) = (uint64_t)-1;
        REG(&regs, rax) = (uint64_t)value;
    }
    if (ptrace(PTRACE_SETREGS, tid, 0, regs.r) != 0)
        return -1;
    if (signal)
        (void)syscall(SYS_tkill, tid, signal);
    return (int)cshim_ptrace_resume(tid, 0);
}
