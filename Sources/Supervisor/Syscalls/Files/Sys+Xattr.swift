import CShim
import Glibc
import SysKit
import Wire

/// Extended attributes, executed at home. Payloads: name NUL path NUL
/// [value]; the f*() forms send an empty path and the handle as dir.
enum Xattr {
    /// Implements getxattr(2).
    static func getxattr(_ c: borrowing Call) throws(Failure) -> Reply { try get(c, nofollow: false, byFD: false) }
    /// Implements lgetxattr(2).
    static func lgetxattr(_ c: borrowing Call) throws(Failure) -> Reply { try get(c, nofollow: true, byFD: false) }
    /// Implements fgetxattr(2).
    static func fgetxattr(_ c: borrowing Call) throws(Failure) -> Reply { try get(c, nofollow: false, byFD: true) }
    /// Implements setxattr(2).
    static func setxattr(_ c: borrowing Call) throws(Failure) -> Reply { try set(c, nofollow: false, byFD: false) }
    /// Implements lsetxattr(2).
    static func lsetxattr(_ c: borrowing Call) throws(Failure) -> Reply { try set(c, nofollow: true, byFD: false) }
    /// Implements fsetxattr(2).
    static func fsetxattr(_ c: borrowing Call) throws(Failure) -> Reply { try set(c, nofollow: false, byFD: true) }
    /// Implements listxattr(2).
    static func listxattr(_ c: borrowing Call) throws(Failure) -> Reply { try list(c, nofollow: false, byFD: false) }
    /// Implements llistxattr(2).
    static func llistxattr(_ c: borrowing Call) throws(Failure) -> Reply { try list(c, nofollow: true, byFD: false) }
    /// Implements flistxattr(2).
    static func flistxattr(_ c: borrowing Call) throws(Failure) -> Reply { try list(c, nofollow: false, byFD: true) }
    /// Implements removexattr(2).
    static func removexattr(_ c: borrowing Call) throws(Failure) -> Reply { try remove(c, nofollow: false, byFD: false) }
    /// Implements lremovexattr(2).
    static func lremovexattr(_ c: borrowing Call) throws(Failure) -> Reply { try remove(c, nofollow: true, byFD: false) }
    /// Implements fremovexattr(2).
    static func fremovexattr(_ c: borrowing Call) throws(Failure) -> Reply { try remove(c, nofollow: false, byFD: true) }

    /// XATTR_NAME_MAX + 1, XATTR_SIZE_MAX.
    static let nameMax = 256, sizeMax = 65536

    // MARK: shared

    /// Writes "name NUL path NUL" into `op`'s payload (name: argument 1;
    /// path or descriptor: argument 0). Nil when the kernel can do it itself.
    private static func target(_ c: borrowing Call, _ op: Op, nameArg: Int?, byFD: Bool) throws(Failure)
        -> (to: Destination, length: Int)? {
        let payload = c.worker.slot.payload(for: op)
        var used = 0
        if let nameArg {
            let n = try local { () throws(Errno) in
                try c.memory.readCString(c.address(nameArg), into: UnsafeMutableRawBufferPointer(rebasing: payload[0..<nameMax]))
            }
            guard n > 0 else { throw .errno(.outOfRange) }
            used = n + 1
        }
        if byFD {
            guard let p = try c.placeholder(fd: c.fd(0)) else { return nil }
            payload[used] = 0
            return (Destination(dir: p.handle, keep: p, isLocal: false), used + 1)
        }
        let (route, len) = try c.routePath(arg: 0, dirfd: AT_FDCWD, into: UnsafeMutableRawBufferPointer(rebasing: payload[used...]))
        guard let to = route.destination else { return nil }
        return (to, used + len)
    }

    private static func get(_ c: borrowing Call, nofollow: Bool, byFD: Bool) throws(Failure) -> Reply {
        guard let t = try target(c, .getxattr, nameArg: 1, byFD: byFD) else { return .continueSyscall }
        let size = min(c.size(3), sizeMax)
        let r = try c.send(t.to, .getxattr, Scalars(t.to.dir, nofollow ? 1 : 0, Int64(size)), payloadLength: t.length)
        if size > 0 {
            try local { () throws(Errno) in try c.memory.write(c.address(2), from: r.payload.baseAddress!, count: r.payload.count) }
        }
        return .value(r.result)
    }

    private static func set(_ c: borrowing Call, nofollow: Bool, byFD: Bool) throws(Failure) -> Reply {
        guard let t = try target(c, .setxattr, nameArg: 1, byFD: byFD) else { return .continueSyscall }
        let size = c.size(3)
        guard size <= sizeMax else { throw .errno(.outOfRange) }
        let payload = c.worker.slot.payload(for: .setxattr)
        try local { () throws(Errno) in try c.memory.readExactly(c.address(2), into: payload.baseAddress! + t.length, count: size) }
        _ = try c.send(t.to, .setxattr, Scalars(t.to.dir, nofollow ? 1 : 0, Int64(c.int(4)), Int64(size)), payloadLength: t.length + size)
        return .value(0)
    }

    private static func list(_ c: borrowing Call, nofollow: Bool, byFD: Bool) throws(Failure) -> Reply {
        guard let t = try target(c, .listxattr, nameArg: nil, byFD: byFD) else { return .continueSyscall }
        let size = min(c.size(2), sizeMax)
        let r = try c.send(t.to, .listxattr, Scalars(t.to.dir, nofollow ? 1 : 0, Int64(size)), payloadLength: t.length)
        if size > 0 {
            try local { () throws(Errno) in try c.memory.write(c.address(1), from: r.payload.baseAddress!, count: r.payload.count) }
        }
        return .value(r.result)
    }

    private static func remove(_ c: borrowing Call, nofollow: Bool, byFD: Bool) throws(Failure) -> Reply {
        guard let t = try target(c, .removexattr, nameArg: 1, byFD: byFD) else { return .continueSyscall }
        _ = try c.send(t.to, .removexattr, Scalars(t.to.dir, nofollow ? 1 : 0), payloadLength: t.length)
        return .value(0)
    }
}
