// bench-floor-forwarder: a minimal C forwarder, the floor for a forwarded pread.
// A child is traced with a filter that notifies pread64; the parent loops:
//   NOTIF_RECV -> 64-byte request over the socket -> the stub process does the
//   real pread of FILE -> reply (8-byte result + data) -> process_vm_writev
//   into the child's buffer -> NOTIF_SEND with the byte count.
// The child times N 4 KiB preads at random offsets, then reads SIZE bytes
// sequentially in 1 MiB preads. One JSON line each, per transport.
//
//   bench-floor-forwarder --file FILE [-n N] [--size BYTES] [--transport unix|tcp|both] [--what pread|seq|both]
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>

#include "BenchSupport.h"
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define K4 4096
#define M1 (1 << 20)
#define REQ 64
#define SENTINEL_FD (-77) // the child's last pread: ends the forwarder loop

struct request { int64_t op, fd, offset, len, pad[4]; };
_Static_assert(sizeof(struct request) == REQ, "64-byte request");

static long n = 20000;
static long long size = 256LL * M1;
static const char *file, *what = "both";

// The home side: does the real pread and replies with result + data in one write.
static void stub(int sock) {
    int fd = open(file, O_RDONLY);
    if (fd < 0) bench_die(file);
    char *buf = malloc(8 + M1);
    if (!buf) bench_die("malloc");
    struct request rq;
    while (bench_read_full(sock, &rq, REQ)) {
        if (rq.len < 0 || rq.len > M1) rq.len = M1;
        int64_t r = pread(fd, buf + 8, rq.len, rq.offset);
        if (r < 0) r = -errno;
        memcpy(buf, &r, 8);
        bench_write_full(sock, buf, 8 + (r > 0 ? r : 0));
    }
    _exit(0);
}

// The traced side.
static void child(int sock, const char *transport) {
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_pread64, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof code / sizeof code[0], code};
    int fd = open(file, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) bench_die(file);
    long blocks = st.st_size / K4, mblocks = st.st_size / M1;
    if (mblocks < 1) { errno = EINVAL; bench_die("file smaller than 1 MiB"); }
    char *buf = malloc(M1);
    uint64_t *s = calloc(n, sizeof *s);
    if (!buf || !s) bench_die("malloc");
    memset(buf, 0, M1);

    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) bench_die("no_new_privs");
    int listener = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
    if (listener < 0) bench_die("seccomp");
    bench_send_fd(sock, listener);
    close(listener);

    uint64_t rng = 0x9E3779B97F4A7C15ULL;
    if (strcmp(what, "seq")) {
        for (long i = 0; i < n / 10 + n; i++) {
            rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
            uint64_t t0 = bench_now_ns();
            if (pread(fd, buf, K4, (off_t)(rng % blocks) * K4) != K4) bench_die("pread 4K");
            if (i >= n / 10) s[i - n / 10] = bench_now_ns() - t0;
        }
        qsort(s, n, sizeof *s, bench_cmp_u64);
        printf("{\"floor\":\"forwarder-pread\",\"transport\":\"%s\",\"n\":%ld,\"median_ns\":%llu,\"p99_ns\":%llu,\"p999_ns\":%llu}\n",
               transport, n, (unsigned long long)bench_percentile(s, n, 0.5), (unsigned long long)bench_percentile(s, n, 0.99),
               (unsigned long long)bench_percentile(s, n, 0.999));
    }
    if (strcmp(what, "pread")) {
        long calls = size / M1 < 1 ? 1 : size / M1;
        uint64_t t0 = bench_now_ns();
        for (long i = 0; i < calls; i++)
            if (pread(fd, buf, M1, (off_t)(i % mblocks) * M1) != M1) bench_die("pread 1M");
        double secs = (bench_now_ns() - t0) / 1e9;
        printf("{\"floor\":\"forwarder-seqread\",\"transport\":\"%s\",\"bytes\":%lld,\"mb_s\":%.1f}\n",
               transport, (long long)calls * M1, calls * (double)M1 / 1e6 / secs);
    }
    fflush(stdout);
    pread(SENTINEL_FD, buf, 1, 0);
    _exit(0);
}

static int run(int tcp) {
    const char *transport = tcp ? "tcp" : "unix";
    int home, far; // the forwarder's end and the stub's end
    bench_stream_pair(tcp, &home, &far);
    fflush(stdout);
    pid_t stub_pid = fork();
    if (stub_pid < 0) bench_die("fork");
    if (stub_pid == 0) { close(home); stub(far); }
    close(far);

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) bench_die("socketpair");
    pid_t pid = fork();
    if (pid < 0) bench_die("fork");
    if (pid == 0) { close(home); close(sv[0]); child(sv[1], transport); }
    close(sv[1]);
    int listener = bench_recv_fd(sv[0]);
    close(sv[0]);

    char *reply = malloc(8 + M1);
    if (!reply) bench_die("malloc");
    struct seccomp_notif req;
    struct seccomp_notif_resp resp;
    for (;;) {
        memset(&req, 0, sizeof req);
        if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0) {
            if (errno == EINTR) continue;
            bench_die("NOTIF_RECV");
        }
        memset(&resp, 0, sizeof resp);
        resp.id = req.id;
        int done = (int)req.data.args[0] == SENTINEL_FD;
        if (done) {
            resp.error = -EBADF;
        } else {
            struct request rq = {.op = 1, .fd = (int64_t)req.data.args[0],
                                 .offset = (int64_t)req.data.args[3], .len = (int64_t)req.data.args[2]};
            bench_write_full(home, &rq, REQ);
            size_t got = 0;
            int64_t r = 0;
            do { // usually one read brings header and data
                ssize_t k = read(home, reply + got, 8 + M1 - got);
                if (k <= 0) { if (k < 0 && errno == EINTR) continue; bench_die("stub reply"); }
                got += k;
                if (got >= 8) memcpy(&r, reply, 8);
            } while (got < 8 || got < 8 + (size_t)(r > 0 ? r : 0));
            if (r < 0) {
                resp.error = (int32_t)r;
            } else {
                struct iovec local = {reply + 8, (size_t)r}, remote = {(void *)req.data.args[1], (size_t)r};
                if (process_vm_writev(req.pid, &local, 1, &remote, 1, 0) != r) bench_die("process_vm_writev");
                resp.val = r;
            }
        }
        if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp) < 0 && errno != ENOENT) bench_die("NOTIF_SEND");
        if (done) break;
    }
    int status;
    waitpid(pid, &status, 0);
    close(home); // the stub sees EOF and exits
    waitpid(stub_pid, NULL, 0);
    close(listener);
    free(reply);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    bench_name("bench-floor-forwarder");
    const char *which = "both";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-n")) n = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--size")) size = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--file")) file = argv[i + 1];
        else if (!strcmp(argv[i], "--transport")) which = argv[i + 1];
        else if (!strcmp(argv[i], "--what")) what = argv[i + 1];
        else { fprintf(stderr, "bench-floor-forwarder: unknown option %s\n", argv[i]); return 2; }
    }
    if (!file) { fprintf(stderr, "usage: bench-floor-forwarder --file FILE [-n N] [--size BYTES] [--transport unix|tcp|both] [--what pread|seq|both]\n"); return 2; }
    if (n < 1) n = 1;
    int rc = 0;
    if (strcmp(which, "tcp")) rc |= run(0);
    if (strcmp(which, "unix")) rc |= run(1);
    return rc;
}
