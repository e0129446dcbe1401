import CShim
import Glibc
import SysKit
import Synchronization
import Wire

/// One supervisor thread: receives notifications and handles them with its
/// own preallocated buffers. Workers share one listener, but only one at a
/// time waits on it (the kernel wakes every thread waiting in NOTIF_RECV
/// for each notification): it handles a call that ends up local itself and
/// receives the next, and hands the receiving on to an idle worker (or a
/// new one) when a call must wait (`HomeLink.call` decides: before it
/// sleeps, or when a notification is pending while it polls for its
/// reply), so a call blocked at home never keeps the next notification
/// from being received. A worker that finds enough
/// others idle exits.
final class Worker: @unchecked Sendable {
    // Everything here is touched only by this worker's thread after init
    // (the slot's reply buffer is handed over by HomeLink's protocol).
    /// Strong on purpose: workers run until the process exits, and the
    /// supervisor must outlive every call they are handling.
    let supervisor: Supervisor
    let slot: HomeLink.Slot
    /// This worker's slot on the supervisor's local deputy (emulated calls).
    let localSlot: HomeLink.Slot
    let notification = UnsafeMutablePointer<cshim_notif>.allocate(capacity: 1)
    /// Normalized paths for routing.
    let normalized = UnsafeMutableRawBufferPointer.allocate(byteCount: 2 * Int(PATH_MAX) + 2, alignment: 8)
    /// Length of the last path routed into `normalized`.
    var normalizedLength = 0
    /// The last routed path's rule is `copy` (its route is `.forward`).
    var routedCopy = false
    /// Where the policy made the call run, when that says more than the
    /// requests sent (`copy`, `denied`): for `--trace` and `--stats`,
    /// which clear it before each call.
    var decided: Venue?
    /// iovec arrays, stat conversions, second paths.
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 1024 * 16 + Int(PATH_MAX), alignment: 16)
    /// This worker is the one receiving notifications (holds the
    /// supervisor's receiver token).
    private var receiving = false
    /// With `--trace` or `--stats`: this worker's line buffer and counters.
    let observation: Observation?
    /// The ptrace engine's tracer, when this is the worker the tracer thread
    /// runs stops in itself (`Supervisor.runStopsOnTracer`): where the
    /// others hand the receiving on before a wait, its waits serve the
    /// tracer instead (see `attend`).
    let duty: PtraceTracer?

    init(supervisor: Supervisor, slot: HomeLink.Slot, localSlot: HomeLink.Slot, duty: PtraceTracer? = nil) {
        self.supervisor = supervisor
        self.slot = slot
        self.localSlot = localSlot
        self.duty = duty
        observation = supervisor.observer.map { Observation($0) }
    }

    deinit {
        notification.deallocate()
        normalized.deallocate()
        scratch.deallocate()
    }

    func run() {
        let sup = supervisor, listener = sup.listener
        defer {
            // Leaving (the listener is gone): the next worker finds out too.
            if receiving { receiving = false; sup.receiver.signal() }
            sup.link.returnSlot(slot)
            sup.localLink.returnSlot(localSlot)
            observation?.leave(sup.observer)
            sup.workerCount.wrappingSubtract(1, ordering: .relaxed)
        }
        while true {
            if !receiving {
                if sup.idleWorkers.load(ordering: .relaxed) >= Supervisor.maxIdleWorkers { return }
                sup.idleWorkers.wrappingAdd(1, ordering: .relaxed)
                sup.receiver.wait()
                sup.idleWorkers.wrappingSubtract(1, ordering: .relaxed)
                receiving = true
            }
            let received: Errno?
            do throws(Errno) { try listener.receive(into: notification); received = nil } catch { received = error }
            if let error = received {
                switch error {
                case .interrupted:
                    continue
                case .noSuchFileOrDirectory:
                    // The notifying task died before we read it, or every
                    // tracee is gone (then the listener hangs up: stop
                    // rather than spin).
                    if listener.hasHungUp() { return }
                    continue
                default:
                    return   // listener gone
                }
            }
            // One branch when neither --trace nor --stats is on.
            if let observer = sup.observer { observe(observer) } else { handle() }
        }
    }

    /// The listener's descriptor while this worker is the one receiving
    /// (a waiting call watches it: see `HomeLink.call`), else -1.
    var receivingFrom: CInt { duty?.servingFD ?? (receiving ? supervisor.listener.fd : -1) }

    /// `receivingFrom` is readable while this worker waits: the tracer's
    /// worker does the tracer's work; another hands the receiving on.
    func attend() {
        if let duty { duty.serve() } else { handOffReceiving() }
    }

    /// `mutex.withLock(body)`. The tracer's worker must not sleep on a lock
    /// a pump may hold through a long call home (a FIFO read whose writer
    /// waits for the tracer): it tries the lock, serving the tracer between
    /// tries (at least every millisecond).
    func withLock<Value, R>(_ mutex: borrowing Mutex<Value>,
                            _ body: (inout sending Value) throws(Failure) -> sending R) throws(Failure) -> R {
        guard let duty else { return try mutex.withLock(body) }
        while true {
            if let r = try mutex.withLockIfAvailable(body) { return r }
            if pollEither(duty.servingFD, -1, timeout: 1).a { duty.serve() }
        }
    }

    /// Handles stop `n` on the tracer thread (the tracer's worker).
    func handleOnTracer(_ n: UnsafeMutablePointer<cshim_notif>) {
        notification.pointee = n.pointee
        if let observer = supervisor.observer { observe(observer) } else { handle() }
    }

    /// Called before the call being handled may wait (for home, for a lock
    /// or a message another call holds up): gives the receiving to an idle
    /// worker, or to a new one when none is idle. Nothing when this worker
    /// has already handed it on.
    /// The tracer's worker has nothing to hand on: its waits serve (`attend`).
    func handOffReceiving() {
        guard receiving else { return }
        receiving = false
        let sup = supervisor
        if sup.idleWorkers.load(ordering: .relaxed) == 0 { sup.addWorker() }
        sup.receiver.signal()
    }

    /// ERESTARTSYS: returned to a tracee thread whose call was cancelled for
    /// a signal, the kernel delivers the signal and then restarts the call
    /// (SA_RESTART) or fails it with EINTR, exactly as for a local call.
    static let restartSys: Int32 = 512

    /// What a call cancelled for a signal (home answered EINTR: nothing was
    /// done) returns: the restart, when the kernel will surely deliver the
    /// signal to this thread on the way out; EINTR when another thread of the
    /// process may take it first (a process-directed signal); nil when no
    /// signal is pending any more (another thread took it): then the call
    /// is run again, as the kernel would have gone on waiting.
    private func interruptedResult(tid: pid_t) -> Int32? {
        var threads: Int32 = 1
        let bits = cshim_task_signals(tid, &threads)
        if bits < 0 { return -EINTR }   // gone: nobody will see it
        if bits & CSHIM_SIGNAL_THREAD != 0 { return -Self.restartSys }
        if bits & CSHIM_SIGNAL_SHARED != 0 { return threads == 1 ? -Self.restartSys : -EINTR }
        return nil
    }

    /// Handles the received notification and answers it; returns the
    /// value the tracee got (nil when the kernel ran the call).
    @discardableResult
    func handle() -> Int64? {
        let sup = supervisor
        let call = Call(notification, worker: self)
        let id = call.id
        guard let row = sup.table.row(for: call.nr) else {
            // Not in the table: cannot happen with a filter built from it.
            answer(id) { () throws(Errno) in try sup.listener.continueSyscall(id: id) }
            return nil
        }
        var reply: Reply = .continueSyscall
        var failure: Failure? = nil
        while true {
            slot.cancelSent = false
            localSlot.cancelSent = false
            do throws(Failure) {
                reply = try row.handler(call)
            } catch {
                if case .errno(let e) = error, e == .interrupted, slot.cancelSent || localSlot.cancelSent {
                    guard let result = interruptedResult(tid: call.tid) else { continue }
                    failure = .errno(Errno(rawValue: -result))
                } else {
                    failure = error
                }
            }
            break
        }
        if let error = failure {
            switch error {
            case .errno(let e):
                answer(id) { () throws(Errno) in try sup.listener.respond(id: id, value: 0, error: -e.rawValue) }
                return Int64(-e.rawValue)
            case .transport:
                // Files whose home is gone fail with EIO (sockets will say ENOTCONN).
                answer(id) { () throws(Errno) in try sup.listener.respond(id: id, value: 0, error: -EIO) }
                return Int64(-EIO)
            }
        }
        switch reply {
        case .continueSyscall:
            answer(id) { () throws(Errno) in try sup.listener.continueSyscall(id: id) }
            return nil
        case .value(let v):
            answer(id) { () throws(Errno) in try sup.listener.respond(id: id, value: v, error: 0) }
            return v
        case .answered(let v):
            return v
        }
    }

    /// Gives the kernel the answer to notification `id`. ENOENT means the
    /// thread is gone or its call was interrupted: there is no one to
    /// answer. Any other failure would leave the thread waiting for ever:
    /// it is said once, and the call fails with EIO instead.
    private func answer(_ id: UInt64, _ send: () throws(Errno) -> Void) {
        do { try send() } catch {
            if error == .noSuchFileOrDirectory { return }
            supervisor.reportAnswerFailure(error)
            _ = try? supervisor.listener.respond(id: id, value: 0, error: -EIO)
        }
    }
}
