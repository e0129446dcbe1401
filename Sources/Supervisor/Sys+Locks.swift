import CShim
import Glibc
import SysKit
import Wire

/// fcntl on forwarded descriptors (status flags and record locks) and
/// flock. Locks are taken at home, on the deputy's open file description,
/// so tracees and home processes contend for the same locks. A POSIX lock
/// becomes an open-file-description lock there (F_OFD_*): all of a
/// session's tracee processes share one deputy process, and per-process
/// POSIX locks would not exclude one another. A blocking request
/// (F_SETLKW, flock without LOCK_NB) is retried from the supervisor, never
/// waited for at home, so one lock never stalls the session.
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
        case F_GETLK, F_OFD_GETLK:
            return try lock(c, p, F_OFD_GETLK, blocking: false)
        case F_SETLK, F_OFD_SETLK:
            return try lock(c, p, F_OFD_SETLK, blocking: false)
        default:   // F_SETLKW, F_OFD_SETLKW
            return try lock(c, p, F_OFD_SETLK, blocking: true)
        }
    }

    /// Implements flock(2).
    static func flock(_ c: borrowing Call) throws(Failure) -> Reply {
        guard let p = try c.placeholder(fd: c.fd(0)) else { return .continueSyscall }
        let op = c.int(1)
        return try retrying(c, blocking: op & LOCK_NB == 0) { () throws(Failure) in
            .value(try c.home(.flock, Scalars(p.handle, Int64(op & ~LOCK_NB))).result)
        }
    }

    private static func lock(_ c: borrowing Call, _ p: Placeholder, _ cmd: Int32, blocking: Bool) throws(Failure) -> Reply {
        let size = MemoryLayout<Glibc.flock>.size
        let payload = c.worker.slot.payload(for: .lock)
        try local { () throws(Errno) in try c.memory.readExactly(c.address(2), into: payload.baseAddress!, count: size) }
        // l_pid must be 0 for OFD locks; it is an output for F_GETLK anyway.
        payload.storeBytes(of: Int32(0), toByteOffset: 24, as: Int32.self)
        return try retrying(c, blocking: blocking) { () throws(Failure) in
            let r = try c.home(.lock, Scalars(p.handle, Int64(cmd)), payloadLength: size)
            if cmd == F_OFD_GETLK {
                guard r.payload.count == size else { throw .transport(.lost) }
                try local { () throws(Errno) in try c.memory.write(c.address(2), from: r.payload.baseAddress!, count: size) }
            }
            return .value(0)
        }
    }

    /// Runs `attempt`; when blocking and the lock is busy, tries again with
    /// growing pauses (1 ms to 50 ms) until it is granted or the tracee stops
    /// waiting (a signal: the notification is gone, and the answer unused).
    private static func retrying(_ c: borrowing Call, blocking: Bool, _ attempt: () throws(Failure) -> Reply) throws(Failure) -> Reply {
        var pause: UInt32 = 1000
        while true {
            do {
                return try attempt()
            } catch {
                guard blocking, case .errno(let e) = error, e == .resourceTemporarilyUnavailable || e == .permissionDenied else {
                    throw error
                }
                guard c.sup.listener.isValid(id: c.id) else { throw .errno(.interrupted) }
                usleep(pause)
                pause = min(pause * 2, 50_000)
            }
        }
    }
}
