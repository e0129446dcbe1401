// CShim: the ptrace engine (cshim_ptrace.c, cshim_ptrace_install.c).
// Included at the end of CShim.h (inside its extern "C").
#ifndef CSHIM_PTRACE_H
#define CSHIM_PTRACE_H

/// Mirror of x86_64 struct user_regs_struct (27 registers).
typedef struct cshim_ptrace_regs {
    uint64_t r[27];
} cshim_ptrace_regs;

/// One seccomp stop (PTRACE_EVENT_SECCOMP) for the supervisor, or an exit.
typedef struct cshim_ptrace_stop {
    int32_t tid;
    int32_t nr;          // -1: `tid` exited (no stop: forget its calls), args[0] its wait status
    uint64_t args[6];
    cshim_ptrace_regs regs;   // as at the stop (read there), restored when it is answered
} cshim_ptrace_stop;

/// From the thread that will trace: PTRACE_SEIZE `pid` (spawned with
/// ptrace_mode, waiting on `sock` before its filter) with every option,
/// let it go on, and resume its stops until its execve has happened (0;
/// it is left running) or it reported a failed step (1, *stage and *err
/// set) or -1 with errno. Closes `sock`.
int cshim_ptrace_start(pid_t pid, int sock, int *stage, int *err);
/// The next seccomp stop or exit among this thread's tracees, handling
/// every other stop itself: 1 with *out filled, 0 when none is ready
/// (never when `wait` asks to wait for one), -1 with errno (ECHILD: no
/// tracee left).
int cshim_ptrace_next(cshim_ptrace_stop *out, int wait);
/// The tracer's blocking waitpid, polled first (WNOHANG, yielding) for a
/// learnt budget of up to `microseconds` set by cshim_ptrace_set_poll (0:
/// never polled; see cshim_ptrace_wait.c). Tracer thread only.
void cshim_ptrace_set_poll(int microseconds);
pid_t cshim_ptrace_waitpid(pid_t which, int *status, int flags);
/// PTRACE_CONT of `tid` with `signal`, queued on the tracer's own CPU as a
/// synchronous wake-up would be (see cshim_ptrace_wait.c). Tracer thread.
long cshim_ptrace_resume(pid_t tid, int signal);
/// The syscalls the ptrace filter traces only so that they wait for the
/// tracer (see cshim_ptrace_resume): resumed as they are, never answered.
int cshim_ptrace_is_fence(int nr);
/// Answers a stop with `value` (0) or lets the syscall run (`native`);
/// `at_exit` says injections left it at a syscall-exit-stop; `signal`, a
/// signal taken during injection, is sent again. -1 with errno (ESRCH: gone).
int cshim_ptrace_finish(cshim_ptrace_stop *stop, int at_exit, int native, int64_t value, int signal);
/// Runs syscall `nr` with `args` in the stopped thread and returns its
/// result (negative errno as the tracee would see it), or INT64_MIN with
/// errno when the thread is gone. Sets *at_exit; a signal that arrived is
/// stored in *signal for cshim_ptrace_finish.
int64_t cshim_ptrace_inject(cshim_ptrace_stop *stop, int *at_exit, int *signal, long nr,
                            uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3);
/// cshim_ptrace_inject with all six arguments (r8 and r9 too).
int64_t cshim_ptrace_inject6(cshim_ptrace_stop *stop, int *at_exit, int *signal, long nr, const uint64_t a[6]);
/// Resumes `tid` (PTRACE_CONT) until its next seccomp stop, the install
/// stub's trap (cshim_ptrace_stub.c); signals as cshim_ptrace_inject. 0, or
/// -1 with errno (ESRCH: gone; EFAULT: it faulted, the fault dropped).
int cshim_ptrace_run_to_trap(pid_t tid, int *signal);

/// Adds filter `f` to every thread of the stopped thread's process
/// (seccomp(SET_MODE_FILTER, TSYNC) injected, see
/// cshim_ptrace_filter_add.c). 0; -EBUSY when a thread has a filter of its
/// own the others lack; -ESRCH when the thread is gone; another -errno.
int64_t cshim_ptrace_add_filter(cshim_ptrace_stop *stop, int *at_exit, int *signal, const cshim_filter *f);

/// Blocks every signal of the stopped thread `tid` for the calls injected
/// in it (a signal sent meanwhile stays pending, queued or coalesced as it
/// would be, rather than stopping it between two of them): 1 with its mask
/// saved in *mask, 0 if it could not be.
int cshim_ptrace_block_signals(pid_t tid, uint64_t *mask);
/// Puts back the mask cshim_ptrace_block_signals saved, if it `blocked`.
void cshim_ptrace_unblock_signals(pid_t tid, int blocked, uint64_t mask);
/// Where `size` bytes fit below the stopped thread's 128-byte red zone,
/// 16-byte aligned: what the supervisor writes for the thread goes there
/// (the program's own data is never there; a signal handler's frame could be).
uint64_t cshim_ptrace_below_red_zone(const cshim_ptrace_stop *stop, size_t size);

/// Reads (`write` 0) or writes `len` bytes at `at` in `tid`'s memory
/// (process_vm_readv/writev); 0, or -1 when not all of them could be.
int cshim_tracee_io(pid_t tid, uint64_t at, void *buf, size_t len, int write);

/// The install stub's page (cshim_ptrace_stub.c): the ptrace filter lets
/// the syscalls of its first half run (recvmsg, dup3, close) and traces
/// those of its second half (the stub's trap).
#define CSHIM_PTRACE_STUB 0x1e7e7e000000ULL
#define CSHIM_PTRACE_STUB_TRAP 0x800
/// Runs the stub in the stopped thread (mapping it first in a new address
/// space): receives the descriptor waiting on `channel` and puts it at
/// `target` (recvmsg, dup3, close). With `back`, the stub then sets the
/// thread's signal mask to `mask`, puts its registers back with the result
/// as its syscall's, and returns to the program: the thread runs on, its
/// call answered, and *result is `target` (what the stub will answer if
/// all goes well). Without, the thread stops at the stub's end, *result
/// is the number or -errno, and the thread is as at its seccomp stop
/// (*at_exit = 0). 0; 1 when there is no stub (the caller injects); or -1
/// with errno (ESRCH: the thread is gone).
int cshim_ptrace_stub_install(cshim_ptrace_stop *stop, int *at_exit, int *signal, int channel, int target,
                              int cloexec, int back, uint64_t mask, int64_t *result);
/// The tracer's descriptors: *ready an EFD_SEMAPHORE eventfd, *answer a
/// non-blocking eventfd, *child a non-blocking signalfd for SIGCHLD. 0 or -1.
int cshim_ptrace_descriptors(int *ready, int *answer, int *child);
/// A non-blocking eventfd (a wake-up poll can watch), or -1.
int cshim_wake_fd(void);
/// An epoll descriptor readable while `a` or `b` is (level-triggered), or -1.
int cshim_epoll_of(int a, int b);
/// Reads everything pending on the non-blocking descriptor `fd`.
void cshim_drain(int fd);
/// Installs the supervisor's `source` in the stopped thread, at `target`
/// (dup3 semantics) or at the lowest free number (-1), by injecting a
/// recvmsg of `source` sent by SCM_RIGHTS on the descriptor table's
/// channel (a socketpair made once, see cshim_ptrace_channel_at), dup3 and
/// close, run by the install stub when it can be (cshim_ptrace_stub.c);
/// the tracee's registers and borrowed stack come back as they were.
/// Returns the number or a negative errno.
/// Where the tracee end of each descriptor table's install channel is kept
/// (the lowest free number from `number`); -1 (the default): no channels,
/// a socketpair per install.
void cshim_ptrace_channel_at(int number);
/// With `respond`, the stub may answer the call itself (*answered set):
/// the thread then runs on, and the caller must not answer it again.
int64_t cshim_ptrace_install(cshim_ptrace_stop *stop, int *at_exit, int *signal, int source, int target,
                             int cloexec, int respond, int *answered);

#endif
