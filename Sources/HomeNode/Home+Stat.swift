import CShim
import Glibc
import SysKit
import Wire

/// Attributes and access checks, at home.
enum HomeStat {
    /// Implements fstat(2) (statx with AT_EMPTY_PATH): scalars [handle].
    static func fstat(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let fd = try c.handle(c.r.scalar(0)), out = c.out
        try sys { cshim_statx(fd, "", CSHIM_AT_EMPTY_PATH, CSHIM_STATX_BASIC_STATS, out.baseAddress) }
        return (0, 256)
    }

    /// Implements statx(2): scalars [dir, flags, mask]; payload: path.
    static func statx(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        try statx(c, dir: try c.dir(c.r.scalar(0)), try c.path())
    }

    /// statx(2) of `target` relative to `dir` (nil: the root), with the
    /// request's flags and mask.
    static func statx(_ c: HomeCall, dir: CInt?, _ target: UnsafePointer<CChar>) throws(Errno) -> (Int64, Int) {
        let flags = c.int(1), mask = UInt32(truncatingIfNeeded: c.r.scalar(2)), out = c.out
        let sync = flags & CSHIM_AT_STATX_SYNC_TYPE
        if target.pointee == 0, let d = dir {
            // fstatat(fd, "", AT_EMPTY_PATH) (glibc's fstat), or a stat of
            // /proc/self/fd/N: the object itself.
            try sys { cshim_statx(d, "", CSHIM_AT_EMPTY_PATH | sync, mask, out.baseAddress) }
            return (0, 256)
        }
        try c.withObject(dir: dir, target, follow: flags & AT_SYMLINK_NOFOLLOW == 0) {
            (d, p, extra) throws(Errno) in
            let f = extra != 0 ? (extra | sync) : flags
            try sys { cshim_statx(d, p, f, mask, out.baseAddress) }
        }
        return (0, 256)
    }

    /// Implements faccessat2(2): scalars [dir, mode, flags]; payload: path.
    static func faccessat(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let mode = c.int(1), flags = c.int(2)
        if try c.path().pointee == 0, let d = try c.dir(c.r.scalar(0)) {
            try sys { cshim_faccessat2(d, "", mode, (flags & AT_EACCESS) | CSHIM_AT_EMPTY_PATH) }
            return (0, 0)
        }
        _ = try c.withObject(dir: try c.dir(c.r.scalar(0)), try c.path(), follow: flags & AT_SYMLINK_NOFOLLOW == 0) {
            (d, p, extra) throws(Errno) in
            try sys { cshim_faccessat2(d, p, mode, (flags & AT_EACCESS) | (extra != 0 ? extra : flags)) }
        }
        return (0, 0)
    }

    /// Implements statfs(2) and fstatfs(2): scalars [dir]; payload: path (empty: the handle).
    static func statfs(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let out = c.out
        guard out.count >= Int(CSHIM_STATFS_SIZE) else { throw Errno.invalidArgument }
        _ = try HomeMetadata.onObject(c, pathAt: 0, follow: true) { (fd, _) throws(Errno) in
            try sys { cshim_fstatfs(fd, out.baseAddress) }
        }
        return (0, Int(CSHIM_STATFS_SIZE))
    }
}
