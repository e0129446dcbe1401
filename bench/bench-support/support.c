#include "BenchSupport.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static const char *program = "bench";

void bench_name(const char *name) { program = name; }

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

void bench_die(const char *what)
{
    fprintf(stderr, "%s: %s: %s\n", program, what, strerror(errno));
    exit(1);
}

int bench_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

uint64_t bench_percentile(const uint64_t *sorted, long count, double q)
{
    long i = (long)(q * count + 0.999999) - 1;
    return sorted[i < 0 ? 0 : i >= count ? count - 1 : i];
}

int bench_read_full(int fd, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, (char *)buf + got, len - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) bench_die("read");
        if (r == 0) {
            if (got == 0) return 0;
            errno = EPIPE;
            bench_die("short read");
        }
        got += (size_t)r;
    }
    return 1;
}

void bench_write_full(int fd, const void *buf, size_t len)
{
    size_t put = 0;
    while (put < len) {
        ssize_t w = write(fd, (const char *)buf + put, len - put);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) bench_die("write");
        put += (size_t)w;
    }
}

void bench_send_fd(int sock, int fd)
{
    char dummy = 0, ctl[CMSG_SPACE(sizeof(int))] = {0};
    struct iovec iov = {&dummy, 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    if (sendmsg(sock, &msg, 0) != 1) bench_die("sendmsg");
}

int bench_recv_fd(int sock)
{
    char dummy, ctl[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {&dummy, 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
    if (recvmsg(sock, &msg, 0) != 1) bench_die("recvmsg");
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (!c || c->cmsg_type != SCM_RIGHTS) {
        errno = EPROTO;
        bench_die("no fd received");
    }
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof fd);
    return fd;
}

// SECCOMP_IOCTL_NOTIF_SET_FLAGS and its one flag, SYNC_WAKE_UP (Linux
// 6.6), by value: the installed uapi headers may predate them.
static const unsigned long notif_set_flags = SECCOMP_IOW(4, __u64);
static const unsigned long sync_wake_up = 1;

long bench_poll_us = 0;

int bench_spin_readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 0) == 1) return 1;
    if (bench_poll_us <= 0) return 0;
    uint64_t until = bench_now_ns() + (uint64_t)bench_poll_us * 1000;
    do {
        sched_yield();
        p.revents = 0;
        if (poll(&p, 1, 0) == 1) return 1;
    } while (bench_now_ns() < until);
    return 0;
}

int bench_sync_wakeup(int listener)
{
    return ioctl(listener, notif_set_flags, sync_wake_up, 0) < 0 ? -1 : 0;
}

static void bulk_buffers(int fd)
{
    int size = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
}

static void nodelay(int fd)
{
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0) bench_die("TCP_NODELAY");
}

void bench_stream_pair(int tcp, int *near, int *far)
{
    if (!tcp) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) bench_die("socketpair");
        *near = sv[0];
        *far = sv[1];
        bulk_buffers(*near);
        bulk_buffers(*far);
        return;
    }
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 1) < 0) bench_die("listen");
    if (getsockname(ls, (struct sockaddr *)&a, &alen) < 0) bench_die("getsockname");
    *near = socket(AF_INET, SOCK_STREAM, 0);
    if (*near < 0 || connect(*near, (struct sockaddr *)&a, sizeof a) < 0) bench_die("connect");
    *far = accept(ls, NULL, NULL);
    if (*far < 0) bench_die("accept");
    close(ls);
    nodelay(*near);
    nodelay(*far);
    bulk_buffers(*near);
    bulk_buffers(*far);
}
