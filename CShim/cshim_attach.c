// CShim: taking over a running process (wrap-and-run --attach).
//
// 1. Seize: PTRACE_SEIZE every thread in /proc/PID/task, pass after pass
//    until none is new (threads that seized ones start are auto-attached by
//    TRACECLONE: SEIZE says EPERM, TracerPid says ours). PTRACE_O_EXITKILL:
//    the process dies with the tracer thread, never runs on half-working.
// 2. Stop one thread (PTRACE_INTERRUPT, the leader first); the others run
//    on. One interrupted in a blocking call stops with -ERESTART* in rax,
//    before the kernel's restart fix-up, done only when it resumes without
//    a signal: its saved registers get that fix-up here, as
//    arch_do_signal_or_restart would (rax = the call again, restart_syscall
//    for ERESTART_RESTARTBLOCK, whose restart block is the thread's and
//    survives; rip back over the 2-byte instruction), and orig_rax -1 so
//    that no stop on the way applies it twice: the call runs again, as
//    after a signal without handler (CRIU's restore does the same). Its
//    signal mask is all signals (PTRACE_SETSIGMASK) while calls run in it.
// 3. Inject: rip at a `syscall` of its vdso (the offset of the first one in
//    ours: one image), or right before rip when it stopped in a call; no
//    code is written. PTRACE_SYSCALL up to the syscall-exit stop
//    (PTRACE_GET_SYSCALL_INFO tells it from entry), where rax is the
//    result. mmap of a page for the BPF program (process_vm_writev), then
//    seccomp(SET_MODE_FILTER, NEW_LISTENER | TSYNC | TSYNC_ESRCH |
//    WAIT_KILLABLE_RECV), with prctl(PR_SET_NO_NEW_PRIVS) first only when
//    the kernel asks for it (EACCES: no CAP_SYS_ADMIN), so a refused attach
//    to a privileged process changes nothing; munmap; pidfd_getfd copies
//    the listener here. Once the supervisor serves it (cshim_attach_finish):
//    close of the tracee's number, which the filter may notify.
// 4. Restore registers and mask, PTRACE_CONT; then cshim_attach_trace.
// Under the ptrace engine (cshim_attach_ptrace.c) the seize adds
// PTRACE_O_TRACESECCOMP, the filter's action is TRACE and it has no
// listener (TSYNC alone), and the engine's loop is the tracer after step 4.
// A failure before the filter is in place detaches every thread (and child
// forked meanwhile), each with the signal it stopped for, registers and
// mask as they were: the process runs on as before.
#include "CShim.h"

#include <dirent.h>
#include <errno.h>
#include <elf.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/filter.h>
#include <linux/seccomp.h>

#include "attach_internal.h"

#define WAIT_KILLABLE_RECV (1UL << 5)
#define TSYNC_ESRCH (1UL << 4)

static int has_tid(const struct cshim_attach *a, pid_t tid)
{
    for (int i = 0; i < a->ntids; i++)
        if (a->tids[i] == tid)
            return 1;
    return 0;
}

static int add_tid(struct cshim_attach *a, pid_t tid)
{
    if (has_tid(a, tid))
        return 0;
    if (a->ntids == a->cap) {
        int cap = a->cap ? a->cap * 2 : 16;
        pid_t *t = realloc(a->tids, (size_t)cap * sizeof *t);
        if (t == NULL)
            return -1;
        a->tids = t, a->cap = cap;
    }
    a->tids[a->ntids++] = tid;
    return 1;
}

// One pass over /proc/PID/task; returns how many threads it seized, or -1.
static int seize_pass(struct cshim_attach *a)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)a->pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    int added = 0, err = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        pid_t tid = (pid_t)atoi(e->d_name);
        if (tid <= 0 || has_tid(a, tid))
            continue;
        if (ptrace(PTRACE_SEIZE, tid, 0, a->options) != 0) {
            if (errno == ESRCH)
                continue;  // exited meanwhile
            if (!(errno == EPERM && a->ntids > 0 && cshim_tracer_of(tid) == a->tracer)) {
                err = errno;
                break;
            }
        }
        if (add_tid(a, tid) < 0) {
            err = errno;
            break;
        }
        added++;
    }
    closedir(d);
    if (err) {
        errno = err;
        return -1;
    }
    return added;
}

// Waits (polling, at most `ms`) for tid's next stop; 1 stopped, 0 gone, -1 timed out.
static int wait_stop(pid_t tid, int *status, int ms)
{
    struct timespec tick = {0, 200000};
    for (int i = 0; i < ms * 5; i++) {
        pid_t r = waitpid(tid, status, __WALL | WNOHANG);
        if (r == tid)
            return WIFSTOPPED(*status) ? 1 : 0;
        if (r < 0 && errno != EINTR)
            return 0;
        nanosleep(&tick, NULL);
    }
    errno = ETIMEDOUT;
    return -1;
}

// At an event stop: a child or thread it started is ours too.
static void note_child(struct cshim_attach *a, pid_t tid, int status)
{
    int event = (unsigned)status >> 16;
    unsigned long msg = 0;
    if ((event == PTRACE_EVENT_CLONE || event == PTRACE_EVENT_FORK || event == PTRACE_EVENT_VFORK) &&
        ptrace(PTRACE_GETEVENTMSG, tid, 0, &msg) == 0)
        (void)add_tid(a, (pid_t)msg);
}

// Detaches tid from whatever stop it is in, passing on the signal it stopped for.
static void detach_stopped(struct cshim_attach *a, pid_t tid, int status)
{
    int event = (unsigned)status >> 16;
    note_child(a, tid, status);
    (void)ptrace(PTRACE_DETACH, tid, 0, event == 0 ? WSTOPSIG(status) : 0);
}

int attach_restore(struct cshim_attach *a)
{
    int rc = ptrace(PTRACE_SETREGS, a->stopped, 0, &a->resume);
    if (a->masked && ptrace(PTRACE_SETSIGMASK, a->stopped, sizeof a->mask, &a->mask) != 0)
        rc = -1;
    a->masked = 0;
    return rc;
}

void cshim_attach_abandon(cshim_attach *a)
{
    int err = errno;
    for (int i = 0; i < a->ntids; i++) {
        pid_t tid = a->tids[i];
        if (tid == a->stopped) {
            (void)attach_restore(a);
            (void)ptrace(PTRACE_DETACH, tid, 0, 0);
            continue;
        }
        if (ptrace(PTRACE_INTERRUPT, tid, 0, 0) != 0)
            continue;
        int status;
        if (wait_stop(tid, &status, 1000) == 1)
            detach_stopped(a, tid, status);
    }
    free(a->tids);
    free(a);
    errno = err;
}

cshim_attach *cshim_attach_seize(pid_t pid)
{
    return attach_seize(pid, OPTIONS);
}

struct cshim_attach *attach_seize(pid_t pid, long options)
{
    struct cshim_attach *a = calloc(1, sizeof *a);
    if (a == NULL)
        return NULL;
    a->pid = pid;
    a->options = options;
    a->tracer = (pid_t)syscall(SYS_gettid);
    a->tracee_listener = -1;
    if (ptrace(PTRACE_SEIZE, pid, 0, options) != 0 || add_tid(a, pid) < 0) {
        int err = errno;
        free(a->tids);
        free(a);
        errno = err;
        return NULL;
    }
    for (;;) {
        int n = seize_pass(a);
        if (n < 0) {
            cshim_attach_abandon(a);
            return NULL;
        }
        if (n == 0)
            return a;
    }
}

// Stops `tid` at an interrupt stop; 1 done, 0 it cannot (gone, group-stopped), -1 error.
static int interrupt_one(struct cshim_attach *a, pid_t tid)
{
    if (ptrace(PTRACE_INTERRUPT, tid, 0, 0) != 0)
        return 0;
    for (int tries = 0; tries < 64; tries++) {
        int status, r = wait_stop(tid, &status, 2000);
        if (r <= 0)
            return r;
        int event = (unsigned)status >> 16, sig = WSTOPSIG(status);
        if (event == PTRACE_EVENT_STOP) {
            if (sig == SIGTRAP)
                return 1;
            (void)ptrace(PTRACE_LISTEN, tid, 0, 0);  // group-stopped: leave it so
            errno = ESRCH;
            return 0;
        }
        note_child(a, tid, status);
        // An event or a signal came first: let it go on, and stop it again.
        (void)ptrace(PTRACE_CONT, tid, 0, event == 0 ? sig : 0);
        (void)ptrace(PTRACE_INTERRUPT, tid, 0, 0);
    }
    errno = EAGAIN;
    return -1;
}

static int read_tracee(pid_t tid, unsigned long addr, void *buf, size_t len)
{
    struct iovec local = {buf, len}, remote = {(void *)addr, len};
    return process_vm_readv(tid, &local, 1, &remote, 1, 0) == (ssize_t)len ? 0 : -1;
}

// A syscall instruction the thread can run: in its vdso at the offset of
// the first one in ours, else right before rip if it stopped in a syscall.
static int find_syscall(struct cshim_attach *a)
{
    unsigned char *ours = (unsigned char *)getauxval(AT_SYSINFO_EHDR);
    // The image ends with its section headers.
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)ours;
    size_t image = ours != NULL ? eh->e_shoff + (size_t)eh->e_shnum * eh->e_shentsize : 0;
    unsigned char insn[2];
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/auxv", (int)a->pid);
    FILE *f = ours != NULL ? fopen(path, "re") : NULL;
    unsigned long theirs = 0, pair[2];
    if (f != NULL) {
        while (fread(pair, sizeof pair, 1, f) == 1 && pair[0] != AT_NULL)
            if (pair[0] == AT_SYSINFO_EHDR)
                theirs = pair[1];
        fclose(f);
    }
    if (theirs != 0) {
        for (size_t off = 0; off + 1 < image; off++) {
            if (ours[off] == 0x0f && ours[off + 1] == 0x05) {
                if (read_tracee(a->stopped, theirs + off, insn, 2) == 0 && insn[0] == 0x0f && insn[1] == 0x05) {
                    a->insn = theirs + off;
                    return 0;
                }
                break;
            }
        }
    }
    if ((long)a->saved.orig_rax >= 0 && read_tracee(a->stopped, a->saved.rip - 2, insn, 2) == 0 &&
        insn[0] == 0x0f && insn[1] == 0x05) {
        a->insn = a->saved.rip - 2;
        return 0;
    }
    errno = ENOEXEC;
    return -1;
}

// Runs syscall `nr` in the stopped thread; returns its raw result (-errno
// on failure) in *result, or -1 with errno when the thread cannot run it.
int attach_inject(struct cshim_attach *a, long nr, unsigned long a0, unsigned long a1, unsigned long a2,
                  unsigned long a3, unsigned long a4, unsigned long a5, long *result)
{
    struct user_regs_struct r = a->resume;
    r.rax = (unsigned long)nr;
    r.orig_rax = (unsigned long)-1;
    r.rip = a->insn;
    r.rdi = a0, r.rsi = a1, r.rdx = a2, r.r10 = a3, r.r8 = a4, r.r9 = a5;
    if (ptrace(PTRACE_SETREGS, a->stopped, 0, &r) != 0)
        return -1;
    for (int tries = 0; tries < 64; tries++) {
        if (ptrace(PTRACE_SYSCALL, a->stopped, 0, 0) != 0)
            return -1;
        int status;  // no time limit: the call may wait for a supervisor worker (close)
        pid_t got;
        while ((got = waitpid(a->stopped, &status, __WALL)) < 0 && errno == EINTR)
            continue;
        if (got < 0 || !WIFSTOPPED(status)) {
            errno = ESRCH;
            return -1;
        }
        if (WSTOPSIG(status) != (SIGTRAP | 0x80))
            continue;  // a group-stop or SIGSTOP: the calls go on first
        unsigned char info[128];
        if (ptrace(PTRACE_GET_SYSCALL_INFO, a->stopped, sizeof info, info) <= 0)
            return -1;
        if (info[0] != PTRACE_SYSCALL_INFO_EXIT)
            continue;
        if (ptrace(PTRACE_GETREGS, a->stopped, 0, &r) != 0)
            return -1;
        *result = (long)r.rax;
        return 0;
    }
    errno = EAGAIN;
    return -1;
}

// seccomp(SET_MODE_FILTER) of the program at `prog` for every thread, with
// a listener; without WAIT_KILLABLE_RECV on kernels before 5.19 (EINVAL).
// For the ptrace engine no listener, and TSYNC alone (a thread that cannot
// take the filter is named by a positive result: ESRCH here).
static int install_filter(struct cshim_attach *a, unsigned long prog, long *rc)
{
    if (a->options & PTRACE_O_TRACESECCOMP) {
        int r = attach_inject(a, SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, prog, 0, 0, 0, rc);
        if (r == 0 && *rc > 0)
            *rc = -ESRCH;
        return r;
    }
    unsigned long flags = SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_TSYNC | TSYNC_ESRCH;
    if (attach_inject(a, SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags | WAIT_KILLABLE_RECV, prog, 0, 0, 0, rc) != 0)
        return -1;
    if (*rc == -EINVAL)
        return attach_inject(a, SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, prog, 0, 0, 0, rc);
    return 0;
}

// Stops one thread and gets it ready for injected calls.
static int stop_one(struct cshim_attach *a)
{
    for (int i = 0; i < a->ntids; i++) {
        if (interrupt_one(a, a->tids[i]) <= 0)
            continue;  // gone, group-stopped, or not stopping (a zombie leader): the next
        a->stopped = a->tids[i];
        if (ptrace(PTRACE_GETREGS, a->stopped, 0, &a->saved) != 0)
            return -1;
        a->resume = a->saved;
        if ((long)a->saved.orig_rax >= 0) {
            switch ((long)a->saved.rax) {
            case -512: case -513: case -514:  // ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND
                a->resume.rax = a->saved.orig_rax;
                a->resume.rip -= 2;
                break;
            case -516:  // ERESTART_RESTARTBLOCK
                a->resume.rax = SYS_restart_syscall;
                a->resume.rip -= 2;
                break;
            }
        }
        a->resume.orig_rax = (unsigned long)-1;
        uint64_t all = ~(uint64_t)0;
        if (ptrace(PTRACE_GETSIGMASK, a->stopped, sizeof a->mask, &a->mask) != 0 ||
            ptrace(PTRACE_SETSIGMASK, a->stopped, sizeof all, &all) != 0)
            return -1;
        a->masked = 1;
        return 0;
    }
    return -1;
}

int cshim_attach_install(cshim_attach *a, const cshim_filter *filter, int *stage)
{
    *stage = CSHIM_ATTACH_STOP;
    if (stop_one(a) != 0)
        return -1;
    *stage = CSHIM_ATTACH_INJECT;
    if (find_syscall(a) != 0)
        return -1;
    size_t bytes = sizeof(struct sock_fprog) + (size_t)filter->len * sizeof(struct sock_filter);
    size_t size = (bytes + 4095) & ~(size_t)4095;
    long page;
    if (attach_inject(a, SYS_mmap, 0, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, (unsigned long)-1, 0,
                      &page) != 0)
        return -1;
    if (page < 0 && page > -4096)
        return errno = (int)-page, -1;
    struct sock_fprog prog = {filter->len, (struct sock_filter *)(page + sizeof(struct sock_fprog))};
    struct iovec local[2] = {{&prog, sizeof prog}, {filter->filter, bytes - sizeof prog}};
    struct iovec remote = {(void *)page, bytes};
    long rc = -EFAULT;
    if (process_vm_writev(a->stopped, local, 2, &remote, 1, 0) == (ssize_t)bytes) {
        *stage = CSHIM_ATTACH_SECCOMP;
        if (install_filter(a, (unsigned long)page, &rc) != 0)
            return -1;
        if (rc == -EACCES) {
            long nnp;
            *stage = CSHIM_ATTACH_NO_NEW_PRIVS;
            if (attach_inject(a, SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0, &nnp) != 0)
                return -1;
            rc = nnp;
            if (nnp == 0) {
                *stage = CSHIM_ATTACH_SECCOMP;
                if (install_filter(a, (unsigned long)page, &rc) != 0)
                    return -1;
            }
        }
    }
    long unmapped;
    if (rc >= 0)
        *stage = CSHIM_ATTACH_GETFD;  // the filter is in place: a failure no longer detaches
    if (attach_inject(a, SYS_munmap, (unsigned long)page, size, 0, 0, 0, 0, &unmapped) != 0)
        return -1;
    if (rc < 0)
        return errno = (int)-rc, -1;
    if (a->options & PTRACE_O_TRACESECCOMP)
        return 0;  // no listener: the tracer is the supervisor
    a->tracee_listener = (int)rc;
    int pidfd = (int)syscall(SYS_pidfd_open, a->pid, 0);
    if (pidfd < 0)
        return -1;
    int fd = (int)syscall(SYS_pidfd_getfd, pidfd, (int)rc, 0);
    int err = errno;
    close(pidfd);
    errno = err;
    return fd;
}
