import CShim
import Glibc

/// The seccomp user-notification listener of one traced process tree.
/// Safe to use from several threads at once: the kernel hands each
/// notification to exactly one receiver.
public struct SeccompListener: Sendable {
    public let fd: CInt
    public init(fd: CInt) { self.fd = fd }

    /// Blocks until a tracee thread enters an intercepted syscall.
    /// ENOENT means the notifying task died before we received it.
    public func receive(into n: UnsafeMutablePointer<cshim_notif>) throws(Errno) {
        try sysOnce { cshim_notif_recv(fd, n) }
    }

    /// Answers with a return value (`error` 0) or a negated errno.
    public func respond(id: UInt64, value: Int64, error: Int32) throws(Errno) {
        var r = cshim_notif_resp(id: id, val: value, error: error, flags: 0)
        try sys { cshim_notif_send(fd, &r) }
    }

    /// Lets the syscall run in the tracee as if it had not been intercepted.
    public func continueSyscall(id: UInt64) throws(Errno) {
        var r = cshim_notif_resp(id: id, val: 0, error: 0, flags: CSHIM_NOTIF_FLAG_CONTINUE)
        try sys { cshim_notif_send(fd, &r) }
    }

    /// True while the notification is still pending: checked after reading
    /// tracee memory, so a recycled pid cannot feed us another process's bytes.
    public func isValid(id: UInt64) -> Bool { cshim_notif_id_valid(fd, id) == 0 }

    /// Installs `source` in the tracee and answers the syscall with the new
    /// fd number, atomically (ADDFD with SEND).
    public func installAndRespond(id: UInt64, source: CInt, closeOnExec: Bool) throws(Errno) -> CInt {
        var a = cshim_notif_addfd(id: id, flags: CSHIM_ADDFD_FLAG_SEND, srcfd: UInt32(source), newfd: 0,
                                  newfd_flags: closeOnExec ? UInt32(O_CLOEXEC) : 0)
        return try sys { cshim_notif_add_fd(fd, &a) }
    }
}

/// A classic-BPF seccomp filter built from a list of syscall numbers.
public final class SeccompFilter: @unchecked Sendable {
    // Immutable after init; only its address is handed to the spawn.
    public private(set) var raw = cshim_filter(filter: nil, len: 0)

    /// Every syscall in `notify` is sent to the supervisor; all others run.
    public init(notify: [Int32]) throws(Errno) {
        let rc = notify.withUnsafeBufferPointer { cshim_filter_build($0.baseAddress, $0.count, &raw) }
        if rc < 0 { throw Errno(rawValue: -rc) }
    }
    deinit { cshim_filter_free(&raw) }
}
