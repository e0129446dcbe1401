// CShim: the end of a seccomp engine's attach (cshim_attach.c): the
// listener's number closed in the tracee, then the tracer of the process
// once the filter is in place; and the facts about a process the attach reads.
#include "CShim.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "attach_internal.h"

pid_t cshim_tracer_of(pid_t tid)
{
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/status", (int)tid);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return -1;
    pid_t tracer = 0;
    while (fgets(buf, sizeof buf, f) != NULL)
        if (strncmp(buf, "TracerPid:", 10) == 0)
            tracer = (pid_t)strtol(buf + 10, NULL, 10);
    fclose(f);
    return tracer;
}

int cshim_attach_trace(pid_t root)
{
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, __WALL);
        if (pid < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (WIFEXITED(status) || WIFSIGNALED(status)) {
            if (pid == root)
                return status;
            continue;
        }
        if (!WIFSTOPPED(status))
            continue;
        int event = (unsigned)status >> 16, sig = WSTOPSIG(status);
        if (event == PTRACE_EVENT_STOP && sig != SIGTRAP)
            (void)ptrace(PTRACE_LISTEN, pid, 0, 0);  // group-stop: stays stopped, SIGCONT still wakes it
        else
            (void)ptrace(PTRACE_CONT, pid, 0, event == 0 ? sig : 0);
    }
}

int cshim_attach_finish(cshim_attach *a)
{
    long closed;
    int rc = attach_inject(a, SYS_close, (unsigned long)a->tracee_listener, 0, 0, 0, 0, 0, &closed);
    if (attach_restore(a) == 0 && rc == 0)
        rc = ptrace(PTRACE_CONT, a->stopped, 0, 0);
    int err = errno;
    free(a->tids);
    free(a);
    errno = err;
    return rc == 0 ? 0 : -1;
}
