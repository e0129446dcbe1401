// CShim: a filter added to a running tracee's process by the ptrace
// engine: seccomp(SET_MODE_FILTER, TSYNC) injected in one of its stopped
// threads, the program written below that thread's red zone. Filters stack
// (the kernel runs every one and takes the strongest action), so the
// added one makes more calls stop and none fewer. The engine adds its
// close filter this way (Supervisor.closeFilter): the ptrace filter lets
// close run, and a process has closes stop only from the moment one of
// them must be seen.
//
// The thread's signal mask is all signals for the injection and put back
// after, as for an install (cshim_ptrace_install.c). Tracer thread only.
#include "CShim.h"

#include <errno.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

int64_t cshim_ptrace_add_filter(cshim_ptrace_stop *stop, int *at_exit, int *signal, const cshim_filter *f)
{
    pid_t tid = stop->tid;
    size_t code = (size_t)f->len * sizeof(struct sock_filter);
    uint64_t at = cshim_ptrace_below_red_zone(stop, sizeof(struct sock_fprog) + code);
    struct sock_fprog prog = {.len = f->len, .filter = (struct sock_filter *)(uintptr_t)(at + sizeof prog)};
    struct iovec local[2] = {{&prog, sizeof prog}, {f->filter, code}};
    struct iovec remote = {(void *)(uintptr_t)at, sizeof prog + code};
    if (process_vm_writev(tid, local, 2, &remote, 1, 0) != (ssize_t)(sizeof prog + code))
        return -EFAULT;   // no room below its stack
    uint64_t mask;
    int masked = cshim_ptrace_block_signals(tid, &mask);
    int64_t r = cshim_ptrace_inject(stop, at_exit, signal, SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                                    SECCOMP_FILTER_FLAG_TSYNC, at, 0);
    cshim_ptrace_unblock_signals(tid, masked, mask);
    if (r == INT64_MIN)
        return -ESRCH;
    // TSYNC's positive result is a thread that could not take the filter
    // (it has one of its own the others lack).
    return r > 0 ? -EBUSY : r;
}
