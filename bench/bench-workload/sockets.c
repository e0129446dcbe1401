// bench-workload's socket ops: TCP to a server on 127.0.0.1:PORT that
// forward-bench starts natively (`bench-workload sock-server --port P`), so
// under wrap-and-run the connections are made at home and pumped.
//
//   sock-server   an epoll server: a connection's first byte chooses echo
//                 ('e': every byte sent back) or sink ('s': bytes counted to
//                 end of file, then the count as 8 bytes)
//   tcp-rr        one sample: connect + 64-byte request + 64-byte response + close
//   tcp-stream    one connection, --size bytes in 1 MiB writes to the sink,
//                 until its count comes back: MB/s
//   tcp-epoll     n connections at once, non-blocking under one epoll: each
//                 connects, sends 64 bytes and reads them back; one sample per
//                 connection (from its connect to its response); any error dies
#define _GNU_SOURCE
#include "BenchSupport.h"
#include "Sockets.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MSG 64

static struct sockaddr_in server_address(int port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

static int connect_to(int port) {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) bench_die("socket");
    struct sockaddr_in a = server_address(port);
    if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) bench_die("connect");
    int one = 1;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return s;
}

struct conn {
    char mode;        // 0: not yet known, 'e' or 's'
    long long count;  // sink: bytes so far
};

void sock_server(int port) {
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (l < 0) bench_die("socket");
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = server_address(port);
    if (bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 4096) < 0) bench_die("bind/listen");
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
    printf("ready\n");
    fflush(stdout);
    static char buf[1 << 20];
    static struct conn conns[65536];
    struct epoll_event evs[256];
    for (;;) {
        int k = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < k; i++) {
            if (evs[i].data.ptr == NULL) {
                int c;
                while ((c = accept4(l, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
                    if (c >= 65536) { close(c); continue; }
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conns[c] = (struct conn){0};
                    struct epoll_event ce = {.events = EPOLLIN, .data.u64 = (uint64_t)c + 1};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
                    break;   // one per wake-up: level-triggered, the rest come next
                }
                continue;
            }
            int c = (int)(evs[i].data.u64 - 1);
            ssize_t got = read(c, buf, sizeof buf);
            if (got <= 0) {
                if (got == 0 && conns[c].mode == 's') {
                    long long total = conns[c].count;
                    bench_write_full(c, &total, sizeof total);
                }
                close(c);
                continue;
            }
            char *p = buf;
            if (!conns[c].mode) {
                conns[c].mode = *p++;
                got--;
            }
            if (conns[c].mode == 's') conns[c].count += got;
            else if (got > 0) bench_write_full(c, p, (size_t)got);
        }
    }
}

/// A request: 'e' (echo) and MSG bytes, which come back.
static char request[MSG + 1];

static void make_request(void) {
    memset(request, 'q', sizeof request);
    request[0] = 'e';
}

void op_tcp_rr(int port, long n, long warmup, uint64_t *samples) {
    char resp[MSG];
    make_request();
    for (long i = -warmup; i < n; i++) {
        uint64_t t0 = bench_now_ns();
        int s = connect_to(port);
        bench_write_full(s, request, sizeof request);
        if (bench_read_full(s, resp, MSG) != 1) bench_die("tcp-rr response");
        close(s);
        if (i >= 0) samples[i] = bench_now_ns() - t0;
    }
}

double op_tcp_stream(int port, long long size, long *calls_out, uint64_t *samples) {
    static char block[1 << 20];
    memset(block, 'b', sizeof block);
    long calls = (long)(size / sizeof block);
    if (calls < 1) calls = 1;
    uint64_t start = bench_now_ns();
    int s = connect_to(port);
    bench_write_full(s, "s", 1);
    for (long i = 0; i < calls; i++) {
        uint64_t t0 = bench_now_ns();
        bench_write_full(s, block, sizeof block);
        if (i < *calls_out) samples[i] = bench_now_ns() - t0;
    }
    shutdown(s, SHUT_WR);
    long long total = 0;
    if (bench_read_full(s, &total, sizeof total) != 1 || total != (long long)calls * (long long)sizeof block) {
        fprintf(stderr, "bench-workload: the sink counted %lld of %lld bytes\n", total, (long long)calls * (long long)sizeof block);
        exit(1);
    }
    uint64_t elapsed = bench_now_ns() - start;
    close(s);
    if (calls < *calls_out) *calls_out = calls;
    return (double)calls * sizeof block / 1e6 / (elapsed / 1e9);
}

struct pending {
    int fd;
    int sent;
    int got;
    uint64_t t0;
};

void op_tcp_epoll(int port, long n, uint64_t *samples) {
    struct pending *ps = calloc((size_t)n, sizeof *ps);
    if (!ps) bench_die("calloc");
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct sockaddr_in a = server_address(port);
    char resp[MSG];
    make_request();
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < (rlim_t)n + 64) {
        lim.rlim_cur = lim.rlim_max < (rlim_t)n + 64 ? lim.rlim_max : (rlim_t)n + 64;
        setrlimit(RLIMIT_NOFILE, &lim);
    }
    for (long i = 0; i < n; i++) {
        ps[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (ps[i].fd < 0) bench_die("socket (raise the descriptor limit?)");
        ps[i].t0 = bench_now_ns();
        if (connect(ps[i].fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) bench_die("connect");
        struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.u64 = (uint64_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, ps[i].fd, &ev) < 0) bench_die("epoll_ctl");
    }
    long done = 0;
    struct epoll_event evs[256];
    while (done < n) {
        int k = epoll_wait(ep, evs, 256, 30000);
        if (k == 0) { fprintf(stderr, "bench-workload: tcp-epoll: %ld of %ld answered in 30 s\n", done, n); exit(1); }
        if (k < 0) { if (errno == EINTR) continue; bench_die("epoll_wait"); }
        for (int j = 0; j < k; j++) {
            struct pending *p = &ps[evs[j].data.u64];
            if (evs[j].events & EPOLLERR) {
                int e = 0;
                socklen_t len = sizeof e;
                getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &e, &len);
                errno = e;
                bench_die("tcp-epoll connection");
            }
            if ((evs[j].events & EPOLLOUT) && p->sent < MSG + 1) {
                ssize_t w = write(p->fd, request + p->sent, sizeof request - (size_t)p->sent);
                if (w < 0 && errno != EAGAIN) bench_die("tcp-epoll write");
                if (w > 0) p->sent += (int)w;
                if (p->sent == MSG + 1) {
                    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u64 = evs[j].data.u64};
                    epoll_ctl(ep, EPOLL_CTL_MOD, p->fd, &ev);
                }
            }
            if (evs[j].events & (EPOLLIN | EPOLLRDHUP)) {
                ssize_t r = read(p->fd, resp, (size_t)(MSG - p->got));
                if (r == 0) { fprintf(stderr, "bench-workload: tcp-epoll: closed early\n"); exit(1); }
                if (r < 0 && errno != EAGAIN) bench_die("tcp-epoll read");
                if (r > 0 && (p->got += (int)r) == MSG) {
                    samples[done++] = bench_now_ns() - p->t0;
                    epoll_ctl(ep, EPOLL_CTL_DEL, p->fd, NULL);
                    close(p->fd);
                }
            }
        }
    }
    close(ep);
    free(ps);
}
