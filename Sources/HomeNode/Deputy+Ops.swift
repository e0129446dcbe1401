import CShim
import Glibc
import SysKit
import Wire

/// The home side of each operation: one case per `Op`, each a few lines
/// over the export root. Errors leave as the home kernel's errno.
extension Deputy {
    /// Executes one request; writes any payload into `out` and returns
    /// (result, payload length).
    func execute(_ r: RequestView, _ out: UnsafeMutableRawBufferPointer) throws(Errno) -> (Int64, Int) {
        switch r.op {
        case .openat:
            let fd = try root.open(dir: try dir(r.scalar(0)), try path(r), flags: Int32(truncatingIfNeeded: r.scalar(1)),
                                   mode: UInt32(truncatingIfNeeded: r.scalar(2)), resolve: UInt64(bitPattern: r.scalar(3)))
            handles.insert(fd)
            return (Int64(fd), 0)

        case .close:
            let fd = try handle(r.scalar(0))
            handles.remove(fd)
            Glibc.close(fd)
            return (0, 0)

        case .read:
            let fd = try handle(r.scalar(0)), want = try count(r.scalar(1), out)
            let n = try sys { Glibc.read(fd, out.baseAddress, want) }
            return (Int64(n), n)

        case .pread:
            let fd = try handle(r.scalar(0)), want = try count(r.scalar(1), out)
            let n = try sys { Glibc.pread(fd, out.baseAddress, want, off_t(r.scalar(2))) }
            return (Int64(n), n)

        case .write:
            let fd = try handle(r.scalar(0))
            let n = try sys { Glibc.write(fd, r.payload.baseAddress, r.payload.count) }
            return (Int64(n), 0)

        case .pwrite:
            let fd = try handle(r.scalar(0))
            let n = try sys { Glibc.pwrite(fd, r.payload.baseAddress, r.payload.count, off_t(r.scalar(1))) }
            return (Int64(n), 0)

        case .lseek:
            let fd = try handle(r.scalar(0))
            let off = try sys { Glibc.lseek(fd, off_t(r.scalar(1)), Int32(truncatingIfNeeded: r.scalar(2))) }
            return (Int64(off), 0)

        case .fstat:
            let fd = try handle(r.scalar(0))
            try sys { cshim_statx(fd, "", CSHIM_AT_EMPTY_PATH, CSHIM_STATX_BASIC_STATS, out.baseAddress) }
            return (0, 256)

        case .statx:
            let flags = Int32(truncatingIfNeeded: r.scalar(1))
            let mask = UInt32(truncatingIfNeeded: r.scalar(2))
            let sync = flags & CSHIM_AT_STATX_SYNC_TYPE
            let target = try path(r)
            if target.pointee == 0, let d = try dir(r.scalar(0)) {
                // fstatat(fd, "", AT_EMPTY_PATH) (glibc's fstat), or a stat of
                // /proc/self/fd/N: the object itself.
                try sys { cshim_statx(d, "", CSHIM_AT_EMPTY_PATH | sync, mask, out.baseAddress) }
                return (0, 256)
            }
            try root.withObject(dir: try dir(r.scalar(0)), target, follow: flags & AT_SYMLINK_NOFOLLOW == 0) {
                (d, p, extra) throws(Errno) in
                let f = extra != 0 ? (extra | sync) : flags
                try sys { cshim_statx(d, p, f, mask, out.baseAddress) }
            }
            return (0, 256)

        case .faccessat:
            let mode = Int32(truncatingIfNeeded: r.scalar(1))
            let flags = Int32(truncatingIfNeeded: r.scalar(2))
            if try path(r).pointee == 0, let d = try dir(r.scalar(0)) {
                try sys { cshim_faccessat2(d, "", mode, (flags & AT_EACCESS) | CSHIM_AT_EMPTY_PATH) }
                return (0, 0)
            }
            _ = try root.withObject(dir: try dir(r.scalar(0)), try path(r), follow: flags & AT_SYMLINK_NOFOLLOW == 0) {
                (d, p, extra) throws(Errno) in
                try sys { cshim_faccessat2(d, p, mode, (flags & AT_EACCESS) | (extra != 0 ? extra : flags)) }
            }
            return (0, 0)

        case .getdents64:
            let fd = try handle(r.scalar(0)), want = try count(r.scalar(1), out)
            let n = try sys { cshim_getdents64(fd, out.baseAddress, want) }
            return (Int64(n), n)

        case .mkdirat:
            let mode = mode_t(truncatingIfNeeded: r.scalar(1))
            _ = try root.withEntry(dir: try dir(r.scalar(0)), try path(r)) { (d, name) throws(Errno) in
                try sys { mkdirat(d, name, mode) }
            }
            return (0, 0)

        case .unlinkat:
            let flags = Int32(truncatingIfNeeded: r.scalar(1))
            _ = try root.withEntry(dir: try dir(r.scalar(0)), try path(r)) { (d, name) throws(Errno) in
                try sys { unlinkat(d, name, flags) }
            }
            return (0, 0)

        case .renameat2:
            let (old, new) = try paths(r)
            let oldDir = try dir(r.scalar(0)), newDir = try dir(r.scalar(1))
            let flags = UInt32(truncatingIfNeeded: r.scalar(2))
            _ = try root.withEntry(dir: oldDir, old, slot: 0) { (od, oname) throws(Errno) in
                try root.withEntry(dir: newDir, new, slot: 1) { (nd, nname) throws(Errno) in
                    try sys { cshim_renameat2(od, oname, nd, nname, flags) }
                }
            }
            return (0, 0)

        case .readlinkat:
            let size = try count(r.scalar(1), out)
            if try path(r).pointee == 0, let d = try dir(r.scalar(0)) {
                // readlink of /proc/self/fd/N: the file's name as the tracee sees it.
                let n = min(try root.pathInRoot(of: d, into: out), size)
                return (Int64(n), n)
            }
            let n = try root.withObject(dir: try dir(r.scalar(0)), try path(r), follow: false) {
                (d, p, _) throws(Errno) -> Int in
                try sys { readlinkat(d, p, out.baseAddress!.assumingMemoryBound(to: CChar.self), size) }
            }
            return (Int64(n), n)

        case .ftruncate:
            let fd = try handle(r.scalar(0))
            try sys { Glibc.ftruncate(fd, off_t(r.scalar(1))) }
            return (0, 0)

        case .truncate:
            let fd = try root.open(dir: try dir(r.scalar(0)), try path(r), flags: O_WRONLY | O_NONBLOCK | O_NOCTTY, mode: 0)
            defer { Glibc.close(fd) }
            try sys { Glibc.ftruncate(fd, off_t(r.scalar(1))) }
            return (0, 0)

        case .fsync:
            let fd = try handle(r.scalar(0))
            if r.scalar(1) != 0 { try sys { fdatasync(fd) } } else { try sys { Glibc.fsync(fd) } }
            return (0, 0)

        case .chdir:
            let fd = try root.open(dir: try dir(r.scalar(0)), try path(r), flags: CSHIM_O_PATH | O_DIRECTORY, mode: 0)
            do {
                try sys { cshim_faccessat2(fd, "", X_OK, CSHIM_AT_EMPTY_PATH) }
                let n = try root.pathInRoot(of: fd, into: out)
                handles.insert(fd)
                return (Int64(fd), n)
            } catch {
                Glibc.close(fd)
                throw error
            }

        case .getcwd:
            let n = try root.pathInRoot(of: try handle(r.scalar(0)), into: out)
            return (Int64(n), n)

        case .cancel:
            // Requests run in arrival order, so the one named has finished.
            return (0, 0)

        case .echo:
            let n = try count(r.scalar(0), out)
            memset(out.baseAddress!, 0, n)
            return (Int64(n), n)

        case .fchmodat, .fchownat, .utimensat, .linkat, .symlinkat, .mknodat, .statfs:
            return try executeMetadata(r, out)

        case .fallocate, .fcntl, .lock, .flock, .copyFileRange:
            return try executeDescriptor(r, out)

        case .getxattr, .setxattr, .listxattr, .removexattr:
            return try executeXattr(r, out)

        case .hello, .challenge, .authenticate, .welcome, .refused:
            throw Errno.invalidArgument
        }
    }

    /// A handle scalar naming one of this session's descriptors.
    func handle(_ value: Int64) throws(Errno) -> CInt {
        guard value >= 0, value <= Int64(Int32.max), handles.contains(CInt(value)) else { throw Errno.badFileDescriptor }
        return CInt(value)
    }

    /// A directory scalar: the export root or a handle.
    func dir(_ value: Int64) throws(Errno) -> CInt? {
        value == Wire.rootDir ? nil : try handle(value)
    }

    /// A byte count, bounded by the payload space.
    func count(_ value: Int64, _ out: UnsafeMutableRawBufferPointer) throws(Errno) -> Int {
        guard value >= 0 else { throw Errno.invalidArgument }
        return Int(min(value, Int64(min(out.count, Wire.maxPayload))))
    }

    func path(_ r: RequestView) throws(Errno) -> UnsafePointer<CChar> {
        do { return try r.path().baseAddress!.assumingMemoryBound(to: CChar.self) } catch { throw Errno.invalidArgument }
    }

    func paths(_ r: RequestView) throws(Errno) -> (UnsafePointer<CChar>, UnsafePointer<CChar>) {
        do {
            let (a, b) = try r.twoPaths()
            return (a.baseAddress!.assumingMemoryBound(to: CChar.self), b.baseAddress!.assumingMemoryBound(to: CChar.self))
        } catch { throw Errno.invalidArgument }
    }
}
