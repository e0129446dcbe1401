// bench-floor-notify: the raw seccomp user-notification round trip.
// A child installs a filter that notifies getppid (SECCOMP_FILTER_FLAG_NEW_LISTENER),
// passes the listener to the parent over a socketpair, then times N getppid
// calls; the parent answers each notification at once (NOTIF_RECV -> NOTIF_SEND).
// Variants, one JSON line each: "unpinned", "pinned" (both on one CPU),
// "sync-wakeup" (SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP, if the kernel has it),
// all answering 42; and "polled", the floor for intercepted calls that end
// up local: sync wake-up, the supervisor polls the listener for up to 50 µs
// (non-blocking checks and sched_yield, as Tether waits) before each
// blocking NOTIF_RECV, and answers SECCOMP_USER_NOTIF_FLAG_CONTINUE, so the
// real getppid runs in the child.
//
//   bench-floor-notify [-n N] [--variant unpinned|pinned|sync-wakeup|polled]
#define _GNU_SOURCE
#include <errno.h>

#include "BenchSupport.h"
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>


#define SENTINEL 0x5e17e1UL // getppid's (ignored) first argument on the last call

static long n = 100000;

// The traced side: install the filter, hand over the listener, time N calls.
static void child(int sock, const char *variant, int cont) {
    long expect = cont ? (long)getppid() : 42;
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof code / sizeof code[0], code};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) bench_die("no_new_privs");
    int listener = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
    if (listener < 0) bench_die("seccomp");
    bench_send_fd(sock, listener);
    close(listener);
    uint64_t *s = calloc(n, sizeof *s);
    if (!s) bench_die("calloc");
    for (long i = 0; i < n / 10; i++) syscall(SYS_getppid); // warm-up
    for (long i = 0; i < n; i++) {
        uint64_t t0 = bench_now_ns();
        if (syscall(SYS_getppid) != expect) bench_die("getppid answer");
        s[i] = bench_now_ns() - t0;
    }
    syscall(SYS_getppid, SENTINEL);
    qsort(s, n, sizeof *s, bench_cmp_u64);
    printf("{\"floor\":\"notify\",\"variant\":\"%s\",\"n\":%ld,\"median_ns\":%llu,\"p99_ns\":%llu,\"p999_ns\":%llu}\n",
           variant, n, (unsigned long long)bench_percentile(s, n, 0.5), (unsigned long long)bench_percentile(s, n, 0.99),
           (unsigned long long)bench_percentile(s, n, 0.999));
    fflush(stdout);
    _exit(0);
}

// The supervisor side: answer each notification at once, with 42.
static int run(const char *variant, int pin, int sync_wakeup, int polled) {
    cpu_set_t all, one;
    if (sched_getaffinity(0, sizeof all, &all) < 0) bench_die("sched_getaffinity");
    if (pin) {
        CPU_ZERO(&one);
        for (int c = 0; c < CPU_SETSIZE; c++) if (CPU_ISSET(c, &all)) { CPU_SET(c, &one); break; }
        if (sched_setaffinity(0, sizeof one, &one) < 0) bench_die("sched_setaffinity");
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) bench_die("socketpair");
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) bench_die("fork");
    if (pid == 0) { close(sv[0]); child(sv[1], variant, polled); }
    close(sv[1]);
    int listener = bench_recv_fd(sv[0]);
    close(sv[0]);
    if (sync_wakeup && bench_sync_wakeup(listener) < 0) {
        if (errno != EINVAL && errno != ENOTTY) bench_die("NOTIF_SET_FLAGS");
        if (polled) goto answer; // polling alone, as Tether on such a kernel
        fprintf(stderr, "bench-floor-notify: SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP unsupported; skipping\n");
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        close(listener);
        return 0;
    }
answer:
    bench_poll_us = polled ? 50 : 0;
    struct seccomp_notif req;
    struct seccomp_notif_resp resp;
    for (;;) {
        memset(&req, 0, sizeof req);
        bench_spin_readable(listener);
        if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0) {
            if (errno == EINTR) continue;
            bench_die("NOTIF_RECV");
        }
        memset(&resp, 0, sizeof resp);
        resp.id = req.id;
        if (polled) resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
        else resp.val = 42;
        if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp) < 0 && errno != ENOENT) bench_die("NOTIF_SEND");
        if (req.data.args[0] == SENTINEL) break;
    }
    int status;
    waitpid(pid, &status, 0);
    close(listener);
    if (pin && sched_setaffinity(0, sizeof all, &all) < 0) bench_die("sched_setaffinity");
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    bench_name("bench-floor-notify");
    const char *only = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-n")) n = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--variant")) only = argv[i + 1];
        else { fprintf(stderr, "bench-floor-notify: unknown option %s\n", argv[i]); return 2; }
    }
    if (n < 1) n = 1;
    int rc = 0;
    if (!only || !strcmp(only, "unpinned")) rc |= run("unpinned", 0, 0, 0);
    if (!only || !strcmp(only, "pinned")) rc |= run("pinned", 1, 0, 0);
    if (!only || !strcmp(only, "sync-wakeup")) rc |= run("sync-wakeup", 0, 1, 0);
    if (!only || !strcmp(only, "polled")) rc |= run("polled", 0, 1, 1);
    return rc;
}
