import CShim
import Glibc
import Synchronization
import SysKit
import Wire

/// Write-behind: a `write`/`pwrite` of at most one frame to a regular file
/// at home is acknowledged to the tracee as soon as its frame is on the
/// stream; its reply is read later, by whichever call reads the stream.
///
/// Why it stays correct:
/// - Order. The home reads requests in order and runs regular-file calls
///   inline, so every later request of the session — a read, a stat (the
///   attribute cache answers nothing while writes are in flight), a seek,
///   an fsync, a write through another descriptor, an open by another
///   process of the session — runs after the writes before it. Only a
///   program outside the session that the tracee tells through another
///   channel (not through home) can look before a write has landed.
/// - Errors. A failed or short write (a full disk) is remembered for its
///   open file description and returned by the next `write` on it, by
///   `fsync`/`fdatasync`, at the latest by `close`, as NFS does. `close`
///   first waits for the description's writes to be answered. A `close` that
///   reports such an error cannot also close the descriptor (the supervisor
///   either fails the call or lets the kernel run it): the descriptor stays
///   open and a second `close` closes it.
/// - Bounds. At most `maxWrites` writes and `maxBytes` bytes are in flight
///   per session (less than a socket's buffer, so sending never waits for a
///   reader); beyond that a write goes the synchronous way, and its reply,
///   behind all of theirs, settles them.
///
/// "Only this session has it open for writing" is not something the home
/// can check against programs outside the session; the rule above (order
/// within the session, errors by fsync/close) is what holds.
/// `--sync-writes` turns it off.
/// (Unchecked Sendable: the per-record arrays and byte counts are read and
/// written only under `lock`; the counts read without it are atomics.)
final class WriteBehind: @unchecked Sendable {
    /// The bit that marks the request id of an unwaited write; its low 16
    /// bits stay the worker's slot, the channel its credentials went by.
    static let unwaitedBit: UInt64 = 1 << 63
    static let records = 64
    static let maxWrites = 16
    static let maxBytes = 128 * 1024

    let enabled: Bool
    /// Writes in flight in the whole session (read without the lock by the
    /// attribute cache, which answers nothing while it is not 0).
    let writesInFlight = Atomic<Int>(0)
    /// Records in use (`close` looks only while some are).
    let tracked = Atomic<Int>(0)
    /// Guards the records and `bytesInFlight`.
    private let lock = Mutex<Void>(())
    private var bytesInFlight = 0
    /// Per open file description (home handle): the handle (-1: free), its
    /// kind (0 unknown, 1 regular file, 2 other), writes in flight, the
    /// first error not yet reported, and a generation that stale replies
    /// cannot match.
    private let handle = UnsafeMutablePointer<Int64>.allocate(capacity: records)
    private let kind = UnsafeMutablePointer<UInt8>.allocate(capacity: records)
    private let inFlight = UnsafeMutablePointer<Int>.allocate(capacity: records)
    private let error = UnsafeMutablePointer<Int32>.allocate(capacity: records)
    private let generation = UnsafeMutablePointer<UInt64>.allocate(capacity: records)

    init(enabled: Bool) {
        self.enabled = enabled
        handle.initialize(repeating: -1, count: Self.records)
        kind.initialize(repeating: 0, count: Self.records)
        inFlight.initialize(repeating: 0, count: Self.records)
        error.initialize(repeating: 0, count: Self.records)
        generation.initialize(repeating: 0, count: Self.records)
    }

    deinit {
        handle.deallocate()
        kind.deallocate()
        inFlight.deallocate()
        error.deallocate()
        generation.deallocate()
    }

    /// What to do with one write.
    enum Decision {
        /// Send it unwaited with this request id.
        case unwaited(UInt64)
        /// Send it the ordinary way.
        case synchronous
        /// The handle's kind is not known yet: ask home (`learn`), then decide again.
        case unknownKind
        /// An earlier write failed: report this instead.
        case failed(Errno)
    }

    /// Request id: slot index (16 bits), record (8), length (21), generation (18), `unwaitedBit`.
    private static func id(slot: UInt64, record: Int, length: Int, generation: UInt64) -> UInt64 {
        unwaitedBit | (slot & 0xffff) | UInt64(record) << 16 | UInt64(length) << 24 | (generation & 0x3ffff) << 45
    }

    private func record(of h: Int64) -> Int? {
        for i in 0..<Self.records where handle[i] == h { return i }
        return nil
    }

    /// Decides for a write of `length` bytes on `h`, reserving its place
    /// in the window when it goes unwaited.
    func decide(_ h: Int64, length: Int, slot: UInt64) -> Decision {
        guard enabled, length > 0, length < 1 << 21 else { return .synchronous }
        return lock.withLock { _ -> Decision in
            guard let i = record(of: h) else { return .unknownKind }
            if error[i] != 0 {
                defer { error[i] = 0 }
                return .failed(Errno(rawValue: error[i]))
            }
            guard kind[i] == 1, writesInFlight.load(ordering: .relaxed) < Self.maxWrites,
                  bytesInFlight + length <= Self.maxBytes else { return .synchronous }
            inFlight[i] += 1
            bytesInFlight += length
            writesInFlight.wrappingAdd(1, ordering: .relaxed)
            return .unwaited(Self.id(slot: slot, record: i, length: length, generation: generation[i]))
        }
    }

    /// Records whether `h` is a regular file (no record when all are taken:
    /// its writes stay synchronous).
    func learn(_ h: Int64, regular: Bool) {
        lock.withLock { _ in
            if record(of: h) != nil { return }
            guard let i = record(of: -1) else { return }
            handle[i] = h
            kind[i] = regular ? 1 : 2
            inFlight[i] = 0
            error[i] = 0
            generation[i] &+= 1
            tracked.wrappingAdd(1, ordering: .relaxed)
        }
    }

    /// An unwaited write's reply (the reader, in stream order); false if
    /// it claims more bytes than were sent.
    func completed(_ id: UInt64, result: Int64) -> Bool {
        let i = Int((id >> 16) & 0xff), length = Int((id >> 24) & 0x1fffff), gen = (id >> 45) & 0x3ffff
        guard i < Self.records else { return false }
        return lock.withLock { _ -> Bool in
            writesInFlight.wrappingSubtract(1, ordering: .relaxed)
            bytesInFlight -= length
            guard result <= Int64(length) else { return false }
            guard handle[i] >= 0, generation[i] & 0x3ffff == gen else { return true }
            inFlight[i] -= 1
            if error[i] == 0 {
                if result < 0 { error[i] = Int32(truncatingIfNeeded: -result) }
                else if result < Int64(length) { error[i] = ENOSPC }
            }
            return true
        }
    }

    /// Gives back a place reserved by `decide` for a write that was not sent.
    func cancel(_ id: UInt64) {
        let i = Int((id >> 16) & 0xff), length = Int((id >> 24) & 0x1fffff)
        lock.withLock { _ in
            writesInFlight.wrappingSubtract(1, ordering: .relaxed)
            bytesInFlight -= length
            inFlight[i] -= 1
        }
    }

    /// Writes of `h` still unanswered.
    func pending(_ h: Int64) -> Bool {
        lock.withLock { _ in record(of: h).map { inFlight[$0] > 0 } ?? false }
    }

    /// The first unreported error of `h`'s writes, now reported.
    func takeError(_ h: Int64) -> Errno? {
        lock.withLock { _ -> Errno? in
            guard let i = record(of: h), error[i] != 0 else { return nil }
            defer { error[i] = 0 }
            return Errno(rawValue: error[i])
        }
    }

    /// The home handle is being released: its record goes (replies still on
    /// their way no longer match its generation).
    func forget(_ h: Int64) {
        guard tracked.load(ordering: .relaxed) > 0 else { return }
        lock.withLock { _ in
            guard let i = record(of: h) else { return }
            handle[i] = -1
            generation[i] &+= 1
            tracked.wrappingSubtract(1, ordering: .relaxed)
        }
    }
}

extension Call {
    /// A write of `count` bytes from the tracee at `address` to `p` (at
    /// `offset`, or the file offset), sent unwaited when `WriteBehind`
    /// allows; nil when it must go the synchronous way.
    func writeBehind(_ p: Placeholder, from address: UInt64, count: Int, at offset: Int64?) throws(Failure) -> Int? {
        let wb = sup.link.writeBehind
        guard wb.enabled, count <= Wire.maxPayload, p.accessMode != O_RDONLY else { return nil }
        var decision = wb.decide(p.handle, length: count, slot: worker.slot.index)
        if case .unknownKind = decision {
            let r = try home(.fstat, Scalars(p.handle))
            guard r.payload.count == Wire.statxSize else { throw .transport(.lost) }
            let mode = UInt32(r.payload.loadUnaligned(fromByteOffset: 28, as: UInt16.self))
            wb.learn(p.handle, regular: mode & UInt32(S_IFMT) == UInt32(S_IFREG))
            decision = wb.decide(p.handle, length: count, slot: worker.slot.index)
        }
        let id: UInt64
        switch decision {
        case .unwaited(let reserved): id = reserved
        case .failed(let e): throw .errno(e)
        case .synchronous, .unknownKind: return nil
        }
        // Its error is close's: the process's closes must stop from now on.
        let closesSeen: Bool
        do throws(Failure) { closesSeen = try seeCloses() } catch {
            wb.cancel(id)
            throw error
        }
        guard closesSeen else {
            wb.cancel(id)
            return nil
        }
        let op: Op = offset == nil ? .write : .pwrite
        let payload = worker.slot.payload(for: op)
        do throws(Failure) {
            try local { () throws(Errno) in try memory.readExactly(address, into: payload.baseAddress!, count: count) }
            try actAsThread(on: sup.link, worker.slot)
        } catch {
            wb.cancel(id)
            throw error
        }
        let scalars = offset.map { Scalars(p.handle, $0) } ?? Scalars(p.handle)
        guard sup.link.sendUnwaited(worker.slot, op, scalars, payloadLength: count, id: id) else {
            wb.cancel(id)
            throw .transport(.lost)
        }
        return count
    }

    /// Waits until `p`'s unwaited writes are answered (one synchronous
    /// call behind them) and returns their first error, if any.
    func settleWrites(_ p: Placeholder) throws(Failure) -> Errno? {
        let wb = sup.link.writeBehind
        guard wb.tracked.load(ordering: .relaxed) > 0 else { return nil }
        if wb.pending(p.handle) { _ = try home(.fcntl, Scalars(p.handle, Int64(F_GETFL), 0)) }
        return wb.takeError(p.handle)
    }
}
