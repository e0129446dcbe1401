import CShim
import Glibc
import SysKit
import Wire

/// fcntl on forwarded descriptors (status flags and record locks) and
/// flock. Locks are taken at home, so tracees and home processes contend
/// for the same locks. OFD locks and flock are taken on the deputy's open
/// file description; a POSIX lock by the tracee process's own lock owner at
/// home (`posixLock`), so the session's processes contend as processes,
/// and closing any descriptor of a file releases them (`close`). A blocking request
/// (F_SETLKW, flock without LOCK_NB) waits at home on a thread of its own,
/// so it is granted the moment the lock is free, stalls no other call, and
/// a signal to the waiting thread interrupts it (`HomeLink.call`).
enum Locks {
    static let F_OFD_GETLK: Int32 = 36, F_OFD_SETLK: Int32 = 37, F_OFD_SETLKW: Int32 = 38
    /// The fcntl commands the filter sends here.
    static let commands: [Int32] = [F_DUPFD, Descriptors.F_DUPFD_CLOEXEC, F_GETFL, F_SETFL, F_GETLK, F_SETLK, F_SETLKW,
                                    F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW]

    /// Implements fcntl(2) for the commands in `commands`.
    static func fcntl(_ c: borrowing Call) throws(Failure) -> Reply {
        let cmd = c.int(1)
        if cmd == F_DUPFD || cmd == Descriptors.F_DUPFD_CLOEXEC { return try Descriptors.fcntlDup(c) }
        guard let p = try c.placeholder(fd: c.fd(0)) else { return .continueSyscall }
        switch cmd {
        case F_GETFL, F_SETFL:
            return .value(try c.home(.fcntl, Scalars(p.handle, Int64(cmd), Int64(c.int(2)))).result)
        case F_GETLK, F_SETLK, F_SETLKW:
            return try posixLock(c, p, cmd)
        default:   // F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW
            return try lock(c, p, cmd)
        }
    }

    /// A POSIX lock: taken at home by this tracee process's own lock owner.
    private static func posixLock(_ c: borrowing Call, _ p: Placeholder, _ cmd: Int32) throws(Failure) -> Reply {
        let process = try c.thread().process
        // Any close of the file releases a lock taken: the process's closes
        // must stop (a query takes none).
        if cmd != F_GETLK, !(try c.seeCloses()) { throw .errno(Errno(rawValue: ENOLCK)) }
        process.usesPosixLocks.store(true, ordering: .relaxed)
        return try lockRequest(c, .posixLock, Scalars(p.handle, Int64(cmd), Int64(process.tgid)), returnsLock: cmd == F_GETLK)
    }

    /// Implements close(2) of a watched number for a process that has taken
    /// POSIX locks: closing any descriptor of a file releases the process's
    /// locks on it, so home is told before the kernel closes it.
    static func close(_ c: borrowing Call) throws(Failure) -> Reply {
        // Unwaited writes are settled first; their error is close's (see WriteBehind).
        if c.sup.link.writeBehind.tracked.load(ordering: .relaxed) > 0, let p = try? c.placeholder(fd: c.fd(0)),
           let e = try c.settleWrites(p) {
            throw .errno(e)
        }
        let process = try c.thread().process
        guard process.usesPosixLocks.load(ordering: .relaxed), let p = try? c.placeholder(fd: c.fd(0)) else {
            return .continueSyscall
        }
        _ = try? c.home(.lockOwnerClose, Scalars(Int64(process.tgid), p.handle))
        return .continueSyscall
    }

    /// Implements flock(2).
    static func flock(_ c: borrowing Call) throws(Failure) -> Reply {
        guard let p = try c.placeholder(fd: c.fd(0)) else { return .continueSyscall }
        return .value(try c.home(.flock, Scalars(p.handle, Int64(c.int(1)))).result)
    }

    /// An open-file-description lock: taken at home on the handle itself.
    private static func lock(_ c: borrowing Call, _ p: Placeholder, _ cmd: Int32) throws(Failure) -> Reply {
        try lockRequest(c, .lock, Scalars(p.handle, Int64(cmd)), returnsLock: cmd == F_OFD_GETLK)
    }

    /// Sends the tracee's struct flock (arg 2) with `op`; a GETLK's answer
    /// is written back into it.
    private static func lockRequest(_ c: borrowing Call, _ op: Op, _ scalars: Scalars, returnsLock: Bool) throws(Failure) -> Reply {
        let size = MemoryLayout<Glibc.flock>.size
        let payload = c.worker.slot.payload(for: op)
        try local { () throws(Errno) in try c.memory.readExactly(c.address(2), into: payload.baseAddress!, count: size) }
        // l_pid must be 0 for OFD locks; it is an output for F_GETLK anyway.
        payload.storeBytes(of: Int32(0), toByteOffset: 24, as: Int32.self)
        let r = try c.home(op, scalars, payloadLength: size)
        if returnsLock {
            guard r.payload.count == size else { throw .transport(.lost) }
            try local { () throws(Errno) in try c.memory.write(c.address(2), from: r.payload.baseAddress!, count: size) }
        }
        return .value(0)
    }
}
