// Helpers shared by the bench C programs: time, errors, percentiles, and
// full reads and writes. Each program names itself once with bench_name().
#ifndef BENCH_SUPPORT_H
#define BENCH_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

/// The program name in messages from bench_die().
void bench_name(const char *name);
/// CLOCK_MONOTONIC in nanoseconds.
uint64_t bench_now_ns(void);
/// Prints "NAME: what: strerror(errno)" and exits 1.
__attribute__((noreturn)) void bench_die(const char *what);
/// qsort comparator for uint64_t.
int bench_cmp_u64(const void *a, const void *b);
/// Nearest-rank percentile `q` (0..1) of `count` sorted samples.
uint64_t bench_percentile(const uint64_t *sorted, long count, double q);
/// Reads exactly `len` bytes; 0 on end of file before the first byte, dies otherwise.
int bench_read_full(int fd, void *buf, size_t len);
/// Writes exactly `len` bytes or dies.
void bench_write_full(int fd, const void *buf, size_t len);

/// Passes `fd` over a Unix socket (SCM_RIGHTS, one data byte) or dies.
void bench_send_fd(int sock, int fd);
/// Receives one descriptor sent by bench_send_fd, or dies.
int bench_recv_fd(int sock);
/// A connected stream pair: a Unix socketpair, or (tcp) a TCP loopback
/// connection with TCP_NODELAY on both ends. Dies on failure.
void bench_stream_pair(int tcp, int *near, int *far);

#endif
