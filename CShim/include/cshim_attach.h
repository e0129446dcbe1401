// CShim: taking over a running process (cshim_attach.c, cshim_attach_trace.c,
// cshim_attach_ptrace.c).
// Included at the end of CShim.h (inside its extern "C"), after cshim_filter.
#ifndef CSHIM_ATTACH_H
#define CSHIM_ATTACH_H

/// Which step of an attach failed (see cshim_attach_install).
enum {
    CSHIM_ATTACH_STOP = 1,          // no thread could be stopped
    CSHIM_ATTACH_INJECT = 2,        // running calls in the stopped thread
    CSHIM_ATTACH_NO_NEW_PRIVS = 3,  // prctl(PR_SET_NO_NEW_PRIVS)
    CSHIM_ATTACH_SECCOMP = 4,       // seccomp(SET_MODE_FILTER, NEW_LISTENER | TSYNC)
    CSHIM_ATTACH_GETFD = 5,         // copying the listener (the filter is in place)
};

/// A process being taken over: its seized threads and the one stopped for
/// injected calls. Every function must be called on one thread, the
/// tracer: ptrace requests are the tracer thread's alone.
typedef struct cshim_attach cshim_attach;

/// PTRACE_SEIZE of every thread of `pid` (with EXITKILL and the TRACE*
/// options), until no new thread appears; NULL and errno on failure, with
/// nothing of the process changed.
cshim_attach *cshim_attach_seize(pid_t pid);
/// Stops one thread and installs `filter` in the process through it (all
/// threads, with a listener); returns the listener, copied here
/// (close-on-exec). Seized by cshim_attach_seize_tracing: no listener, and
/// 0 once the filter is in place. On failure -1, errno and *stage: before
/// CSHIM_ATTACH_GETFD nothing was installed (cshim_attach_abandon then
/// leaves the process as it was, except no_new_privs when *stage is
/// CSHIM_ATTACH_SECCOMP and the thread lacked CAP_SYS_ADMIN).
int cshim_attach_install(cshim_attach *a, const cshim_filter *filter, int *stage);
/// Closes the listener's number in the tracee (the call may be notified:
/// a supervisor must serve the listener by now), restores the stopped
/// thread's registers and signal mask, and lets it run; frees `a`.
int cshim_attach_finish(cshim_attach *a);
/// Detaches every thread and child, each as it was; frees `a`.
void cshim_attach_abandon(cshim_attach *a);
/// As cshim_attach_seize, for the ptrace engine: with its options
/// (PTRACE_O_TRACESECCOMP too), from the engine's tracer thread; the
/// filter given to cshim_attach_install then has the action TRACE.
cshim_attach *cshim_attach_seize_tracing(pid_t pid);
/// After cshim_attach_install of a seize_tracing: restores the stopped
/// thread's registers and signal mask and lets it run (the ptrace engine's
/// loop handles every stop from now on); frees `a`. 0 or -1 and errno.
int cshim_attach_release(cshim_attach *a);
/// The tracer loop: passes signals on, keeps group-stops (PTRACE_LISTEN),
/// lets new threads and children run; returns the process's wait status
/// once it has ended (-1 and errno if it cannot be waited for).
int cshim_attach_trace(pid_t pid);
/// The TracerPid of task `tid` (0: not traced), -1 if it cannot be read.
pid_t cshim_tracer_of(pid_t tid);
#endif
