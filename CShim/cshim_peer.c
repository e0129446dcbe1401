// The credentials of a Unix socket's peer (struct ucred needs _GNU_SOURCE).
#define _GNU_SOURCE
#include "CShim.h"

#include <sys/socket.h>

int cshim_peer_uid(int sock, unsigned int *uid)
{
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        return -1;
    *uid = cred.uid;
    return 0;
}
