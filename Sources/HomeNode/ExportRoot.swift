import CShim
import Glibc
import SysKit

/// The directory a session's paths live beneath. With a root other than "/",
/// every path resolves with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS):
/// "..", absolute symlinks and /proc magic links stay inside it. With "/",
/// calls go straight to the *at() syscalls, so semantics are exactly the
/// kernel's. Shared by all of a session's threads: the scratch each call
/// needs for joined paths is the caller's (`HomeCall.scratch`).
///
/// A confined root also confines privilege (it is what `--root` promises a
/// home running as root): device nodes cannot be opened for data (EACCES,
/// unless `allowDevices`) and set-uid bits never appear on what a session
/// creates or chmods (nor set-gid, except on directories, where it only
/// means "new entries take the directory's group"). See `Confinement`.
final class ExportRoot: Sendable {
    /// CSHIM_O_PATH descriptor of the root directory.
    let fd: CInt
    /// Canonical path of the root, without a trailing slash ("" for "/").
    let prefix: [UInt8]
    let confined: Bool
    /// Opens that yield a character or block device fail with EACCES.
    let refusesDevices: Bool

    static let pathMax = 4096
    /// The scratch a caller lends to `open`, `withEntry` and `withObject`.
    static let scratchSize = 4 * pathMax

    init(path: String, allowDevices: Bool = false) throws(Errno) {
        guard let real = realpath(path, nil) else { throw lastErrno() }
        defer { free(real) }
        let canonical = String(cString: real)
        fd = try sys { cshim_openat(AT_FDCWD, canonical, CSHIM_O_PATH | O_DIRECTORY | O_CLOEXEC, 0) }
        confined = canonical != "/"
        refusesDevices = confined && !allowDevices
        prefix = confined ? Array(canonical.utf8) : []
    }

    deinit {
        Glibc.close(fd)
    }

    private var confinement: UInt64 { confined ? UInt64(CSHIM_RESOLVE_IN_ROOT | CSHIM_RESOLVE_NO_MAGICLINKS) : 0 }

    /// Opens `path` (NUL-terminated) relative to `dir` (nil: the root), as
    /// openat2 would, confined to the root. EINTR is the caller's to retry
    /// (an open of a FIFO may be cancelled). `scratch` (`scratchSize` bytes)
    /// holds the joined path of a name relative to a directory handle.
    ///
    /// Confined, the create mode loses its set-id bits, and an open for
    /// data (not O_PATH) that turns out to be a device is closed again and
    /// fails with EACCES, unless devices are allowed. The check is an fstat
    /// of the descriptor the open returned, so no swap of the name can slip
    /// a device past it; every reopen of an O_PATH handle comes through
    /// here too.
    func open(dir: CInt?, _ path: UnsafePointer<CChar>, flags: Int32, mode: UInt32, resolve: UInt64 = 0,
              scratch: UnsafeMutableRawBufferPointer) throws(Errno) -> CInt {
        let mode = confined ? Confinement.createMode(mode, directory: false) : mode
        let fd = try openAnything(dir: dir, path, flags: flags, mode: mode, resolve: resolve, scratch: scratch)
        if refusesDevices && flags & CSHIM_O_PATH == 0 {
            var st = stat()
            if fstat(fd, &st) != 0 || Confinement.isDevice(st.st_mode) {
                Glibc.close(fd)
                throw Errno.permissionDenied
            }
        }
        return fd
    }

    private func openAnything(dir: CInt?, _ path: UnsafePointer<CChar>, flags: Int32, mode: UInt32, resolve: UInt64,
                              scratch: UnsafeMutableRawBufferPointer) throws(Errno) -> CInt {
        var how = cshim_open_how(flags: UInt64(UInt32(bitPattern: flags | O_CLOEXEC)), mode: UInt64(mode), resolve: resolve)
        if path.pointee == 0, let dir {
            // The empty name with a handle: the object itself (the tracee
            // named /proc/self/fd/N of a forwarded descriptor). Reopen it
            // through our own /proc link: it is already inside the root.
            return try ProcLink(dir).withCString { (link) throws(Errno) in
                try sysOnce { cshim_openat(AT_FDCWD, link, flags | O_CLOEXEC, mode) }
            }
        }
        let absolute = path.pointee == CChar(UInt8(ascii: "/"))
        guard confined else {
            let base = absolute ? AT_FDCWD : (dir ?? fd)
            return try sysOnce { cshim_openat2(base, path, &how) }
        }
        how.resolve |= confinement
        if absolute || dir == nil {
            return try sysOnce { cshim_openat2(fd, path, &how) }
        }
        // The caller's own BENEATH/IN_ROOT keeps resolution under `dir`,
        // which is itself inside the root.
        if resolve & UInt64(CSHIM_RESOLVE_BENEATH | CSHIM_RESOLVE_IN_ROOT) != 0 {
            return try sysOnce { cshim_openat2(dir!, path, &how) }
        }
        // Relative to a directory handle: resolve from the root through the
        // directory's current path, so ".." can climb out of `dir` but never
        // out of the root (RESOLVE_IN_ROOT from `dir` would stop at `dir`).
        let joined = try join(dir: dir!, path, scratch: scratch)
        return try sysOnce { cshim_openat2(fd, joined, &how) }
    }

    /// Writes "<path of dir inside the root>/<path>\0" into scratch.
    private func join(dir: CInt, _ path: UnsafePointer<CChar>, scratch: UnsafeMutableRawBufferPointer) throws(Errno) -> UnsafePointer<CChar> {
        let out = scratch.baseAddress!.assumingMemoryBound(to: CChar.self)
        var n = try pathInRoot(of: dir, into: UnsafeMutableRawBufferPointer(start: scratch.baseAddress!, count: 2 * Self.pathMax))
        let len = strlen(path)
        guard n + 1 + len + 1 <= 2 * Self.pathMax else { throw Errno.fileNameTooLong }
        out[n] = CChar(UInt8(ascii: "/")); n += 1
        memcpy(out + n, path, len)
        out[n + len] = 0
        return UnsafePointer(out)
    }

    /// The path of an open directory as the tracee names it: its home path
    /// with the root's prefix removed ("/" for the root itself). Not
    /// NUL-terminated; returns the length. ENOENT if it has left the root or
    /// been deleted.
    func pathInRoot(of dirfd: CInt, into buf: UnsafeMutableRawBufferPointer) throws(Errno) -> Int {
        var link: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)  // "/proc/self/fd/NNNNNNNNNN\0"
        let n = try withUnsafeMutableBytes(of: &link) { (name) throws(Errno) -> Int in
            let p = name.baseAddress!.assumingMemoryBound(to: CChar.self)
            _ = withVaList([dirfd]) { vsnprintf(p, name.count, "/proc/self/fd/%d", $0) }
            return try FD.readLink(p, into: buf)
        }
        if n >= buf.count { throw Errno.fileNameTooLong }
        // A deleted directory reads as "/path (deleted)"; getcwd says ENOENT.
        var st = stat()
        if fstat(dirfd, &st) == 0 && st.st_nlink == 0 { throw Errno.noSuchFileOrDirectory }
        guard confined else { return n }
        let p = prefix.count
        guard n >= p, memcmp(buf.baseAddress!, prefix, p) == 0, n == p || buf[p] == UInt8(ascii: "/") else {
            throw Errno.noSuchFileOrDirectory
        }
        if n == p { buf[0] = UInt8(ascii: "/"); return 1 }
        memmove(buf.baseAddress!, buf.baseAddress! + p, n - p)
        return n - p
    }

    /// Runs `body` on the directory entry named by `path`, as a (dirfd, name)
    /// pair for mkdirat/unlinkat/renameat2. Confined, the parent is resolved
    /// inside the root and `name` is one final component, which those calls
    /// never follow upward.
    func withEntry<R>(dir: CInt?, _ path: UnsafePointer<CChar>, slot: Int = 0, scratch: UnsafeMutableRawBufferPointer,
                      _ body: (CInt, UnsafePointer<CChar>) throws(Errno) -> R) throws(Errno) -> R {
        let absolute = path.pointee == CChar(UInt8(ascii: "/"))
        guard confined else {
            return try body(absolute ? AT_FDCWD : (dir ?? fd), path)
        }
        // Split at the last "/" that is followed by a name (trailing slashes
        // stay with the name: the kernel applies their meaning).
        let len = strlen(path)
        var end = len
        while end > 0 && path[end - 1] == CChar(UInt8(ascii: "/")) { end -= 1 }
        var cut = end
        while cut > 0 && path[cut - 1] != CChar(UInt8(ascii: "/")) { cut -= 1 }
        if end == 0 {
            // "/" or "///": the root itself.
            return try body(fd, ".")
        }
        let name = path + cut
        if cut == 0 { return try body(dir ?? fd, name) }
        // The parent part goes to this slot's scratch (two slots: rename).
        guard cut < Self.pathMax, slot < 2 else { throw Errno.fileNameTooLong }
        let parentBuf = (scratch.baseAddress! + (2 + slot) * Self.pathMax).assumingMemoryBound(to: CChar.self)
        memcpy(parentBuf, path, cut)
        parentBuf[cut] = 0
        let pfd = try open(dir: dir, parentBuf, flags: CSHIM_O_PATH | O_DIRECTORY, mode: 0, scratch: scratch)
        defer { Glibc.close(pfd) }
        return try body(pfd, name)
    }

    /// Runs `body` on the object `path` names, as (dirfd, path, extra flags)
    /// for fstatat/faccessat/readlinkat. Confined, the object is first
    /// opened CSHIM_O_PATH inside the root (not following a final symlink when
    /// `follow` is false) and passed as (fd, "", CSHIM_AT_EMPTY_PATH).
    func withObject<R>(dir: CInt?, _ path: UnsafePointer<CChar>, follow: Bool, scratch: UnsafeMutableRawBufferPointer,
                       _ body: (CInt, UnsafePointer<CChar>, Int32) throws(Errno) -> R) throws(Errno) -> R {
        if !confined {
            let absolute = path.pointee == CChar(UInt8(ascii: "/"))
            return try body(absolute ? AT_FDCWD : (dir ?? fd), path, 0)
        }
        if path.pointee == 0 { throw Errno.noSuchFileOrDirectory }
        let ofd = try open(dir: dir, path, flags: CSHIM_O_PATH | (follow ? 0 : O_NOFOLLOW), mode: 0, scratch: scratch)
        defer { Glibc.close(ofd) }
        return try body(ofd, "", CSHIM_AT_EMPTY_PATH)
    }
}
