import CShim
import Dispatch
import Glibc
import Synchronization
import SysKit
import Wire

/// Why a forwarded call got no answer from home. Only the dispatcher turns
/// this into an errno for the tracee.
public enum TransportError: Error, Sendable {
    case lost
}

/// The forwarding client: one stream to the home deputy shared by all
/// supervisor workers, with many requests in flight. Each worker owns a
/// `Slot` (its preallocated request and reply buffers).
///
/// There is no reader thread: a worker waiting for a reply reads the stream
/// itself when nobody else is (the leader/follower pattern), delivering
/// other workers' replies straight into their slots as they pass. With one
/// call in flight — the common case — a reply costs no thread hand-off at
/// all; a forwarded call copies its data once and allocates nothing.
public final class HomeLink: Sendable {
    let fd: CInt
    /// Every frame this side writes goes through it (whole, sealed if the
    /// session is, in order).
    let outgoing: OutgoingFrames
    /// Puts large unsealed requests (their payload read straight from the
    /// tracee into the slot) on the stream without another copy; nil when
    /// the session is sealed (the sealed copy is reused at once).
    let splicer: PageSplicer?
    let slots: [Slot]
    let lost = Atomic<Bool>(false)
    /// Indexes of the slots no worker holds.
    let free: Mutex<[Int]>
    /// The highest slot index ever taken (`promoteWaitingReader` looks no further).
    let highWater = Atomic<Int>(1)
    /// Calls waiting for their reply right now. The reader polls for the
    /// next frame only while its own call is the only one: with company,
    /// spinning threads take the CPUs that the other calls need.
    let waiting = Atomic<Int>(0)
    /// Of those, the parked ones (blocked at home, see `Slot.parked`).
    let parkedCount = Atomic<Int>(0)
    /// Held by the one worker reading the stream.
    let readerBusy = Atomic<Bool>(false)
    /// The reader's header and discard buffers (only the reader touches them).
    let scratch: ReaderScratch
    let onLost: @Sendable (String) -> Void
    /// The session's attribute cache, kept coherent by the `invalidate`
    /// frames the reader applies in stream order (disabled: 0 slots).
    let attributes: AttrCache
    /// Unwaited writes and their outcomes (see `WriteBehind`).
    let writeBehind: WriteBehind

    /// The most a reader polls for a reply before sleeping (µs; see `SpinBudget`).
    let pollMicroseconds: Int

    /// Slot index reserved for fire-and-forget requests (handle releases).
    static let detachedSlot: UInt64 = 0xffff

    /// Where a slot's worker is: running (trying to read, or reading), or
    /// asleep on its semaphore. Only the transition asleep → running, won by
    /// compare-exchange, may signal the semaphore, so no wake-up is lost or
    /// doubled.
    enum Phase: Int {
        case running = 0
        case asleep = 1
    }

    /// A worker's request/reply buffers and its wake-up. The reader writes
    /// `reply`, `replyLength`, `delivered` and `failed` only after claiming
    /// `pending` (compare-exchange from the awaited id to 0); the worker
    /// reads them only after seeing `delivered`/`failed` set through that
    /// claim and the semaphore or phase change that follows. That hand-off
    /// is what makes the unchecked Sendable sound.
    final class Slot: @unchecked Sendable {
        let index: UInt64
        /// Allocated by `prepare`, on the slot's first use.
        private(set) var frame = UnsafeMutableRawBufferPointer(start: nil, count: 0)
        private(set) var reply = UnsafeMutableRawBufferPointer(start: nil, count: 0)
        let ready = DispatchSemaphore(value: 0)
        /// The tracer's worker's wake-up instead of `ready` (see `sleep`);
        /// -1 for the others. Set before the slot's first call.
        var wakeFD: CInt = -1
        /// The credentials number (`CredentialTable`) home last got from this
        /// slot's channel; 0 before the first.
        var sentCredentials: UInt64 = 0
        /// Set when the call in flight was cancelled because its tracee
        /// thread has a signal to take (see `call`).
        var cancelSent = false
        /// The call in flight has waited past its first signal check: it is
        /// blocked at home, and leaves reading the stream to calls that are
        /// not (see `readUntilDelivered`).
        let parked = Atomic<Bool>(false)
        let pending = Atomic<UInt64>(0)
        let phase = Atomic<Int>(Phase.running.rawValue)
        let delivered = Atomic<Bool>(false)
        /// Requests sent (call ids are made from it); `Worker.observe` compares it around a call.
        var sequence: UInt64 = 0
        var replyLength = 0
        let failed = Atomic<Bool>(false)

        init(index: Int) {
            self.index = UInt64(index)
        }
        deinit {
            frame.deallocate()
            reply.deallocate()
        }

        /// Allocates the buffers, once (by the slot's owner, before its first call).
        func prepare() {
            if frame.baseAddress != nil { return }
            frame = .allocate(byteCount: Wire.maxFrameLength, alignment: 16)
            reply = .allocate(byteCount: Wire.maxFrameLength, alignment: 16)
        }

        /// Where a request's payload goes, so callers can fill it in place.
        func payload(for op: Op) -> UnsafeMutableRawBufferPointer {
            UnsafeMutableRawBufferPointer(rebasing: frame[RequestEncoder.payloadOffset(op)...])
        }

        /// Wakes the worker if it is asleep (from any thread).
        func wake() {
            if phase.compareExchange(expected: Phase.asleep.rawValue, desired: Phase.running.rawValue,
                                     ordering: .sequentiallyConsistent).exchanged {
                if wakeFD >= 0 {
                    var one: UInt64 = 1
                    _ = Glibc.write(wakeFD, &one, 8)
                } else {
                    ready.signal()
                }
            }
        }
    }

    /// Buffers of whoever holds the reader role, and the opener of the
    /// home's sealed frames (which counts them in stream order).
    final class ReaderScratch: @unchecked Sendable {
        // Used only by the holder of `readerBusy`.
        let header = UnsafeMutableRawBufferPointer.allocate(byteCount: Wire.headerSize, alignment: 8)
        let discard = UnsafeMutableRawBufferPointer.allocate(byteCount: Wire.maxFrameLength, alignment: 16)
        let opener: FrameOpener?
        /// Sealed frames land here before they open (empty when unsealed).
        let sealed: UnsafeMutableRawBufferPointer
        /// How long the reader polls for a reply before sleeping.
        var spin: SpinBudget

        init(opener: FrameOpener?, pollMicroseconds: Int) {
            self.opener = opener
            spin = SpinBudget(maximum: pollMicroseconds)
            sealed = .allocate(byteCount: opener == nil ? 0 : Wire.maxSealedLength, alignment: 16)
        }
        deinit {
            header.deallocate()
            discard.deallocate()
            sealed.deallocate()
        }
    }

    /// Slot indexes with a fixed use: the stream pump's, and one for
    /// start-up and the final flush. Workers take the others.
    static let pumpSlot = 0, controlSlot = 1

    /// Wraps a connected, already authenticated stream, with room for
    /// `calls` calls in flight at once (plus the two fixed slots).
    init(fd: CInt, keys: SessionKeys?, calls: Int, pollMicroseconds: Int, cacheSlots: Int = 0, writeBehind: Bool = false,
         onLost: @escaping @Sendable (String) -> Void) {
        self.fd = fd
        attributes = AttrCache(slots: cacheSlots, stream: fd)
        self.writeBehind = WriteBehind(enabled: writeBehind)
        let pair = keys?.forClient()
        outgoing = OutgoingFrames(sealer: pair?.seal)
        splicer = keys == nil ? PageSplicer(bytes: Wire.maxPayload) : nil
        self.pollMicroseconds = pollMicroseconds
        self.onLost = onLost
        slots = (0..<(calls + 2)).map { Slot(index: $0) }
        free = Mutex(Array((2..<(calls + 2)).reversed()))
        slots[Self.pumpSlot].prepare()
        slots[Self.controlSlot].prepare()
        scratch = ReaderScratch(opener: pair?.open, pollMicroseconds: pollMicroseconds)
    }

    /// A slot for one worker's calls, or nil when every slot is taken.
    func takeSlot() -> Slot? {
        guard let i = free.withLock({ $0.popLast() }) else { return nil }
        let slot = slots[i]
        slot.prepare()
        _ = highWater.max(i, ordering: .relaxed)
        return slot
    }

    /// Gives back a slot taken with `takeSlot` (no call in flight on it).
    func returnSlot(_ slot: Slot) {
        free.withLock { $0.append(Int(slot.index)) }
    }

    /// How long a call waits for its reply before it starts watching its
    /// tracee thread for signals, and how often it looks after that: every
    /// 2 ms for its first 50 ms, then every 5 ms (a blocked call costs a
    /// /proc read per look, nothing else).
    static let signalCheckMicroseconds = 2000
    static let signalCheckLaterMicroseconds = 5000
    static let signalCheckBackoffAfter = 25

    /// Sends `op` with `scalars` and the `payloadLength` bytes already in
    /// `slot.payload(for: op)`, waits for the reply, and returns it.
    ///
    /// With `watch` (a tracee thread id), a call still waiting checks that
    /// thread for a signal it does not block at each `SignalWatch` interval;
    /// on the first, it asks home to `cancel` the request and sets
    /// `slot.cancelSent`, then goes on waiting for the reply (EINTR, or what
    /// the call had done by then).
    ///
    /// With `receiver` (the worker making the call, while it is the one
    /// receiving notifications), the receiving is handed to another worker
    /// only when it must be: before this call sleeps, or when a
    /// notification is pending while it polls for the reply. A reply that
    /// comes within the poll so costs no thread wake-up.
    ///
    /// With `payloadPipe` (a pipe's read end; only when `splicesPayloads`),
    /// the payload is the next `payloadLength` bytes in that pipe, spliced
    /// onto the stream after the request's header: they never pass through
    /// this process's memory, and are sent as a `stablePayload` (a payload
    /// vmspliced from the slot is not: the slot is reused after the reply).
    func call(_ slot: Slot, _ op: Op, _ scalars: Scalars, payloadLength: Int = 0,
              watch: pid_t = 0, receiver: Worker? = nil, payloadPipe: CInt = -1) throws(TransportError) -> ResponseView {
        if lost.load(ordering: .acquiring) { throw .lost }
        slot.sequence &+= 1
        slot.cancelSent = false
        let id = (slot.sequence << 16) | slot.index
        let length: Int
        do {
            length = try RequestEncoder.encodeHeader(op: op, id: id, scalars: scalars, payloadLength: payloadLength, into: slot.frame,
                                                     flags: payloadPipe >= 0 ? .stablePayload : [])
        } catch {
            preconditionFailure("request over the frame limit: \(error)")  // callers chunk to Wire.maxPayload
        }
        slot.failed.store(false, ordering: .relaxed)
        slot.delivered.store(false, ordering: .relaxed)
        slot.parked.store(false, ordering: .relaxed)
        slot.pending.store(id, ordering: .sequentiallyConsistent)
        // Spliced if large: the slot's buffer is not reused before the reply.
        let sent = payloadPipe >= 0
            ? write(UnsafeRawBufferPointer(rebasing: slot.frame[0..<(length - payloadLength)]), then: payloadPipe, payloadLength)
            : write(UnsafeRawBufferPointer(rebasing: slot.frame[0..<length]), splice: true)
        if !sent { markLost("write to home failed") }
        waiting.wrappingAdd(1, ordering: .relaxed)
        defer {
            if slot.parked.load(ordering: .relaxed) { parkedCount.wrappingSubtract(1, ordering: .relaxed) }
            waiting.wrappingSubtract(1, ordering: .relaxed)
        }
        var watcher = SignalWatch(tid: watch, request: id)
        /// Set when this call, parked, just gave up reading: it sleeps once
        /// before it may read again.
        var yielded = false
        while true {
            if slot.delivered.load(ordering: .acquiring) { return try view(slot, op, scalars, payloadLength) }
            if slot.failed.load(ordering: .acquiring) || lost.load(ordering: .sequentiallyConsistent) {
                // Whoever clears `pending` owns the outcome.
                if slot.pending.compareExchange(expected: id, desired: 0, ordering: .sequentiallyConsistent).exchanged {
                    throw .lost
                }
                if slot.delivered.load(ordering: .acquiring) { return try view(slot, op, scalars, payloadLength) }
                if slot.failed.load(ordering: .acquiring) { throw .lost }
            }
            if !yielded && readerBusy.compareExchange(expected: false, desired: true, ordering: .sequentiallyConsistent).exchanged {
                yielded = readUntilDelivered(slot, watcher: &watcher, receiver: receiver)
                readerBusy.store(false, ordering: .sequentiallyConsistent)
                promoteWaitingReader()
                continue
            }
            yielded = false
            receiver?.handOffReceiving()
            // Someone else reads: sleep until they deliver our reply or hand
            // us the stream. Re-check after announcing the sleep, so a reader
            // that left just now is not missed.
            slot.phase.store(Phase.asleep.rawValue, ordering: .sequentiallyConsistent)
            if slot.delivered.load(ordering: .acquiring) || !readerBusy.load(ordering: .sequentiallyConsistent)
                || lost.load(ordering: .sequentiallyConsistent) {
                if slot.phase.compareExchange(expected: Phase.asleep.rawValue, desired: Phase.running.rawValue,
                                              ordering: .sequentiallyConsistent).exchanged {
                    continue
                }
            }
            if watcher.tid <= 0 {
                _ = slot.sleep(microseconds: nil, for: receiver)
                continue
            }
            // Timed even after the watch has fired: a parked call is not
            // promoted to reader, so it looks at the stream itself.
            if slot.sleep(microseconds: watcher.nextWaitMicroseconds, for: receiver) { continue }
            // Timed out: take ourselves out of the sleep, unless a waker
            // already has (then its signal is on its way: take it).
            if !slot.phase.compareExchange(expected: Phase.asleep.rawValue, desired: Phase.running.rawValue,
                                           ordering: .sequentiallyConsistent).exchanged {
                _ = slot.sleep(microseconds: nil, for: receiver)
            }
            waitedWithoutReply(slot, &watcher)
        }
    }

    /// The reply in `slot`, once it has been checked against its request
    /// (`ReplyContract`): a reply that breaks it ends the session.
    private func view(_ slot: Slot, _ op: Op, _ scalars: Scalars, _ payloadLength: Int) throws(TransportError) -> ResponseView {
        let r: ResponseView
        do {
            r = try ResponseView(frame: UnsafeRawBufferPointer(rebasing: slot.reply[0..<slot.replyLength]))
        } catch {
            markLost("malformed reply from home: \(error)")
            throw .lost
        }
        guard r.op == op else {
            markLost("home answered a \(op) request with a \(r.op) reply")
            throw .lost
        }
        if let wrong = ReplyContract.violation(op: op, scalars: scalars, requestPayload: payloadLength,
                                               result: r.result, payloadCount: r.payload.count) {
            markLost("home's \(op) reply does not match its request: \(wrong)")
            throw .lost
        }
        return r
    }

    /// Tells home to close `handle`, without waiting (from deinit of a
    /// placeholder or a working directory, on whatever thread drops it).
    /// After the program's exit, before wrap-and-run's own: one round trip
    /// behind everything sent. The home runs file calls in stream order, so
    /// the writes the program left in flight (write-behind, then exit
    /// without a close) have run at home when it returns; a private home
    /// ends with this process, and would otherwise lose them.
    func settle(_ slot: Slot) {
        _ = try? call(slot, .fstat, Scalars(-1))
    }

    func release(handle: Int64) {
        writeBehind.forget(handle)
        sendDetached(.close, Scalars(handle))
    }

    /// Sends `op` as `call` does, with request id `id`, and returns at once:
    /// its reply is the reader's to hand to `writeBehind`. False if the
    /// stream failed.
    func sendUnwaited(_ slot: Slot, _ op: Op, _ scalars: Scalars, payloadLength: Int, id: UInt64) -> Bool {
        if lost.load(ordering: .acquiring) { return false }
        slot.sequence &+= 1   // a request sent (the id is the caller's): see `Worker.observe`
        guard let length = try? RequestEncoder.encodeHeader(op: op, id: id, scalars: scalars, payloadLength: payloadLength,
                                                            into: slot.frame) else { return false }
        // Copied onto the stream, never spliced: the slot's buffer is reused
        // at once, while spliced pages stay referenced until home reads them.
        if write(UnsafeRawBufferPointer(rebasing: slot.frame[0..<length])) { return true }
        markLost("write to home failed")
        return false
    }

    /// Tells home that the slot's later requests act with `credentials`
    /// (number `id`), unless it already knows. Written before the request it
    /// precedes, by the same thread, so home reads it first.
    func sendCredentials(_ slot: Slot, id: UInt64, _ credentials: @autoclosure () -> Credentials) {
        if slot.sentCredentials == id || lost.load(ordering: .relaxed) { return }
        let c = credentials()
        var payload = [UInt8](repeating: 0, count: 4 * c.groups.count)
        payload.withUnsafeMutableBytes { p in
            for (i, g) in c.groups.enumerated() { p.storeBytes(of: g.littleEndian, toByteOffset: 4 * i, as: UInt32.self) }
        }
        let scalars = Scalars(Int64(slot.index), Int64(c.fsuid), Int64(c.fsgid), Int64(c.groups.count))
        var frame = [UInt8](repeating: 0, count: Wire.headerSize + 8 * Wire.maxScalars + payload.count)
        let sent = frame.withUnsafeMutableBytes { raw -> Bool in
            payload.withUnsafeBytes { p -> Bool in
                guard let n = try? RequestEncoder.encode(op: .credentials, id: Self.detachedSlot, scalars: scalars,
                                                         payload: p, into: raw) else { return false }
                return write(UnsafeRawBufferPointer(rebasing: raw[0..<n]))
            }
        }
        if sent { slot.sentCredentials = id }
    }

    /// Tells home that tracee process `tgid` is gone: its POSIX locks go.
    func releaseLockOwner(_ tgid: pid_t) {
        sendDetached(.lockOwnerExit, Scalars(Int64(tgid)))
    }

    /// Sends a request whose reply nobody waits for (it is read, and
    /// dropped, by whoever reads next).
    func sendDetached(_ op: Op, _ scalars: Scalars) {
        if lost.load(ordering: .relaxed) { return }
        var buf: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        withUnsafeMutableBytes(of: &buf) { raw in
            guard let n = try? RequestEncoder.encode(op: op, id: Self.detachedSlot, scalars: scalars,
                                                     payload: UnsafeRawBufferPointer(start: nil, count: 0), into: raw)
            else { return }
            _ = write(UnsafeRawBufferPointer(rebasing: raw[0..<n]))
        }
    }

    /// Writes one plain frame, sealed if the session is; false if the
    /// stream failed. A large unsealed frame is a slot's request, unchanged
    /// until its reply: it is spliced rather than copied.
    /// Puts `frame` on the stream; large frames by splicing their pages
    /// (`PageSplicer`) when `splice`, which the caller may ask only if the
    /// frame's buffer stays unchanged until home has read it (a request
    /// whose reply it waits for).
    private func write(_ frame: UnsafeRawBufferPointer, splice: Bool = false) -> Bool {
        outgoing.send(frame) { bytes in
            if splice, bytes.count >= PageSplicer.threshold, let splicer {
                return (try? splicer.write(fd, bytes.baseAddress!, bytes.count)) != nil
            }
            return (try? FD.writeFully(fd, bytes.baseAddress!, bytes.count)) != nil
        }
    }

    /// Ends the session on purpose, after the program: as `markLost`, said to no one.
    func close() {
        if lost.exchange(true, ordering: .sequentiallyConsistent) { return }
        shutdown(fd, Int32(SHUT_RDWR))
    }

    /// Fails every waiting call and every later one; says so once.
    func markLost(_ why: String) {
        if lost.exchange(true, ordering: .sequentiallyConsistent) { return }
        shutdown(fd, Int32(SHUT_RDWR))
        for slot in slots {
            if slot.pending.exchange(0, ordering: .sequentiallyConsistent) != 0 {
                slot.failed.store(true, ordering: .releasing)
                slot.wake()
            }
        }
        onLost(why)
    }
}
