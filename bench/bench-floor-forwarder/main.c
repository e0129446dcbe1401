// bench-floor-forwarder: a minimal C forwarder, the floor for forwarded calls.
// A child is traced with a filter that notifies pread64 and write on fd 100
// and newfstatat relative to AT_FDCWD; the parent (the supervisor) loops:
//   NOTIF_RECV -> 64-byte request (+ the path, or the 4 KiB to write, read
//   from the child with process_vm_readv) over the socket -> the stub process
//   does the real call -> reply (8-byte result + data: the bytes read, or the
//   256-byte struct statx) -> process_vm_writev into the child (a statx is
//   converted to struct stat first, as Tether does) -> NOTIF_SEND.
// The child times, one JSON line each per transport:
//   pread: N 4 KiB preads of FILE at random offsets;
//   stat:  N stat() calls, each of a file not stat'ed before (DIR/statdir/f-NNNNN,
//          as bench-workload's stat): every one has to go to the stub;
//   write: N 4 KiB appends (the stub's file is DIR/floor-append.PID, O_APPEND);
//   behind: N 4 KiB appends answered as soon as their request is sent, at
//          most 16 in flight; the 17th waits for its reply and reads all
//          earlier ones on the way (what Tether's write-behind does: the
//          floor for its unwaited writes);
//   seq:   SIZE bytes of FILE in sequential 1 MiB preads (MB/s).
// --poll-us 50 (the default) is the polled floor every ratio is quoted
// against: each wait (for a notification, for the stub's reply, the stub's
// for a request) first checks without blocking and sched_yield()s for up to
// 50 µs, and the listener has SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP where the
// kernel has it: Tether's own tricks. --poll-us 0 is the blocking reference.
//
//   bench-floor-forwarder --file FILE --dir DIR [-n N] [--size BYTES] [--transport unix|tcp|both]
//                         [--what pread,stat,write,behind,seq] [--poll-us US]
#define _GNU_SOURCE
#include <errno.h>

#include "BenchSupport.h"
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define K4 4096
#define M1 (1 << 20)
#define REQ 64
#define FWD_FD 100           // the child's forwarded descriptor (Tether's placeholders are high numbers too)
#define BEHIND_FD 101        // the same file; its writes are answered before the stub runs them
#define MAX_BEHIND 16        // Tether's cap on unwaited writes in flight
#define SENTINEL_OFFSET (-7) // pread64(FWD_FD, _, 0, -7): ends the forwarder loop
#define STATX_BYTES 256
#define PATH_LEN 4096

enum { OP_PREAD = 1, OP_STAT = 2, OP_WRITE = 3 };

struct request { int64_t op, offset, len, pad[5]; };
_Static_assert(sizeof(struct request) == REQ, "64-byte request");

static long n = 20000;
static long long size = 256LL * M1;
static const char *file, *dir, *what = "pread,stat,write,behind,seq";

static int wants(const char *op) { return strstr(what, op) != NULL; }

// The home side: does the real call and replies with result + data in one write.
static void stub(int sock) {
    int fd = open(file, O_RDONLY);
    char append[PATH_LEN];
    snprintf(append, sizeof append, "%s/floor-append.%d", dir, getpid());
    int wfd = open(append, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
    if (fd < 0) bench_die(file);
    if (wfd < 0) bench_die(append);
    char *buf = malloc(8 + M1), *in = malloc(M1 + 1);
    if (!buf || !in) bench_die("malloc");
    struct request rq;
    for (;;) {
        bench_spin_readable(sock);
        if (!bench_read_full(sock, &rq, REQ)) break;
        int64_t r, out = 0;
        if (rq.len < 0 || rq.len > M1) rq.len = M1;
        switch (rq.op) {
        case OP_PREAD:
            r = pread(fd, buf + 8, rq.len, rq.offset);
            out = r > 0 ? r : 0;
            break;
        case OP_STAT:
            bench_read_full(sock, in, rq.len);
            in[rq.len] = 0;
            r = statx(AT_FDCWD, in, AT_NO_AUTOMOUNT, STATX_BASIC_STATS, (struct statx *)(buf + 8));
            out = r == 0 ? STATX_BYTES : 0;
            break;
        case OP_WRITE:
            bench_read_full(sock, in, rq.len);
            r = write(wfd, in, rq.len);
            break;
        default:
            errno = EPROTO;
            bench_die("request");
        }
        if (r < 0) r = -errno;
        memcpy(buf, &r, 8);
        bench_write_full(sock, buf, 8 + out);
    }
    unlink(append);
    _exit(0);
}

// Prints one op's percentiles.
static void report(const char *op, const char *transport, uint64_t *s) {
    qsort(s, n, sizeof *s, bench_cmp_u64);
    printf("{\"floor\":\"forwarder-%s\",\"transport\":\"%s\",\"mode\":\"%s\",\"poll_us\":%ld,\"n\":%ld,"
           "\"median_ns\":%llu,\"p99_ns\":%llu,\"p999_ns\":%llu}\n",
           op, transport, bench_poll_us > 0 ? "polled" : "blocking", bench_poll_us, n,
           (unsigned long long)bench_percentile(s, n, 0.5), (unsigned long long)bench_percentile(s, n, 0.99),
           (unsigned long long)bench_percentile(s, n, 0.999));
}

// Times n calls after n/10 untimed ones; the body sees the call's index as i.
#define TIMED(s, ...)                                                     \
    for (long i = 0; i < n / 10 + n; i++) {                               \
        uint64_t t0 = bench_now_ns();                                     \
        __VA_ARGS__;                                                      \
        if (i >= n / 10) s[i - n / 10] = bench_now_ns() - t0;             \
    }

// The traced side.
static void child(int sock, const char *transport) {
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_pread64, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_write, 1, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_newfstatat, 3, 6),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, FWD_FD, 3, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, BEHIND_FD, 2, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)AT_FDCWD, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof code / sizeof code[0], code};
    int fd = open(file, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) bench_die(file);
    if (dup2(fd, FWD_FD) < 0 || dup2(fd, BEHIND_FD) < 0) bench_die("dup2");
    close(fd);
    long blocks = st.st_size / K4, mblocks = st.st_size / M1;
    if (mblocks < 1) { errno = EINVAL; bench_die("file smaller than 1 MiB"); }
    char *buf = malloc(M1), *paths = malloc(PATH_LEN);
    uint64_t *s = calloc(n, sizeof *s);
    if (!buf || !s || !paths) bench_die("malloc");
    memset(buf, 'w', M1);

    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) bench_die("no_new_privs");
    int listener = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
    if (listener < 0) bench_die("seccomp");
    bench_send_fd(sock, listener);
    close(listener);

    uint64_t rng = 0x9E3779B97F4A7C15ULL;
    if (wants("pread")) {
        TIMED(s, {
            rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
            if (pread(FWD_FD, buf, K4, (off_t)(rng % blocks) * K4) != K4) bench_die("pread 4K");
        });
        report("pread", transport, s);
    }
    if (wants("stat")) {
        TIMED(s, {
            snprintf(paths, PATH_LEN, "%s/statdir/f-%05ld", dir, i);
            if (stat(paths, &st) < 0) bench_die(paths);
        });
        report("stat", transport, s);
    }
    if (wants("write")) {
        TIMED(s, if (write(FWD_FD, buf, K4) != K4) bench_die("write 4K"));
        report("write", transport, s);
    }
    if (wants("behind")) {
        TIMED(s, if (write(BEHIND_FD, buf, K4) != K4) bench_die("write 4K behind"));
        report("behind", transport, s);
    }
    if (wants("seq")) {
        long calls = size / M1 < 1 ? 1 : size / M1;
        uint64_t t0 = bench_now_ns();
        for (long i = 0; i < calls; i++)
            if (pread(FWD_FD, buf, M1, (off_t)(i % mblocks) * M1) != M1) bench_die("pread 1M");
        double secs = (bench_now_ns() - t0) / 1e9;
        printf("{\"floor\":\"forwarder-seqread\",\"transport\":\"%s\",\"mode\":\"%s\",\"bytes\":%lld,\"mb_s\":%.1f}\n",
               transport, bench_poll_us > 0 ? "polled" : "blocking", (long long)calls * M1, calls * (double)M1 / 1e6 / secs);
    }
    fflush(stdout);
    pread(FWD_FD, buf, 0, SENTINEL_OFFSET);
    _exit(0);
}

// struct statx -> x86_64 struct stat, the conversion Tether's supervisor does.
static void statx_to_stat(const struct statx *x, struct stat *st) {
    memset(st, 0, sizeof *st);
    st->st_dev = makedev(x->stx_dev_major, x->stx_dev_minor);
    st->st_ino = x->stx_ino;
    st->st_nlink = x->stx_nlink;
    st->st_mode = x->stx_mode;
    st->st_uid = x->stx_uid;
    st->st_gid = x->stx_gid;
    st->st_rdev = makedev(x->stx_rdev_major, x->stx_rdev_minor);
    st->st_size = x->stx_size;
    st->st_blksize = x->stx_blksize;
    st->st_blocks = x->stx_blocks;
    st->st_atim = (struct timespec){x->stx_atime.tv_sec, x->stx_atime.tv_nsec};
    st->st_mtim = (struct timespec){x->stx_mtime.tv_sec, x->stx_mtime.tv_nsec};
    st->st_ctim = (struct timespec){x->stx_ctime.tv_sec, x->stx_ctime.tv_nsec};
}

// Reads the child's NUL-terminated path at `addr` a page at a time; its length.
static long read_path(pid_t pid, uint64_t addr, char *out) {
    long got = 0;
    while (got < PATH_LEN) {
        size_t chunk = K4 - ((addr + got) & (K4 - 1));
        if (chunk > (size_t)(PATH_LEN - got)) chunk = PATH_LEN - got;
        struct iovec local = {out + got, chunk}, remote = {(void *)(addr + got), chunk};
        ssize_t k = process_vm_readv(pid, &local, 1, &remote, 1, 0);
        if (k <= 0) return -EFAULT;
        char *nul = memchr(out + got, 0, k);
        if (nul) return nul - out;
        got += k;
    }
    return -ENAMETOOLONG;
}

// The bytes that follow a reply's 8-byte result.
static size_t reply_payload(int64_t op, int64_t r) {
    if (r < 0) return 0;
    return op == OP_PREAD ? (size_t)r : op == OP_STAT ? STATX_BYTES : 0;
}

// Write-behind, as Tether does it: up to MAX_BEHIND writes are answered as
// soon as their request is sent, with no read at all; the next one waits
// (polled) for its own reply, reading every earlier one on the way, many
// per read. `behind` counts the replies not yet read (8 bytes each, in
// order).
static int behind;

// Reads every unread write-behind reply.
static void drain_behind(int home) {
    char replies[(MAX_BEHIND + 1) * 8];
    size_t got = 0;
    while (behind > 0) {
        bench_spin_readable(home);
        ssize_t k = read(home, replies + got, (size_t)behind * 8 - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) bench_die("stub reply");
        got += (size_t)k;
        size_t whole = got / 8;
        for (size_t i = 0; i < whole; i++) {
            int64_t r;
            memcpy(&r, replies + i * 8, 8);
            if (r < 0) { errno = (int)-r; bench_die("write behind"); }
        }
        behind -= (int)whole;
        memmove(replies, replies + whole * 8, got % 8);
        got %= 8;
    }
}

// Sends the request and its payload.
static void send_request(int home, struct request *rq, const void *payload, size_t plen) {
    if (plen) {
        struct iovec iov[2] = {{rq, REQ}, {(void *)payload, plen}};
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = 2};
        ssize_t w = sendmsg(home, &m, 0);
        if (w < 0) bench_die("request");
        if ((size_t)w < REQ + plen) { // rare: finish by hand
            if ((size_t)w < REQ) { bench_write_full(home, (char *)rq + w, REQ - w); w = REQ; }
            bench_write_full(home, (const char *)payload + (w - REQ), plen - (w - REQ));
        }
    } else {
        bench_write_full(home, rq, REQ);
    }
}

// Sends the request (and its payload), waits for the stub's reply in `reply`.
static int64_t ask(int home, struct request *rq, const void *payload, size_t plen, char *reply) {
    drain_behind(home);
    send_request(home, rq, payload, plen);
    size_t got = 0;
    int64_t r = 0;
    bench_spin_readable(home);
    do { // usually one read brings header and data
        ssize_t k = read(home, reply + got, 8 + M1 - got);
        if (k <= 0) { if (k < 0 && errno == EINTR) continue; bench_die("stub reply"); }
        got += k;
        if (got >= 8) memcpy(&r, reply, 8);
    } while (got < 8 || got < 8 + reply_payload(rq->op, r));
    return r;
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
    if (bench_poll_us > 0 && bench_sync_wakeup(listener) < 0 && errno != EINVAL && errno != ENOTTY) bench_die("NOTIF_SET_FLAGS");

    char *reply = malloc(8 + M1), *payload = malloc(PATH_LEN > K4 ? PATH_LEN : K4);
    if (!reply || !payload) bench_die("malloc");
    struct seccomp_notif req;
    struct seccomp_notif_resp resp;
    for (;;) {
        memset(&req, 0, sizeof req);
        bench_spin_readable(listener);
        if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0) {
            if (errno == EINTR) continue;
            bench_die("NOTIF_RECV");
        }
        memset(&resp, 0, sizeof resp);
        resp.id = req.id;
        const __u64 *a = req.data.args;
        int done = req.data.nr == SYS_pread64 && (int64_t)a[3] == SENTINEL_OFFSET;
        if (done) {
            drain_behind(home); // every write has run before the stub is told to end
            resp.error = -EBADF;
        } else if (req.data.nr == SYS_pread64) {
            struct request rq = {.op = OP_PREAD, .offset = (int64_t)a[3], .len = (int64_t)a[2]};
            int64_t r = ask(home, &rq, NULL, 0, reply);
            if (r < 0) {
                resp.error = (int32_t)r;
            } else {
                struct iovec local = {reply + 8, (size_t)r}, remote = {(void *)a[1], (size_t)r};
                if (process_vm_writev(req.pid, &local, 1, &remote, 1, 0) != r) bench_die("process_vm_writev");
                resp.val = r;
            }
        } else if (req.data.nr == SYS_write) {
            size_t len = a[2] > K4 ? K4 : a[2];
            struct iovec local = {payload, len}, remote = {(void *)a[1], len};
            if (process_vm_readv(req.pid, &local, 1, &remote, 1, 0) != (ssize_t)len) bench_die("process_vm_readv");
            struct request rq = {.op = OP_WRITE, .len = (int64_t)len};
            if ((int)a[0] == BEHIND_FD) {
                send_request(home, &rq, payload, len);
                if (++behind > MAX_BEHIND) drain_behind(home);
                resp.val = (int64_t)len;
            } else {
                int64_t r = ask(home, &rq, payload, len, reply);
                if (r < 0) resp.error = (int32_t)r; else resp.val = r;
            }
        } else { // newfstatat(AT_FDCWD, path, statbuf, flags)
            long len = read_path(req.pid, a[1], payload);
            if (len < 0) {
                resp.error = (int32_t)len;
            } else {
                struct request rq = {.op = OP_STAT, .len = len};
                int64_t r = ask(home, &rq, payload, len, reply);
                if (r < 0) {
                    resp.error = (int32_t)r;
                } else {
                    struct stat st;
                    statx_to_stat((const struct statx *)(reply + 8), &st);
                    struct iovec local = {&st, sizeof st}, remote = {(void *)a[2], sizeof st};
                    if (process_vm_writev(req.pid, &local, 1, &remote, 1, 0) != (ssize_t)sizeof st) bench_die("process_vm_writev");
                }
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
    free(payload);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    bench_name("bench-floor-forwarder");
    const char *which = "both";
    bench_poll_us = 50;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-n")) n = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--size")) size = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--file")) file = argv[i + 1];
        else if (!strcmp(argv[i], "--dir")) dir = argv[i + 1];
        else if (!strcmp(argv[i], "--transport")) which = argv[i + 1];
        else if (!strcmp(argv[i], "--what")) what = argv[i + 1];
        else if (!strcmp(argv[i], "--poll-us")) bench_poll_us = atol(argv[i + 1]);
        else { fprintf(stderr, "bench-floor-forwarder: unknown option %s\n", argv[i]); return 2; }
    }
    if (!file || !dir) {
        fprintf(stderr, "usage: bench-floor-forwarder --file FILE --dir DIR [-n N] [--size BYTES] [--transport unix|tcp|both]"
                        " [--what pread,stat,write,seq] [--poll-us US]\n");
        return 2;
    }
    if (n < 1) n = 1;
    int rc = 0;
    if (strcmp(which, "tcp")) rc |= run(0);
    if (strcmp(which, "unix")) rc |= run(1);
    return rc;
}
