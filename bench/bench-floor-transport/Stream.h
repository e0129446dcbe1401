// The C stream forwarder (stream.c).
#ifndef BENCH_STREAM_H
#define BENCH_STREAM_H
/// Runs the four-stage stream over the transport (tcp: TCP loopback, else a
/// Unix socketpair) with splicing relays and with copying ones, each twice;
/// one JSON line each.
void bench_stream_floor(int tcp, long long size);
#endif
