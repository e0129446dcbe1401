// CShim: seccomp notification ioctls, process memory and pidfd helpers, and
// the file syscalls glibc does not wrap (or wraps variadically). Spawning,
// filter building and ELF checks live in cshim_spawn.c, cshim_filter.c and
// cshim_elf.c.
#include "CShim.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <linux/kcmp.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>

#ifndef __x86_64__
#error "CShim targets x86_64 only (syscall numbers, AUDIT_ARCH, filter layout)"
#endif

// Added in Linux 6.6; the installed uapi headers may predate it.
#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif
#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (1UL << 0)
#endif

// ---- the mirrors in CShim.h must match the kernel ABI exactly -------------

#define SAME_FIELD(a, b, f)                                                   \
    _Static_assert(offsetof(a, f) == offsetof(b, f) &&                        \
                       sizeof(((a *)0)->f) == sizeof(((b *)0)->f),            \
                   #a "." #f " does not mirror " #b)

_Static_assert(sizeof(cshim_seccomp_data) == sizeof(struct seccomp_data), "seccomp_data size");
SAME_FIELD(cshim_seccomp_data, struct seccomp_data, nr);
SAME_FIELD(cshim_seccomp_data, struct seccomp_data, arch);
SAME_FIELD(cshim_seccomp_data, struct seccomp_data, instruction_pointer);
SAME_FIELD(cshim_seccomp_data, struct seccomp_data, args);

_Static_assert(sizeof(cshim_notif) == sizeof(struct seccomp_notif), "seccomp_notif size");
SAME_FIELD(cshim_notif, struct seccomp_notif, id);
SAME_FIELD(cshim_notif, struct seccomp_notif, pid);
SAME_FIELD(cshim_notif, struct seccomp_notif, flags);
SAME_FIELD(cshim_notif, struct seccomp_notif, data);

_Static_assert(sizeof(cshim_notif_resp) == sizeof(struct seccomp_notif_resp), "seccomp_notif_resp size");
SAME_FIELD(cshim_notif_resp, struct seccomp_notif_resp, id);
SAME_FIELD(cshim_notif_resp, struct seccomp_notif_resp, val);
SAME_FIELD(cshim_notif_resp, struct seccomp_notif_resp, error);
SAME_FIELD(cshim_notif_resp, struct seccomp_notif_resp, flags);

_Static_assert(sizeof(cshim_notif_addfd) == sizeof(struct seccomp_notif_addfd), "seccomp_notif_addfd size");
SAME_FIELD(cshim_notif_addfd, struct seccomp_notif_addfd, id);
SAME_FIELD(cshim_notif_addfd, struct seccomp_notif_addfd, flags);
SAME_FIELD(cshim_notif_addfd, struct seccomp_notif_addfd, srcfd);
SAME_FIELD(cshim_notif_addfd, struct seccomp_notif_addfd, newfd);
SAME_FIELD(cshim_notif_addfd, struct seccomp_notif_addfd, newfd_flags);

_Static_assert(sizeof(cshim_open_how) == sizeof(struct open_how), "open_how size");
SAME_FIELD(cshim_open_how, struct open_how, flags);
SAME_FIELD(cshim_open_how, struct open_how, mode);
SAME_FIELD(cshim_open_how, struct open_how, resolve);

_Static_assert(sizeof(struct statx) == 256, "cshim_statx promises a 256-byte struct statx");

_Static_assert(CSHIM_NOTIF_FLAG_CONTINUE == SECCOMP_USER_NOTIF_FLAG_CONTINUE, "CONTINUE");
_Static_assert(CSHIM_ADDFD_FLAG_SETFD == SECCOMP_ADDFD_FLAG_SETFD, "ADDFD_FLAG_SETFD");
_Static_assert(CSHIM_ADDFD_FLAG_SEND == SECCOMP_ADDFD_FLAG_SEND, "ADDFD_FLAG_SEND");
_Static_assert(CSHIM_RESOLVE_NO_XDEV == RESOLVE_NO_XDEV, "RESOLVE_NO_XDEV");
_Static_assert(CSHIM_RESOLVE_NO_MAGICLINKS == RESOLVE_NO_MAGICLINKS, "RESOLVE_NO_MAGICLINKS");
_Static_assert(CSHIM_RESOLVE_NO_SYMLINKS == RESOLVE_NO_SYMLINKS, "RESOLVE_NO_SYMLINKS");
_Static_assert(CSHIM_RESOLVE_BENEATH == RESOLVE_BENEATH, "RESOLVE_BENEATH");
_Static_assert(CSHIM_RESOLVE_IN_ROOT == RESOLVE_IN_ROOT, "RESOLVE_IN_ROOT");

// ---- seccomp user notification -------------------------------------------

int cshim_notif_recv(int listener, cshim_notif *n)
{
    // The kernel rejects a non-zeroed buffer with EINVAL. EINTR is returned
    // to the caller, which owns the retry policy.
    memset(n, 0, sizeof *n);
    return ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, n);
}

int cshim_notif_send(int listener, const cshim_notif_resp *r)
{
    return ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, (void *)r);
}

int cshim_notif_id_valid(int listener, uint64_t id)
{
    return ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &id);
}

int cshim_notif_add_fd(int listener, const cshim_notif_addfd *a)
{
    return ioctl(listener, SECCOMP_IOCTL_NOTIF_ADDFD, (void *)a);
}

int cshim_notif_set_sync_wakeup(int listener)
{
    // The flags are passed by value, not through a pointer.
    return ioctl(listener, SECCOMP_IOCTL_NOTIF_SET_FLAGS,
                 (unsigned long)SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP);
}

// ---- process memory and pidfds ----------------------------------------------

ssize_t cshim_process_vm_readv(pid_t pid, const struct iovec *local, unsigned long nlocal,
                               const struct iovec *remote, unsigned long nremote)
{
    return process_vm_readv(pid, local, nlocal, remote, nremote, 0);
}

ssize_t cshim_process_vm_writev(pid_t pid, const struct iovec *local, unsigned long nlocal,
                                const struct iovec *remote, unsigned long nremote)
{
    return process_vm_writev(pid, local, nlocal, remote, nremote, 0);
}

int cshim_pidfd_open(pid_t pid, unsigned int flags)
{
    return (int)syscall(SYS_pidfd_open, pid, flags);
}

int cshim_pidfd_getfd(int pidfd, int targetfd)
{
    int fd = (int)syscall(SYS_pidfd_getfd, pidfd, targetfd, 0);
    // The kernel already sets close-on-exec; set it anyway so the promise in
    // the header does not rest on a man-page sentence.
    if (fd >= 0)
        (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
    return fd;
}

int cshim_kcmp_file(pid_t pid1, pid_t pid2, int fd1, int fd2)
{
    return (int)syscall(SYS_kcmp, pid1, pid2, KCMP_FILE, (unsigned long)fd1, (unsigned long)fd2);
}

int cshim_kcmp_files(pid_t pid1, pid_t pid2)
{
    return (int)syscall(SYS_kcmp, pid1, pid2, KCMP_FILES, 0UL, 0UL);
}

// ---- file syscalls ----------------------------------------------------------

int cshim_openat2(int dirfd, const char *path, const cshim_open_how *how)
{
    return (int)syscall(SYS_openat2, dirfd, path, how, sizeof(struct open_how));
}

int cshim_openat(int dirfd, const char *path, int flags, unsigned int mode)
{
    return openat(dirfd, path, flags, (mode_t)mode);
}

ssize_t cshim_getdents64(int fd, void *buf, size_t count)
{
    return syscall(SYS_getdents64, fd, buf, count);
}

int cshim_statx(int dirfd, const char *path, int flags, unsigned int mask, void *statxbuf)
{
    return (int)syscall(SYS_statx, dirfd, path, flags, mask, statxbuf);
}

int cshim_faccessat2(int dirfd, const char *path, int mode, int flags)
{
    return (int)syscall(SYS_faccessat2, dirfd, path, mode, flags);
}

int cshim_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
                    unsigned int flags)
{
    return (int)syscall(SYS_renameat2, olddirfd, oldpath, newdirfd, newpath, flags);
}

int cshim_fcntl_int(int fd, int cmd, long arg)
{
    return fcntl(fd, cmd, arg);
}

int cshim_ioctl_ptr(int fd, unsigned long req, void *arg)
{
    return ioctl(fd, req, arg);
}

_Static_assert(CSHIM_O_PATH == O_PATH, "O_PATH");
_Static_assert(CSHIM_O_TMPFILE == O_TMPFILE, "O_TMPFILE");
_Static_assert(CSHIM_AT_EMPTY_PATH == AT_EMPTY_PATH, "AT_EMPTY_PATH");
_Static_assert(CSHIM_AT_STATX_SYNC_TYPE == AT_STATX_SYNC_TYPE, "AT_STATX_SYNC_TYPE");
_Static_assert(CSHIM_STATX_BASIC_STATS == STATX_BASIC_STATS, "STATX_BASIC_STATS");

// ---- epoll -------------------------------------------------------------------

#include <sys/epoll.h>

_Static_assert(CSHIM_EPOLLIN == EPOLLIN, "EPOLLIN");
_Static_assert(CSHIM_EPOLLHUP == EPOLLHUP, "EPOLLHUP");
_Static_assert(CSHIM_EPOLLRDHUP == EPOLLRDHUP, "EPOLLRDHUP");
_Static_assert(CSHIM_EPOLLOUT == EPOLLOUT, "EPOLLOUT");
_Static_assert(CSHIM_EPOLLET == EPOLLET, "EPOLLET");

#include <linux/sockios.h>

int cshim_socket_unread(int fd) {
    int n = 0;
    return ioctl(fd, SIOCOUTQ, &n) < 0 ? -1 : n;
}

int cshim_socket_queued(int fd) {
    int n = 0;
    return ioctl(fd, FIONREAD, &n) < 0 ? -1 : n;
}

int cshim_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int cshim_epoll_add(int epfd, int fd, uint32_t events, uint64_t tag) {
    struct epoll_event ev = { .events = events, .data = { .u64 = tag } };
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

int cshim_epoll_del(int epfd, int fd) { return epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL); }

int cshim_epoll_wait(int epfd, uint64_t *tags, uint32_t *events, int max, int timeout_ms) {
    struct epoll_event evs[64];
    if (max > 64) max = 64;
    int n = epoll_wait(epfd, evs, max, timeout_ms);
    for (int i = 0; i < n; i++) {
        tags[i] = evs[i].data.u64;
        events[i] = evs[i].events;
    }
    return n;
}

// ---- per-thread filesystem context ---------------------------------------------

#include <sched.h>

int cshim_unshare_fs(void) { return unshare(CLONE_FS); }

#ifndef CLOSE_RANGE_UNSHARE
#define CLOSE_RANGE_UNSHARE (1U << 1)
#endif
pid_t cshim_gettid(void) { return (pid_t)syscall(SYS_gettid); }
int cshim_unshare_files_empty(void) { return (int)syscall(SYS_close_range, 0U, ~0U, CLOSE_RANGE_UNSHARE); }

// ---- passing descriptors ---------------------------------------------------------

#include <sys/socket.h>

int cshim_send_fd(int sock, int fd, const void *data, size_t len)
{
    union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int))]; } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct iovec iov = { .iov_base = (void *)data, .iov_len = len };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf };
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    ssize_t n;
    do { n = sendmsg(sock, &msg, MSG_NOSIGNAL); } while (n < 0 && errno == EINTR);
    return n < 0 ? -1 : 0;
}

ssize_t cshim_recv_fd(int sock, int *fd_out, void *data, size_t len)
{
    union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int))]; } ctl;
    struct iovec iov = { .iov_base = data, .iov_len = len };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf };
    ssize_t n;
    do { n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC); } while (n < 0 && errno == EINTR);
    *fd_out = -1;
    if (n < 0)
        return -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int)))
            memcpy(fd_out, CMSG_DATA(c), sizeof(int));
    return n;
}

// ---- more file calls for the deputy ------------------------------------------------

#include <sys/xattr.h>

int cshim_fchmodat2(int dirfd, const char *path, unsigned int mode, int flags)
{
    return (int)syscall(452 /* SYS_fchmodat2 */, dirfd, path, mode, flags);
}

int cshim_fallocate(int fd, int mode, int64_t offset, int64_t len) { return fallocate(fd, mode, offset, len); }

ssize_t cshim_copy_file_range(int in, int64_t *in_off, int out, int64_t *out_off, size_t len, unsigned int flags)
{
    return copy_file_range(in, (off_t *)in_off, out, (off_t *)out_off, len, flags);
}

ssize_t cshim_getxattr(int fd, const char *path, int nofollow, const char *name, void *value, size_t size)
{
    if (path == NULL) return fgetxattr(fd, name, value, size);
    return nofollow ? lgetxattr(path, name, value, size) : getxattr(path, name, value, size);
}

int cshim_setxattr(int fd, const char *path, int nofollow, const char *name, const void *value, size_t size, int flags)
{
    if (path == NULL) return fsetxattr(fd, name, value, size, flags);
    return nofollow ? lsetxattr(path, name, value, size, flags) : setxattr(path, name, value, size, flags);
}

ssize_t cshim_listxattr(int fd, const char *path, int nofollow, char *list, size_t size)
{
    if (path == NULL) return flistxattr(fd, list, size);
    return nofollow ? llistxattr(path, list, size) : listxattr(path, list, size);
}

int cshim_removexattr(int fd, const char *path, int nofollow, const char *name)
{
    if (path == NULL) return fremovexattr(fd, name);
    return nofollow ? lremovexattr(path, name) : removexattr(path, name);
}

int cshim_fcntl_ptr(int fd, int cmd, void *arg) { return fcntl(fd, cmd, arg); }

#include <sys/file.h>
#include <sys/statfs.h>

_Static_assert(sizeof(struct statfs) == CSHIM_STATFS_SIZE, "struct statfs");

int cshim_utimensat(int dirfd, const char *path, const void *times, int flags)
{
    return (int)syscall(SYS_utimensat, dirfd, path, times, flags);
}

int cshim_fstatfs(int fd, void *buf) { return fstatfs(fd, (struct statfs *)buf); }

int cshim_flock(int fd, int operation) { return flock(fd, operation); }

#include <sys/mman.h>

int cshim_memfd_create(const char *name, unsigned int flags) { return memfd_create(name, flags); }

// ---- interrupting a blocked thread ------------------------------------------

static void cshim_interrupt_handler(int sig) { (void)sig; }

int cshim_interrupt_signal(void) { return SIGRTMIN + 3; }

int cshim_interrupt_prepare_thread(void) {
    static int installed;
    if (!__atomic_exchange_n(&installed, 1, __ATOMIC_ACQ_REL)) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = cshim_interrupt_handler;   // no SA_RESTART: the call returns EINTR
        sigemptyset(&sa.sa_mask);
        sigaction(cshim_interrupt_signal(), &sa, NULL);
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, cshim_interrupt_signal());
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    return 0;
}

int cshim_interrupt_thread(unsigned long thread) {
    return pthread_kill((pthread_t)thread, cshim_interrupt_signal());
}

// ---- a tracee thread's pending signals --------------------------------------

#include <stdio.h>
#include <stdlib.h>

static unsigned long long status_hex(const char *buf, const char *key) {
    const char *p = strstr(buf, key);
    return p ? strtoull(p + strlen(key), NULL, 16) : 0;
}

int cshim_task_signals(pid_t tid, int *threads) {
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/status", (int)tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    unsigned long long blocked = status_hex(buf, "\nSigBlk:");
    int bits = 0;
    if (status_hex(buf, "\nSigPnd:") & ~blocked)
        bits |= CSHIM_SIGNAL_THREAD;
    if (status_hex(buf, "\nShdPnd:") & ~blocked)
        bits |= CSHIM_SIGNAL_SHARED;
    if (threads != NULL) {
        const char *p = strstr(buf, "\nThreads:");
        *threads = p ? atoi(p + 9) : 1;
    }
    return bits;
}

// ---- per-thread file credentials ----------------------------------------------

int cshim_adopt_credentials(uint32_t uid, uint32_t gid, const uint32_t *groups, size_t ngroups) {
    if (syscall(SYS_setgroups, ngroups, groups) != 0)
        return -1;
    syscall(SYS_setfsgid, gid);
    syscall(SYS_setfsuid, uid);
    // setfsuid/setfsgid report the previous value, never an error: ask again.
    if ((uint32_t)syscall(SYS_setfsgid, -1) != gid || (uint32_t)syscall(SYS_setfsuid, -1) != uid) {
        errno = EPERM;
        return -1;
    }
    return 0;
}

const char *cshim_errno_name(int e) { return strerrorname_np(e); }
