// CShim: plain posix_spawn for helpers (home nodes, deputies), with kept
// descriptors and default signal dispositions.
#include "CShim.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

pid_t cshim_spawn_plain(const char *path, char *const *argv, char *const *envp,
                        const int *keep_fds, size_t nkeep)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    int rc, *tmp = NULL;
    size_t ntmp = 0;
    pid_t pid = -1;

    if ((rc = posix_spawn_file_actions_init(&fa)) != 0) {
        errno = rc;
        return -1;
    }
    if ((rc = posix_spawnattr_init(&attr)) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        errno = rc;
        return -1;
    }

    // Move each kept fd to a close-on-exec duplicate at or above 3+nkeep
    // first, so a source that already sits in 3..3+nkeep-1 is never
    // clobbered by an earlier dup2. dup2 in the child clears close-on-exec on
    // the target; the temporaries themselves vanish at exec.
    if (nkeep > 0) {
        tmp = malloc(nkeep * sizeof *tmp);
        if (tmp == NULL) {
            rc = ENOMEM;
            goto out;
        }
        for (; ntmp < nkeep; ntmp++) {
            tmp[ntmp] = fcntl(keep_fds[ntmp], F_DUPFD_CLOEXEC, (int)(3 + nkeep));
            if (tmp[ntmp] < 0) {
                rc = errno;
                goto out;
            }
            if ((rc = posix_spawn_file_actions_adddup2(&fa, tmp[ntmp], (int)(3 + ntmp))) != 0)
                goto out;
        }
    }

    // Default dispositions for every signal (the parent ignores SIGPIPE, and
    // ignored dispositions survive exec) and an empty mask. Not sigfillset:
    // it leaves out glibc's internal signals 32/33, which posix_spawn then
    // sets to SIG_IGN in the child, and that survives exec.
    sigset_t all, none;
    memset(&all, 0xff, sizeof all);
    sigemptyset(&none);
    if ((rc = posix_spawnattr_setsigdefault(&attr, &all)) != 0 ||
        (rc = posix_spawnattr_setsigmask(&attr, &none)) != 0 ||
        (rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK)) != 0)
        goto out;

    rc = posix_spawn(&pid, path, &fa, &attr, argv, envp);
    if (rc != 0)
        pid = -1;
out:
    for (size_t i = 0; i < ntmp; i++)
        close(tmp[i]);
    free(tmp);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    if (pid < 0)
        errno = rc;
    return pid;
}
