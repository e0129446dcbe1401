/// The operation a frame carries.
///
/// Handshake ops (1–5) are sent with request id 0 and flags 0, in request
/// form (scalars then payload). File ops (16 and up) are requests from the
/// client; the response echoes the op and id, sets ``FrameFlags/response``,
/// and carries an `Int64` result (>= 0 success value, < 0 `-errno` from the
/// home kernel) followed by the response payload.
///
/// Payload paths are the path bytes followed by exactly one NUL. A `dir`
/// scalar is a directory handle from `openat`/`chdir`, or ``Wire/rootDir``.
public enum Op: UInt16, Sendable, CaseIterable {
    // MARK: Handshake

    /// Handshake, client→server: scalars [magic, version, capabilities];
    /// payload: the 32-byte client nonce.
    case hello = 1
    /// Handshake, server→client: scalars [magic, version, capabilities, authRequired 0|1];
    /// payload: the 32-byte server nonce.
    case challenge = 2
    /// Handshake, client→server: no scalars; payload: the 32-byte
    /// HMAC-SHA256(key, "tether-v1 client" ‖ serverNonce ‖ clientNonce).
    case authenticate = 3
    /// Handshake, server→client: no scalars; payload: the 32-byte
    /// HMAC-SHA256(key, "tether-v1 server" ‖ clientNonce ‖ serverNonce), or empty when no auth.
    case welcome = 4
    /// Handshake, server→client: scalars [reason] (see ``RefusalReason``): 1 bad key,
    /// 2 unsupported version, 3 bad magic, 4 protocol error; then the server closes.
    case refused = 5

    // MARK: File operations

    /// Analogous to openat(2): scalars [dir, flags, mode, resolve]; payload: path + NUL.
    /// Response: result = the new handle; no payload, or for a character device (a terminal,
    /// a serial line; opened blocking and without becoming a controlling terminal) one byte,
    /// ``Wire/openedDevice``.
    case openat = 16
    /// Analogous to close(2): scalars [handle]; no payload. Response: result 0.
    case close = 17
    /// Analogous to read(2): scalars [handle, count]; no payload.
    /// Response: result = byte count; payload: the data read.
    case read = 18
    /// Analogous to write(2): scalars [handle]; payload: the data.
    /// Response: result = bytes written; no payload.
    case write = 19
    /// Analogous to pread64(2): scalars [handle, count, offset]; no payload.
    /// Response: result = byte count; payload: the data read.
    case pread = 20
    /// Analogous to pwrite64(2): scalars [handle, offset]; payload: the data.
    /// Response: result = bytes written; no payload.
    case pwrite = 21
    /// Analogous to lseek(2): scalars [handle, offset, whence]; no payload.
    /// Response: result = the new offset.
    case lseek = 22
    /// Analogous to fstat(2) (via statx(2) with CSHIM_AT_EMPTY_PATH): scalars [handle]; no payload.
    /// Response: payload: the 256-byte `struct statx`.
    case fstat = 23
    /// Analogous to statx(2): scalars [dir, flags, mask]; payload: path + NUL.
    /// Response: payload: the 256-byte `struct statx`.
    case statx = 24
    /// Analogous to faccessat2(2): scalars [dir, mode, flags]; payload: path + NUL.
    /// Response: result 0; no payload.
    case faccessat = 25
    /// Analogous to getdents64(2): scalars [handle, count]; no payload.
    /// Response: result = byte count; payload: `linux_dirent64` records.
    case getdents64 = 26
    /// Analogous to mkdirat(2): scalars [dir, mode]; payload: path + NUL. Response: result 0.
    case mkdirat = 27
    /// Analogous to unlinkat(2): scalars [dir, flags]; payload: path + NUL. Response: result 0.
    case unlinkat = 28
    /// Analogous to renameat2(2): scalars [olddir, newdir, flags];
    /// payload: oldpath NUL newpath NUL. Response: result 0.
    case renameat2 = 29
    /// Analogous to readlinkat(2): scalars [dir, bufsize]; payload: path + NUL.
    /// Response: result = byte count; payload: the link target (no NUL).
    case readlinkat = 30
    /// Analogous to ftruncate(2): scalars [handle, length]; no payload. Response: result 0.
    case ftruncate = 31
    /// Analogous to truncate(2): scalars [dir, length]; payload: path + NUL. Response: result 0.
    case truncate = 32
    /// Analogous to fsync(2)/fdatasync(2): scalars [handle, datasync 0|1]; no payload.
    /// Response: result 0.
    case fsync = 33
    /// Analogous to chdir(2): scalars [dir]; payload: path + NUL.
    /// Response: result = handle of the new cwd directory; payload: its path inside the export root.
    case chdir = 34
    /// Analogous to getcwd(2): scalars [handle] (a directory handle); no payload.
    /// Response: payload: the directory's path inside the export root.
    case getcwd = 35
    /// Analogous to a signal interrupting a blocked syscall (EINTR): scalars [requestId];
    /// no payload. Asks the home to interrupt the blocked request with that id: it then
    /// answers EINTR, or its partial or complete result if it had one. An id that names no
    /// blocked request is ignored. Response: result 0 (clients send it with an id no call
    /// waits for, and drop the reply).
    case cancel = 36
    /// Analogous to no syscall (a transport round-trip measurement): scalars [replySize];
    /// payload: anything. Response: payload: replySize bytes.
    case echo = 37
    /// Analogous to fchmodat2(2): scalars [dir, mode, flags]; payload: path (empty with a
    /// handle as dir: fchmod(2)).
    case fchmodat = 38
    /// Analogous to fchownat(2): scalars [dir, uid, gid, flags]; payload: path (empty with a
    /// handle as dir and AT_EMPTY_PATH: fchown(2)).
    case fchownat = 39
    /// Analogous to utimensat(2): scalars [dir, flags, hasTimes]; payload: two struct timespec
    /// (32 bytes, when hasTimes is 1) then the path (empty with a handle as dir: futimens(3)).
    case utimensat = 40
    /// Analogous to linkat(2): scalars [olddir, newdir, flags]; payload: oldpath NUL newpath NUL.
    case linkat = 41
    /// Analogous to symlinkat(2): scalars [newdir]; payload: target NUL linkpath NUL.
    case symlinkat = 42
    /// Analogous to mknodat(2): scalars [dir, mode, dev]; payload: path.
    case mknodat = 43
    /// Analogous to statfs(2) (fstatfs(2) with a handle and an empty path): scalars [dir];
    /// payload: path. Response: payload: the x86_64 struct statfs (120 bytes).
    case statfs = 44
    /// Analogous to fallocate(2): scalars [handle, mode, offset, length].
    case fallocate = 45
    /// Analogous to fcntl(2) with an integer argument (F_GETFL, F_SETFL): scalars
    /// [handle, cmd, arg]. Response: result: fcntl's.
    case fcntl = 46
    /// Analogous to fcntl(2) record locks (F_GETLK, F_SETLK, F_OFD_GETLK, F_OFD_SETLK, and
    /// F_OFD_SETLKW, which waits at home until granted or cancelled): scalars [handle, cmd];
    /// payload: x86_64 struct flock (32 bytes). Response: payload: the struct as the home
    /// kernel left it.
    case lock = 47
    /// Analogous to flock(2): scalars [handle, operation]; without LOCK_NB it waits at home
    /// until granted or cancelled.
    case flock = 48
    /// Analogous to getxattr(2)/lgetxattr(2)/fgetxattr(2): scalars [dir, nofollow, size];
    /// payload: name NUL path NUL (empty path with a handle: the open file). Response:
    /// payload: the value (size 0: only its length, as the result).
    case getxattr = 49
    /// Analogous to setxattr(2) and its forms: scalars [dir, nofollow, flags, valueLength];
    /// payload: name NUL path NUL value.
    case setxattr = 50
    /// Analogous to listxattr(2) and its forms: scalars [dir, nofollow, size]; payload: path.
    /// Response: payload: the NUL-separated names.
    case listxattr = 51
    /// Analogous to removexattr(2) and its forms: scalars [dir, nofollow]; payload: name NUL path NUL.
    case removexattr = 52
    /// Analogous to copy_file_range(2) between two handles of the session: scalars
    /// [inHandle, inOffset (-1: the file offset), outHandle, outOffset (-1), length, flags].
    case copyFileRange = 53
    /// Analogous to setfsuid(2)/setfsgid(2)/setgroups(2) for the calls that follow: scalars
    /// [channel, fsuid, fsgid, groupCount]; payload: groupCount little-endian UInt32 group
    /// ids (at most ``Wire/maxGroups``). From this frame on, every request whose id has
    /// `channel` as its low 16 bits acts at home with these credentials (a privileged home
    /// adopts them per call; an unprivileged one acts as itself). A channel's requests
    /// before its first such frame act with the home's own credentials. Response: result 0.
    case credentials = 54
    /// Analogous to fcntl(2) POSIX record locks (F_GETLK, F_SETLK, F_SETLKW) taken by one
    /// tracee process: scalars [handle, cmd, owner (the process id on the target)]; payload:
    /// x86_64 struct flock (32 bytes). Each owner is its own POSIX lock owner at home, so
    /// the session's processes contend as processes do. Response: payload: the struct as the
    /// home kernel left it, with F_GETLK's l_pid a tracee's process id when the lock is
    /// another owner's of this session.
    case posixLock = 55
    /// Analogous to close(2)'s release of POSIX locks: scalars [owner, handle]. The owner closed
    /// a descriptor of the handle's file: every lock it holds on that file is released.
    /// Response: result 0.
    case lockOwnerClose = 56
    /// Analogous to a process's exit releasing its POSIX locks: scalars [owner]. Clients send
    /// it detached (id ``Wire/pushId``), and a detached request gets no response.
    case lockOwnerExit = 57
    /// Analogous to statx(2), for the client's attribute cache: scalars [dir, flags, mask, base];
    /// payload: a canonical absolute path + NUL (see ``CacheKey``). With a directory handle as
    /// `dir`, its first `base` bytes are the path the client believes the handle has, and the
    /// rest after a slash the name relative to it: the home caches only if the handle's path is
    /// still that, and otherwise stats the name relative to the handle. The home first watches
    /// (inotify) every directory on the path and the object itself, then stats it; from then on it pushes an `invalidate` frame ahead of
    /// any reply sent after a change to them (see ``Invalidation``). Only sent when the home
    /// announced ``Wire/capabilityWatches``. Response: result 1 (watched: the client may cache
    /// it) or 0 (not watched: a path through a symlink, no watch to be had), payload: the
    /// 256-byte `struct statx`; or result 2 (absent and watched: ENOENT that the client may
    /// cache) with no payload; or an errno.
    case statxWatched = 58
    /// Analogous to inotify(7) events, pushed by the home (never a reply to a request): flags
    /// ``FrameFlags/response``, id ``Wire/pushId``; result 0: drop the cached entries of the
    /// paths in the payload (each path + NUL, see ``Invalidation``); result 1: drop every entry
    /// (no payload); result 2: drop the listed paths and everything beneath them.
    case invalidate = 59

    // MARK: Sockets at home

    /// Analogous to socket(2): scalars [domain, type, protocol] (type without SOCK_NONBLOCK and
    /// SOCK_CLOEXEC: the home socket is blocking and close-on-exec). Only AF_INET, AF_INET6
    /// and AF_UNIX (EAFNOSUPPORT otherwise). Response: result = the new handle; no payload.
    case socket = 60
    /// Analogous to connect(2), blocking at home until the outcome (cancellable): scalars
    /// [handle]; payload: the sockaddr (2 ... ``Wire/maxSockaddr`` bytes). Response: result 0.
    case connect = 61
    /// Analogous to shutdown(2): scalars [handle, how]. Response: result 0.
    case shutdown = 62
    /// Analogous to getsockopt(2): scalars [handle, level, name, size] (size at most
    /// ``Wire/maxSockopt``). Response: result = the option's length;
    /// payload: its bytes.
    case getsockopt = 63
    /// Analogous to setsockopt(2): scalars [handle, level, name]; payload: the value (at most
    /// ``Wire/maxSockopt`` bytes). Response: result 0.
    case setsockopt = 64
    /// Analogous to getsockname(2) (peer 0) or getpeername(2) (peer 1): scalars [handle, peer,
    /// size]. Response: result = the address's full length; payload: its first min(length,
    /// size) bytes.
    case sockname = 65
    /// Analogous to bind(2): scalars [handle]; payload: the sockaddr (2 ... ``Wire/maxSockaddr``
    /// bytes). Response: result 0.
    case bind = 66
    /// Analogous to listen(2): scalars [handle, backlog]. Response: result 0.
    case listen = 67
    /// Analogous to accept4(2) with SOCK_CLOEXEC: scalars [handle, nonBlocking 0|1] (1: EAGAIN
    /// at once when no connection is pending; 0: waits, cancellable). Response: result = the
    /// new connection's handle; payload: the peer's address (at most ``Wire/maxSockaddr`` bytes).
    case accept = 68
    /// Analogous to poll(2) on one handle: scalars [handle, events]; waits (cancellable) until
    /// one of `events` is ready. Response: result = the revents.
    case poll = 69
    /// Analogous to sendto(2) on a datagram socket: scalars [handle, flags, addressLength];
    /// payload: the destination address (addressLength bytes, 0: none) then the datagram.
    /// Response: result = bytes sent.
    case sendto = 70
    /// Analogous to recvfrom(2) on a datagram socket: scalars [handle, flags, size] (waits,
    /// cancellable, unless MSG_DONTWAIT). Response: result = the datagram's bytes received (at
    /// most size), or with MSG_TRUNC in flags its full length (which may exceed size); payload:
    /// the bytes received (at most size), then the sender's address (at most
    /// ``Wire/maxSockaddr`` bytes).
    case recvfrom = 71
    /// Analogous to bind(2) of an AF_UNIX socket to a path at home: scalars [handle, dir] (a
    /// directory handle or ``Wire/rootDir``); payload: the path (NUL-terminated), resolved as
    /// `mkdirat` resolves its name. Response: result 0.
    case bindPath = 72
    /// Analogous to connect(2) of an AF_UNIX socket to a path at home, waiting (cancellable)
    /// for the outcome: scalars [handle, dir]; payload: the path, as for ``bindPath``.
    /// Response: result 0.
    case connectPath = 73
    /// Analogous to sendfile(2) from a file handle to a socket handle, both at home (the
    /// bytes never cross the wire): scalars [socket, file, offset (-1: from and advancing
    /// the file's position), count]. Response: result = bytes sent (at most count).
    case sendfile = 74
    /// Analogous to sendto(2) of a datagram to an AF_UNIX path at home: scalars [handle, flags,
    /// dir, pathLength]; payload: the path (pathLength bytes, NUL-terminated, resolved as for
    /// ``bindPath``), then the datagram. Response: result = bytes sent.
    case sendtoPath = 75

    // MARK: Terminals and devices at home

    /// Analogous to ioctl(2) on a handle: scalars [handle, request, value]. Only the requests
    /// of ``IoctlLayout`` (ENOTTY for any other, never executed): `value` is the argument of
    /// a request that takes an int by value; the payload is the struct a request reads
    /// (exactly its size). Response: result = ioctl's result; payload: the struct a request
    /// writes (exactly its size), none on error.
    case ioctl = 80
    /// Opens the session's terminal at home (`wrap-and-run --stdio home`): homestub's standard
    /// error when it is a terminal, e.g. the terminal a `--stdio` home's command runs on. No
    /// scalars. Response: result = the new handle (a character device); ENOTTY if the home
    /// has no terminal.
    case terminal = 81
    /// Waits (cancellable) until the window size of terminal handle differs from rows × cols:
    /// scalars [handle, rows, cols]; the home looks every 100 ms. Response: result 0; payload:
    /// the new 8-byte `struct winsize`.
    case windowSize = 82
    /// Starts the handover of a terminal from a second login at home (`wrap-and-run --stdio
    /// home` with an `ssh://` home, whose `homestub --stdio` has none): a Unix socket in a
    /// new private (0700) directory, and a one-time secret. No scalars. Response: result =
    /// the rendezvous handle; payload: the 32-byte secret, then the directory's path. At most
    /// one per session (EBUSY).
    case terminalOffer = 83
    /// Waits (cancellable) for the first connection to a rendezvous and ends it: the peer
    /// must be this user and send the secret with its terminal (`homestub
    /// --hand-terminal`). Scalars [rendezvous handle]. Response: result = the terminal's
    /// handle (a character device); EACCES for a wrong secret or another user, ENOTTY if the
    /// peer has no terminal, EPROTO for anything else it sent.
    case terminalAccept = 84
    /// A pumped stream's write (the supervisor's up pump): scalars [handle]; payload: the
    /// data. Home writes all of it, after every earlier `streamWrite` to the handle has
    /// ended, and replies as soon as that turn has come, before it writes: result = the
    /// payload's length, or the error an earlier `streamWrite` to the handle hit after its
    /// own reply (then nothing is written). An empty payload only waits for the turn: its
    /// reply says that every earlier one has ended. The pump sends the next only after a
    /// reply, so its writes keep their order while it reads the next chunk.
    case streamWrite = 85

    /// How many `Int64` scalars a request (or handshake frame) of this op carries.
    @inlinable
    public var requestScalarCount: Int {
        switch self {
        case .hello: return 3
        case .challenge: return 4
        case .authenticate: return 0
        case .welcome: return 0
        case .refused: return 1
        case .openat: return 4
        case .close: return 1
        case .read: return 2
        case .write: return 1
        case .pread: return 3
        case .pwrite: return 2
        case .lseek: return 3
        case .fstat: return 1
        case .statx: return 3
        case .faccessat: return 3
        case .getdents64: return 2
        case .mkdirat: return 2
        case .unlinkat: return 2
        case .renameat2: return 3
        case .readlinkat: return 2
        case .ftruncate: return 2
        case .truncate: return 2
        case .fsync: return 2
        case .chdir: return 1
        case .getcwd: return 1
        case .cancel: return 1
        case .echo: return 1
        case .fchmodat: return 3
        case .fchownat: return 4
        case .utimensat: return 3
        case .linkat: return 3
        case .symlinkat: return 1
        case .mknodat: return 3
        case .statfs: return 1
        case .fallocate: return 4
        case .fcntl: return 3
        case .lock: return 2
        case .flock: return 2
        case .getxattr: return 3
        case .setxattr: return 4
        case .listxattr: return 3
        case .removexattr: return 2
        case .copyFileRange: return 6
        case .credentials: return 4
        case .posixLock: return 3
        case .lockOwnerClose: return 2
        case .lockOwnerExit: return 1
        case .statxWatched: return 4
        case .invalidate: return 0
        case .socket: return 3
        case .connect: return 1
        case .shutdown: return 2
        case .getsockopt: return 4
        case .setsockopt: return 3
        case .sockname: return 3
        case .bind: return 1
        case .listen: return 2
        case .accept: return 2
        case .poll: return 2
        case .sendto: return 3
        case .recvfrom: return 3
        case .bindPath: return 2
        case .connectPath: return 2
        case .sendfile: return 4
        case .sendtoPath: return 4
        case .ioctl: return 3
        case .terminal: return 0
        case .windowSize: return 3
        case .terminalOffer: return 0
        case .terminalAccept: return 1
        case .streamWrite: return 1
        }
    }

    /// True for the handshake ops (`hello` … `refused`).
    @inlinable
    public var isHandshake: Bool { rawValue < 16 }
}
