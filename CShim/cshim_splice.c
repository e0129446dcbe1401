// Zero-copy bulk at home: a file's pages moved into a pipe, then from the
// pipe onto the session's stream, with no copy through user memory.
#include "CShim.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

int cshim_pipe_sized(int fds[2], int bytes)
{
    if (pipe2(fds, O_CLOEXEC) < 0)
        return -1;
    // Below the size, a splice of one whole payload would stop short.
    if (fcntl(fds[1], F_SETPIPE_SZ, bytes) < bytes) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        errno = e ? e : ENOSPC;
        return -1;
    }
    return 0;
}

ssize_t cshim_splice(int in, int64_t *in_off, int out, size_t len, int nonblocking)
{
    loff_t off = in_off ? (loff_t)*in_off : 0;
    ssize_t n = splice(in, in_off ? &off : NULL, out, NULL, len, SPLICE_F_MOVE | (nonblocking ? SPLICE_F_NONBLOCK : 0));
    if (in_off && n > 0)
        *in_off = (int64_t)off;
    return n;
}

ssize_t cshim_vmsplice(int pipe_write, const void *buf, size_t len)
{
    struct iovec iov = {(void *)buf, len};
    return vmsplice(pipe_write, &iov, 1, 0);
}
