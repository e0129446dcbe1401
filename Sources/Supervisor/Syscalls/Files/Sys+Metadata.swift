import CShim
import Glibc
import SysKit
import Wire

/// Permissions, ownership, times, links, special files and file system
/// statistics, on forwarded names and descriptors.
enum Metadata {
    /// Implements chmod(2).
    static func chmod(_ c: borrowing Call) throws(Failure) -> Reply {
        try chmodCommon(c, dirfd: AT_FDCWD, pathArg: 0, mode: c.raw(1), flags: 0)
    }

    /// Implements fchmodat(2).
    static func fchmodat(_ c: borrowing Call) throws(Failure) -> Reply {
        try chmodCommon(c, dirfd: c.fd(0), pathArg: 1, mode: c.raw(2), flags: 0)
    }

    /// Implements fchmodat2(2).
    static func fchmodat2(_ c: borrowing Call) throws(Failure) -> Reply {
        try chmodCommon(c, dirfd: c.fd(0), pathArg: 1, mode: c.raw(2), flags: c.int(3))
    }

    /// Implements fchmod(2).
    static func fchmod(_ c: borrowing Call) throws(Failure) -> Reply {
        guard let p = try c.placeholder(fd: c.fd(0)) else { return .continueSyscall }
        try emptyPath(c, .fchmodat)
        _ = try c.home(.fchmodat, Scalars(p.handle, Int64(c.raw(1) & 0o7777), 0), payloadLength: 1)
        return .value(0)
    }

    /// Implements chown(2).
    static func chown(_ c: borrowing Call) throws(Failure) -> Reply {
        try chownCommon(c, dirfd: AT_FDCWD, pathArg: 0, uid: c.int(1), gid: c.int(2), flags: 0)
    }

    /// Implements lchown(2).
    static func lchown(_ c: borrowing Call) throws(Failure) -> Reply {
        try chownCommon(c, dirfd: AT_FDCWD, pathArg: 0, uid: c.int(1), gid: c.int(2), flags: AT_SYMLINK_NOFOLLOW)
    }

    /// Implements fchownat(2).
    static func fchownat(_ c: borrowing Call) throws(Failure) -> Reply {
        try chownCommon(c, dirfd: c.fd(0), pathArg: 1, uid: c.int(2), gid: c.int(3), flags: c.int(4))
    }

    /// Implements fchown(2).
    static func fchown(_ c: borrowing Call) throws(Failure) -> Reply {
        guard let p = try c.placeholder(fd: c.fd(0)) else { return .continueSyscall }
        try emptyPath(c, .fchownat)
        _ = try c.home(.fchownat, Scalars(p.handle, Int64(c.int(1)), Int64(c.int(2)), Int64(CSHIM_AT_EMPTY_PATH)),
                       payloadLength: 1)
        return .value(0)
    }

    /// Implements utimensat(2) (and futimens(3), its NULL-path form).
    static func utimensat(_ c: borrowing Call) throws(Failure) -> Reply {
        var times: (timespec, timespec)? = nil
        if c.address(2) != 0 {
            var t = (timespec(), timespec())
            try local { () throws(Errno) in try c.memory.readExactly(c.address(2), into: &t, count: MemoryLayout<timespec>.size * 2) }
            times = t
        }
        return try setTimes(c, dirfd: c.fd(0), pathArg: c.address(1) == 0 ? nil : 1, times: times, flags: c.int(3))
    }

    /// Implements utimes(2).
    static func utimes(_ c: borrowing Call) throws(Failure) -> Reply {
        try setTimes(c, dirfd: AT_FDCWD, pathArg: 0, times: try timevals(c, at: c.address(1)), flags: 0)
    }

    /// Implements futimesat(2).
    static func futimesat(_ c: borrowing Call) throws(Failure) -> Reply {
        try setTimes(c, dirfd: c.fd(0), pathArg: c.address(1) == 0 ? nil : 1, times: try timevals(c, at: c.address(2)), flags: 0)
    }

    /// Implements utime(2).
    static func utime(_ c: borrowing Call) throws(Failure) -> Reply {
        var times: (timespec, timespec)? = nil
        if c.address(1) != 0 {
            var b = (Int64(0), Int64(0))   // struct utimbuf: actime, modtime
            try local { () throws(Errno) in try c.memory.readExactly(c.address(1), into: &b, count: 16) }
            times = (timespec(tv_sec: Int(b.0), tv_nsec: 0), timespec(tv_sec: Int(b.1), tv_nsec: 0))
        }
        return try setTimes(c, dirfd: AT_FDCWD, pathArg: 0, times: times, flags: 0)
    }

    /// Implements link(2).
    static func link(_ c: borrowing Call) throws(Failure) -> Reply {
        try linkCommon(c, oldDirfd: AT_FDCWD, oldArg: 0, newDirfd: AT_FDCWD, newArg: 1, flags: 0)
    }

    /// Implements linkat(2).
    static func linkat(_ c: borrowing Call) throws(Failure) -> Reply {
        try linkCommon(c, oldDirfd: c.fd(0), oldArg: 1, newDirfd: c.fd(2), newArg: 3, flags: c.int(4))
    }

    /// Implements symlink(2).
    static func symlink(_ c: borrowing Call) throws(Failure) -> Reply {
        try symlinkCommon(c, targetArg: 0, dirfd: AT_FDCWD, linkArg: 1)
    }

    /// Implements symlinkat(2).
    static func symlinkat(_ c: borrowing Call) throws(Failure) -> Reply {
        try symlinkCommon(c, targetArg: 0, dirfd: c.fd(1), linkArg: 2)
    }

    /// Implements mknod(2).
    static func mknod(_ c: borrowing Call) throws(Failure) -> Reply {
        try mknodCommon(c, dirfd: AT_FDCWD, pathArg: 0, mode: c.raw(1), dev: c.raw(2))
    }

    /// Implements mknodat(2).
    static func mknodat(_ c: borrowing Call) throws(Failure) -> Reply {
        try mknodCommon(c, dirfd: c.fd(0), pathArg: 1, mode: c.raw(2), dev: c.raw(3))
    }

    /// Implements statfs(2).
    static func statfs(_ c: borrowing Call) throws(Failure) -> Reply {
        let (route, len) = try c.routePath(arg: 0, dirfd: AT_FDCWD, into: c.worker.slot.payload(for: .statfs))
        guard let to = route.destination else { return .continueSyscall }
        return try statfsReply(c, try c.send(to, .statfs, Scalars(to.dir), payloadLength: len), to: c.address(1))
    }

    /// Implements fstatfs(2).
    static func fstatfs(_ c: borrowing Call) throws(Failure) -> Reply {
        guard let p = try c.placeholder(fd: c.fd(0)) else { return .continueSyscall }
        try emptyPath(c, .statfs)
        return try statfsReply(c, try c.home(.statfs, Scalars(p.handle), payloadLength: 1), to: c.address(1))
    }

    // MARK: shared

    private static func emptyPath(_ c: borrowing Call, _ op: Op) throws(Failure) {
        c.worker.slot.payload(for: op)[0] = 0
    }

    private static func chmodCommon(_ c: borrowing Call, dirfd: Int32, pathArg: Int, mode: UInt64, flags: Int32) throws(Failure) -> Reply {
        let (route, len) = try c.routePath(arg: pathArg, dirfd: dirfd, into: c.worker.slot.payload(for: .fchmodat),
                                           allowEmpty: flags & CSHIM_AT_EMPTY_PATH != 0)
        guard let to = route.destination else { return .continueSyscall }
        _ = try c.send(to, .fchmodat, Scalars(to.dir, Int64(mode & 0o7777), Int64(flags)), payloadLength: len)
        return .value(0)
    }

    private static func chownCommon(_ c: borrowing Call, dirfd: Int32, pathArg: Int, uid: Int32, gid: Int32,
                                    flags: Int32) throws(Failure) -> Reply {
        let (route, len) = try c.routePath(arg: pathArg, dirfd: dirfd, into: c.worker.slot.payload(for: .fchownat),
                                           allowEmpty: flags & CSHIM_AT_EMPTY_PATH != 0)
        guard let to = route.destination else { return .continueSyscall }
        _ = try c.send(to, .fchownat, Scalars(to.dir, Int64(uid), Int64(gid), Int64(flags)), payloadLength: len)
        return .value(0)
    }

    /// struct timeval[2] (NULL: now) as timespecs.
    private static func timevals(_ c: borrowing Call, at address: UInt64) throws(Failure) -> (timespec, timespec)? {
        if address == 0 { return nil }
        var tv = (Int64(0), Int64(0), Int64(0), Int64(0))
        try local { () throws(Errno) in try c.memory.readExactly(address, into: &tv, count: 32) }
        guard tv.1 >= 0, tv.1 < 1_000_000, tv.3 >= 0, tv.3 < 1_000_000 else { throw .errno(.invalidArgument) }
        return (timespec(tv_sec: Int(tv.0), tv_nsec: Int(tv.1) * 1000), timespec(tv_sec: Int(tv.2), tv_nsec: Int(tv.3) * 1000))
    }

    /// The utimensat family: payload = the two timespecs (if any), then the path.
    private static func setTimes(_ c: borrowing Call, dirfd: Int32, pathArg: Int?, times: (timespec, timespec)?,
                                 flags: Int32) throws(Failure) -> Reply {
        let payload = c.worker.slot.payload(for: .utimensat)
        let timesLength = times == nil ? 0 : 2 * MemoryLayout<timespec>.size
        let to: Destination, len: Int
        if let pathArg {
            let (route, n) = try c.routePath(arg: pathArg, dirfd: dirfd,
                                            into: UnsafeMutableRawBufferPointer(rebasing: payload[timesLength...]),
                                            allowEmpty: flags & CSHIM_AT_EMPTY_PATH != 0)
            guard let d = route.destination else { return .continueSyscall }
            (to, len) = (d, n)
        } else {
            // NULL path: the descriptor itself (futimens).
            guard let p = try c.placeholder(fd: dirfd) else { return .continueSyscall }
            payload[timesLength] = 0
            (to, len) = (Destination(dir: p.handle, keep: p, isLocal: false), 1)
        }
        if var t = times { withUnsafeBytes(of: &t) { payload.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: timesLength) } }
        _ = try c.send(to, .utimensat, Scalars(to.dir, Int64(flags), times == nil ? 0 : 1), payloadLength: timesLength + len)
        return .value(0)
    }

    /// Both names on the same side, as for rename: otherwise EXDEV.
    private static func linkCommon(_ c: borrowing Call, oldDirfd: Int32, oldArg: Int, newDirfd: Int32, newArg: Int,
                                   flags: Int32) throws(Failure) -> Reply {
        let payload = c.worker.slot.payload(for: .linkat)
        let (oldRoute, oldLen) = try c.routePath(arg: oldArg, dirfd: oldDirfd, into: payload,
                                                 allowEmpty: flags & CSHIM_AT_EMPTY_PATH != 0)
        let (newRoute, newLen) = try c.routePath(arg: newArg, dirfd: newDirfd,
                                                 into: UnsafeMutableRawBufferPointer(rebasing: payload[oldLen...]))
        guard let to = try Destination.pair(oldRoute, newRoute) else { return .continueSyscall }
        defer { withExtendedLifetime(to) {} }
        _ = try c.send(to.0, .linkat, Scalars(to.0.dir, to.1.dir, Int64(flags)), payloadLength: oldLen + newLen)
        return .value(0)
    }

    /// The target is the link's content, not a name to route: only the link's own path is.
    private static func symlinkCommon(_ c: borrowing Call, targetArg: Int, dirfd: Int32, linkArg: Int) throws(Failure) -> Reply {
        let payload = c.worker.slot.payload(for: .symlinkat)
        let targetLength = try local { () throws(Errno) in
            try c.memory.readCString(c.address(targetArg), into: UnsafeMutableRawBufferPointer(rebasing: payload[0..<Int(PATH_MAX)]))
        } + 1
        let (route, len) = try c.routePath(arg: linkArg, dirfd: dirfd,
                                           into: UnsafeMutableRawBufferPointer(rebasing: payload[targetLength...]))
        guard let to = route.destination else { return .continueSyscall }
        _ = try c.send(to, .symlinkat, Scalars(to.dir), payloadLength: targetLength + len)
        return .value(0)
    }

    private static func mknodCommon(_ c: borrowing Call, dirfd: Int32, pathArg: Int, mode: UInt64, dev: UInt64) throws(Failure) -> Reply {
        let (route, len) = try c.routePath(arg: pathArg, dirfd: dirfd, into: c.worker.slot.payload(for: .mknodat))
        guard let to = route.destination else { return .continueSyscall }
        let m = UInt32(truncatingIfNeeded: mode)
        let masked = try (m & ~0o7777) | (m & 0o7777 & ~c.umask())
        _ = try c.send(to, .mknodat, Scalars(to.dir, Int64(masked), Int64(bitPattern: dev)), payloadLength: len)
        return .value(0)
    }

    private static func statfsReply(_ c: borrowing Call, _ r: ResponseView, to address: UInt64) throws(Failure) -> Reply {
        guard r.payload.count == Int(CSHIM_STATFS_SIZE) else { throw .transport(.lost) }
        try local { () throws(Errno) in try c.memory.write(address, from: r.payload.baseAddress!, count: r.payload.count) }
        return .value(0)
    }
}
