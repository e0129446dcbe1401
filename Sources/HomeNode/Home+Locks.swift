import CShim
import Glibc
import SysKit
import Wire

/// Status flags and locks, at home. A lock request that waits (F_OFD_SETLKW,
/// flock without LOCK_NB) runs on a thread of its own and waits in the home
/// kernel, so it is granted the moment the holder lets go; `cancel` ends the
/// wait with EINTR.
enum HomeLocks {
    static let F_OFD_GETLK: Int32 = 36, F_OFD_SETLK: Int32 = 37, F_OFD_SETLKW: Int32 = 38

    /// Implements fcntl(2) F_GETFL/F_SETFL: scalars [handle, cmd, arg].
    static func fcntl(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let fd = try c.handle(c.r.scalar(0)), cmd = c.int(1)
        guard cmd == F_GETFL || cmd == F_SETFL else { throw Errno.invalidArgument }
        let v = try sys { cshim_fcntl_int(fd, cmd, Int(truncatingIfNeeded: c.r.scalar(2))) }
        return (Int64(v), 0)
    }

    /// Implements fcntl(2) record locks: scalars [handle, cmd]; payload: struct flock.
    static func lock(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let fd = try c.handle(c.r.scalar(0)), cmd = c.int(1)
        guard cmd == F_GETLK || cmd == F_SETLK || cmd == F_OFD_GETLK || cmd == F_OFD_SETLK || cmd == F_OFD_SETLKW,
              c.r.payload.count == MemoryLayout<Glibc.flock>.size else { throw Errno.invalidArgument }
        var lock = Glibc.flock()
        withUnsafeMutableBytes(of: &lock) { $0.copyMemory(from: c.r.payload) }
        try c.interruptible { cshim_fcntl_ptr(fd, cmd, &lock) }
        withUnsafeBytes(of: &lock) { c.out.copyMemory(from: $0) }
        return (0, MemoryLayout<Glibc.flock>.size)
    }

    /// Implements flock(2): scalars [handle, operation].
    static func flock(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let fd = try c.handle(c.r.scalar(0)), op = c.int(1)
        try c.interruptible { cshim_flock(fd, op) }
        return (0, 0)
    }
}
