// bench-floor-transport --what stream: the C stream forwarder, the floor of
// a forwarded TCP stream. The same four stages as Tether's pumped stream,
// each its own process: the program writes 1 MiB chunks into a Unix
// socketpair (its placeholder); a relay (the supervisor) moves them onto
// the transport; a second relay (home) moves them into a TCP loopback
// connection; the sink reads them. Every socket has 4 MiB buffers. Each
// relay runs either with splice through a pipe (no copy to user space) or
// with read/write of 1 MiB, each way twice, a line each; the row's floor is
// the best (one run on a shared machine can come out low).
// No framing and no acknowledgements: what any relay must do, no more.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "BenchSupport.h"
#include "Stream.h"

#define M1 (1 << 20)

static void relay(int in, int out, int spliced)
{
    if (spliced) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0) bench_die("pipe2");
        (void)fcntl(p[1], F_SETPIPE_SZ, M1);
        for (;;) {
            ssize_t n = splice(in, NULL, p[1], NULL, M1, SPLICE_F_MOVE);
            if (n < 0) bench_die("splice in");
            if (n == 0) break;
            while (n > 0) {
                ssize_t m = splice(p[0], NULL, out, NULL, (size_t)n, SPLICE_F_MOVE);
                if (m <= 0) bench_die("splice out");
                n -= m;
            }
        }
    } else {
        char *buf = malloc(M1);
        if (!buf) bench_die("malloc");
        for (;;) {
            ssize_t n = read(in, buf, M1);
            if (n < 0) bench_die("read");
            if (n == 0) break;
            bench_write_full(out, buf, (size_t)n);
        }
    }
    shutdown(out, SHUT_WR);
    _exit(0);
}

static void sink(int in, long long size)
{
    char *buf = malloc(M1);
    if (!buf) bench_die("malloc");
    long long got = 0;
    ssize_t n;
    while ((n = read(in, buf, M1)) > 0)
        got += n;
    _exit(got == size ? 0 : 1);
}

// Forks a stage that keeps only `keep` (up to two) of the descriptors in `all`.
static pid_t stage(const int *all, int count, int a, int b)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) bench_die("fork");
    if (pid == 0)
        for (int i = 0; i < count; i++)
            if (all[i] != a && all[i] != b) close(all[i]);
    return pid;
}

void bench_stream_floor(int tcp, long long size)
{
    long long chunks = size / M1 < 1 ? 1 : size / M1;
    for (int run = 0; run < 4; run++) {
        int spliced = run % 2 == 0;
        int fds[6];   // program|relay, transport, home|sink
        bench_stream_pair(0, &fds[0], &fds[1]);
        bench_stream_pair(tcp, &fds[2], &fds[3]);
        bench_stream_pair(1, &fds[4], &fds[5]);
        pid_t pids[3];
        if ((pids[0] = stage(fds, 6, fds[1], fds[2])) == 0) relay(fds[1], fds[2], spliced);
        if ((pids[1] = stage(fds, 6, fds[3], fds[4])) == 0) relay(fds[3], fds[4], spliced);
        if ((pids[2] = stage(fds, 6, fds[5], -1)) == 0) sink(fds[5], chunks * M1);
        for (int i = 1; i < 6; i++) close(fds[i]);
        char *buf = malloc(M1);
        if (!buf) bench_die("malloc");
        memset(buf, 's', M1);
        uint64_t t0 = bench_now_ns();
        for (long long i = 0; i < chunks; i++)
            bench_write_full(fds[0], buf, M1);
        shutdown(fds[0], SHUT_WR);
        int ok = 1, status;
        for (int i = 0; i < 3; i++)
            ok &= waitpid(pids[i], &status, 0) == pids[i] && WIFEXITED(status) && WEXITSTATUS(status) == 0;
        double secs = (bench_now_ns() - t0) / 1e9;
        close(fds[0]);
        free(buf);
        if (!ok) { errno = EPIPE; bench_die("stream floor: a stage failed"); }
        printf("{\"floor\":\"transport-stream\",\"transport\":\"%s\",\"mode\":\"%s\",\"bytes\":%lld,\"mb_s\":%.1f}\n",
               tcp ? "tcp" : "unix", spliced ? "splice" : "copy", chunks * M1, chunks * (double)M1 / 1e6 / secs);
        fflush(stdout);
    }
}
