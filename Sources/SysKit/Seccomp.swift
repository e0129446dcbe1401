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

    /// Asks the kernel to wake the supervisor on the notifying task's CPU and
    /// hand the CPU straight back (SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP, Linux
    /// 6.6): a cross-CPU wake-up costs tens of microseconds on an idle VM.
    /// False on kernels without it.
    @discardableResult
    public func preferSynchronousWakeUp() -> Bool { cshim_notif_set_sync_wakeup(fd) == 0 }

    /// True once no task uses the filter any more (poll reports POLLHUP).
    public func hasHungUp() -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, 0) == 1 && p.revents & Int16(POLLHUP) != 0
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
    /// fd number, atomically (ADDFD with SEND): at the lowest free number,
    /// or at exactly `at` (replacing what is there, as dup2 does).
    public func installAndRespond(id: UInt64, source: CInt, closeOnExec: Bool, at target: CInt? = nil) throws(Errno) -> CInt {
        var a = cshim_notif_addfd(id: id, flags: CSHIM_ADDFD_FLAG_SEND | (target != nil ? CSHIM_ADDFD_FLAG_SETFD : 0),
                                  srcfd: UInt32(source), newfd: UInt32(target ?? 0),
                                  newfd_flags: closeOnExec ? UInt32(O_CLOEXEC) : 0)
        return try sys { cshim_notif_add_fd(fd, &a) }
    }
}

/// When the filter sends a syscall to the supervisor.
public enum NotifyWhen: Sendable {
    /// Always.
    case always
    /// Only when the descriptor in arg0 is 0, 1, 2 or at least `base`.
    case descriptorRange(base: Int32)
    /// Only when arg1 is one of these values (at most 12).
    case arg1In([Int32])
    /// mmap of a descriptor (not MAP_ANONYMOUS) that is 0, 1, 2 or at least `base`.
    case mappedDescriptorRange(base: Int32)
    /// As `descriptorRange`, or when arg1 (a target descriptor) is at least `base`.
    case descriptorOrTargetRange(base: Int32)
    /// Only when arg1 is an ioctl request of one of these types (bits
    /// 8–15 of its low 32 bits; at most 12).
    case arg1TypeIn([UInt8])
}

extension SeccompListener {
    /// Installs `source` in the tracee at exactly `at` (dup2 semantics), or
    /// at the lowest free number when `at` is nil, while the notification
    /// stays pending (ADDFD without SEND). Returns the number.
    @discardableResult
    public func install(id: UInt64, source: CInt, closeOnExec: Bool, at target: CInt?) throws(Errno) -> CInt {
        var a = cshim_notif_addfd(id: id, flags: target == nil ? 0 : CSHIM_ADDFD_FLAG_SETFD, srcfd: UInt32(source),
                                  newfd: UInt32(target ?? 0), newfd_flags: closeOnExec ? UInt32(O_CLOEXEC) : 0)
        return try sys { cshim_notif_add_fd(fd, &a) }
    }
}

/// A classic-BPF seccomp filter built from (syscall, condition) rules.
public final class SeccompFilter: @unchecked Sendable {
    // Immutable after init; only its address is handed to the spawn.
    public private(set) var raw = cshim_filter(filter: nil, len: 0)

    /// Each listed syscall goes to the supervisor when its condition holds
    /// (a user notification, or with `trace` a ptrace seccomp stop); all
    /// others run.
    public init(rules: [(nr: Int32, when: NotifyWhen)], trace: Bool = false) throws(Errno) {
        let crules: [cshim_filter_rule] = rules.map { rule in
            var r = cshim_filter_rule()
            r.nr = rule.nr
            switch rule.when {
            case .always:
                r.when = CSHIM_WHEN_ALWAYS.rawValue
            case .descriptorRange(let base):
                // The data calls: tested first, read and write first of
                // all (every program's own descriptors pay for the chain
                // ahead of them), then their positioned forms.
                r.when = CSHIM_WHEN_FD_RANGE.rawValue
                r.fd_base = UInt32(base)
                switch rule.nr {
                case 0, 1: r.priority = 255  // read, write (x86_64)
                case 17, 18: r.priority = 254  // pread64, pwrite64
                default: r.priority = 250
                }
            case .descriptorOrTargetRange(let base):
                r.when = CSHIM_WHEN_FD_OR_TARGET_RANGE.rawValue
                r.fd_base = UInt32(base)
            case .mappedDescriptorRange(let base):
                r.when = CSHIM_WHEN_MMAP_FD_RANGE.rawValue
                r.fd_base = UInt32(base)
            case .arg1TypeIn(let types):
                precondition(!types.isEmpty && types.count <= Int(CSHIM_FILTER_MAX_VALUES), "arg1TypeIn takes 1 to 12 types")
                r.when = CSHIM_WHEN_ARG1_TYPE_IN.rawValue
                r.nvalues = UInt32(types.count)
                withUnsafeMutableBytes(of: &r.values) { b in
                    for (i, v) in types.enumerated() { b.storeBytes(of: Int32(v), toByteOffset: i * 4, as: Int32.self) }
                }
            case .arg1In(let values):
                precondition(!values.isEmpty && values.count <= Int(CSHIM_FILTER_MAX_VALUES), "arg1In takes 1 to 12 values")
                r.when = CSHIM_WHEN_ARG1_IN.rawValue
                r.nvalues = UInt32(values.count)
                withUnsafeMutableBytes(of: &r.values) { b in
                    for (i, v) in values.enumerated() { b.storeBytes(of: v, toByteOffset: i * 4, as: Int32.self) }
                }
            }
            return r
        }
        let rc = crules.withUnsafeBufferPointer { cshim_filter_build_action($0.baseAddress, $0.count, trace ? 1 : 0, &raw) }
        if rc < 0 { throw Errno(rawValue: -rc) }
    }
    /// Every syscall in `notify` goes to the supervisor, always.
    public convenience init(notify: [Int32]) throws(Errno) {
        try self.init(rules: notify.map { ($0, NotifyWhen.always) })
    }

    deinit { cshim_filter_free(&raw) }
}
