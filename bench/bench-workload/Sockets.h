// bench-workload's socket ops (sockets.c).
#pragma once
#include <stdint.h>

/// Serves forever on 127.0.0.1:port (prints "ready" once listening).
void sock_server(int port);
/// n samples (after warmup untimed) of connect + 64-byte request + response + close.
void op_tcp_rr(int port, long n, long warmup, uint64_t *samples);
/// Streams size bytes to the sink; MB/s. *calls is the sample room in, the samples taken out.
double op_tcp_stream(int port, long long size, long *calls, uint64_t *samples);
/// n connections at once under one epoll; one sample each.
void op_tcp_epoll(int port, long n, uint64_t *samples);
