// CShim: the tracer's waits for its tracees, polled before they sleep.
//
// A tracee's stop wakes its tracer with an ordinary wake-up, and resuming
// it wakes the tracee the same way: the scheduler puts each on an idle
// vCPU if there is one, and on a VM an idle vCPU halts, so each wake-up
// costs tens of microseconds (the seccomp engine avoids both with
// SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP, which ptrace has no equivalent of).
// So the tracer polls waitpid(WNOHANG), yielding the CPU between polls, for
// up to a budget before it sleeps in waitpid; the budget is learnt as
// SpinBudget (Descriptors.swift) learns it for a reply: a poll that runs
// out halves it, a sleep that ended sooner than the maximum sets it to
// twice that gap, a yield that ran another thread (the CPUs are taken)
// stops polling, and a run of sleeps with gaps just over the maximum (a
// halted vCPU's wake-up in each) is followed by a probe. Tracer thread
// only: the state is plain statics.
#include "CShim.h"

#include <errno.h>
#include <sched.h>
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

pid_t cshim_ptrace_waitpid(pid_t which, int *status, int flags)
{
    if ((flags & WNOHANG) || maximum_us <= 0)
        return waitpid(which, status, flags);
    int64_t began = now_us(), now = began;
    for (;;) {
        pid_t got = waitpid(which, status, flags | WNOHANG);
        if (got != 0) {
            int64_t gap = now_us() - began;
            if (got > 0 && gap * 2 > budget_us)
                budget_us = gap * 2 < maximum_us ? (int)(gap * 2) : maximum_us;
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
        if (gap * 2 > budget_us)
            budget_us = gap * 2 < maximum_us ? (int)(gap * 2) : maximum_us;
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
