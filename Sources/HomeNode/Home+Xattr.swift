import CShim
import Glibc
import SysKit
import Wire

/// Extended attributes, at home: every form (path, l-, f-) reaches the
/// object through `HomeMetadata.onObject`.
enum HomeXattr {
    /// Implements getxattr(2) and its forms: scalars [dir, nofollow, size]; payload: name, path.
    static func getxattr(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let (name, pathAt) = try c.string(at: 0)
        let size = try c.count(c.r.scalar(2)), out = c.out
        return try HomeMetadata.onObject(c, pathAt: pathAt, follow: c.r.scalar(1) == 0) { (fd, magic) throws(Errno) -> (Int64, Int) in
            let n = try sys { cshim_getxattr(fd, magic, 0, cString(name), size == 0 ? nil : out.baseAddress, size) }
            return (Int64(n), size == 0 ? 0 : n)
        }
    }

    /// Implements setxattr(2) and its forms: scalars [dir, nofollow, flags, valueLength];
    /// payload: name, path, value.
    static func setxattr(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let (name, pathAt) = try c.string(at: 0)
        let (_, valueAt) = try c.string(at: pathAt)
        let value = UnsafeRawBufferPointer(rebasing: c.r.payload[valueAt...])
        guard value.count == Int(c.r.scalar(3)) else { throw Errno.invalidArgument }
        let flags = c.int(2)
        if c.session.root.confined && Confinement.grantsPrivilege(xattr: name) { throw Errno.notPermitted }
        return try HomeMetadata.onObject(c, pathAt: pathAt, follow: c.r.scalar(1) == 0) { (fd, magic) throws(Errno) -> (Int64, Int) in
            try sys { cshim_setxattr(fd, magic, 0, cString(name), value.baseAddress, value.count, flags) }
            return (0, 0)
        }
    }

    /// Implements listxattr(2) and its forms: scalars [dir, nofollow, size]; payload: path.
    static func listxattr(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let size = try c.count(c.r.scalar(2)), out = c.out
        return try HomeMetadata.onObject(c, pathAt: 0, follow: c.r.scalar(1) == 0) { (fd, magic) throws(Errno) -> (Int64, Int) in
            let list = size == 0 ? nil : out.baseAddress!.assumingMemoryBound(to: CChar.self)
            let n = try sys { cshim_listxattr(fd, magic, 0, list, size) }
            return (Int64(n), size == 0 ? 0 : n)
        }
    }

    /// Implements removexattr(2) and its forms: scalars [dir, nofollow]; payload: name, path.
    static func removexattr(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let (name, pathAt) = try c.string(at: 0)
        return try HomeMetadata.onObject(c, pathAt: pathAt, follow: c.r.scalar(1) == 0) { (fd, magic) throws(Errno) -> (Int64, Int) in
            try sys { cshim_removexattr(fd, magic, 0, cString(name)) }
            return (0, 0)
        }
    }

    private static func cString(_ bytes: UnsafeRawBufferPointer) -> UnsafePointer<CChar> {
        bytes.baseAddress!.assumingMemoryBound(to: CChar.self)
    }
}
