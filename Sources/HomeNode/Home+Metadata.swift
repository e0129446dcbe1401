import CShim
import Glibc
import SysKit
import Wire

/// Modes, owners, times and links, at home. Objects named by path are
/// opened O_PATH inside the export root first and then reached through that
/// descriptor (or its /proc/self/fd link), so the calls that have no *at()
/// form stay confined too.
enum HomeMetadata {
    /// Implements fchmodat2(2): scalars [dir, mode, flags]; payload: path.
    static func fchmodat(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let asked = UInt32(truncatingIfNeeded: c.r.scalar(1)), flags = c.int(2)
        let confined = c.session.root.confined
        _ = try onObject(c, pathAt: 0, follow: flags & AT_SYMLINK_NOFOLLOW == 0) { (fd, _) throws(Errno) in
            var mode = asked
            if confined {
                // Confined: no set-id bits (set-gid stays on directories).
                var st = stat()
                try sys { fstat(fd, &st) }
                mode = Confinement.createMode(mode, directory: st.st_mode & S_IFMT == S_IFDIR)
            }
            try sys { cshim_fchmodat2(fd, "", mode, CSHIM_AT_EMPTY_PATH) }
        }
        return (0, 0)
    }

    /// Implements fchownat(2): scalars [dir, uid, gid, flags]; payload: path.
    static func fchownat(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let uid = uid_t(truncatingIfNeeded: c.r.scalar(1)), gid = gid_t(truncatingIfNeeded: c.r.scalar(2))
        let flags = c.int(3)
        _ = try onObject(c, pathAt: 0, follow: flags & AT_SYMLINK_NOFOLLOW == 0) { (fd, _) throws(Errno) in
            try sys { Glibc.fchownat(fd, "", uid, gid, CSHIM_AT_EMPTY_PATH) }
        }
        return (0, 0)
    }

    /// Implements utimensat(2): scalars [dir, flags, hasTimes]; payload: times, path.
    static func utimensat(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let flags = c.int(1), hasTimes = c.r.scalar(2) != 0
        let timesLength = hasTimes ? 2 * MemoryLayout<timespec>.size : 0
        guard c.r.payload.count >= timesLength else { throw Errno.invalidArgument }
        var times = (timespec(), timespec())
        if hasTimes {
            withUnsafeMutableBytes(of: &times) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: c.r.payload[0..<timesLength])) }
        }
        _ = try onObject(c, pathAt: timesLength, follow: flags & AT_SYMLINK_NOFOLLOW == 0) { (fd, magic) throws(Errno) in
            try withUnsafePointer(to: &times) { (t) throws(Errno) in
                let tp = hasTimes ? UnsafeRawPointer(t).assumingMemoryBound(to: timespec.self) : nil
                // utimensat has no AT_EMPTY_PATH: reach the O_PATH object
                // through its /proc link (opened O_NOFOLLOW when the tracee
                // asked not to follow).
                try sys { cshim_utimensat(AT_FDCWD, magic, tp, 0) }
            }
        }
        return (0, 0)
    }

    /// Implements linkat(2): scalars [olddir, newdir, flags]; payload: oldpath, newpath.
    static func linkat(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let (old, new) = try c.paths()
        let oldDir = try c.dir(c.r.scalar(0)), newDir = try c.dir(c.r.scalar(1))
        let flags = c.int(2)
        if old.pointee == 0, let handle = oldDir {
            // The object itself (AT_EMPTY_PATH, or /proc/self/fd/N: an
            // O_TMPFILE getting its name): flink through the handle.
            _ = try c.withEntry(dir: newDir, new) { (d, name) throws(Errno) in
                try sys { Glibc.linkat(handle, "", d, name, CSHIM_AT_EMPTY_PATH) }
            }
            return (0, 0)
        }
        let ofd = try c.open(dir: oldDir, old, flags: CSHIM_O_PATH | (flags & AT_SYMLINK_FOLLOW != 0 ? 0 : O_NOFOLLOW), mode: 0)
        defer { Glibc.close(ofd) }
        let magic = ProcLink(ofd)
        _ = try c.withEntry(dir: newDir, new) { (d, name) throws(Errno) in
            // Linking through the /proc link needs no CAP_DAC_READ_SEARCH (AT_EMPTY_PATH would).
            try magic.withCString { (m) throws(Errno) in try sys { Glibc.linkat(AT_FDCWD, m, d, name, AT_SYMLINK_FOLLOW) } }
        }
        return (0, 0)
    }

    /// Implements symlinkat(2): scalars [newdir]; payload: target, linkpath.
    static func symlinkat(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let (target, linkPath) = try c.paths()
        _ = try c.withEntry(dir: try c.dir(c.r.scalar(0)), linkPath) { (d, name) throws(Errno) in
            try sys { Glibc.symlinkat(target, d, name) }
        }
        return (0, 0)
    }

    /// Implements mknodat(2): scalars [dir, mode, dev]; payload: path.
    static func mknodat(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        var mode = mode_t(truncatingIfNeeded: c.r.scalar(1))
        let dev = dev_t(truncatingIfNeeded: c.r.scalar(2))
        if c.session.root.confined { mode = try Confinement.mknodMode(mode) }
        _ = try c.withEntry(dir: try c.dir(c.r.scalar(0)), try c.path()) { (d, name) throws(Errno) in
            try sys { Glibc.mknodat(d, name, mode, dev) }
        }
        return (0, 0)
    }

    /// Runs `body` on the object a request names: the payload string at
    /// `pathAt` resolved against the request's dir scalar (0), or, for an
    /// empty path, the handle itself (the f*() forms). `body` gets a
    /// descriptor and its /proc/self/fd link, for calls that need a path
    /// (the link reaches O_PATH descriptors too).
    static func onObject<R>(_ c: HomeCall, pathAt offset: Int, follow: Bool,
                            _ body: (CInt, UnsafePointer<CChar>) throws(Errno) -> R) throws(Errno) -> R {
        let (pathBytes, _) = try c.string(at: offset)
        let path = pathBytes.baseAddress!.assumingMemoryBound(to: CChar.self)
        let d = try c.dir(c.r.scalar(0))
        if path.pointee == 0 {
            guard let d else { throw Errno.noSuchFileOrDirectory }
            return try ProcLink(d).withCString { (magic) throws(Errno) -> R in try body(d, magic) }
        }
        let fd = try c.open(dir: d, path, flags: CSHIM_O_PATH | (follow ? 0 : O_NOFOLLOW), mode: 0)
        defer { Glibc.close(fd) }
        return try ProcLink(fd).withCString { (magic) throws(Errno) -> R in try body(fd, magic) }
    }
}

/// "/proc/self/fd/N" for a descriptor, without allocating.
struct ProcLink {
    var bytes: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)

    init(_ fd: CInt) {
        withUnsafeMutableBytes(of: &bytes) { raw in
            let prefix = Array("/proc/self/fd/".utf8)
            var i = 0
            for b in prefix { raw[i] = b; i += 1 }
            var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
            var n = Int(fd), k = 0
            withUnsafeMutableBytes(of: &digits) { d in
                repeat { d[k] = UInt8(ascii: "0") + UInt8(n % 10); n /= 10; k += 1 } while n > 0
                while k > 0 { k -= 1; raw[i] = d[k]; i += 1 }
            }
            raw[i] = 0
        }
    }

    func withCString<R>(_ body: (UnsafePointer<CChar>) throws(Errno) -> R) throws(Errno) -> R {
        var copy = bytes
        return try withUnsafeBytes(of: &copy) { (raw) throws(Errno) -> R in
            try body(raw.baseAddress!.assumingMemoryBound(to: CChar.self))
        }
    }
}
