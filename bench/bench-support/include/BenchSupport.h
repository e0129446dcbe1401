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
/// connection with TCP_NODELAY on both ends; both ends get 4 MiB socket
/// buffers, as Tether's streams do. Dies on failure.
void bench_stream_pair(int tcp, int *near, int *far);

/// Microseconds bench_spin_readable() polls before a blocking wait: 0 makes
/// every wait block at once (the blocking floors), 50 is what Tether does.
extern long bench_poll_us;
/// Tether's wait: checks `fd` without blocking, then sched_yield()s and
/// checks again until it is readable or bench_poll_us have passed. Returns
/// 1 if readable (the caller's read will not sleep), 0 otherwise.
int bench_spin_readable(int fd);
/// Sets SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP on a seccomp listener, as
/// Tether's supervisor does. Returns 0, or -1 where the kernel lacks it.
int bench_sync_wakeup(int listener);

#endif
