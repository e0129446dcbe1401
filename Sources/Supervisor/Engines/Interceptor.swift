import CShim
import Glibc
import SysKit

/// Which engine stops the program's syscalls (`--engine`).
public enum Engine: String, Sendable, CaseIterable {
    /// Seccomp user notification: the kernel queues each call for the
    /// supervisor; fastest; one listener per process tree, so it cannot
    /// nest under another (EBUSY).
    case seccomp
    /// ptrace: the same BPF program with SECCOMP_RET_TRACE; works where a
    /// listener cannot be had (nested, older kernels); the program's own
    /// ptrace gets EPERM.
    case ptrace
    /// seccomp when the listener can be had, else ptrace.
    case auto
}

/// The seam between the handlers and an engine. An engine delivers "thread
/// T is in syscall N with these args" (`receive`, as a seccomp
/// notification) and applies the answer: a value, running the call
/// natively, or a descriptor installed at a number. Handlers, table,
/// placeholders and wire are the same for both.
///
/// An enum rather than a protocol: no existential on the forwarding path,
/// one predictable branch per call. (`Supervisor.listener` holds it, a name
/// kept from when the seccomp listener was the only engine, so every
/// handler's `sup.listener.install…` reads the same on both.)
enum Interceptor: Sendable {
    case seccomp(SeccompListener)
    case ptrace(PtraceTracer)

    var engine: Engine {
        switch self {
        case .seccomp: return .seccomp
        case .ptrace: return .ptrace
        }
    }

    /// Readable while a call waits to be received (`HomeLink.call` polls it).
    var fd: CInt {
        switch self {
        case .seccomp(let l): return l.fd
        case .ptrace(let t): return t.readyFD
        }
    }

    /// Blocks until a tracee thread is in an intercepted syscall. ENOENT:
    /// it died first, or (see `hasHungUp`) no tracee is left.
    @inline(__always)
    func receive(into n: UnsafeMutablePointer<cshim_notif>) throws(Errno) {
        switch self {
        case .seccomp(let l): try l.receive(into: n)
        case .ptrace(let t): try t.receive(into: n)
        }
    }

    func hasHungUp() -> Bool {
        switch self {
        case .seccomp(let l): return l.hasHungUp()
        case .ptrace(let t): return t.hasHungUp()
        }
    }

    /// Answers with a return value (`error` 0) or a negated errno.
    @inline(__always)
    func respond(id: UInt64, value: Int64, error: Int32) throws(Errno) {
        switch self {
        case .seccomp(let l): try l.respond(id: id, value: value, error: error)
        case .ptrace(let t): try t.finish(id: id, native: false, value: error != 0 ? Int64(error) : value)
        }
    }

    /// Lets the syscall run in the tracee.
    @inline(__always)
    func continueSyscall(id: UInt64) throws(Errno) {
        switch self {
        case .seccomp(let l): try l.continueSyscall(id: id)
        case .ptrace(let t): try t.finish(id: id, native: true, value: 0)
        }
    }

    /// True while the call is still pending (checked after reading tracee
    /// memory, so a recycled pid cannot feed us another process's bytes).
    @inline(__always)
    func isValid(id: UInt64) -> Bool {
        switch self {
        case .seccomp(let l): return l.isValid(id: id)
        case .ptrace(let t): return t.isValid(id: id)
        }
    }

    /// Installs `source` in the tracee (at `target`, replacing what is there,
    /// or at the lowest free number) and answers the call with the number.
    func installAndRespond(id: UInt64, source: CInt, closeOnExec: Bool, at target: CInt? = nil) throws(Errno) -> CInt {
        switch self {
        case .seccomp(let l): return try l.installAndRespond(id: id, source: source, closeOnExec: closeOnExec, at: target)
        case .ptrace(let t): return try t.install(id: id, source: source, closeOnExec: closeOnExec, at: target ?? -1, respond: true)
        }
    }

    /// As `installAndRespond`, leaving the call pending.
    @discardableResult
    func install(id: UInt64, source: CInt, closeOnExec: Bool, at target: CInt?) throws(Errno) -> CInt {
        switch self {
        case .seccomp(let l): return try l.install(id: id, source: source, closeOnExec: closeOnExec, at: target)
        case .ptrace(let t): return try t.install(id: id, source: source, closeOnExec: closeOnExec, at: target ?? -1, respond: false)
        }
    }
}
