// bench-floor-transport: the raw transport floors, Unix socketpair and TCP
// 127.0.0.1 (TCP_NODELAY), server in a forked process. One JSON line each:
//   rtt:        64-byte request -> 4 KiB reply, per-round-trip percentiles;
//   bulk-read:  64-byte request -> 1 MiB reply, SIZE bytes in all, MB/s;
//   bulk-write: 1 MiB request -> 64-byte reply, SIZE bytes in all, MB/s;
//   stream:     the C stream forwarder (stream.c; only with --what stream).
// The bulk figures are request/response, as a forwarded read or write is:
// one 1 MiB message per call, both ends with 4 MiB socket buffers as
// Tether's streams have. Every wait (the client's for a reply, the server's
// for a request) first polls for up to --poll-us µs (default 50) with
// sched_yield, as Tether waits; --poll-us 0 blocks at once.
//
//   bench-floor-transport [-n N] [--size BYTES] [--transport unix|tcp|both] [--what rtt|bulk|both|stream] [--poll-us US]
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>

#include "BenchSupport.h"
#include "Stream.h"
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define REQ 64
#define REPLY 4096
#define M1 (1 << 20)

static long n = 20000;
static long long size = 256LL * M1;
static const char *what = "both";

// Request: 64 bytes; bytes 0..7 = reply length, 8..15 = bytes that follow the header.
static void server(int fd) {
    char *buf = malloc(M1);
    if (!buf) bench_die("malloc");
    memset(buf, 'r', M1);
    uint64_t h[REQ / 8];
    for (;;) {
        bench_spin_readable(fd);
        if (!bench_read_full(fd, h, REQ)) break;
        if (h[1] > M1 || h[0] > M1) { errno = EPROTO; bench_die("bad request"); }
        if (h[1]) bench_read_full(fd, buf, h[1]);
        bench_write_full(fd, buf, h[0]);
    }
    _exit(0);
}

// Returns the client's end; the server runs in a child process.
static int connect_pair(int tcp, pid_t *server_pid) {
    int client, srv;
    bench_stream_pair(tcp, &client, &srv);
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) bench_die("fork");
    if (pid == 0) { close(client); server(srv); }
    close(srv);
    *server_pid = pid;
    return client;
}

static void run(int tcp) {
    if (!strcmp(what, "stream")) {
        bench_stream_floor(tcp, size);
        return;
    }
    const char *name = tcp ? "tcp" : "unix";
    pid_t pid;
    int fd = connect_pair(tcp, &pid);
    uint64_t h[REQ / 8] = {REPLY, 0};
    char *buf = malloc(M1);
    uint64_t *s = calloc(n, sizeof *s);
    if (!buf || !s) bench_die("malloc");
    memset(buf, 'q', M1);

    if (strcmp(what, "bulk")) {
        for (long i = 0; i < n / 10; i++) { // warm-up
            bench_write_full(fd, h, REQ);
            bench_spin_readable(fd);
            bench_read_full(fd, buf, REPLY);
        }
        for (long i = 0; i < n; i++) {
            uint64_t t0 = bench_now_ns();
            bench_write_full(fd, h, REQ);
            bench_spin_readable(fd);
            bench_read_full(fd, buf, REPLY);
            s[i] = bench_now_ns() - t0;
        }
        qsort(s, n, sizeof *s, bench_cmp_u64);
        printf("{\"floor\":\"transport-rtt\",\"transport\":\"%s\",\"mode\":\"%s\",\"poll_us\":%ld,\"n\":%ld,\"median_ns\":%llu,\"p99_ns\":%llu,\"p999_ns\":%llu}\n",
               name, bench_poll_us > 0 ? "polled" : "blocking", bench_poll_us, n, (unsigned long long)bench_percentile(s, n, 0.5), (unsigned long long)bench_percentile(s, n, 0.99),
               (unsigned long long)bench_percentile(s, n, 0.999));
    }

    long calls = size / M1 < 1 ? 1 : size / M1;
    for (int dir = 0; dir < 2 && strcmp(what, "rtt"); dir++) { // 0: bulk-read (1 MiB replies), 1: bulk-write (1 MiB requests)
        h[0] = dir ? REQ : M1;
        h[1] = dir ? M1 : 0;
        uint64_t t0 = bench_now_ns();
        for (long i = 0; i < calls; i++) {
            bench_write_full(fd, h, REQ);
            if (dir) bench_write_full(fd, buf, M1);
            bench_spin_readable(fd);
            bench_read_full(fd, buf, h[0]);
        }
        double secs = (bench_now_ns() - t0) / 1e9;
        printf("{\"floor\":\"transport-%s\",\"transport\":\"%s\",\"mode\":\"%s\",\"poll_us\":%ld,\"bytes\":%lld,\"mb_s\":%.1f}\n",
               dir ? "bulk-write" : "bulk-read", name, bench_poll_us > 0 ? "polled" : "blocking", bench_poll_us, (long long)calls * M1, calls * (double)M1 / 1e6 / secs);
    }
    fflush(stdout);
    close(fd);
    waitpid(pid, NULL, 0);
    free(buf);
    free(s);
}

int main(int argc, char **argv) {
    bench_name("bench-floor-transport");
    const char *which = "both";
    bench_poll_us = 50;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-n")) n = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--size")) size = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--transport")) which = argv[i + 1];
        else if (!strcmp(argv[i], "--what")) what = argv[i + 1];
        else if (!strcmp(argv[i], "--poll-us")) bench_poll_us = atol(argv[i + 1]);
        else { fprintf(stderr, "bench-floor-transport: unknown option %s\n", argv[i]); return 2; }
    }
    if (n < 1) n = 1;
    if (strcmp(which, "tcp")) run(0);
    if (strcmp(which, "unix")) run(1);
    return 0;
}
