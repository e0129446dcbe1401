import CShim
import Glibc
import SysKit
import Wire

/// Every home handler has this one signature: it reads its request from
/// the call and writes any payload to `c.out`; it returns (result, payload
/// length) and throws the home kernel's errno.
typealias HomeHandler = @Sendable (HomeCall) throws(Errno) -> (Int64, Int)

/// Where a request runs: inline on the session's reader (it cannot block),
/// or on a thread of its own (it may wait for someone else).
enum Placement: Sendable {
    /// Never waits for another party: metadata, regular files.
    case inline
    /// May wait when the handle in scalar `i` is a FIFO, socket or device.
    case streamHandle(Int)
    /// An open: may wait when the name is a FIFO or device (see `HomeOps.openMayBlock`).
    case open
    /// May wait when this says so (lock waits).
    case when(@Sendable (RequestView) -> Bool)
    /// Runs on the calling tracee process's POSIX lock owner (`LockOwners`).
    case lockOwner
}

/// Where the reader sends one request.
enum Runner {
    /// Runs it itself, now.
    case reader
    /// A thread of the session's pool.
    case thread
    /// The calling tracee process's lock owner.
    case lockOwner
}

/// One row per op: its handler and whether it may block. The home side's
/// syscall table: `Session` dispatches through it and nothing else.
struct HomeOpRow: Sendable {
    let op: Op
    let placement: Placement
    let handler: HomeHandler

    init(_ op: Op, _ placement: Placement, _ handler: @escaping HomeHandler) {
        self.op = op
        self.placement = placement
        self.handler = handler
    }
}

enum HomeOps {
    static let rows: [HomeOpRow] = [
        // Opening, naming, the working directory (Home+Files.swift).
        HomeOpRow(.openat, .open, HomeFiles.openat),
        HomeOpRow(.close, .inline, HomeFiles.close),
        HomeOpRow(.chdir, .inline, HomeFiles.chdir),
        HomeOpRow(.getcwd, .inline, HomeFiles.getcwd),
        HomeOpRow(.mkdirat, .inline, HomeFiles.mkdirat),
        HomeOpRow(.unlinkat, .inline, HomeFiles.unlinkat),
        HomeOpRow(.renameat2, .inline, HomeFiles.renameat2),
        HomeOpRow(.readlinkat, .inline, HomeFiles.readlinkat),
        HomeOpRow(.truncate, .inline, HomeFiles.truncate),
        // Data (Home+ReadWrite.swift).
        HomeOpRow(.read, .streamHandle(0), HomeReadWrite.read),
        HomeOpRow(.write, .streamHandle(0), HomeReadWrite.write),
        HomeOpRow(.streamWrite, .streamHandle(0), HomeReadWrite.streamWrite),
        HomeOpRow(.pread, .streamHandle(0), HomeReadWrite.pread),
        HomeOpRow(.pwrite, .streamHandle(0), HomeReadWrite.pwrite),
        HomeOpRow(.lseek, .inline, HomeReadWrite.lseek),
        HomeOpRow(.fsync, .streamHandle(0), HomeReadWrite.fsync),
        HomeOpRow(.ftruncate, .inline, HomeReadWrite.ftruncate),
        HomeOpRow(.getdents64, .inline, HomeReadWrite.getdents64),
        HomeOpRow(.fallocate, .inline, HomeReadWrite.fallocate),
        HomeOpRow(.copyFileRange, .inline, HomeReadWrite.copyFileRange),
        // Metadata (Home+Stat.swift, Home+Metadata.swift, Home+Xattr.swift).
        HomeOpRow(.fstat, .inline, HomeStat.fstat),
        HomeOpRow(.statx, .inline, HomeStat.statx),
        HomeOpRow(.faccessat, .inline, HomeStat.faccessat),
        HomeOpRow(.statfs, .inline, HomeStat.statfs),
        HomeOpRow(.statxWatched, .inline, HomeWatches.statxWatched),
        HomeOpRow(.fchmodat, .inline, HomeMetadata.fchmodat),
        HomeOpRow(.fchownat, .inline, HomeMetadata.fchownat),
        HomeOpRow(.utimensat, .inline, HomeMetadata.utimensat),
        HomeOpRow(.linkat, .inline, HomeMetadata.linkat),
        HomeOpRow(.symlinkat, .inline, HomeMetadata.symlinkat),
        HomeOpRow(.mknodat, .inline, HomeMetadata.mknodat),
        HomeOpRow(.getxattr, .inline, HomeXattr.getxattr),
        HomeOpRow(.setxattr, .inline, HomeXattr.setxattr),
        HomeOpRow(.listxattr, .inline, HomeXattr.listxattr),
        HomeOpRow(.removexattr, .inline, HomeXattr.removexattr),
        // Status flags and locks (Home+Locks.swift).
        HomeOpRow(.fcntl, .inline, HomeLocks.fcntl),
        HomeOpRow(.lock, .when({ Int32(truncatingIfNeeded: $0.scalar(1)) == HomeLocks.F_OFD_SETLKW }), HomeLocks.lock),
        HomeOpRow(.flock, .when({ Int32(truncatingIfNeeded: $0.scalar(1)) & LOCK_NB == 0 }), HomeLocks.flock),
        // Always on the tracee process's lock owner (LockOwners.swift).
        HomeOpRow(.posixLock, .lockOwner, HomeLocks.posixLock),
        HomeOpRow(.lockOwnerClose, .inline, HomeLocks.lockOwnerClose),
        HomeOpRow(.lockOwnerExit, .inline, HomeLocks.lockOwnerExit),
        // Sockets (Home+Socket.swift): connect waits on a thread of its own.
        HomeOpRow(.socket, .inline, HomeSocket.socket),
        HomeOpRow(.connect, .streamHandle(0), HomeSocket.connect),
        HomeOpRow(.shutdown, .inline, HomeSocket.shutdown),
        HomeOpRow(.getsockopt, .inline, HomeSocket.getsockopt),
        HomeOpRow(.setsockopt, .inline, HomeSocket.setsockopt),
        HomeOpRow(.sockname, .inline, HomeSocket.sockname),
        HomeOpRow(.bind, .inline, HomeSocket.bind),
        HomeOpRow(.listen, .inline, HomeSocket.listen),
        HomeOpRow(.accept, .streamHandle(0), HomeSocket.accept),
        HomeOpRow(.poll, .streamHandle(0), HomeSocket.poll),
        HomeOpRow(.sendto, .streamHandle(0), HomeSocket.sendto),
        HomeOpRow(.recvfrom, .streamHandle(0), HomeSocket.recvfrom),
        HomeOpRow(.bindPath, .inline, HomeUnixSocket.bindPath),
        HomeOpRow(.connectPath, .streamHandle(0), HomeUnixSocket.connectPath),
        HomeOpRow(.sendfile, .streamHandle(0), HomeUnixSocket.sendfile),
        HomeOpRow(.sendtoPath, .streamHandle(0), HomeUnixSocket.sendtoPath),
        // Terminals and devices (Home+Ioctl.swift): a drain waits for the line.
        HomeOpRow(.ioctl, .streamHandle(0), HomeIoctl.ioctl),
        HomeOpRow(.terminal, .inline, HomeTerminal.open),
        HomeOpRow(.windowSize, .streamHandle(0), HomeTerminal.windowSize),
        HomeOpRow(.terminalOffer, .inline, HomeHandedTerminal.offer),
        HomeOpRow(.terminalAccept, .streamHandle(0), HomeHandedTerminal.accept),
        // The session itself (Home+Session.swift).
        HomeOpRow(.cancel, .inline, HomeSessionOps.cancel),
        HomeOpRow(.echo, .inline, HomeSessionOps.echo),
        HomeOpRow(.credentials, .inline, HomeSessionOps.credentials),
    ]

    /// `rows` indexed by op number (nil: a handshake op, or none).
    private static let byOp: [HomeOpRow?] = {
        var table = [HomeOpRow?](repeating: nil, count: Int(Op.allCases.map(\.rawValue).max()!) + 1)
        for row in rows {
            precondition(table[Int(row.op.rawValue)] == nil, "two home rows for \(row.op)")
            table[Int(row.op.rawValue)] = row
        }
        return table
    }()

    /// The row of a request's op (every non-handshake op has one).
    static func row(_ op: Op) -> HomeOpRow {
        byOp[Int(op.rawValue)] ?? refusal
    }

    /// What a handshake op gets after the handshake (the reader ends the
    /// session before it gets here).
    private static let refusal = HomeOpRow(.hello, .inline) { (_) throws(Errno) in throw Errno.invalidArgument }

    /// Where `c` runs: on the reader unless it may block.
    static func runner(_ c: HomeCall) -> Runner {
        switch row(c.r.op).placement {
        case .inline: return .reader
        case .streamHandle(let i): return c.session.handles.kind(c.r.scalar(i)) == .stream ? .thread : .reader
        case .open: return openMayBlock(c) ? .thread : .reader
        case .when(let test): return test(c.r) ? .thread : .reader
        case .lockOwner: return .lockOwner
        }
    }

    /// An open waits when it names a FIFO (for its other end) or a device
    /// (a terminal's carrier, a tape), unless it is O_NONBLOCK or O_PATH.
    /// Decided by a stat of the name before the open: a name swapped for a
    /// FIFO in between only makes that one open wait inline.
    static func openMayBlock(_ c: HomeCall) -> Bool {
        let flags = c.int(1)
        if flags & (O_NONBLOCK | CSHIM_O_PATH) != 0 { return false }
        guard let path = try? c.r.path().baseAddress?.assumingMemoryBound(to: CChar.self) else { return false }
        let dir = c.r.scalar(0)
        var base: CInt
        var name = path
        if path.pointee == CChar(UInt8(ascii: "/")) {
            if c.session.root.confined {
                // Inside the root: the name relative to it.
                while name.pointee == CChar(UInt8(ascii: "/")) { name += 1 }
                if name.pointee == 0 { return false }
                base = c.session.root.fd
            } else {
                base = AT_FDCWD
            }
        } else if dir == Wire.rootDir {
            base = c.session.root.fd
        } else {
            guard let kind = c.session.handles.kind(dir) else { return false }
            if path.pointee == 0 { return kind == .stream }   // reopening the handle itself
            base = CInt(truncatingIfNeeded: dir)
        }
        var st = stat()
        let follow = flags & O_NOFOLLOW == 0
        guard fstatat(base, name, &st, follow ? 0 : AT_SYMLINK_NOFOLLOW) == 0 else { return false }
        switch st.st_mode & S_IFMT {
        case S_IFIFO, S_IFCHR, S_IFSOCK: return true
        default: return false
        }
    }
}
