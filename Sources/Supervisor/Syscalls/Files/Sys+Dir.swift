import CShim
import Glibc
import SysKit
import Wire

/// Directory listings and names: create, remove, rename.
enum Dir {
    /// Implements getdents64(2).
    static func getdents64(_ c: borrowing Call) throws(Failure) -> Reply {
        guard let p = try c.placeholder(fd: c.fd(0)) else { return .continueSyscall }
        let count = Int(UInt32(truncatingIfNeeded: c.raw(2)))
        return .value(try p.reads.withLock { (cursor: inout ReadCursor) throws(Failure) -> Int64 in
            let n = try c.listedGetdents(p, count: count, cursor: &cursor)
            cursor.listed = true
            return n
        })
    }

    /// Implements mkdir(2).
    static func mkdir(_ c: borrowing Call) throws(Failure) -> Reply {
        try mkdirCommon(c, dirfd: AT_FDCWD, pathArg: 0, mode: c.raw(1))
    }

    /// Implements mkdirat(2).
    static func mkdirat(_ c: borrowing Call) throws(Failure) -> Reply {
        try mkdirCommon(c, dirfd: c.fd(0), pathArg: 1, mode: c.raw(2))
    }

    /// Implements rmdir(2).
    static func rmdir(_ c: borrowing Call) throws(Failure) -> Reply {
        try unlinkCommon(c, dirfd: AT_FDCWD, pathArg: 0, flags: AT_REMOVEDIR)
    }

    /// Implements unlink(2).
    static func unlink(_ c: borrowing Call) throws(Failure) -> Reply {
        try unlinkCommon(c, dirfd: AT_FDCWD, pathArg: 0, flags: 0)
    }

    /// Implements unlinkat(2).
    static func unlinkat(_ c: borrowing Call) throws(Failure) -> Reply {
        try unlinkCommon(c, dirfd: c.fd(0), pathArg: 1, flags: c.int(2))
    }

    /// Implements rename(2).
    static func rename(_ c: borrowing Call) throws(Failure) -> Reply {
        try renameCommon(c, oldDirfd: AT_FDCWD, oldArg: 0, newDirfd: AT_FDCWD, newArg: 1, flags: 0)
    }

    /// Implements renameat(2).
    static func renameat(_ c: borrowing Call) throws(Failure) -> Reply {
        try renameCommon(c, oldDirfd: c.fd(0), oldArg: 1, newDirfd: c.fd(2), newArg: 3, flags: 0)
    }

    /// Implements renameat2(2).
    static func renameat2(_ c: borrowing Call) throws(Failure) -> Reply {
        try renameCommon(c, oldDirfd: c.fd(0), oldArg: 1, newDirfd: c.fd(2), newArg: 3, flags: c.int(4))
    }

    // MARK: shared

    private static func mkdirCommon(_ c: borrowing Call, dirfd: Int32, pathArg: Int, mode: UInt64) throws(Failure) -> Reply {
        let (route, len) = try c.routePath(arg: pathArg, dirfd: dirfd, into: c.worker.slot.payload(for: .mkdirat))
        guard let to = route.destination else { return .continueSyscall }
        let m = try UInt32(truncatingIfNeeded: mode) & 0o7777 & ~c.umask()
        _ = try c.send(to, .mkdirat, Scalars(to.dir, Int64(m)), payloadLength: len)
        return .value(0)
    }

    private static func unlinkCommon(_ c: borrowing Call, dirfd: Int32, pathArg: Int, flags: Int32) throws(Failure) -> Reply {
        let (route, len) = try c.routePath(arg: pathArg, dirfd: dirfd, into: c.worker.slot.payload(for: .unlinkat))
        guard let to = route.destination else { return .continueSyscall }
        _ = try c.send(to, .unlinkat, Scalars(to.dir, Int64(flags)), payloadLength: len)
        return .value(0)
    }

    /// Both names must live on the same side: a rename between home and the
    /// target is EXDEV, which `mv` answers by copying.
    private static func renameCommon(_ c: borrowing Call, oldDirfd: Int32, oldArg: Int, newDirfd: Int32, newArg: Int,
                                     flags: Int32) throws(Failure) -> Reply {
        let payload = c.worker.slot.payload(for: .renameat2)
        let (oldRoute, oldLen) = try c.routePath(arg: oldArg, dirfd: oldDirfd, into: payload)
        let (newRoute, newLen) = try c.routePath(arg: newArg, dirfd: newDirfd,
                                                 into: UnsafeMutableRawBufferPointer(rebasing: payload[oldLen...]))
        guard let to = try Destination.pair(oldRoute, newRoute) else { return .continueSyscall }
        defer { withExtendedLifetime(to) {} }
        _ = try c.send(to.0, .renameat2, Scalars(to.0.dir, to.1.dir, Int64(flags)), payloadLength: oldLen + newLen)
        return .value(0)
    }
}
