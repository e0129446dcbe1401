import CShim
import Glibc

/// Signals delivered as a readable descriptor, for a poll loop: the
/// signals are blocked in the calling thread (children spawned through
/// `Spawn.plain` start with an empty mask again).
public struct SignalDescriptor: ~Copyable {
    public let fd: CInt

    public init(_ signals: [Int32]) throws(Errno) {
        let fd = signals.withUnsafeBufferPointer { cshim_signalfd_for($0.baseAddress, $0.count) }
        guard fd >= 0 else { throw lastErrno() }
        self.fd = fd
    }

    /// The next pending signal's number, or nil when none is queued.
    public func next() -> Int32? {
        let s = cshim_signalfd_next(fd)
        return s > 0 ? s : nil
    }

    deinit { Glibc.close(fd) }
}

/// CLOCK_MONOTONIC in nanoseconds.
public func monotonicNanoseconds() -> UInt64 {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
}

/// What a process keeps of its privileges.
public enum Privileges {
    /// Asks for SIGKILL when the parent goes; ESRCH if it already has.
    public static func dieWithParent(_ parent: pid_t) throws(Errno) {
        guard cshim_parent_death_signal(SIGKILL, parent) == 0 else { throw lastErrno() }
    }

    /// Undoes `dieWithParent`.
    public static func outliveParent() {
        _ = cshim_parent_death_signal(0, 0)
    }
}
