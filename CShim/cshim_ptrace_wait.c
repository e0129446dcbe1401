// CShim: the tracer's waits for its tracees, polled before they sleep, and
// its wake-ups of them.
//
// A tracee's stop wakes its tracer with an ordinary wake-up, and resuming
// it wakes the tracee the same way: the scheduler puts each on an idle
// vCPU if there is one, and on a VM an idle vCPU halts, so each wake-up
// costs tens of microseconds (the seccomp engine avoids both with
// SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP, which ptrace has no equivalent of).
//
// The tracer's side: it polls waitpid(WNOHANG), yielding the CPU between
// polls, for up to a budget before it sleeps in waitpid; the budget is
// learnt as SpinBudget (Descriptors.swift) learns it for a reply: a poll
// that runs out halves it, a sleep that ended sooner than the maximum sets
// it to twice that gap, a yield that ran another thread (the CPUs are
// taken) stops polling, and a run of sleeps with gaps just over the
// maximum (a halted vCPU's wake-up in each) is followed by a probe.
//
// The tracee's side (cshim_ptrace_resume): the synchronous wake-up the
// seccomp engine asks the kernel for, done by hand. The thread's affinity
// is narrowed to the tracer's own CPU for the PTRACE_CONT, so the
// scheduler queues it there (a CPU that is running, not a halted one), and
// put back at once. Left as it is:
//  - where the tracer's CPU is not in the thread's affinity (the program
//    pinned itself elsewhere, or a cpuset says no);
//  - when another thread was queued here in the last RESUME_SPREAD_US: it
//    may still run here, and the threads of a parallel program are better
//    spread by the scheduler than piled on the tracer's CPU.
// The woken thread may take the CPU before the tracer puts its affinity
// back, and run on until it next stops. It cannot see or change the
// narrowed affinity meanwhile: the ptrace filter traces sched_getaffinity,
// sched_setaffinity, clone, clone3, fork and vfork (the fences,
// cshim_ptrace_is_fence), and the tracer, one thread, finishes putting the
// affinity back before it takes any stop, so a fence runs (natively, resumed
// as it is) only once the program's own affinity is back, and no thread or
// process is made with the narrowed one. (Another, untraced process
// reading it through /proc or taskset meanwhile would see the one CPU.)
//
// Tracer thread only: the state is plain statics.
#include "CShim.h"

#include <errno.h>
#include <sched.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <stdint.h>
#include <sys/wait.h>
#include <time.h>

static int maximum_us = -1, budget_us;
// Sleeps in a row whose gap was under PROBE_SPAN maximums (see the top).
static int short_sleeps;
#define PROBE_AFTER 8
#define PROBE_SPAN 4

void cshim_ptrace_set_poll(int microseconds)
{
    maximum_us = budget_us = microseconds > 0 ? microseconds : 0;
}

static int64_t now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

// A stop came `gap` µs into a wait: the next polls for twice that (at most
// the maximum), so such a gap is caught polling.
static void caught_after(int64_t gap)
{
    if (gap * 2 > budget_us)
        budget_us = gap * 2 < maximum_us ? (int)(gap * 2) : maximum_us;
}

pid_t cshim_ptrace_waitpid(pid_t which, int *status, int flags)
{
    if ((flags & WNOHANG) || maximum_us <= 0)
        return waitpid(which, status, flags);
    int64_t began = now_us(), now = began;
    for (;;) {
        pid_t got = waitpid(which, status, flags | WNOHANG);
        if (got != 0) {
            if (got > 0)
                caught_after(now_us() - began);
            return got;
        }
        if (now - began >= budget_us)
            break;
        int64_t before = now;
        sched_yield();
        now = now_us();
        if (now - before > 20) {   // another thread ran: the CPUs are taken
            budget_us = 0;
            break;
        }
    }
    if (budget_us > 0 && now - began >= budget_us)
        budget_us /= 2;
    pid_t got = waitpid(which, status, flags);
    int64_t gap = now_us() - began;
    if (got > 0 && gap < maximum_us) {
        caught_after(gap);
        short_sleeps = 0;
    } else if (got > 0) {
        short_sleeps = gap < (int64_t)maximum_us * PROBE_SPAN ? short_sleeps + 1 : 0;
        if (short_sleeps >= PROBE_AFTER) {
            budget_us = maximum_us;   // a probe
            short_sleeps = 0;
        }
    }
    return got;
}

int cshim_ptrace_is_fence(int nr)
{
    return nr == SYS_sched_getaffinity || nr == SYS_sched_setaffinity || nr == SYS_clone || nr == SYS_clone3 ||
           nr == SYS_fork || nr == SYS_vfork;
}

#define RESUME_SPREAD_US 100

long cshim_ptrace_resume(pid_t tid, int signal)
{
    static pid_t last;
    static int64_t last_at;
    cpu_set_t own, here;
    int cpu = sched_getcpu();
    int64_t now = now_us();
    if ((tid != last && now - last_at < RESUME_SPREAD_US) || cpu < 0 || cpu >= CPU_SETSIZE ||
        sched_getaffinity(tid, sizeof own, &own) != 0 || !CPU_ISSET(cpu, &own))
        return ptrace(PTRACE_CONT, tid, 0, signal);
    CPU_ZERO(&here);
    CPU_SET(cpu, &here);
    int narrowed = sched_setaffinity(tid, sizeof here, &here) == 0;
    long rc = ptrace(PTRACE_CONT, tid, 0, signal);
    if (narrowed && sched_setaffinity(tid, sizeof own, &own) != 0 && errno != ESRCH)
        (void)sched_setaffinity(tid, sizeof own, &own);   // once more; ESRCH: it is gone
    if (narrowed) {
        last = tid;
        last_at = now;
    }
    return rc;
}
