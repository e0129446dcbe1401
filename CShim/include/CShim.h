// CShim: the thin C edge under SysKit. Everything Swift cannot (or must not)
// call directly lives here: variadic syscalls, the seccomp user-notification
// ioctls, the async-signal-safe spawn of a tracee, filter building with
// libseccomp and ELF checks with libelf. Every function returns -1 and leaves
// errno set on failure unless its comment says otherwise.
#ifndef CSHIM_H
#define CSHIM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---- GNU constants Swift's Glibc module does not import (checked in cshim.c)

#define CSHIM_O_PATH 010000000
#define CSHIM_O_TMPFILE 020200000
#define CSHIM_AT_EMPTY_PATH 0x1000
#define CSHIM_AT_STATX_SYNC_TYPE 0x6000
#define CSHIM_AT_NO_AUTOMOUNT 0x800
#define CSHIM_STATX_BASIC_STATS 0x7ffu

// ---- seccomp user notification (mirrors of <linux/seccomp.h>) -------------

/// Mirror of struct seccomp_data.
typedef struct cshim_seccomp_data {
    int32_t nr;
    uint32_t arch;
    uint64_t instruction_pointer;
    uint64_t args[6];
} cshim_seccomp_data;

/// Mirror of struct seccomp_notif.
typedef struct cshim_notif {
    uint64_t id;
    uint32_t pid;
    uint32_t flags;
    cshim_seccomp_data data;
} cshim_notif;

/// Mirror of struct seccomp_notif_resp.
typedef struct cshim_notif_resp {
    uint64_t id;
    int64_t val;
    int32_t error;
    uint32_t flags;
} cshim_notif_resp;

/// Mirror of struct seccomp_notif_addfd.
typedef struct cshim_notif_addfd {
    uint64_t id;
    uint32_t flags;
    uint32_t srcfd;
    uint32_t newfd;
    uint32_t newfd_flags;
} cshim_notif_addfd;

#define CSHIM_NOTIF_FLAG_CONTINUE 1u   /* SECCOMP_USER_NOTIF_FLAG_CONTINUE */
#define CSHIM_ADDFD_FLAG_SETFD 1u      /* SECCOMP_ADDFD_FLAG_SETFD */
#define CSHIM_ADDFD_FLAG_SEND 2u       /* SECCOMP_ADDFD_FLAG_SEND */

/// SECCOMP_IOCTL_NOTIF_RECV. Zeroes *n first, as the kernel requires.
int cshim_notif_recv(int listener, cshim_notif *n);
/// SECCOMP_IOCTL_NOTIF_SEND.
int cshim_notif_send(int listener, const cshim_notif_resp *r);
/// SECCOMP_IOCTL_NOTIF_ID_VALID: 0 if the notification is still pending.
int cshim_notif_id_valid(int listener, uint64_t id);
/// SECCOMP_IOCTL_NOTIF_ADDFD: returns the fd number installed in the tracee.
/// (Not named cshim_notif_addfd: in C that name is taken by the typedef.)
int cshim_notif_add_fd(int listener, const cshim_notif_addfd *a);
/// SECCOMP_IOCTL_NOTIF_SET_FLAGS with SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP;
/// returns -1/EINVAL on kernels without it (callers ignore that).
int cshim_notif_set_sync_wakeup(int listener);

// ---- filter ----------------------------------------------------------------

/// A classic BPF program built by libseccomp (owned by the caller; free with
/// cshim_filter_free). Built in the parent, before any fork, because
/// libseccomp allocates; the child only installs it.
typedef struct cshim_filter {
    void *filter;      // struct sock_filter *
    uint16_t len;      // number of instructions
} cshim_filter;

/// When a syscall goes to the supervisor.
typedef enum cshim_filter_when {
    /// Every call.
    CSHIM_WHEN_ALWAYS = 0,
    /// Only if the int in arg0 (a descriptor) is 0, 1, 2 or >= `fd_base`:
    /// hot calls on the tracee's own low descriptors run at native speed.
    CSHIM_WHEN_FD_RANGE = 1,
    /// Only if the int in arg1 is one of `values[0..<nvalues]` (fcntl commands).
    CSHIM_WHEN_ARG1_IN = 2,
    /// mmap: only if MAP_ANONYMOUS is clear in arg3 and the descriptor in
    /// arg4 is 0, 1, 2 or >= `fd_base`.
    CSHIM_WHEN_MMAP_FD_RANGE = 3,
    /// As CSHIM_WHEN_FD_RANGE, or if the int in arg1 (dup2/dup3's target)
    /// is >= `fd_base`: every descriptor made at a watched number goes
    /// through the supervisor, so none can land where it places one.
    CSHIM_WHEN_FD_OR_TARGET_RANGE = 4,
    /// Only if bits 8-15 of the int in arg1 (an ioctl request's type) are
    /// one of `values[0..<nvalues]`.
    CSHIM_WHEN_ARG1_TYPE_IN = 5,
} cshim_filter_when;

#define CSHIM_FILTER_MAX_VALUES 12

typedef struct cshim_filter_rule {
    int32_t nr;
    uint32_t when;        // cshim_filter_when
    uint32_t fd_base;
    uint32_t nvalues;     // at most CSHIM_FILTER_MAX_VALUES
    int32_t values[CSHIM_FILTER_MAX_VALUES];
    uint8_t priority;     // 0: none; higher is tested earlier
} cshim_filter_rule;

/// Builds an x86_64 filter: default ALLOW; each rule's syscall returns
/// SECCOMP_RET_USER_NOTIF when its condition holds; a non-x86_64 syscall
/// ABI (x32, i386 via int 0x80) is answered with ENOSYS so nothing bypasses
/// the table. Returns 0, or a negative errno.
int cshim_filter_build(const cshim_filter_rule *rules, size_t count, cshim_filter *out);
/// cshim_filter_build with SECCOMP_RET_TRACE instead of USER_NOTIF (`trace`
/// non-zero): the ptrace engine's filter (cshim_ptrace.c).
int cshim_filter_build_action(const cshim_filter_rule *rules, size_t count, int trace, cshim_filter *out);
void cshim_filter_free(cshim_filter *f);

// ---- spawn -----------------------------------------------------------------

/// What the spawned tracee gets. `argv`/`envp` are NULL-terminated.
typedef struct cshim_spawn_request {
    const char *path;              // absolute or relative path to execve
    char *const *argv;
    char *const *envp;
    const cshim_filter *filter;    // installed with SECCOMP_FILTER_FLAG_NEW_LISTENER
    int64_t nofile_soft;           // RLIMIT_NOFILE soft limit to restore (-1: leave)
    int ptrace_mode;               // non-zero: see cshim_ptrace_start (no listener)
} cshim_spawn_request;

/// Spawns the tracee: fork; in the child, only async-signal-safe calls:
/// reset signal mask and dispositions, restore RLIMIT_NOFILE, set
/// PR_SET_NO_NEW_PRIVS, install the filter with NEW_LISTENER, pass the
/// listener fd to the parent over a socketpair (SCM_RIGHTS), close it, and
/// execve. On success returns the child pid and stores the listener in
/// *listener_out. If anything in the child fails (including execve), the
/// child reports its errno over the same channel and exits 127; this call
/// then returns -1 with errno set to the child's errno, *stage_out naming the
/// step (1: no_new_privs, 2: seccomp, 3: sending the listener, 4: execve),
/// and the child already reaped. Until the execve has happened, this call
/// answers every notification on the new listener with CONTINUE: those are
/// the shim's own syscalls in the child (execve, exit_group...), which would
/// otherwise deadlock. The filter must not notify sendmsg: the listener
/// itself travels by sendmsg, before the parent can answer anything.
///
/// The child is not forked directly: a keeper process (cshim_keeper.c) is
/// forked first, becomes a child subreaper, and forks the tracee. The
/// returned pid is the tracee's (not a child of the caller: its wait
/// status arrives on *keeper_out as a CSHIM_KEEPER_STATUS message), and
/// *keeper_pid_out is the keeper's. Closing *keeper_out makes the keeper
/// kill every process left below it, then exit.
pid_t cshim_spawn_traced(const cshim_spawn_request *req, int *listener_out, int *stage_out,
                         int *keeper_out, pid_t *keeper_pid_out);

/// Messages on the keeper's socket: two ints, {kind, value}.
enum { CSHIM_KEEPER_PID = 1, CSHIM_KEEPER_STATUS = 2 };

/// The keeper's loop (async-signal-safe; never returns): reports `program`'s
/// pid, then its wait status, on `sock`, reaping every orphan meanwhile; at
/// EOF on `sock`, kills every descendant and exits.
__attribute__((noreturn)) void cshim_keeper_loop(int sock, pid_t program);

/// Sends SIGKILL to every child of this process (found through /proc);
/// returns how many, or -1. Async-signal-safe.
int cshim_kill_children(void);

/// Kills every descendant of this process (a child subreaper: the children
/// of the killed come to it) and reaps them, until none is left.
void cshim_kill_descendants(void);

/// Waits for the next keeper message on `sock`: 1 with *kind and *value
/// set, 0 at EOF (the keeper is gone), -1 with errno.
int cshim_keeper_recv(int sock, int *kind, int *value);

/// posix_spawn of `path` with `argv`/`envp`, with fds `keep_fds[i]` moved to
/// 3+i in the child (all other fds CLOEXEC as usual). Used for deputies and
/// the private homestub: no fork from Swift. Returns the pid or -1.
pid_t cshim_spawn_plain(const char *path, char *const *argv, char *const *envp,
                        const int *keep_fds, size_t nkeep);

// ---- process memory and pidfds ----------------------------------------------

ssize_t cshim_process_vm_readv(pid_t pid, const struct iovec *local, unsigned long nlocal,
                               const struct iovec *remote, unsigned long nremote);
ssize_t cshim_process_vm_writev(pid_t pid, const struct iovec *local, unsigned long nlocal,
                                const struct iovec *remote, unsigned long nremote);
/// pidfd_open(pid, flags); flags may be PIDFD_THREAD (O_EXCL) on 6.9+.
int cshim_pidfd_open(pid_t pid, unsigned int flags);
/// pidfd_getfd(pidfd, targetfd, 0): a copy of the tracee's fd, CLOEXEC.
int cshim_pidfd_getfd(int pidfd, int targetfd);
/// kcmp(pid1, pid2, KCMP_FILE, fd1, fd2): 0 if the same open file description.
int cshim_kcmp_file(pid_t pid1, pid_t pid2, int fd1, int fd2);
/// kcmp(pid1, pid2, KCMP_FILES): 0 if the two tasks share one descriptor table.
int cshim_kcmp_files(pid_t pid1, pid_t pid2);

// ---- file syscalls glibc does not wrap, or wraps variadically ---------------

/// Mirror of struct open_how.
typedef struct cshim_open_how {
    uint64_t flags;
    uint64_t mode;
    uint64_t resolve;
} cshim_open_how;

#define CSHIM_RESOLVE_NO_XDEV 0x01
#define CSHIM_RESOLVE_NO_MAGICLINKS 0x02
#define CSHIM_RESOLVE_NO_SYMLINKS 0x04
#define CSHIM_RESOLVE_BENEATH 0x08
#define CSHIM_RESOLVE_IN_ROOT 0x10

int cshim_openat2(int dirfd, const char *path, const cshim_open_how *how);
/// openat(dirfd, path, flags, mode) (variadic in libc).
int cshim_openat(int dirfd, const char *path, int flags, unsigned int mode);
/// getdents64(2).
ssize_t cshim_getdents64(int fd, void *buf, size_t count);
/// statx(2) into a raw 256-byte struct statx.
int cshim_statx(int dirfd, const char *path, int flags, unsigned int mask, void *statxbuf);
/// faccessat2(2) (glibc's faccessat emulates flags; we want the kernel's).
int cshim_faccessat2(int dirfd, const char *path, int mode, int flags);
/// renameat2(2).
int cshim_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags);
/// Sends `fd` with `len` bytes of `data` over a Unix socket (SCM_RIGHTS).
int cshim_send_fd(int sock, int fd, const void *data, size_t len);
/// Receives one descriptor and up to `len` bytes; returns the byte count
/// (0 at end of stream) and stores the descriptor (or -1) in *fd_out.
ssize_t cshim_recv_fd(int sock, int *fd_out, void *data, size_t len);
/// The user id of a connected Unix socket's peer (SO_PEERCRED); 0 or -1 (errno).
int cshim_peer_uid(int sock, unsigned int *uid);
/// unshare(CLONE_FS): this thread gets its own umask, cwd and root.
int cshim_unshare_fs(void);
/// close_range(0, ~0, CLOSE_RANGE_UNSHARE): this thread gets a descriptor
/// table of its own, empty, which the threads it creates share (a POSIX
/// lock owner of its own: the kernel keys those locks by descriptor table).
int cshim_unshare_files_empty(void);
/// gettid(2): the calling thread's id (kcmp names a thread's descriptor table by it).
pid_t cshim_gettid(void);
/// fchmodat2(2) (Linux 6.6; flags AT_SYMLINK_NOFOLLOW, AT_EMPTY_PATH).
int cshim_fchmodat2(int dirfd, const char *path, unsigned int mode, int flags);
/// fallocate(2).
int cshim_fallocate(int fd, int mode, int64_t offset, int64_t len);
/// copy_file_range(2); a NULL offset pointer means the file offset.
ssize_t cshim_copy_file_range(int in, int64_t *in_off, int out, int64_t *out_off, size_t len, unsigned int flags);
/// getxattr/lgetxattr on a path (nofollow: the l form) or fgetxattr on fd (path NULL).
ssize_t cshim_getxattr(int fd, const char *path, int nofollow, const char *name, void *value, size_t size);
/// setxattr and its forms, as cshim_getxattr.
int cshim_setxattr(int fd, const char *path, int nofollow, const char *name, const void *value, size_t size, int flags);
/// listxattr and its forms, as cshim_getxattr.
ssize_t cshim_listxattr(int fd, const char *path, int nofollow, char *list, size_t size);
/// removexattr and its forms, as cshim_getxattr.
int cshim_removexattr(int fd, const char *path, int nofollow, const char *name);
/// utimensat(2); `path` may be NULL (futimens).
int cshim_utimensat(int dirfd, const char *path, const void *times, int flags);
/// memfd_create(2).
int cshim_memfd_create(const char *name, unsigned int flags);
/// fstatfs(2) into the raw x86_64 struct statfs (CSHIM_STATFS_SIZE bytes).
int cshim_fstatfs(int fd, void *buf);
#define CSHIM_STATFS_SIZE 120
/// flock(2).
int cshim_flock(int fd, int operation);
/// fcntl(fd, cmd, ptr) for commands taking a struct (record locks).
int cshim_fcntl_ptr(int fd, int cmd, void *arg);
/// fcntl(fd, cmd, arg) for integer-argument commands.
int cshim_fcntl_int(int fd, int cmd, long arg);
/// ioctl(fd, req, arg) with a pointer argument.
int cshim_ioctl_ptr(int fd, unsigned long req, void *arg);

// ---- ELF ---------------------------------------------------------------------

#define CSHIM_ELF_OK 0            // 64-bit x86_64 ELF executable
#define CSHIM_ELF_SCRIPT 1        // starts with "#!"
#define CSHIM_ELF_WRONG_CLASS 2   // 32-bit ELF
#define CSHIM_ELF_WRONG_MACHINE 3 // ELF for another machine; *machine_out says which
#define CSHIM_ELF_NOT_ELF 4       // neither ELF nor script
/// Checks `fd` (opened read-only) with libelf. Returns one of CSHIM_ELF_*,
/// or -1 with errno set if the file cannot be read.
int cshim_elf_check(int fd, int *machine_out);

// ---- epoll (not imported by Swift's Glibc module) ---------------------------

#define CSHIM_EPOLLIN 0x001u
#define CSHIM_EPOLLOUT 0x004u
#define CSHIM_EPOLLET 0x80000000u
#define CSHIM_EPOLLHUP 0x010u
#define CSHIM_EPOLLRDHUP 0x2000u

/// epoll_create1(EPOLL_CLOEXEC).
int cshim_epoll_create(void);
/// epoll_ctl(ADD) with `events` and a 64-bit tag.
int cshim_epoll_add(int epfd, int fd, uint32_t events, uint64_t tag);
/// epoll_ctl(DEL).
int cshim_epoll_del(int epfd, int fd);
/// ioctl(SIOCOUTQ): bytes this socket has queued that its peer has not read.
int cshim_socket_unread(int fd);
/// ioctl(FIONREAD): bytes waiting in this socket's receive queue.
int cshim_socket_queued(int fd);
/// epoll_wait into parallel arrays of tags and event masks; returns the count.
int cshim_epoll_wait(int epfd, uint64_t *tags, uint32_t *events, int max, int timeout_ms);

// ---- interrupting a blocked thread (the home's `cancel`) -------------------

/// The signal that interrupts a thread blocked in a syscall at home:
/// SIGRTMIN+3, whose handler does nothing and is installed without
/// SA_RESTART, so the blocked call returns EINTR (or its partial count).
int cshim_interrupt_signal(void);
/// Installs that handler (idempotent) and unblocks the signal in the
/// calling thread. Returns 0.
int cshim_interrupt_prepare_thread(void);
/// pthread_kill(thread, cshim_interrupt_signal()); returns its result.
int cshim_interrupt_thread(unsigned long thread);

// ---- per-thread file credentials (the home acting as a tracee thread) -------

/// Makes the calling thread act on files as (uid, gid, groups): raw
/// setgroups, setfsgid and setfsuid syscalls, which change this thread only
/// (glibc's wrappers would change every thread). Needs CAP_SETUID and
/// CAP_SETGID. Returns 0, or -1 with errno set (EPERM if the fsuid or fsgid
/// did not take).
int cshim_adopt_credentials(uint32_t uid, uint32_t gid, const uint32_t *groups, size_t ngroups);

// ---- the home node's processes (cshim_home.c) -------------------------------

/// Blocks `signals` in the calling thread and returns a non-blocking,
/// close-on-exec signalfd that reports them (-1 with errno on failure).
int cshim_signalfd_for(const int *signals, size_t count);
/// The number of the next signal queued on a signalfd, or -1 (EAGAIN: none).
int cshim_signalfd_next(int fd);
/// prctl(PR_SET_PDEATHSIG, sig); then -1 with ESRCH if the parent is no
/// longer `expected_parent` (it died before the prctl). sig 0 clears it.
int cshim_parent_death_signal(int sig, pid_t expected_parent);
/// initgroups, setresgid, setresuid to the user, in that order, then checks
/// that every id took and that uid and gid 0 cannot be regained. Returns 0,
/// or -1 with errno and *stage (1 initgroups, 2 setresgid, 3 setresuid, 4 check).
int cshim_drop_to_user(const char *name, uint32_t uid, uint32_t gid, int *stage);
/// Keeps only the capabilities whose bits are set in `keep`: drops the rest
/// from the bounding set (so children exec'd as root get no more), then
/// from the effective and permitted sets. Returns 0 or -1 with errno.
int cshim_keep_capabilities(uint64_t keep);
/// accept4(listener, addr, addrlen, SOCK_NONBLOCK | SOCK_CLOEXEC).
int cshim_accept_nonblocking(int listener, void *addr, uint32_t *addrlen);

// ---- a tracee thread's pending signals ------------------------------------

#define CSHIM_SIGNAL_THREAD 1   // a signal sent to the thread itself, not blocked by it
#define CSHIM_SIGNAL_SHARED 2   // a signal sent to its process, not blocked by the thread
/// Reads /proc/TID/status without allocating: returns the CSHIM_SIGNAL_*
/// bits of the signals pending for `tid` that it does not block, and the
/// number of threads of its process in *threads; -1 if the task is gone.
int cshim_task_signals(pid_t tid, int *threads);

// ---- errno names, for --trace -------------------------------------------------

/// The symbolic name of errno `e` ("ENOENT"), or NULL for a number the C
/// library does not know (glibc's strerrorname_np, which needs _GNU_SOURCE).
const char *cshim_errno_name(int e);

// ---- inotify, for the home's watches (Watches.swift) -------------------------

/// What the home watches on a directory or file a session has stat'ed:
/// IN_MODIFY | IN_ATTRIB | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE |
/// IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF.
#define CSHIM_IN_WATCHED 0x00000FC6u
#define CSHIM_IN_DELETE_SELF 0x00000400u
#define CSHIM_IN_MOVE_SELF 0x00000800u
#define CSHIM_IN_Q_OVERFLOW 0x00004000u
#define CSHIM_IN_IGNORED 0x00008000u
#define CSHIM_IN_ISDIR 0x40000000u
#define CSHIM_IN_DONT_FOLLOW 0x02000000u
/// The fixed part of struct inotify_event (wd, mask, cookie, len).
#define CSHIM_INOTIFY_EVENT_SIZE 16
/// inotify_init1(IN_NONBLOCK | IN_CLOEXEC).
int cshim_inotify_open(void);
/// inotify_add_watch(fd, path, mask): the watch descriptor, or -1 (errno).
int cshim_inotify_add(int fd, const char *path, uint32_t mask);
/// inotify_rm_watch(fd, wd).
int cshim_inotify_remove(int fd, int wd);

// ---- relaxed atomic counters (for --stats; never on a lock) ------------------

static inline void cshim_counter_add(uint64_t *counter, uint64_t value) {
    __atomic_fetch_add(counter, value, __ATOMIC_RELAXED);
}
static inline uint64_t cshim_counter_load(const uint64_t *counter) {
    return __atomic_load_n(counter, __ATOMIC_RELAXED);
}

// ---- zero-copy bulk at home (cshim_splice.c) ---------------------------------

/// A close-on-exec pipe holding at least `bytes`; -1 and errno (EPERM past
/// the user's pipe allowance) otherwise.
int cshim_pipe_sized(int fds[2], int bytes);
/// splice(2) of up to `len` bytes from `in` (at *in_off, advanced, or at
/// its file offset when NULL) to `out` (at its own position); with
/// `nonblocking`, EAGAIN rather than waiting for room in a pipe.
ssize_t cshim_splice(int in, int64_t *in_off, int out, size_t len, int nonblocking);
/// vmsplice(2) of `len` bytes at `buf` into a pipe (the pipe refers to the
/// pages: they must not change until the data has been read at the far end).
ssize_t cshim_vmsplice(int pipe_write, const void *buf, size_t len);

// ---- the ptrace engine: cshim_ptrace.h ---------------------------------------
#include "cshim_ptrace.h"

// ---- taking over a running process: cshim_attach.h ---------------------------
#include "cshim_attach.h"

#ifdef __cplusplus
}
#endif
#endif
