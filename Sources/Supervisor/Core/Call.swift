import CShim
import Glibc
import Policy
import SysKit
import Wire

/// How a handler failed: with the errno the tracee should see, or because
/// the home node could not be asked (the dispatcher decides what that
/// becomes).
enum Failure: Error {
    case errno(Errno)
    case transport(TransportError)
}

/// What a handler decided.
enum Reply {
    /// Let the kernel run the syscall in the tracee (a local resource).
    case continueSyscall
    /// Return this value to the tracee.
    case value(Int64)
    /// Already answered with this value (an fd was installed with ADDFD|SEND).
    case answered(Int64)
}

/// Runs a SysKit call inside a handler, turning its errno into a `Failure`.
@inline(__always)
func local<T>(_ body: () throws(Errno) -> T) throws(Failure) -> T {
    do { return try body() } catch { throw .errno(error) }
}

/// One intercepted syscall being handled: the tracee's registers as
/// received, plus the worker's preallocated buffers and the shared state.
struct Call: ~Copyable {
    let id: UInt64
    let tid: pid_t
    let nr: Int32
    let args: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64)
    let worker: Worker
    var sup: Supervisor { worker.supervisor }
    var memory: TraceeMemory { TraceeMemory(pid: tid) }

    init(_ n: UnsafePointer<cshim_notif>, worker: Worker) {
        id = n.pointee.id
        tid = pid_t(bitPattern: n.pointee.pid)
        nr = n.pointee.data.nr
        let a = n.pointee.data.args
        args = (a.0, a.1, a.2, a.3, a.4, a.5)
        self.worker = worker
    }

    /// Argument `i` as the raw register value.
    func raw(_ i: Int) -> UInt64 {
        switch i {
        case 0: return args.0
        case 1: return args.1
        case 2: return args.2
        case 3: return args.3
        case 4: return args.4
        default: return args.5
        }
    }
    /// Argument `i` as a descriptor (an int: the upper half is ignored, as the kernel does).
    func fd(_ i: Int) -> Int32 { Int32(truncatingIfNeeded: raw(i)) }
    /// Argument `i` as an int (flags, modes).
    func int(_ i: Int) -> Int32 { Int32(truncatingIfNeeded: raw(i)) }
    /// Argument `i` as a tracee address.
    func address(_ i: Int) -> UInt64 { raw(i) }
    /// Argument `i` as a size_t, capped as the kernel caps a transfer
    /// (MAX_RW_COUNT): a huge size never turns negative or traps.
    func size(_ i: Int) -> Int { Int(min(raw(i), UInt64(Self.maxTransfer))) }
    /// The kernel's MAX_RW_COUNT: INT_MAX rounded down to a page.
    static let maxTransfer = Int(Int32.max) & ~4095
    /// The end of user space: the kernel's TASK_SIZE_MAX (48-bit or, with
    /// 5-level paging, 57-bit addresses).
    static let userSpaceEnd: UInt64 = {
        let cpu = (try? FD.readSmallFile("/proc/cpuinfo")) ?? []
        let la57 = String(decoding: cpu.prefix(8192), as: UTF8.self).contains(" la57")
        return (1 << (la57 ? 56 : 47)) - 4096
    }()

    /// The byte count of a transfer to or from the tracee buffer at
    /// argument `a`, whose size is argument `s`: EFAULT when the range
    /// reaches past user space (the kernel's access_ok), else the size
    /// capped at MAX_RW_COUNT, as read(2) and write(2) do.
    func transfer(buffer a: Int, size s: Int) throws(Failure) -> Int {
        let address = raw(a), bytes = raw(s)
        guard bytes <= Self.userSpaceEnd, address <= Self.userSpaceEnd - bytes else { throw .errno(.badAddress) }
        return size(s)
    }
    /// Argument `i` as an off_t.
    func offset(_ i: Int) -> Int64 { Int64(bitPattern: raw(i)) }

    /// The tracee thread, recorded on first sight.
    func thread() throws(Failure) -> TraceeThread {
        let listener = sup.listener, id = self.id
        return try local { () throws(Errno) in try sup.tracees.thread(tid, isCurrent: { listener.isValid(id: id) }) }
    }

    /// The placeholder behind the tracee's descriptor `fd`, or nil when `fd`
    /// is a local descriptor (or none at all: the kernel will say EBADF).
    /// Below the placeholder range, the process's descriptor record answers
    /// without a syscall until a placeholder may have landed there.
    func placeholder(fd: Int32) throws(Failure) -> Placeholder? {
        if fd < 0 { return nil }
        let t = try thread()
        if fd < sup.placeholderBase && !t.process.descriptors.mayHoldLowPlaceholders { return nil }
        let copy: CInt
        do { copy = try PidFD.getFD(t.pidfd, fd) } catch {
            // Not open in the tracee: the kernel's own EBADF, run locally.
            // Any other failure (no descriptor left here, the thread gone)
            // cannot tell a placeholder from a local file: never guess
            // "local", which would run the call on the bare placeholder.
            if error == .badFileDescriptor { return nil }
            throw .errno(.badFileDescriptor)
        }
        defer { Glibc.close(copy) }
        guard let info = try? FD.inode(copy) else { throw .errno(.badFileDescriptor) }
        guard info.isSocket, let p = sup.watchers.lookup(inode: info.ino) else { return nil }
        // A socket at home is a real socket to the tracee's own calls (see `Sockets`).
        return p.socket == nil ? p : nil
    }

    /// Sends a request to home and returns its reply; a negative result is
    /// thrown as the home kernel's errno.
    func home(_ op: Op, _ scalars: Scalars, payloadLength: Int = 0) throws(Failure) -> ResponseView {
        try actAsThread(on: sup.link, worker.slot)
        let r: ResponseView
        do { r = try sup.link.call(worker.slot, op, scalars, payloadLength: payloadLength, watch: tid, receiver: worker) } catch {
            throw .transport(error)
        }
        if r.result < 0 { throw .errno(Errno(rawValue: CInt(truncatingIfNeeded: -r.result))) }
        return r
    }

    /// Sends a routed request to its destination: home, or the supervisor's
    /// local deputy (the payload is copied to that link's slot first).
    /// `to.keep` (the directory's owner) stays alive for the call, so its
    /// handle is not released at home while the request names it.
    func send(_ to: Destination, _ op: Op, _ scalars: Scalars, payloadLength: Int = 0) throws(Failure) -> ResponseView {
        guard to.isLocal else { return try home(op, scalars, payloadLength: payloadLength) }
        let slot = worker.localSlot
        try actAsThread(on: sup.localLink, slot)
        slot.payload(for: op).baseAddress!.copyMemory(from: worker.slot.payload(for: op).baseAddress!, byteCount: payloadLength)
        let r: ResponseView
        do { r = try sup.localLink.call(slot, op, scalars, payloadLength: payloadLength, watch: tid, receiver: worker) } catch {
            throw .transport(error)
        }
        if r.result < 0 { throw .errno(Errno(rawValue: CInt(truncatingIfNeeded: -r.result))) }
        return r
    }

    /// Makes the slot's next request act at home with this thread's
    /// credentials (a frame only when they differ from the last it sent).
    func actAsThread(on link: HomeLink, _ slot: HomeLink.Slot) throws(Failure) {
        let table = sup.tracees.credentials
        let id = try thread().identity.current(tid: tid, table: table)
        link.sendCredentials(slot, id: id, table.credentials(id))
    }

    /// The tracee's umask (for modes of files and directories it creates at
    /// home): its process's record (see `TraceeProcess.umask`).
    func umask() throws(Failure) -> UInt32 {
        let known = try thread().process.umask.load(ordering: .relaxed)
        return known != TraceeProcess.unknownUmask ? known : TaskStatus.read(tid: tid)?.umask ?? 0o022
    }

    /// Installs a new placeholder for home `handle` (opened with `flags`) in
    /// the tracee and answers the syscall with its fd number.
    func installPlaceholder(handle: Int64, flags: Int32, path: [UInt8]?) throws(Failure) -> Reply {
        let end: CInt
        do { end = try sup.watchers.makePlaceholder(handle: handle, accessMode: flags & O_ACCMODE, path: path,
                                                                 readOnly: flags & (O_ACCMODE | CSHIM_O_PATH) == O_RDONLY) } catch {
            sup.link.release(handle: handle)
            throw .errno(error)
        }
        defer { Glibc.close(end) }
        return try place(end, closeOnExec: flags & O_CLOEXEC != 0, minimum: 0)
    }

    /// Installs `source` in the tracee at a number the filter watches for
    /// data calls, and answers with it: the lowest free of 0, 1, 2 (so
    /// `close(0); open(…)` still yields 0), else the first free number from
    /// the process's hint in the placeholder range. Not POSIX's lowest free
    /// number otherwise: the price of running the tracee's own descriptors
    /// at native speed.
    func place(_ source: CInt, closeOnExec: Bool, minimum: Int32) throws(Failure) -> Reply {
        try .answered(Int64(place(source, closeOnExec: closeOnExec, minimum: minimum, answer: true)))
    }

    /// `place`, optionally leaving the notification pending (for calls that
    /// install several descriptors, then answer); returns the number.
    func place(_ source: CInt, closeOnExec: Bool, minimum: Int32, answer: Bool) throws(Failure) -> CInt {
        let process = try thread().process
        let base = max(sup.placeholderBase, minimum), limit = sup.descriptorLimit, tid = self.tid
        let listener = sup.listener, id = self.id
        // The free-number check and the install happen under the process's
        // lock: every other descriptor made at a watched number (another
        // placement, a dup2 onto one) is made under it too, so none can
        // take the number between the two. 0, 1 and 2 are the exception: a
        // native open may take them first, and then the install replaces it.
        // (Held across the install, which under ptrace the tracer makes:
        // the tracer's own worker takes it with `Worker.withLock`.)
        return try worker.withLock(process.nextSlot) { (hint: inout Int32) throws(Failure) -> CInt in
            var target: Int32 = -1
            if minimum <= 2 {
                for fd in minimum...2 where !PidFD.isOpen(tid: tid, fd) {
                    target = fd
                    sup.tracees.markLowPlaceholders(process)
                    break
                }
            }
            if target < 0 {
                var fd = max(hint, base)
                var tried: Int32 = 0
                while fd >= limit || PidFD.isOpen(tid: tid, fd) {
                    fd = fd >= limit ? base : fd + 1
                    tried += 1
                    if tried > limit - base { throw .errno(.tooManyOpenFiles) }
                }
                hint = fd + 1
                target = fd
            }
            return try local { () throws(Errno) in
                answer ? try listener.installAndRespond(id: id, source: source, closeOnExec: closeOnExec, at: target)
                    : try listener.install(id: id, source: source, closeOnExec: closeOnExec, at: target)
            }
        }
    }

    /// dup2 of the tracee's `source` (a copy) onto `target`, a watched
    /// number, done here under the process's placement lock (see `place`);
    /// answers the call with `target`.
    func duplicate(_ source: CInt, onto target: Int32, closeOnExec: Bool) throws(Failure) -> Reply {
        let process = try thread().process
        let listener = sup.listener, id = self.id
        _ = try worker.withLock(process.nextSlot) { (_: inout Int32) throws(Failure) -> CInt in
            try local { () throws(Errno) in
                try listener.installAndRespond(id: id, source: source, closeOnExec: closeOnExec, at: target)
            }
        }
        return .answered(Int64(target))
    }
}
