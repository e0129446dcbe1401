// CShim: what cshim_attach.c shares with cshim_attach_ptrace.c (private to
// the attach files; the public calls are in include/cshim_attach.h).
#ifndef CSHIM_ATTACH_INTERNAL_H
#define CSHIM_ATTACH_INTERNAL_H

#include <stdint.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/user.h>

/// The seizing options of the seccomp engine's attach; the ptrace engine's
/// add PTRACE_O_TRACESECCOMP (see cshim_attach_ptrace.c).
#define OPTIONS (PTRACE_O_EXITKILL | PTRACE_O_TRACECLONE | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK | PTRACE_O_TRACEEXEC | PTRACE_O_TRACEEXIT | PTRACE_O_TRACESYSGOOD)

struct cshim_attach {
    pid_t pid;
    pid_t tracer;                    // the tracer thread (TracerPid of our tracees)
    long options;                    // PTRACE_SEIZE's; with TRACESECCOMP: a filter without listener
    pid_t *tids;                     // every task seized or auto-attached so far
    int ntids, cap;
    pid_t stopped;                   // the thread calls are injected into (0: none yet)
    struct user_regs_struct saved;   // its registers at the interrupt stop
    struct user_regs_struct resume;  // the same, restart fix-up applied
    uint64_t mask;                   // its signal mask then
    int masked;                      // mask replaced with all signals
    unsigned long insn;              // address of a syscall instruction in it
    int tracee_listener;             // the listener's number in the tracee
};

/// cshim_attach_seize with these PTRACE_SEIZE options.
struct cshim_attach *attach_seize(pid_t pid, long options);
/// Runs syscall `nr` in the stopped thread: 0 and its raw result (-errno
/// on failure) in *result, or -1 with errno when the thread cannot run it.
int attach_inject(struct cshim_attach *a, long nr, unsigned long a0, unsigned long a1, unsigned long a2,
                  unsigned long a3, unsigned long a4, unsigned long a5, long *result);
/// Puts the stopped thread's registers (restart fix-up applied) and signal
/// mask back; 0 or -1.
int attach_restore(struct cshim_attach *a);

#endif
