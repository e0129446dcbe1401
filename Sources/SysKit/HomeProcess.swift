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

/// A local user that a process can become (`homestub --user`).
public struct UserAccount: Sendable, Equatable {
    public var name: String
    public var uid: uid_t
    public var gid: gid_t

    /// Looks `name` up in the passwd database; nil if there is no such user.
    public static func named(_ name: String) -> UserAccount? {
        var pw = passwd()
        var result: UnsafeMutablePointer<passwd>? = nil
        var buffer = [CChar](repeating: 0, count: 16384)
        let rc = getpwnam_r(name, &pw, &buffer, buffer.count, &result)
        guard rc == 0, result != nil else { return nil }
        return UserAccount(name: name, uid: pw.pw_uid, gid: pw.pw_gid)
    }

    /// Why `become()` failed.
    public struct Failure: Error, CustomStringConvertible {
        public var step: String
        public var errno: Errno
        public var description: String { "cannot drop to the user (\(step)): \(String(cString: strerror(errno.rawValue)))" }
    }

    /// Makes this process the user for good: its supplementary groups
    /// (initgroups), then setresgid, then setresuid, each checked, and
    /// checks that uid and gid 0 cannot be regained. Call it while the
    /// process has one thread.
    public func become() throws(Failure) {
        var stage: CInt = 0
        guard cshim_drop_to_user(name, uid, gid, &stage) == 0 else {
            let steps = [1: "initgroups", 2: "setresgid", 3: "setresuid", 4: "checking the ids"]
            throw Failure(step: steps[Int(stage)] ?? "?", errno: lastErrno())
        }
    }
}

/// What a process keeps of its privileges.
public enum Privileges {
    /// The capability numbers of linux/capability.h that homestub uses.
    public static let setgid: Int32 = 6, setuid: Int32 = 7, kill: Int32 = 5

    /// Keeps only `capabilities` (numbers), in this process and in every
    /// program it will exec, root or not.
    public static func keepOnly(_ capabilities: [Int32]) throws(Errno) {
        let mask = capabilities.reduce(UInt64(0)) { $0 | (UInt64(1) << UInt64($1)) }
        guard cshim_keep_capabilities(mask) == 0 else { throw lastErrno() }
    }

    /// Asks for SIGKILL when the parent goes; ESRCH if it already has.
    public static func dieWithParent(_ parent: pid_t) throws(Errno) {
        guard cshim_parent_death_signal(SIGKILL, parent) == 0 else { throw lastErrno() }
    }

    /// Undoes `dieWithParent`.
    public static func outliveParent() {
        _ = cshim_parent_death_signal(0, 0)
    }
}
