// bench-workload: times one operation per sample with clock_gettime inside
// the (possibly traced) process and prints ONE JSON line:
//   {"op":..,"n":..,"median_ns":..,"p99_ns":..,"p999_ns":..,"mean_ns":..[,"mb_s":..]}
// Runs natively or under wrap-and-run; forward-bench prepares the files.
//
//   bench-workload OP [-n N] [--warmup W] [--dir DIR] [--local-dir DIR] [--size BYTES] [--seed S]
//                     [--threads T] [--blocked B]
//
// OP: getppid compute fstat-local pread-local write-local pipe-write-read
//     stat-local open-close-local (LOCAL_DIR/local.bin: intercepted, routed local)
//     stat (each call a file not stat'ed before: DIR/statdir/f-NNNNN, warmup + n
//     of them, so no cache can answer it: the cost of a forwarded stat)
//     stat-repeated (DIR/data.bin, unchanged, again and again: what a cache saves)
//     open-close pread-random write-append
//     getdents (rewind + getdents64 to the end on one open DIR/dir1000)
//     getdents-repeated (open DIR/dir1000, getdents64 to the end, close: a
//     repeated listing of the unchanged directory, as ls or make does it)
//     read-small-repeated (open DIR/small.txt, 8 KiB, read to the end with a
//     64 KiB buffer, close: a source, module or configuration file read whole
//     again, as compilers, interpreters and make do)
//     read-small-copy (the same of DIR/copy/small.txt, which forward-bench's
//     policy makes a copy: served from the local copy cache)
//     seqread seqwrite
//     sock-server tcp-rr tcp-stream tcp-epoll (--port P: see sockets.c)
//     pread-threads (T threads each doing n random preads of DIR/data.bin, all
//     samples pooled, while B more threads are blocked reading DIR/fifo: the
//     concurrency section)
// Files: DIR/data.bin (random preads, open-close), DIR/dir1000/ (getdents), DIR/statdir/ (stat),
//        DIR/seq.bin (seqread, at least --size bytes), LOCAL_DIR/local.bin.
#define _GNU_SOURCE
#include <errno.h>

#include "BenchSupport.h"
#include "Sockets.h"
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define K4 4096
#define M1 (1 << 20)

static uint64_t *samples;
static long n = 10000, warmup = -1;
static const char *dir = "/tmp", *local_dir = "/dev/shm";
static long long size = 256LL * M1;
static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static char path[4096];
static double mb_s = -1;
static long threads = 1, blocked = 0, port = 0;

static inline uint64_t next_rand(void) { // xorshift64
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return rng;
}

static const char *in(const char *d, const char *name) {
    snprintf(path, sizeof path, "%s/%s", d, name);
    return path;
}

static int open_or_die(const char *p, int flags) {
    int fd = open(p, flags, 0644);
    if (fd < 0) bench_die(p);
    return fd;
}

static void report(const char *op, long count) {
    double sum = 0;
    for (long i = 0; i < count; i++) sum += samples[i];
    qsort(samples, count, sizeof *samples, bench_cmp_u64);
    printf("{\"op\":\"%s\",\"n\":%ld,\"median_ns\":%llu,\"p99_ns\":%llu,\"p999_ns\":%llu,\"mean_ns\":%.0f",
           op, count, (unsigned long long)bench_percentile(samples, count, 0.5), (unsigned long long)bench_percentile(samples, count, 0.99),
           (unsigned long long)bench_percentile(samples, count, 0.999), count ? sum / count : 0);
    if (mb_s >= 0) printf(",\"mb_s\":%.1f", mb_s);
    printf("}\n");
}

// Runs the body `warmup` times untimed, then n times timed (one sample each).
#define TIMED(...)                                                          \
    do {                                                                    \
        for (long i_ = 0; i_ < warmup; i_++) { __VA_ARGS__; }               \
        for (long i_ = 0; i_ < n; i_++) {                                   \
            uint64_t t0_ = bench_now_ns();                                        \
            __VA_ARGS__;                                                    \
            samples[i_] = bench_now_ns() - t0_;                                   \
        }                                                                   \
    } while (0)

static volatile uint64_t sink;

static long file_size(int fd) {
    struct stat st;
    if (fstat(fd, &st) < 0) bench_die("fstat");
    return (long)st.st_size;
}

static void op_pread_random(int fd, const char *what) {
    static char buf[K4];
    long blocks = file_size(fd) / K4;
    if (blocks < 1) { errno = EINVAL; bench_die("file too small"); }
    TIMED({
        off_t off = (off_t)(next_rand() % blocks) * K4;
        if (pread(fd, buf, K4, off) != K4) bench_die(what);
    });
}

// Reads the open directory fd to its end; the number of entries.
static long list_dir(int fd) {
    static char dbuf[32768];
    long got, count = 0;
    while ((got = syscall(SYS_getdents64, fd, dbuf, sizeof dbuf)) > 0)
        for (long off = 0; off < got; off += *(unsigned short *)(dbuf + off + 16)) count++;
    if (got < 0) bench_die("getdents64");
    return count;
}

static void op_seq(int write_mode) {
    char *buf = malloc(M1);
    if (!buf) bench_die("malloc");
    memset(buf, 'w', M1);
    long calls = (long)(size / M1);
    if (calls < 1) calls = 1;
    if (calls < n) n = calls;
    samples = realloc(samples, sizeof *samples * (calls + 1));
    int fd = write_mode ? open_or_die(in(dir, "seqw.bin"), O_WRONLY | O_CREAT | O_TRUNC)
                        : open_or_die(in(dir, "seq.bin"), O_RDONLY);
    uint64_t start = bench_now_ns();
    for (long i = 0; i < calls; i++) {
        uint64_t t0 = bench_now_ns();
        ssize_t got = write_mode ? write(fd, buf, M1) : read(fd, buf, M1);
        if (got != M1) { if (got >= 0) errno = EIO; bench_die(write_mode ? "seqwrite" : "seqread (is seq.bin big enough?)"); }
        samples[i] = bench_now_ns() - t0;
    }
    uint64_t total = bench_now_ns() - start;
    close(fd);
    mb_s = (double)calls * M1 / 1e6 / (total / 1e9);
    n = calls;
}

// ---- pread-threads: latency with company ----------------------------------

struct reader {
    pthread_t thread;
    int fd;
    uint64_t seed;
    uint64_t *samples;
};

static void *timed_preads(void *arg) {
    struct reader *r = arg;
    static __thread char buf[K4];
    long blocks = file_size(r->fd) / K4;
    uint64_t x = r->seed | 1;
    for (long i = -warmup; i < n; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        uint64_t t0 = bench_now_ns();
        if (pread(r->fd, buf, K4, (off_t)(x % blocks) * K4) != K4) bench_die("pread-threads");
        if (i >= 0) r->samples[i] = bench_now_ns() - t0;
    }
    return NULL;
}

static void *blocked_read(void *arg) {
    char c;
    if (read(*(int *)arg, &c, 1) != 1) bench_die("blocked read");
    return NULL;
}

static void op_pread_threads(void) {
    int fd = open_or_die(in(dir, "data.bin"), O_RDONLY);
    int fifo = blocked > 0 ? open_or_die(in(dir, "fifo"), O_RDWR) : -1;   // O_RDWR: no wait for a writer
    pthread_t *waiters = calloc(blocked + 1, sizeof *waiters);
    for (long i = 0; i < blocked; i++)
        if (pthread_create(&waiters[i], NULL, blocked_read, &fifo) != 0) bench_die("pthread_create");
    usleep(blocked > 0 ? 300000 : 0);   // let every waiter reach its read
    struct reader *rs = calloc(threads, sizeof *rs);
    uint64_t *all = calloc(threads * n + 1, sizeof *all);
    if (!rs || !all || !waiters) bench_die("calloc");
    for (long t = 0; t < threads; t++) {
        rs[t] = (struct reader){.fd = fd, .seed = rng + 7919 * t, .samples = all + t * n};
        if (pthread_create(&rs[t].thread, NULL, timed_preads, &rs[t]) != 0) bench_die("pthread_create");
    }
    for (long t = 0; t < threads; t++) pthread_join(rs[t].thread, NULL);
    if (blocked > 0) {
        char wake[4096];
        memset(wake, 'w', sizeof wake);
        for (long left = blocked; left > 0;) {
            ssize_t k = write(fifo, wake, left < (long)sizeof wake ? (size_t)left : sizeof wake);
            if (k <= 0) bench_die("waking the blocked readers");
            left -= k;
        }
        for (long i = 0; i < blocked; i++) pthread_join(waiters[i], NULL);
    }
    free(samples);
    samples = all;
    n *= threads;
}

int main(int argc, char **argv) {
    bench_name("bench-workload");
    if (argc < 2) {
        fprintf(stderr, "usage: bench-workload OP [-n N] [--warmup W] [--dir DIR] [--local-dir DIR] [--size BYTES] [--seed S]\n");
        return 2;
    }
    const char *op = argv[1];
    for (int i = 2; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) { fprintf(stderr, "bench-workload: %s needs a value\n", a); return 2; }
        if (!strcmp(a, "-n")) n = atol(v);
        else if (!strcmp(a, "--warmup")) warmup = atol(v);
        else if (!strcmp(a, "--dir")) dir = v;
        else if (!strcmp(a, "--local-dir")) local_dir = v;
        else if (!strcmp(a, "--size")) size = atoll(v);
        else if (!strcmp(a, "--seed")) rng = strtoull(v, NULL, 0) | 1;
        else if (!strcmp(a, "--threads")) threads = atol(v) < 1 ? 1 : atol(v);
        else if (!strcmp(a, "--blocked")) blocked = atol(v) < 0 ? 0 : atol(v);
        else if (!strcmp(a, "--port")) port = atol(v);
        else { fprintf(stderr, "bench-workload: unknown option %s\n", a); return 2; }
    }
    if (n < 1) n = 1;
    if (warmup < 0) warmup = n / 10 < 1000 ? n / 10 : 1000;
    samples = calloc(n + 1, sizeof *samples);
    if (!samples) bench_die("calloc");
    static char buf[K4];
    memset(buf, 'x', sizeof buf);

    if (!strcmp(op, "getppid")) {
        TIMED(sink += syscall(SYS_getppid));
    } else if (!strcmp(op, "compute")) { // no syscall at all: a fixed arithmetic loop
        TIMED({ uint64_t x = i_; for (int k = 0; k < 1000; k++) x = x * 6364136223846793005ULL + 1442695040888963407ULL; sink += x; });
    } else if (!strcmp(op, "fstat-local")) {
        int fd = open_or_die(in(local_dir, "local.bin"), O_RDONLY);
        struct stat st;
        TIMED(if (fstat(fd, &st) < 0) bench_die("fstat"));
    } else if (!strcmp(op, "pread-local")) {
        op_pread_random(open_or_die(in(local_dir, "local.bin"), O_RDONLY), "pread-local");
    } else if (!strcmp(op, "write-local")) {
        char tmpl[4096];
        snprintf(tmpl, sizeof tmpl, "%s/wlocal.XXXXXX", local_dir);
        int fd = mkstemp(tmpl);
        if (fd < 0) bench_die(tmpl);
        unlink(tmpl);
        long k = 0;
        TIMED({
            if (write(fd, buf, K4) != K4) bench_die("write-local");
            if (++k % 256 == 0 && lseek(fd, 0, SEEK_SET) < 0) bench_die("lseek"); // rewind every 1 MiB
        });
    } else if (!strcmp(op, "pipe-write-read")) {
        int p[2];
        if (pipe(p) < 0) bench_die("pipe");
        TIMED({
            if (write(p[1], buf, K4) != K4) bench_die("pipe write");
            if (read(p[0], buf, K4) != K4) bench_die("pipe read");
        });
    } else if (!strcmp(op, "stat-local") || !strcmp(op, "stat-repeated")) {
        char target[4096];
        snprintf(target, sizeof target, "%s", op[5] == 'l' ? in(local_dir, "local.bin") : in(dir, "data.bin"));
        struct stat st;
        TIMED(if (stat(target, &st) < 0) bench_die(target));
    } else if (!strcmp(op, "stat")) {
        char target[4096];
        struct stat st;
        long k = 0;
        TIMED({
            snprintf(target, sizeof target, "%s/statdir/f-%05ld", dir, k++);
            if (stat(target, &st) < 0) bench_die(target);
        });
    } else if (!strcmp(op, "open-close-local")) {
        char target[4096];
        snprintf(target, sizeof target, "%s/local.bin", local_dir);
        TIMED({ int fd = open(target, O_RDONLY); if (fd < 0) bench_die(target); close(fd); });
    } else if (!strcmp(op, "open-close")) {
        char target[4096];
        snprintf(target, sizeof target, "%s/data.bin", dir);
        TIMED({ int fd = open(target, O_RDONLY); if (fd < 0) bench_die(target); close(fd); });
    } else if (!strcmp(op, "pread-random")) {
        op_pread_random(open_or_die(in(dir, "data.bin"), O_RDONLY), "pread-random");
    } else if (!strcmp(op, "write-append")) {
        char target[4096];
        snprintf(target, sizeof target, "%s/append.%d", dir, getpid());
        int fd = open_or_die(target, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND);
        TIMED(if (write(fd, buf, K4) != K4) bench_die("write-append"));
        close(fd);
        if (unlink(target) < 0) bench_die("unlink");
    } else if (!strcmp(op, "getdents")) { // one sample: rewind + getdents64 until the end
        int fd = open_or_die(in(dir, "dir1000"), O_RDONLY | O_DIRECTORY);
        long entries = 0;
        TIMED({
            if (lseek(fd, 0, SEEK_SET) < 0) bench_die("lseek dir");
            entries = list_dir(fd);
        });
        if (entries < 1000) { fprintf(stderr, "bench-workload: getdents saw %ld entries, expected >= 1000\n", entries); return 1; }
    } else if (!strcmp(op, "getdents-repeated")) { // one sample: open + getdents64 until the end + close
        char target[4096];
        snprintf(target, sizeof target, "%s/dir1000", dir);
        long entries = 0;
        TIMED({
            int fd = open_or_die(target, O_RDONLY | O_DIRECTORY);
            entries = list_dir(fd);
            close(fd);
        });
        if (entries < 1000) { fprintf(stderr, "bench-workload: getdents saw %ld entries, expected >= 1000\n", entries); return 1; }
    } else if (!strcmp(op, "read-small-repeated") || !strcmp(op, "read-small-copy")) {
        // one sample: open + read until the end + close (copy: of DIR/copy/small.txt)
        char target[4096];
        snprintf(target, sizeof target, "%s/%ssmall.txt", dir, !strcmp(op, "read-small-copy") ? "copy/" : "");
        static char whole[65536];
        long total = 0;
        TIMED({
            int fd = open_or_die(target, O_RDONLY);
            ssize_t got;
            total = 0;
            while ((got = read(fd, whole, sizeof whole)) > 0) total += got;
            if (got < 0) bench_die("read small.txt");
            close(fd);
        });
        if (total != 8192) { fprintf(stderr, "bench-workload: read %ld bytes of small.txt, expected 8192\n", total); return 1; }
    } else if (!strcmp(op, "pread-threads")) {
        op_pread_threads();
    } else if (!strcmp(op, "sock-server")) {
        sock_server((int)port);
    } else if (!strcmp(op, "tcp-rr")) {
        op_tcp_rr((int)port, n, warmup, samples);
    } else if (!strcmp(op, "tcp-stream")) {
        mb_s = op_tcp_stream((int)port, size, &n, samples);
    } else if (!strcmp(op, "tcp-epoll")) {
        op_tcp_epoll((int)port, n, samples);
    } else if (!strcmp(op, "seqread")) {
        op_seq(0);
    } else if (!strcmp(op, "seqwrite")) {
        op_seq(1);
        if (unlink(in(dir, "seqw.bin")) < 0) bench_die("unlink seqw.bin");
    } else {
        fprintf(stderr, "bench-workload: unknown op %s\n", op);
        return 2;
    }
    report(op, n);
    return 0;
}
