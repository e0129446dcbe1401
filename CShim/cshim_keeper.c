// The keeper: the process between wrap-and-run and the traced program.
//
// A program whose supervisor is gone would go on half-working: every
// intercepted call fails with ENOSYS, writes to its terminal included, so it
// cannot even say so. The keeper makes the program's whole process tree die
// with the supervisor. It is a child subreaper, so every process the program
// starts stays its descendant, however it daemonizes; it forks the program;
// and it holds one end of a socketpair whose other end only the supervisor
// holds. It reports the program's wait status on that socket, and when the
// socket reaches EOF (the supervisor ended, normally or killed) it kills
// every process left below it and exits.
//
// It is forked from a threaded process and never execs: only
// async-signal-safe calls and raw syscalls, no allocation.
#include "CShim.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

// The parent pid field of /proc/PID/stat ("pid (comm) S ppid ..."); -1 if unreadable.
static pid_t stat_ppid(int proc, const char *name)
{
    char path[64];
    size_t n = strlen(name);
    if (n > 40)
        return -1;
    memcpy(path, name, n);
    memcpy(path + n, "/stat", 6);
    int fd = openat(proc, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char buf[512];
    ssize_t got = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (got <= 0)
        return -1;
    buf[got] = 0;
    // comm may hold spaces and parentheses: the state follows the last ')'.
    char *p = NULL;
    for (char *q = buf; *q; q++)
        if (*q == ')')
            p = q;
    if (p == NULL || p[1] != ' ' || p[2] == 0 || p[3] != ' ')
        return -1;
    pid_t ppid = 0;
    for (p += 4; *p >= '0' && *p <= '9'; p++)
        ppid = ppid * 10 + (*p - '0');
    return ppid;
}

int cshim_kill_children(void)
{
    pid_t self = getpid();
    int proc = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (proc < 0)
        return -1;
    int killed = 0;
    char buf[4096];
    for (;;) {
        long n = syscall(SYS_getdents64, proc, buf, sizeof buf);
        if (n <= 0)
            break;
        for (long off = 0; off < n;) {
            struct {
                unsigned long long ino;
                long long off;
                unsigned short reclen;
                unsigned char type;
                char name[];
            } *d = (void *)(buf + off);
            off += d->reclen;
            if (d->name[0] < '1' || d->name[0] > '9')
                continue;
            if (stat_ppid(proc, d->name) != self)
                continue;
            pid_t pid = 0;
            for (const char *c = d->name; *c >= '0' && *c <= '9'; c++)
                pid = pid * 10 + (*c - '0');
            if (kill(pid, SIGKILL) == 0)
                killed++;
        }
    }
    close(proc);
    return killed;
}

void cshim_kill_descendants(void)
{
    for (;;) {
        // No child left means no descendant left: an orphan is reparented
        // to us (the subreaper) before its parent can be reaped. The common
        // end (the program and all it started have exited) skips the /proc
        // scan, which costs a millisecond per hundred processes.
        pid_t reaped;
        while ((reaped = waitpid(-1, NULL, WNOHANG | __WALL)) > 0) {
        }
        if (reaped < 0 && errno == ECHILD)
            return;
        int killed = cshim_kill_children();
        // Reap what died; a killed parent's children come to us (subreaper).
        while (waitpid(-1, NULL, WNOHANG | __WALL) > 0) {
        }
        if (killed <= 0 && waitpid(-1, NULL, WNOHANG | __WALL) < 0 && errno == ECHILD)
            return;
        if (killed <= 0) {
            struct timespec ms = {0, 1000000};
            nanosleep(&ms, NULL);
        }
    }
}

int cshim_keeper_recv(int sock, int *kind, int *value)
{
    int m[2];
    ssize_t n;
    do {
        n = recv(sock, m, sizeof m, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return -1;
    if (n == 0)
        return 0;
    if (n != (ssize_t)sizeof m) {
        errno = EPROTO;
        return -1;
    }
    *kind = m[0];
    *value = m[1];
    return 1;
}

struct keeper_message {
    int kind; // CSHIM_KEEPER_PID or CSHIM_KEEPER_STATUS
    int value;
};

static void keeper_send(int sock, int kind, int value)
{
    struct keeper_message m = {kind, value};
    (void)send(sock, &m, sizeof m, MSG_NOSIGNAL);
}

void cshim_keeper_loop(int sock, pid_t program)
{
    // Every signal is blocked here (the spawn blocked them around fork):
    // the keeper is ended by its socket, and SIGCHLD arrives by signalfd.
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    keeper_send(sock, CSHIM_KEEPER_PID, program);
    int reported = 0;
    for (;;) {
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG | __WALL)) > 0) {
            if (pid == program && !reported && (WIFEXITED(status) || WIFSIGNALED(status))) {
                keeper_send(sock, CSHIM_KEEPER_STATUS, status);
                reported = 1;
            }
        }
        struct pollfd p[2] = {{sock, POLLIN, 0}, {sfd, POLLIN, 0}};
        // Without a signalfd, look for exits every 10 ms.
        if (poll(p, sfd >= 0 ? 2 : 1, sfd >= 0 ? -1 : 10) < 0 && errno != EINTR)
            break;
        if (p[0].revents != 0) {
            char b[16];
            ssize_t n = recv(sock, b, sizeof b, MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                break; // EOF or error: the supervisor is gone
        }
        if (sfd >= 0 && (p[1].revents & POLLIN)) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) > 0) {
            }
        }
    }
    cshim_kill_descendants();
    _exit(0);
}
