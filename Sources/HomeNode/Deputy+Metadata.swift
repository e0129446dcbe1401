import CShim
import Glibc
import SysKit
import Wire

/// Metadata, links, locks and extended attributes at home. Objects named by
/// path are opened O_PATH inside the export root first and then reached
/// through that descriptor (or its /proc/self/fd link), so the calls that
/// have no *at() form stay confined too.
extension Deputy {
    func executeMetadata(_ r: RequestView, _ out: UnsafeMutableRawBufferPointer) throws(Errno) -> (Int64, Int) {
        switch r.op {
        case .fchmodat:
            let mode = UInt32(truncatingIfNeeded: r.scalar(1)), flags = Int32(truncatingIfNeeded: r.scalar(2))
            _ = try onObject(r, pathAt: 0, follow: flags & AT_SYMLINK_NOFOLLOW == 0) { (fd, _) throws(Errno) in
                try sys { cshim_fchmodat2(fd, "", mode, CSHIM_AT_EMPTY_PATH) }
            }
            return (0, 0)

        case .fchownat:
            let uid = uid_t(truncatingIfNeeded: r.scalar(1)), gid = gid_t(truncatingIfNeeded: r.scalar(2))
            let flags = Int32(truncatingIfNeeded: r.scalar(3))
            _ = try onObject(r, pathAt: 0, follow: flags & AT_SYMLINK_NOFOLLOW == 0) { (fd, _) throws(Errno) in
                try sys { fchownat(fd, "", uid, gid, CSHIM_AT_EMPTY_PATH) }
            }
            return (0, 0)

        case .utimensat:
            let flags = Int32(truncatingIfNeeded: r.scalar(1)), hasTimes = r.scalar(2) != 0
            let timesLength = hasTimes ? 2 * MemoryLayout<timespec>.size : 0
            guard r.payload.count >= timesLength else { throw Errno.invalidArgument }
            var times = (timespec(), timespec())
            if hasTimes { withUnsafeMutableBytes(of: &times) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: r.payload[0..<timesLength])) } }
            _ = try onObject(r, pathAt: timesLength, follow: flags & AT_SYMLINK_NOFOLLOW == 0) { (fd, magic) throws(Errno) in
                try withUnsafePointer(to: &times) { (t) throws(Errno) in
                    let tp = hasTimes ? UnsafeRawPointer(t).assumingMemoryBound(to: timespec.self) : nil
                    // utimensat has no AT_EMPTY_PATH: reach an O_PATH object through its /proc link.
                    // Following the /proc link reaches the object itself (opened
                    // O_NOFOLLOW when the tracee asked not to follow).
                    try sys { cshim_utimensat(AT_FDCWD, magic, tp, 0) }
                }
            }
            return (0, 0)

        case .linkat:
            let (old, new) = try paths(r)
            let oldDir = try dir(r.scalar(0)), newDir = try dir(r.scalar(1))
            let flags = Int32(truncatingIfNeeded: r.scalar(2))
            if old.pointee == 0, let handle = oldDir {
                // The object itself (AT_EMPTY_PATH, or /proc/self/fd/N: an
                // O_TMPFILE getting its name): flink through the handle.
                _ = try root.withEntry(dir: newDir, new) { (d, name) throws(Errno) in
                    try sys { Glibc.linkat(handle, "", d, name, CSHIM_AT_EMPTY_PATH) }
                }
                return (0, 0)
            }
            let ofd = try root.open(dir: oldDir, old, flags: CSHIM_O_PATH | (flags & AT_SYMLINK_FOLLOW != 0 ? 0 : O_NOFOLLOW), mode: 0)
            defer { Glibc.close(ofd) }
            let magic = ProcLink(ofd)
            _ = try root.withEntry(dir: newDir, new) { (d, name) throws(Errno) in
                // Linking through the /proc link needs no CAP_DAC_READ_SEARCH (AT_EMPTY_PATH would).
                try magic.withCString { (m) throws(Errno) in try sys { Glibc.linkat(AT_FDCWD, m, d, name, AT_SYMLINK_FOLLOW) } }
            }
            return (0, 0)

        case .symlinkat:
            let (target, linkPath) = try paths(r)
            _ = try root.withEntry(dir: try dir(r.scalar(0)), linkPath) { (d, name) throws(Errno) in
                try sys { Glibc.symlinkat(target, d, name) }
            }
            return (0, 0)

        case .mknodat:
            let mode = mode_t(truncatingIfNeeded: r.scalar(1)), dev = dev_t(truncatingIfNeeded: r.scalar(2))
            _ = try root.withEntry(dir: try dir(r.scalar(0)), try path(r)) { (d, name) throws(Errno) in
                try sys { Glibc.mknodat(d, name, mode, dev) }
            }
            return (0, 0)

        case .statfs:
            guard out.count >= Int(CSHIM_STATFS_SIZE) else { throw Errno.invalidArgument }
            _ = try onObject(r, pathAt: 0, follow: true) { (fd, _) throws(Errno) in
                try sys { cshim_fstatfs(fd, out.baseAddress) }
            }
            return (0, Int(CSHIM_STATFS_SIZE))

        default:
            throw Errno.invalidArgument
        }
    }

    func executeDescriptor(_ r: RequestView, _ out: UnsafeMutableRawBufferPointer) throws(Errno) -> (Int64, Int) {
        switch r.op {
        case .fallocate:
            let fd = try handle(r.scalar(0))
            try sys { cshim_fallocate(fd, Int32(truncatingIfNeeded: r.scalar(1)), r.scalar(2), r.scalar(3)) }
            return (0, 0)

        case .fcntl:
            let fd = try handle(r.scalar(0)), cmd = Int32(truncatingIfNeeded: r.scalar(1))
            guard cmd == F_GETFL || cmd == F_SETFL else { throw Errno.invalidArgument }
            let v = try sys { cshim_fcntl_int(fd, cmd, Int(r.scalar(2))) }
            return (Int64(v), 0)

        case .lock:
            let fd = try handle(r.scalar(0)), cmd = Int32(truncatingIfNeeded: r.scalar(1))
            // Only the non-blocking, open-file-description forms: a blocking wait
            // is the client's (it retries), so one lock never stalls the session.
            guard [F_GETLK, F_SETLK, Deputy.F_OFD_GETLK, Deputy.F_OFD_SETLK].contains(cmd),
                  r.payload.count == MemoryLayout<flock>.size else { throw Errno.invalidArgument }
            var lock = flock()
            withUnsafeMutableBytes(of: &lock) { $0.copyMemory(from: r.payload) }
            try sys { cshim_fcntl_ptr(fd, cmd, &lock) }
            withUnsafeBytes(of: &lock) { out.copyMemory(from: $0) }
            return (0, MemoryLayout<flock>.size)

        case .flock:
            let fd = try handle(r.scalar(0))
            try sys { cshim_flock(fd, Int32(truncatingIfNeeded: r.scalar(1)) | LOCK_NB) }
            return (0, 0)

        case .copyFileRange:
            let input = try handle(r.scalar(0)), output = try handle(r.scalar(2))
            var inOff = r.scalar(1), outOff = r.scalar(3)
            let len = Int(min(max(r.scalar(4), 0), Int64(Int.max)))
            let flags = UInt32(truncatingIfNeeded: r.scalar(5))
            let n = try withUnsafeMutablePointer(to: &inOff) { (ip) throws(Errno) -> Int in
                try withUnsafeMutablePointer(to: &outOff) { (op) throws(Errno) -> Int in
                    try sys { cshim_copy_file_range(input, r.scalar(1) < 0 ? nil : ip, output, r.scalar(3) < 0 ? nil : op, len, flags) }
                }
            }
            return (Int64(n), 0)

        default:
            throw Errno.invalidArgument
        }
    }

    func executeXattr(_ r: RequestView, _ out: UnsafeMutableRawBufferPointer) throws(Errno) -> (Int64, Int) {
        let nofollow = r.scalar(1) != 0
        switch r.op {
        case .getxattr, .setxattr, .removexattr:
            let (nameBytes, pathOffset) = try string(r, at: 0)
            let name = nameBytes.baseAddress!.assumingMemoryBound(to: CChar.self)
            let (_, valueOffset) = try string(r, at: pathOffset)
            return try onObject(r, pathAt: pathOffset, follow: !nofollow) { (fd, magic) throws(Errno) -> (Int64, Int) in
                switch r.op {
                case .getxattr:
                    let size = try count(r.scalar(2), out)
                    let n = try sys { cshim_getxattr(fd, magic, 0, name, size == 0 ? nil : out.baseAddress, size) }
                    return (Int64(n), size == 0 ? 0 : n)
                case .setxattr:
                    let value = UnsafeRawBufferPointer(rebasing: r.payload[valueOffset...])
                    guard value.count == Int(r.scalar(3)) else { throw Errno.invalidArgument }
                    try sys { cshim_setxattr(fd, magic, 0, name, value.baseAddress, value.count, Int32(truncatingIfNeeded: r.scalar(2))) }
                    return (0, 0)
                default:
                    try sys { cshim_removexattr(fd, magic, 0, name) }
                    return (0, 0)
                }
            }
        case .listxattr:
            let size = try count(r.scalar(2), out)
            return try onObject(r, pathAt: 0, follow: !nofollow) { (fd, magic) throws(Errno) -> (Int64, Int) in
                let n = try sys { cshim_listxattr(fd, magic, 0, size == 0 ? nil : out.baseAddress!.assumingMemoryBound(to: CChar.self), size) }
                return (Int64(n), size == 0 ? 0 : n)
            }
        default:
            throw Errno.invalidArgument
        }
    }

    static let F_OFD_GETLK: Int32 = 36
    static let F_OFD_SETLK: Int32 = 37

    /// Runs `body` on the object a request names: the payload string at
    /// `pathAt` resolved against the request's dir scalar (0), or, for an
    /// empty path, the handle itself (the f*() forms). `body` gets a
    /// descriptor and its /proc/self/fd link, for calls that need a path
    /// (the link reaches O_PATH descriptors too).
    private func onObject<R>(_ r: RequestView, pathAt offset: Int, follow: Bool,
                             _ body: (CInt, UnsafePointer<CChar>) throws(Errno) -> R) throws(Errno) -> R {
        let (pathBytes, _) = try string(r, at: offset)
        let path = pathBytes.baseAddress!.assumingMemoryBound(to: CChar.self)
        let d = try dir(r.scalar(0))
        if path.pointee == 0 {
            guard let d else { throw Errno.noSuchFileOrDirectory }
            return try ProcLink(d).withCString { (magic) throws(Errno) -> R in try body(d, magic) }
        }
        let fd = try root.open(dir: d, path, flags: CSHIM_O_PATH | (follow ? 0 : O_NOFOLLOW), mode: 0)
        defer { Glibc.close(fd) }
        let link = ProcLink(fd)
        return try link.withCString { (magic) throws(Errno) -> R in try body(fd, magic) }
    }

    private func string(_ r: RequestView, at offset: Int) throws(Errno) -> (UnsafeRawBufferPointer, Int) {
        do { return try r.cString(at: offset) } catch { throw Errno.invalidArgument }
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
