import CShim
import Glibc
import SysKit
import Wire

/// Opening, naming and the working directory, at home. Paths resolve
/// beneath the export root (`ExportRoot`).
enum HomeFiles {
    /// Implements openat2(2): scalars [dir, flags, mode, resolve]. A
    /// terminal never becomes the deputy's controlling terminal; a
    /// character device is made blocking (the client's pump reads it; the
    /// tracee keeps O_NONBLOCK on its placeholder) and says so in the reply.
    static func openat(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let flags = c.int(1)
        // (openat2 refuses O_NOCTTY beside O_PATH.)
        let fd = try c.open(dir: try c.dir(c.r.scalar(0)), try c.path(), flags: flags & CSHIM_O_PATH != 0 ? flags : flags | O_NOCTTY,
                            mode: UInt32(truncatingIfNeeded: c.r.scalar(2)), resolve: UInt64(bitPattern: c.r.scalar(3)))
        var st = stat()
        let device = flags & CSHIM_O_PATH == 0 && fstat(fd, &st) == 0 && st.st_mode & S_IFMT == S_IFCHR
        if device && flags & O_NONBLOCK != 0 {
            _ = cshim_fcntl_int(fd, F_SETFL, Int(flags & ~O_NONBLOCK & ~O_ACCMODE))
        }
        try c.session.handles.insert(fd, kind: Handles.kind(of: fd))
        if !device { return (Int64(fd), 0) }
        c.out.storeBytes(of: Wire.openedDevice, toByteOffset: 0, as: UInt8.self)
        return (Int64(fd), 1)
    }

    /// Implements close(2) of a handle: it closes once no call uses it.
    static func close(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        // A socket's calls blocked in recv or accept would keep it open
        // until the peer spoke: shutdown ends them now.
        if c.session.handles.kind(c.r.scalar(0)) == .stream, let fd = CInt(exactly: c.r.scalar(0)) {
            _ = Glibc.shutdown(fd, Int32(SHUT_RDWR))
        }
        try c.session.handles.close(c.r.scalar(0))
        c.session.forgetStreamTurn(c.r.scalar(0))
        return (0, 0)
    }

    /// Implements chdir(2): returns a directory handle and its path in the root.
    static func chdir(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let fd = try c.open(dir: try c.dir(c.r.scalar(0)), try c.path(), flags: CSHIM_O_PATH | O_DIRECTORY, mode: 0)
        do {
            try sys { cshim_faccessat2(fd, "", X_OK, CSHIM_AT_EMPTY_PATH) }
            let n = try c.session.root.pathInRoot(of: fd, into: c.out)
            try c.session.handles.insert(fd, kind: .file)
            return (Int64(fd), n)
        } catch {
            Glibc.close(fd)
            throw error
        }
    }

    /// Implements getcwd(2) of a directory handle.
    static func getcwd(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let n = try c.session.root.pathInRoot(of: try c.handle(c.r.scalar(0)), into: c.out)
        return (Int64(n), n)
    }

    /// Implements mkdirat(2).
    static func mkdirat(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        // mkdir never takes set-id bits from the mode (the kernel's rule), confined or not.
        let mode = mode_t(truncatingIfNeeded: c.r.scalar(1))
        _ = try c.withEntry(dir: try c.dir(c.r.scalar(0)), try c.path()) { (d, name) throws(Errno) in
            try sys { Glibc.mkdirat(d, name, mode) }
        }
        return (0, 0)
    }

    /// Implements unlinkat(2).
    static func unlinkat(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let flags = c.int(1)
        _ = try c.withEntry(dir: try c.dir(c.r.scalar(0)), try c.path()) { (d, name) throws(Errno) in
            try sys { Glibc.unlinkat(d, name, flags) }
        }
        return (0, 0)
    }

    /// Implements renameat2(2).
    static func renameat2(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let (old, new) = try c.paths()
        let oldDir = try c.dir(c.r.scalar(0)), newDir = try c.dir(c.r.scalar(1))
        let flags = UInt32(truncatingIfNeeded: c.r.scalar(2))
        _ = try c.withEntry(dir: oldDir, old, slot: 0) { (od, oname) throws(Errno) in
            try c.withEntry(dir: newDir, new, slot: 1) { (nd, nname) throws(Errno) in
                try sys { cshim_renameat2(od, oname, nd, nname, flags) }
            }
        }
        return (0, 0)
    }

    /// Implements readlinkat(2).
    static func readlinkat(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let size = try c.count(c.r.scalar(1))
        let out = c.out
        if try c.path().pointee == 0, let d = try c.dir(c.r.scalar(0)) {
            // readlink of /proc/self/fd/N: the file's name as the tracee sees it.
            let n = min(try c.session.root.pathInRoot(of: d, into: out), size)
            return (Int64(n), n)
        }
        let n = try c.withObject(dir: try c.dir(c.r.scalar(0)), try c.path(), follow: false) { (d, p, _) throws(Errno) -> Int in
            try sys { Glibc.readlinkat(d, p, out.baseAddress!.assumingMemoryBound(to: CChar.self), size) }
        }
        return (Int64(n), n)
    }

    /// Implements truncate(2).
    static func truncate(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let fd = try c.open(dir: try c.dir(c.r.scalar(0)), try c.path(), flags: O_WRONLY | O_NONBLOCK | O_NOCTTY, mode: 0)
        defer { Glibc.close(fd) }
        try sys { Glibc.ftruncate(fd, off_t(c.r.scalar(1))) }
        return (0, 0)
    }
}
