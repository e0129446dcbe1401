import CShim
import Glibc

/// Plain descriptor I/O over libc, EINTR-aware. Descriptors are raw `CInt`s:
/// the supervisor juggles thousands of them across threads and owns their
/// lifetimes explicitly (placeholders, pidfds), so no wrapper type is added.
public enum FD {
    public static func close(_ fd: CInt) { _ = Glibc.close(fd) }

    /// Reads exactly `count` bytes; returns false on a clean EOF before the
    /// first byte, throws on an error or an EOF in the middle.
    public static func readFully(_ fd: CInt, _ buf: UnsafeMutableRawPointer, _ count: Int) throws(Errno) -> Bool {
        var done = 0
        while done < count {
            let n = try sys { Glibc.read(fd, buf + done, count - done) }
            if n == 0 {
                if done == 0 { return false }
                throw Errno.ioError
            }
            done += n
        }
        return true
    }

    /// Writes all `count` bytes. Uses send(MSG_NOSIGNAL) on sockets so a dead
    /// peer is EPIPE, not SIGPIPE; falls back to write(2) for pipes and files.
    public static func writeFully(_ fd: CInt, _ buf: UnsafeRawPointer, _ count: Int) throws(Errno) {
        var done = 0
        while done < count {
            var n = Glibc.send(fd, buf + done, count - done, Int32(MSG_NOSIGNAL))
            if n < 0 && Glibc.errno == ENOTSOCK {
                n = Glibc.write(fd, buf + done, count - done)
            }
            if n < 0 {
                if Glibc.errno == EINTR { continue }
                throw lastErrno()
            }
            done += n
        }
    }

    /// Writes a whole byte array.
    public static func writeFully(_ fd: CInt, _ bytes: [UInt8]) throws(Errno) {
        let r: Errno? = bytes.withUnsafeBytes { b -> Errno? in
            do throws(Errno) { try writeFully(fd, b.baseAddress!, b.count); return nil } catch { return error }
        }
        if let r { throw r }
    }

    /// socketpair(AF_UNIX, type | SOCK_CLOEXEC).
    public static func socketPair(type: Int32 = Int32(SOCK_STREAM.rawValue)) throws(Errno) -> (CInt, CInt) {
        var fds: [CInt] = [-1, -1]
        try sys { Glibc.socketpair(AF_UNIX, type | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) }
        return (fds[0], fds[1])
    }

    /// The inode number of an open descriptor (identifies a placeholder socket).
    public static func inode(_ fd: CInt) throws(Errno) -> (ino: UInt64, isSocket: Bool) {
        var st = stat()
        try sys { Glibc.fstat(fd, &st) }
        return (UInt64(st.st_ino), (st.st_mode & S_IFMT) == S_IFSOCK)
    }

    /// Whether `path` names a directory (symlinks followed).
    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFDIR
    }

    public static func setNonBlocking(_ fd: CInt) throws(Errno) {
        let flags = try sys { cshim_fcntl_int(fd, F_GETFL, 0) }
        try sys { cshim_fcntl_int(fd, F_SETFL, Int(flags | O_NONBLOCK)) }
    }

    public static func setBlocking(_ fd: CInt) throws(Errno) {
        let flags = try sys { cshim_fcntl_int(fd, F_GETFL, 0) }
        try sys { cshim_fcntl_int(fd, F_SETFL, Int(flags & ~O_NONBLOCK)) }
    }

    /// Waits up to `microseconds` for `fd` to become readable by polling
    /// without sleeping. On a VM an idle vCPU halts, and waking it costs
    /// tens of microseconds: a reply that comes back within the spin is
    /// picked up without that wake-up. The loop yields the CPU between
    /// polls, so it costs little when other threads have work. Returns true
    /// if readable.
    @discardableResult
    public static func spinUntilReadable(_ fd: CInt, microseconds: Int) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        if poll(&p, 1, 0) == 1 { return true }
        var start = timespec(), now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &start)
        while true {
            // Yield between polls: on an idle CPU this returns at once and
            // keeps the vCPU awake; under load the CPU goes to real work.
            sched_yield()
            p.revents = 0
            if poll(&p, 1, 0) == 1 { return true }
            clock_gettime(CLOCK_MONOTONIC, &now)
            let elapsed = (now.tv_sec - start.tv_sec) * 1_000_000 + (now.tv_nsec - start.tv_nsec) / 1000
            if elapsed >= microseconds { return false }
        }
    }

    /// Socket buffers big enough for a whole 1 MiB frame, so bulk reads and
    /// writes cross in one go rather than in default-sized (208 KiB) pieces.
    public static func setBulkBuffers(_ fd: CInt, bytes: CInt = 4 << 20) {
        var size = bytes
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<CInt>.size))
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<CInt>.size))
    }

    /// Reads a whole small file (a key file, a /proc entry) into an array.
    public static func readSmallFile(_ path: String, limit: Int = 1 << 16) throws(Errno) -> [UInt8] {
        let fd = try sys { cshim_openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0) }
        defer { close(fd) }
        return try readAll(fd, limit: limit)
    }

    /// Reads `fd` to its end, or to `limit` bytes.
    public static func readAll(_ fd: CInt, limit: Int) throws(Errno) -> [UInt8] {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while out.count < limit {
            let n = chunk.withUnsafeMutableBytes { b in Glibc.read(fd, b.baseAddress, b.count) }
            if n < 0 { if Glibc.errno == EINTR { continue } else { throw lastErrno() } }
            if n == 0 { break }
            out.append(contentsOf: chunk[0..<n])
        }
        return out
    }

    /// readlink(2) into `buf`; returns the length (not NUL-terminated).
    public static func readLink(_ path: UnsafePointer<CChar>, into buf: UnsafeMutableRawBufferPointer) throws(Errno) -> Int {
        try sys { Glibc.readlink(path, buf.baseAddress!.assumingMemoryBound(to: CChar.self), buf.count) }
    }
}

/// Raises this process's RLIMIT_NOFILE soft limit to the hard limit; returns
/// the old soft limit so spawned programs can be given it back.
public func raiseDescriptorLimit() -> Int64 {
    var rl = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl) == 0 else { return -1 }
    let old = Int64(rl.rlim_cur)
    rl.rlim_cur = rl.rlim_max
    _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl)
    return old
}

/// Random bytes from the kernel (nonces).
public func randomBytes(_ count: Int) -> [UInt8] {
    var g = SystemRandomNumberGenerator()
    return (0..<count).map { _ in UInt8.random(in: 0...255, using: &g) }
}

/// Reopening a descriptor's object through /proc/self/fd.
public enum ProcPath {
    public static func reopen(_ fd: CInt, flags: Int32) throws(Errno) -> CInt {
        try sys { cshim_openat(AT_FDCWD, "/proc/self/fd/\(fd)", flags, 0) }
    }
}
