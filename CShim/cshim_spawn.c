// CShim: spawning the tracee (fork + seccomp listener + execve) and plain
// posix_spawn for helpers.
//
// Stage protocol of cshim_spawn_traced, over a SOCK_SEQPACKET socketpair whose
// child end is close-on-exec:
//
//   child -> parent  {stage 0, 0} + SCM_RIGHTS(listener)   filter installed
//   child -> parent  {stage N, errno}                       step N failed; exit 127
//   EOF on the parent end                                   execve succeeded
//
// Every syscall the child makes after installing the filter can itself be a
// notification on the new listener (execve, close and exit_group are very
// likely in the table). Once the parent holds the listener it therefore
// answers any notification with CONTINUE until the stage protocol ends: those
// are the shim's own syscalls, never the tracee program's (execve closes the
// socket before the new image runs). The one syscall that must NOT be in the
// notified set is sendmsg: the child sends the listener with it, and the
// parent cannot answer that notification without the listener.
#define CSHIM_SECCOMP_WAIT_KILLABLE_RECV (1UL << 5)
#include "CShim.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/filter.h>
#include <linux/seccomp.h>

enum {
    STAGE_OK = 0,
    STAGE_NO_NEW_PRIVS = 1,
    STAGE_SECCOMP = 2,
    STAGE_SEND_LISTENER = 3,
    STAGE_EXECVE = 4,
    STAGE_FORK = 5,
};

struct spawn_status {
    int stage;
    int err;
};

// ---- child side: async-signal-safe only (no malloc, no locks, no stdio) ----

static void child_report(int sock, int stage, int err)
{
    struct spawn_status st = {stage, err};
    // MSG_NOSIGNAL: SIGPIPE is back to its default action by now.
    (void)send(sock, &st, sizeof st, MSG_NOSIGNAL);
}

__attribute__((noreturn)) static void child_main(int sock, const cshim_spawn_request *req,
                                                 const struct sock_fprog *prog,
                                                 const struct rlimit *nofile)
{
    // The parent blocked every signal around fork(), so none of its handlers
    // can run here. Reset dispositions first (ignored ones survive execve, and
    // the parent ignores SIGPIPE), then unblock. sigaction fails for 32/33
    // (glibc-internal); ignoring that is fine, exec resets caught signals.
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig <= 64; sig++) {
        if (sig != SIGKILL && sig != SIGSTOP)
            (void)sigaction(sig, &dfl, NULL);
    }
    sigset_t none;
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL);

    // Best effort: lowering the soft limit to at most the hard limit (clamped
    // in the parent) cannot fail in a way worth aborting the spawn for.
    if (nofile != NULL)
        (void)setrlimit(RLIMIT_NOFILE, nofile);

    // The ptrace engine: wait until the supervisor has seized us (one byte).
    char go;
    if (req->ptrace_mode && read(sock, &go, 1) != 1)
        _exit(127);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        child_report(sock, STAGE_NO_NEW_PRIVS, errno);
        _exit(127);
    }
    // WAIT_KILLABLE_RECV (Linux 5.19): once the supervisor has received a
    // notification, only a fatal signal ends the wait, so no reply the home
    // already produced is thrown away; the supervisor interrupts calls
    // itself (see HomeLink). Older kernels refuse the flag: go without.
    if (req->ptrace_mode) {
        // A filter with SECCOMP_RET_TRACE, no listener: the tracer resumes
        // every stop until the execve (cshim_ptrace_start).
        if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, prog) != 0) {
            child_report(sock, STAGE_SECCOMP, errno);
            _exit(127);
        }
        execve(req->path, req->argv, req->envp);
        child_report(sock, STAGE_EXECVE, errno);
        _exit(127);
    }
    int listener = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                                SECCOMP_FILTER_FLAG_NEW_LISTENER | CSHIM_SECCOMP_WAIT_KILLABLE_RECV, prog);
    if (listener < 0 && errno == EINVAL)
        listener = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, prog);
    if (listener < 0) {
        child_report(sock, STAGE_SECCOMP, errno);
        _exit(127);
    }

    // From here on, every syscall may be a notification (see the top).
    struct spawn_status st = {STAGE_OK, 0};
    struct iovec iov = {&st, sizeof st};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct msghdr msg = {
        .msg_iov = &iov,
        .msg_iovlen = 1,
        .msg_control = ctl.buf,
        .msg_controllen = sizeof ctl.buf,
    };
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &listener, sizeof(int));
    if (sendmsg(sock, &msg, MSG_NOSIGNAL) != (ssize_t)sizeof st) {
        child_report(sock, STAGE_SEND_LISTENER, errno);
        _exit(127);
    }
    // No close(listener): the kernel creates it O_CLOEXEC, so execve drops it,
    // and skipping close() saves a possibly-notified syscall.

    execve(req->path, req->argv, req->envp);
    child_report(sock, STAGE_EXECVE, errno);
    _exit(127);
}

// ---- parent side ------------------------------------------------------------

static void reap(pid_t pid)
{
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
}

// One SEQPACKET message: returns its size (0 on EOF) or -1. *fd receives the
// passed descriptor if any (close-on-exec), else -1.
static ssize_t recv_status(int sock, struct spawn_status *st, int *fd)
{
    struct iovec iov = {st, sizeof *st};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct msghdr msg = {
        .msg_iov = &iov,
        .msg_iovlen = 1,
        .msg_control = ctl.buf,
        .msg_controllen = sizeof ctl.buf,
    };
    ssize_t n;
    do {
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    *fd = -1;
    if (n < 0)
        return -1;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm != NULL; cm = CMSG_NXTHDR(&msg, cm)) {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
            cm->cmsg_len == CMSG_LEN(sizeof(int)))
            memcpy(fd, CMSG_DATA(cm), sizeof(int));
    }
    return n;
}

// Waits for the end of the stage protocol while answering the shim's own
// syscalls in the child with CONTINUE. Returns 0 on EOF (exec succeeded), 1
// with *st filled if the child reported a failure, -1 with errno on error.
static int await_exec(int sock, int listener, struct spawn_status *st)
{
    struct pollfd pfd[2] = {{sock, POLLIN, 0}, {listener, POLLIN, 0}};
    for (;;) {
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        // A notification can only come from the new program once execve has
        // closed the socket; re-check the socket after seeing the listener
        // ready so such a notification is never answered here.
        if (pfd[0].revents == 0 && pfd[1].revents != 0) {
            struct pollfd again = {sock, POLLIN, 0};
            if (poll(&again, 1, 0) > 0)
                pfd[0].revents = again.revents;
        }
        if (pfd[0].revents != 0) {
            int fd;
            ssize_t n = recv_status(sock, st, &fd);
            if (fd >= 0)
                close(fd);
            if (n < 0)
                return -1;
            if (n == 0)
                return 0;
            if (n != (ssize_t)sizeof *st || st->stage == STAGE_OK) {
                errno = EPROTO;
                return -1;
            }
            return 1;
        }
        if (pfd[1].revents & POLLIN) {
            cshim_notif n;
            if (cshim_notif_recv(listener, &n) == 0) {
                cshim_notif_resp r = {.id = n.id, .val = 0, .error = 0,
                                      .flags = CSHIM_NOTIF_FLAG_CONTINUE};
                (void)cshim_notif_send(listener, &r); // ENOENT: child died, EOF follows
            }
        } else if (pfd[1].revents != 0) {
            pfd[1].fd = -1; // POLLHUP: no task left on the filter; wait for EOF
        }
    }
}

// The keeper's side of the spawn: subreaper, fork the tracee, then keep.
__attribute__((noreturn)) static void keeper_main(int sock, int keeper, const cshim_spawn_request *req,
                                                  const struct sock_fprog *prog, const struct rlimit *nofile)
{
    // Orphans of the program come here, not to init: nothing escapes.
    (void)prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(keeper);
        child_main(sock, req, prog, nofile);
    }
    if (pid < 0) {
        child_report(sock, STAGE_FORK, errno);
        _exit(127);
    }
    // EOF on the stage socket must mean "the tracee's execve closed it".
    close(sock);
    // The fork gave the keeper every descriptor of the supervisor, CLOEXEC
    // or not (it never execs): its copy of a home stream's far end (the
    // private home's, a thread in the supervisor) would keep that stream
    // open after the home ends, and the supervisor would wait for ever for
    // the end of file. It needs only its socket and stderr.
    if (keeper > 3)
        (void)syscall(SYS_close_range, 3U, (unsigned)keeper - 1, 0U);
    (void)syscall(SYS_close_range, (unsigned)keeper + 1, ~0U, 0U);
    cshim_keeper_loop(keeper, pid);
}

pid_t cshim_spawn_traced(const cshim_spawn_request *req, int *listener_out, int *stage_out,
                         int *keeper_out, pid_t *keeper_pid_out)
{
    int stage = STAGE_OK, err = 0, listener = -1;
    *listener_out = -1;
    *keeper_out = -1;
    *keeper_pid_out = -1;

    // Everything the child needs is prepared here: it must not allocate.
    struct sock_fprog prog = {
        .len = req->filter->len,
        .filter = (struct sock_filter *)req->filter->filter,
    };
    struct rlimit nofile, *nofile_p = NULL;
    if (req->nofile_soft >= 0 && getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
        rlim_t soft = (rlim_t)req->nofile_soft;
        nofile.rlim_cur = soft < nofile.rlim_max ? soft : nofile.rlim_max;
        nofile_p = &nofile;
    }

    int sv[2], kv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        if (stage_out != NULL)
            *stage_out = 0;
        return -1;
    }
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, kv) != 0) {
        err = errno;
        close(sv[0]);
        close(sv[1]);
        if (stage_out != NULL)
            *stage_out = 0;
        errno = err;
        return -1;
    }

    // Block all signals so no parent handler runs in the child before it has
    // reset the dispositions.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t keeper = fork();
    if (keeper == 0) {
        close(sv[0]);
        close(kv[0]);
        keeper_main(sv[1], kv[1], req, &prog, nofile_p);
    }
    err = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    // Close our copy of the child end now: EOF must mean "the child's copy
    // was closed by execve".
    close(sv[1]);
    close(kv[1]);
    if (keeper < 0) {
        close(kv[0]);
        goto fail_nochild;
    }
    pid_t pid = -1;
    int kind = 0;
    if (cshim_keeper_recv(kv[0], &kind, &pid) != 1 || kind != CSHIM_KEEPER_PID) {
        // The keeper could not fork the tracee: its report is on the stage socket.
        pid = -1;
    }

    if (req->ptrace_mode && pid > 0) {
        // The caller's tracer thread seizes it (cshim_ptrace_start).
        *listener_out = sv[0];
        *keeper_out = kv[0];
        *keeper_pid_out = keeper;
        return pid;
    }
    struct spawn_status st;
    ssize_t n = recv_status(sv[0], &st, &listener);
    if (n < 0) {
        err = errno;
        goto fail;
    }
    if (n == 0) { // the child died without reporting (e.g. killed)
        err = ECHILD;
        goto fail;
    }
    if (n != (ssize_t)sizeof st) {
        err = EPROTO;
        goto fail;
    }
    if (st.stage != STAGE_OK) {
        stage = st.stage;
        err = st.err;
        goto fail;
    }
    if (listener < 0) {
        err = EPROTO;
        goto fail;
    }

    if (pid < 0) {
        err = EPROTO;
        goto fail;
    }
    switch (await_exec(sv[0], listener, &st)) {
    case 0:
        close(sv[0]);
        *listener_out = listener;
        *keeper_out = kv[0];
        *keeper_pid_out = keeper;
        if (stage_out != NULL)
            *stage_out = 0;
        return pid;
    case 1:
        stage = st.stage;
        err = st.err;
        goto fail;
    default:
        err = errno;
        goto fail;
    }

fail:
    // The child is exiting anyway, but its exit_group (or a failed sendmsg's
    // aftermath) may be a notification nobody will answer: kill it rather
    // than wait for 127. The keeper cannot reap it before we close its socket.
    if (pid > 0)
        kill(pid, SIGKILL);
    if (listener >= 0)
        close(listener);
    close(kv[0]);
    reap(keeper);
fail_nochild:
    close(sv[0]);
    if (stage_out != NULL)
        *stage_out = stage;
    errno = err;
    return -1;
}
