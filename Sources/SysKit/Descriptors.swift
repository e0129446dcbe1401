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

/// CLOCK_MONOTONIC in microseconds.
@inline(__always)
public func monotonicMicroseconds() -> Int { Int(monotonicNanoseconds() / 1000) }

/// How long a waiter polls for its next message before it sleeps, learnt
/// from the gaps it sees. On a VM an idle vCPU halts, and waking it costs
/// tens of microseconds: a message that comes within the poll is picked up
/// without that wake-up. That pays only while messages follow each other
/// fast: a poll that runs out halves the budget; a wait that slept sets it
/// from the gap it measured (twice the gap when that is under the maximum,
/// so the next such gap is caught polling); a yield that ran some other
/// thread (the CPUs are oversubscribed) stops polling at once. Back-to-back
/// calls keep polling; an idle stream stops after one poll; a crowded
/// machine (many sessions on few CPUs) stops polling.
///
/// A measured gap includes the wake-up that ended the sleep, and on a VM
/// that is tens of microseconds: messages 20 µs apart, each waking a halted
/// vCPU, measure 60 µs, over a 50 µs maximum, and would never be polled for
/// again although a poll would catch every one. So after `probeAfter` sleeps
/// in a row whose gaps were under `probeSpan` maximums, the next wait polls
/// the whole maximum once (a probe): it finds out what the gaps are without
/// the wake-up in them.
public struct SpinBudget: Sendable {
    /// The most it polls, in microseconds (0: never).
    public let maximum: Int
    /// What the next wait polls, in microseconds.
    public private(set) var current: Int
    /// When the wait in progress began (0: none).
    private var began = 0
    /// Sleeps in a row with a gap under `probeSpan` maximums (see above).
    private var shortSleeps = 0
    static let probeAfter = 8
    static let probeSpan = 4

    public init(maximum: Int) {
        self.maximum = max(0, maximum)
        current = self.maximum
    }

    /// A yield that took longer than this (µs) ran another thread: the
    /// CPUs are oversubscribed, and polling takes them from real work.
    static let contendedYieldMicroseconds = 20

    /// Starts a wait on `fd`: polls it for up to the budget, yielding the
    /// CPU between polls. True if it is readable now; false if the caller
    /// must sleep, and then call `woke()`. A yield that ran another thread
    /// (which was not the peer: its message did not come) ends polling
    /// until a short gap is seen again.
    public mutating func spin(_ fd: CInt) -> Bool {
        spin(fd, watching: -1) == .ready
    }

    /// What `spin(_:watching:)` saw.
    public enum Outcome: Sendable {
        /// `fd` is readable.
        case ready
        /// `other` became readable first (`fd` is not yet): the caller acts
        /// on it and spins again; the budget is unchanged.
        case other
        /// Neither, within the budget: the caller must sleep, then `woke()`.
        case timedOut
    }

    /// `spin(_:)` that also watches `other` (unless it is negative), in the
    /// same poll(2) calls.
    public mutating func spin(_ fd: CInt, watching other: CInt) -> Outcome {
        var p = (pollfd(fd: fd, events: Int16(POLLIN), revents: 0), pollfd(fd: other, events: Int16(POLLIN), revents: 0))
        let count: nfds_t = other >= 0 ? 2 : 1
        func check() -> Outcome? {
            p.0.revents = 0
            p.1.revents = 0
            let n = withUnsafeMutableBytes(of: &p) { poll($0.baseAddress!.assumingMemoryBound(to: pollfd.self), count, 0) }
            if n <= 0 { return nil }
            return p.0.revents != 0 ? .ready : .other
        }
        began = monotonicMicroseconds()
        if let seen = check() {
            began = 0
            return seen
        }
        var now = began
        while now - began < current {
            let before = now
            sched_yield()
            if let seen = check() {
                if seen == .other {
                    began = 0
                    return seen
                }
                let gap = monotonicMicroseconds() - began
                if gap * 2 > current { current = min(maximum, gap * 2) }
                began = 0
                return .ready
            }
            now = monotonicMicroseconds()
            if now - before > Self.contendedYieldMicroseconds {
                current = 0
                return .timedOut
            }
        }
        current /= 2
        return .timedOut
    }

    /// A wait that `spin` did not end has ended: the gap it measured sets
    /// the budget for the next one.
    public mutating func woke() {
        guard began != 0, maximum > 0 else { return }
        let gap = monotonicMicroseconds() - began
        began = 0
        if gap < maximum {
            current = min(maximum, max(current, gap * 2))
            shortSleeps = 0
            return
        }
        shortSleeps = gap < maximum * Self.probeSpan ? shortSleeps + 1 : 0
        if shortSleeps >= Self.probeAfter {
            current = maximum   // a probe
            shortSleeps = 0
        }
    }

    /// Waits until `fd` is readable (or hung up, or failed): polls for up
    /// to the budget, then sleeps in poll(2).
    public mutating func wait(_ fd: CInt) {
        if spin(fd) { return }
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while poll(&p, 1, -1) < 0 && errno == EINTR {}
        woke()
    }
}

/// Waits up to `timeout` ms (-1: for ever) until `a` or `b` is readable
/// (or hung up); a negative descriptor is not watched. Which are readable.
public func pollEither(_ a: CInt, _ b: CInt, timeout: Int32) -> (a: Bool, b: Bool) {
    var p = (pollfd(fd: a, events: Int16(POLLIN), revents: 0), pollfd(fd: b, events: Int16(POLLIN), revents: 0))
    let n = withUnsafeMutableBytes(of: &p) { poll($0.baseAddress!.assumingMemoryBound(to: pollfd.self), 2, timeout) }
    if n <= 0 { return (false, false) }
    return (p.0.revents != 0, p.1.revents != 0)
}

/// Large frames put on a stream without copying them into it: their pages
/// go into a pipe (vmsplice) and from the pipe onto the stream (splice),
/// so the stream's buffers refer to them. The bytes must stay unchanged
/// until the far end has read them: a request's buffer qualifies, as it is
/// reused only after its reply. (Unchecked Sendable: its one user is the
/// holder of the stream's write lock.)
public final class PageSplicer: @unchecked Sendable {
    let readEnd: CInt, writeEnd: CInt

    /// Below this a plain write costs less than two more syscalls.
    public static let threshold = 64 << 10

    /// A splicer whose pipe holds `bytes`; nil when no such pipe can be had.
    public init?(bytes: Int) {
        var fds: (CInt, CInt) = (-1, -1)
        let rc = withUnsafeMutableBytes(of: &fds) {
            cshim_pipe_sized($0.baseAddress!.assumingMemoryBound(to: CInt.self), CInt(bytes))
        }
        guard rc == 0 else { return nil }
        (readEnd, writeEnd) = fds
    }

    deinit {
        Glibc.close(readEnd)
        Glibc.close(writeEnd)
    }

    /// Puts all `count` bytes at `buf` on `fd`.
    public func write(_ fd: CInt, _ buf: UnsafeRawPointer, _ count: Int) throws(Errno) {
        var done = 0
        while done < count {
            let mapped = try sys { cshim_vmsplice(writeEnd, buf + done, count - done) }
            var left = mapped
            while left > 0 {
                left -= try sys { cshim_splice(readEnd, nil, fd, left, 0) }
            }
            done += mapped
        }
    }
}
