import CShim
import Dispatch
import Glibc
import Synchronization
import SysKit
import Wire

/// What every thread of one session shares: the export root, the handles,
/// the reply stream, and the threads that run calls which may block.
///
/// Nothing waits in line: the session's reader runs a call inline only when
/// it cannot block (regular files, metadata); a call that may wait (a FIFO,
/// a pipe, a socket, a terminal, a lock) goes to a thread of its own, taken
/// from an idle pool or started for it, and answers when it is done, out of
/// order. `cancel` interrupts such a call with a thread signal whose handler
/// is installed without SA_RESTART: the call ends with EINTR, or with what it
/// had already done (a partial read or write), and that is what the client
/// gets. Data a call consumed at home is always in its reply.
final class Session: Sendable {
    let root: ExportRoot
    let handles: Handles
    let limits: SessionLimits
    let credentials = SessionCredentials()
    let lockOwners = LockOwners()
    /// What the session's client caches, watched (see `Watches`).
    let watches = Watches()
    /// A terminal handed over from a second login (`HandedTerminal`).
    let handedTerminal = HandedTerminal()
    /// The reply stream.
    let output: CInt
    /// Every reply goes through it: whole, sealed if the session is, in order.
    private let outgoing: OutgoingFrames
    /// Large file reads may splice their payload (unsealed streams only).
    let splices: Bool
    /// Calls running on threads of their own, by request id (for `cancel`).
    private let blocked = Mutex<[UInt64: HomeCall]>([:])
    /// The `streamWrite` turns, by handle.
    private let turns = Mutex<[Int64: StreamTurn]>([:])
    /// Calls not in use (their buffers are reused).
    private let spare = Mutex<[HomeCall]>([])
    /// Pool threads waiting for a call.
    private let idle = Mutex<[PoolThread]>([])
    /// Wakes the interrupter, which re-signals cancelled calls until they end.
    private let interrupter = DispatchSemaphore(value: 0)
    private let interrupterRunning = Atomic<Bool>(false)
    let ended = Atomic<Bool>(false)

    /// How long a pool thread waits for work before it exits.
    static let idleSeconds = 30
    /// How often a cancelled call that has not ended yet is signalled again
    /// (the first signal can land just before the call enters the kernel).
    static let resignalMicroseconds: UInt32 = 1000

    init(root: ExportRoot, output: CInt, sealer: FrameSealer?, limits: SessionLimits = SessionLimits()) {
        self.root = root
        self.limits = limits
        handles = Handles(limit: limits.maxOpen)
        self.output = output
        outgoing = OutgoingFrames(sealer: sealer)
        splices = sealer == nil
    }

    /// A call object with its buffers, from the free list or new.
    func takeCall() -> HomeCall {
        spare.withLock { $0.popLast() } ?? HomeCall(session: self)
    }

    func recycle(_ c: HomeCall) {
        // A payload left in the pipe (its reply never went) must not
        // precede the next one.
        if c.splice?.pending ?? 0 > 0 { c.splice = nil }
        c.dropInbound()
        spare.withLock { $0.append(c) }
    }

    /// Executes `c` with its op's handler, on the calling thread switched to
    /// the call's credentials (`applied` is that thread's record of them);
    /// the handles it acquired are released before this returns.
    func execute(_ c: HomeCall, applied: inout AppliedCredentials) -> (result: Int64, payloadLength: Int) {
        defer { c.finish() }
        do {
            try applied.apply(c.credentials)
            return try HomeOps.row(c.r.op).handler(c)
        } catch {
            return (-Int64(error.rawValue), 0)
        }
    }

    /// Handles whose last user was a lock owner's thread, for the reader to close.
    private let toClose = Mutex<[CInt]>([])

    /// Closes `fd` (a handle of the session) from the session's table soon.
    func closeLater(_ fd: CInt) {
        toClose.withLock { $0.append(fd) }
    }

    /// Closes what `closeLater` was given (on the reader, between requests).
    func closeDeferred() {
        for fd in toClose.withLock({ list -> [CInt] in defer { list.removeAll() }; return list }) { Glibc.close(fd) }
    }

    /// Sends `c`'s reply through `stream` (the session's output, or a lock
    /// owner's copy of it); false if the stream is gone.
    @discardableResult
    func reply(_ c: HomeCall, result: Int64, payloadLength: Int, through stream: CInt? = nil) -> Bool {
        if c.repliedEarly { return true }
        let output = stream ?? self.output
        watches.pushPending(self)   // invalidations go ahead of the reply
        // A detached request (a release, credentials, a cancel, a lock
        // owner's exit) gets no reply: nobody waits for one, and one left on
        // the stream keeps the client's caches from answering until it is read.
        if c.r.id == Wire.pushId { return true }
        do {
            let len = try ResponseEncoder.encodeHeader(op: c.r.op, id: c.r.id, result: result,
                                                       payloadLength: payloadLength, into: c.response)
            if let pipe = c.splice, pipe.pending > 0 {
                // The payload waits in the pipe: the header, then the pipe.
                guard pipe.pending + pipe.tail == payloadLength else { c.splice = nil; return false }
                let sent = outgoing.send(UnsafeRawBufferPointer(rebasing: c.response[0..<(len - payloadLength)])) { bytes in
                    (try? FD.writeFully(output, bytes.baseAddress!, bytes.count)) != nil
                        && pipe.drain(into: output, tailFrom: c.out)
                }
                if !sent { c.splice = nil }
                return sent
            }
            return outgoing.send(UnsafeRawBufferPointer(rebasing: c.response[0..<len])) { bytes in
                (try? FD.writeFully(output, bytes.baseAddress!, bytes.count)) != nil
            }
        } catch {
            return false
        }
    }

    /// Answers `c` now, from its handler, which goes on after (a
    /// `streamWrite` writes once its turn is answered); the reply the
    /// handler returns later is not sent.
    func replyNow(_ c: HomeCall, result: Int64) {
        _ = reply(c, result: result, payloadLength: 0)
        c.repliedEarly = true
    }

    /// The turn of `streamWrite`s to `handle` (made on its first).
    func streamTurn(_ handle: Int64) -> StreamTurn {
        turns.withLock { map in
            if let t = map[handle] { return t }
            let t = StreamTurn()
            map[handle] = t
            return t
        }
    }

    /// `handle` is closed: a new handle with its number starts afresh.
    func forgetStreamTurn(_ handle: Int64) {
        _ = turns.withLock { $0.removeValue(forKey: handle) }
    }

    /// Sends a frame the home pushes unasked (`Watches`' invalidations).
    func push(_ frame: UnsafeRawBufferPointer) {
        _ = outgoing.send(frame) { bytes in (try? FD.writeFully(output, bytes.baseAddress!, bytes.count)) != nil }
    }

    // MARK: Calls that may block

    /// Lists `c` among the calls running off the reader (for `cancel`);
    /// false when the session already has `limits.maxInflight` of them.
    private func admit(_ c: HomeCall) -> Bool {
        let id = c.r.id
        return blocked.withLock { map -> Bool in
            guard map.count < limits.maxInflight, map[id] == nil else { return false }
            map[id] = c
            return true
        }
    }

    /// Runs an admitted call on the calling thread (which `cancel` may
    /// interrupt meanwhile), then answers it (through `stream`, see `reply`)
    /// and gives its buffers back.
    func runHandedOver(_ c: HomeCall, applied: inout AppliedCredentials, replyThrough stream: CInt? = nil) {
        c.onLockOwner = stream != nil
        c.thread.store(UInt(pthread_self()), ordering: .sequentiallyConsistent)
        let (result, length) = execute(c, applied: &applied)
        c.thread.store(0, ordering: .sequentiallyConsistent)
        c.onLockOwner = false
        _ = blocked.withLock { $0.removeValue(forKey: c.r.id) }
        if !ended.load(ordering: .acquiring) { reply(c, result: result, payloadLength: length, through: stream) }
        recycle(c)
    }

    /// Answers an admitted call that could not be run with -`errno`.
    func refuse(_ c: HomeCall, _ errno: Int32, replyThrough stream: CInt? = nil) {
        _ = blocked.withLock { $0.removeValue(forKey: c.r.id) }
        reply(c, result: -Int64(errno), payloadLength: 0, through: stream)
        recycle(c)
    }

    /// Runs a `posixLock` call on its tracee process's lock owner; false
    /// (nothing started) as `runOnThread`.
    func runOnLockOwner(_ c: HomeCall) -> Bool {
        guard let tgid = Int32(exactly: c.r.scalar(2)), tgid > 0,
              let owner = lockOwners.owner(tgid, session: self), admit(c) else { return false }
        owner.post(.call(c))
        return true
    }

    /// The tracee process `tgid` is gone: its lock waits end, its locks go.
    func endLockOwner(_ tgid: Int32) {
        let waits = blocked.withLock { map in
            map.values.filter { $0.r.op == .posixLock && $0.r.scalar(2) == Int64(tgid) }.map { $0.r.id }
        }
        for id in waits { cancel(id) }
        lockOwners.exit(tgid)
    }

    /// Runs `c` on a thread of its own; false (nothing started) when the
    /// session already has `limits.maxInflight` blocked or no thread can be had.
    func runOnThread(_ c: HomeCall) -> Bool {
        let id = c.r.id
        guard admit(c) else { return false }
        if let worker = idle.withLock({ $0.popLast() }) {
            worker.call = c
            worker.wake.signal()
            return true
        }
        let worker = PoolThread()
        worker.call = c
        if ThreadRunner(name: "home-call", body: { [self] in serve(worker) }).tryStart() != nil { return true }
        _ = blocked.withLock { $0.removeValue(forKey: id) }
        return false
    }

    /// A pool thread: runs the calls handed to it, then waits for the next;
    /// exits after `idleSeconds` without work, or when the session ends.
    private func serve(_ worker: PoolThread) {
        _ = cshim_interrupt_prepare_thread()
        var applied = AppliedCredentials()
        while true {
            if let c = worker.call {
                worker.call = nil
                runHandedOver(c, applied: &applied)
                if ended.load(ordering: .acquiring) { return }
                idle.withLock { $0.append(worker) }
            }
            if worker.wake.wait(timeout: .now() + .seconds(Self.idleSeconds)) == .timedOut {
                let left = idle.withLock { list -> Bool in
                    guard let i = list.firstIndex(where: { $0 === worker }) else { return false }
                    list.remove(at: i)
                    return true
                }
                if left { return }
                worker.wake.wait()   // a call is being handed over right now
            }
            if worker.call == nil { return }   // the session ended
        }
    }

    /// Interrupts the blocked call with request id `id`, if it is still
    /// running (a call that already finished keeps its result).
    func cancel(_ id: UInt64) {
        let found = blocked.withLock { map -> Bool in
            guard let c = map[id] else { return false }
            c.cancelled.store(true, ordering: .sequentiallyConsistent)
            let t = c.thread.load(ordering: .sequentiallyConsistent)
            if t != 0 { _ = cshim_interrupt_thread(t) }
            return true
        }
        guard found else { return }
        if !interrupterRunning.exchange(true, ordering: .acquiringAndReleasing) {
            let started = ThreadRunner(name: "home-interrupter", body: { [self] in interruptLoop() }).tryStart() != nil
            if !started { interrupterRunning.store(false, ordering: .releasing) }
        }
        interrupter.signal()
    }

    /// Signals every cancelled call still running, every
    /// `resignalMicroseconds`, until none is left.
    private func interruptLoop() {
        while true {
            interrupter.wait()
            if ended.load(ordering: .acquiring) && blocked.withLock({ $0.isEmpty }) {
                interrupterRunning.store(false, ordering: .releasing)
                return
            }
            while signalCancelled() { usleep(Self.resignalMicroseconds) }
        }
    }

    /// True while some cancelled call has not ended.
    private func signalCancelled() -> Bool {
        blocked.withLock { map -> Bool in
            var any = false
            for c in map.values where c.cancelled.load(ordering: .sequentiallyConsistent) {
                any = true
                // Under the lock: a thread stays registered while it runs the call, so it is alive.
                let t = c.thread.load(ordering: .sequentiallyConsistent)
                if t != 0 { _ = cshim_interrupt_thread(t) }
            }
            return any
        }
    }

    /// The session is over: interrupts every blocked call (their replies go
    /// nowhere), waits up to a second for them, stops the idle threads and
    /// closes the handles nobody is using.
    func end() {
        ended.store(true, ordering: .releasing)
        for id in blocked.withLock({ Array($0.keys) }) { cancel(id) }
        for _ in 0..<1000 where !blocked.withLock({ $0.isEmpty }) { usleep(1000) }
        for worker in idle.withLock({ list -> [PoolThread] in defer { list.removeAll() }; return list }) {
            worker.call = nil
            worker.wake.signal()
        }
        interrupter.signal()
        lockOwners.exitAll()
        handedTerminal.withdraw()
        closeDeferred()
        handles.closeAll()
    }
}

/// The `streamWrite`s to one handle, one after the other in the order their
/// turns were taken: a write holds `error` locked from its reply to its
/// last byte. `error` is the errno an earlier one hit after its reply
/// (0: none); every later one answers it.
final class StreamTurn: Sendable {
    let error = Mutex<Int32>(0)
}

/// A thread of the session's pool. `call` is handed over before `wake` is
/// signalled and read after the wait returns, so the semaphore orders it.
final class PoolThread: @unchecked Sendable {
    let wake = DispatchSemaphore(value: 0)
    var call: HomeCall?
}
