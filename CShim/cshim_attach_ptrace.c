// CShim: taking over a running process for the ptrace engine
// (wrap-and-run --attach PID --engine ptrace, or auto under a listener).
//
// The steps of cshim_attach.c, from the ptrace engine's tracer thread (a
// tracee has one tracer, and the engine's loop must be it): PTRACE_SEIZE
// with the engine's options, PTRACE_O_TRACESECCOMP included, so the
// filter's TRACE action stops a thread at its first call; the program
// installed with seccomp(SET_MODE_FILTER, TSYNC), no listener, with
// prctl(PR_SET_NO_NEW_PRIVS) first only on EACCES; then the stopped
// thread's registers and signal mask put back and the thread let go, and
// the engine's loop takes every stop from there (cshim_ptrace_next).
#include "CShim.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/ptrace.h>

#include "attach_internal.h"

cshim_attach *cshim_attach_seize_tracing(pid_t pid)
{
    return attach_seize(pid, OPTIONS | PTRACE_O_TRACESECCOMP);
}

int cshim_attach_release(cshim_attach *a)
{
    int rc = attach_restore(a);
    if (rc == 0)
        rc = (int)ptrace(PTRACE_CONT, a->stopped, 0, 0);
    int err = errno;
    free(a->tids);
    free(a);
    errno = err;
    return rc;
}
