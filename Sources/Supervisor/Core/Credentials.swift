import Glibc
import Synchronization
import SysKit

/// A tracee thread's file credentials, as the kernel checks file access:
/// fsuid, fsgid and supplementary groups. They travel home with its calls
/// (an `Op.credentials` frame whenever a sender's calls change hands to a
/// thread with other credentials), so that a privileged home acts as the
/// thread would.
struct Credentials: Hashable, Sendable {
    var fsuid: UInt32
    var fsgid: UInt32
    var groups: [UInt32]

    init(_ status: TaskStatus) {
        fsuid = status.fsuid
        fsgid = status.fsgid
        groups = status.groups
    }
}

/// Every distinct set of credentials seen, numbered from 1, so that a
/// call compares two integers to know whether its sender has already told
/// home about its thread's credentials.
final class CredentialTable: Sendable {
    private let table = Mutex<(ids: [Credentials: UInt64], byID: [Credentials])>(([:], []))

    init() {}

    /// The number of `c`, assigned on first sight.
    func id(for c: Credentials) -> UInt64 {
        table.withLock { t in
            if let id = t.ids[c] { return id }
            t.byID.append(c)
            let id = UInt64(t.byID.count)
            t.ids[c] = id
            return id
        }
    }

    func credentials(_ id: UInt64) -> Credentials {
        table.withLock { $0.byID[Int(id) - 1] }
    }
}

/// A tracee thread's credentials: their number, and whether the thread has
/// called a set*id syscall since they were read (then they are read again
/// from /proc before its next forwarded call).
final class ThreadIdentity: Sendable {
    let id: Atomic<UInt64>
    let stale = Atomic<Bool>(false)

    init(id: UInt64) { self.id = Atomic(id) }

    /// The thread's credentials number, re-read if stale.
    func current(tid: pid_t, table: CredentialTable) -> UInt64 {
        if stale.exchange(false, ordering: .acquiring), let status = TaskStatus.read(tid: tid) {
            id.store(table.id(for: Credentials(status)), ordering: .releasing)
        }
        return id.load(ordering: .acquiring)
    }
}

/// The set*id syscalls: they run natively; the thread's credentials are
/// read again before its next forwarded call.
enum Identity {
    /// Implements setuid(2), setgid(2), setreuid(2), setregid(2),
    /// setresuid(2), setresgid(2), setfsuid(2), setfsgid(2) and setgroups(2)
    /// (the kernel runs them).
    static func changed(_ c: borrowing Call) throws(Failure) -> Reply {
        try c.thread().identity.stale.store(true, ordering: .releasing)
        return .continueSyscall
    }

    /// Implements umask(2) (the kernel runs it): the process's umask record
    /// takes the new mask, as the kernel will.
    static func umask(_ c: borrowing Call) throws(Failure) -> Reply {
        try c.thread().process.umask.store(UInt32(truncatingIfNeeded: c.raw(0)) & 0o777, ordering: .relaxed)
        return .continueSyscall
    }
}
