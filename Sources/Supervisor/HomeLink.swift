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
/// `Slot` (its preallocated request and reply buffers); a reader thread
/// reads each reply straight into the waiting slot's buffer, so a forwarded
/// call copies its data once and allocates nothing.
public final class HomeLink: Sendable {
    let fd: CInt
    let writeLock = Mutex<Void>(())
    let slots: [Slot]
    let lost = Atomic<Bool>(false)
    let onLost: @Sendable (String) -> Void

    /// Slot index reserved for fire-and-forget requests (handle releases).
    static let detachedSlot: UInt64 = 0xffff

    /// A worker's request/reply buffers and its wake-up. The reader thread
    /// writes `reply`/`replyLength`/`failed` only after claiming `pending`
    /// (compare-exchange from the awaited id to 0) and before signalling
    /// `ready`; the worker reads them only after `ready` fires. That
    /// hand-off is what makes the unchecked Sendable sound.
    final class Slot: @unchecked Sendable {
        let index: UInt64
        let frame: UnsafeMutableRawBufferPointer
        let reply: UnsafeMutableRawBufferPointer
        let ready = DispatchSemaphore(value: 0)
        let pending = Atomic<UInt64>(0)
        var sequence: UInt64 = 0
        var replyLength = 0
        var failed = false

        init(index: Int) {
            self.index = UInt64(index)
            frame = .allocate(byteCount: Wire.maxFrameLength, alignment: 16)
            reply = .allocate(byteCount: Wire.maxFrameLength, alignment: 16)
        }
        deinit {
            frame.deallocate()
            reply.deallocate()
        }

        /// Where a request's payload goes, so callers can fill it in place.
        func payload(for op: Op) -> UnsafeMutableRawBufferPointer {
            UnsafeMutableRawBufferPointer(rebasing: frame[RequestEncoder.payloadOffset(op)...])
        }
    }

    /// Wraps a connected, already authenticated stream.
    init(fd: CInt, workers: Int, onLost: @escaping @Sendable (String) -> Void) {
        self.fd = fd
        self.onLost = onLost
        slots = (0..<workers).map { Slot(index: $0) }
    }

    /// Starts the reader thread.
    func start() {
        let t = ThreadRunner(name: "home-reader") { [self] in readLoop() }
        t.start()
    }

    /// Sends `op` with `scalars` and the `payloadLength` bytes already in
    /// `slot.payload(for: op)`, waits for the reply, and returns it.
    func call(_ slot: Slot, _ op: Op, _ scalars: Scalars, payloadLength: Int = 0) throws(TransportError) -> ResponseView {
        if lost.load(ordering: .acquiring) { throw .lost }
        slot.sequence &+= 1
        let id = (slot.sequence << 16) | slot.index
        let length: Int
        do {
            length = try RequestEncoder.encodeHeader(op: op, id: id, scalars: scalars, payloadLength: payloadLength, into: slot.frame)
        } catch {
            preconditionFailure("request over the frame limit: \(error)")  // callers chunk to Wire.maxPayload
        }
        slot.failed = false
        slot.pending.store(id, ordering: .sequentiallyConsistent)
        let sent = writeLock.withLock { _ -> Bool in
            do { try FD.writeFully(fd, slot.frame.baseAddress!, length); return true } catch { return false }
        }
        if !sent { markLost("write to home failed") }
        if lost.load(ordering: .sequentiallyConsistent) {
            // Whoever clears `pending` owns the wake-up.
            if slot.pending.compareExchange(expected: id, desired: 0, ordering: .sequentiallyConsistent).exchanged {
                throw .lost
            }
        }
        slot.ready.wait()
        if slot.failed { throw .lost }
        do {
            return try ResponseView(frame: UnsafeRawBufferPointer(rebasing: slot.reply[0..<slot.replyLength]))
        } catch {
            markLost("malformed reply from home: \(error)")
            throw .lost
        }
    }

    /// Tells home to close `handle`, without waiting (from deinit of a
    /// placeholder or a working directory, on whatever thread drops it).
    func release(handle: Int64) {
        if lost.load(ordering: .relaxed) { return }
        var buf: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        withUnsafeMutableBytes(of: &buf) { raw in
            guard let n = try? RequestEncoder.encode(op: .close, id: Self.detachedSlot, scalars: Scalars(handle),
                                                     payload: UnsafeRawBufferPointer(start: nil, count: 0), into: raw)
            else { return }
            writeLock.withLock { _ in _ = try? FD.writeFully(fd, raw.baseAddress!, n) }
        }
    }

    private func readLoop() {
        let header = UnsafeMutableRawBufferPointer.allocate(byteCount: Wire.headerSize, alignment: 8)
        let discard = UnsafeMutableRawBufferPointer.allocate(byteCount: Wire.maxFrameLength, alignment: 16)
        defer { header.deallocate(); discard.deallocate() }
        while true {
            let h: FrameHeader
            do {
                guard try FD.readFully(fd, header.baseAddress!, Wire.headerSize) else {
                    return markLost("the home node closed the connection")
                }
                h = try FrameHeader.decode(UnsafeRawBufferPointer(header))
            } catch let e as Errno {
                return markLost(String(cString: strerror(e.rawValue)))
            } catch {
                return markLost("malformed frame from home: \(error)")
            }
            let index = Int(h.id & 0xffff)
            let slot: Slot? = index < slots.count ? slots[index] : nil
            let claimed = slot?.pending.compareExchange(expected: h.id, desired: 0, ordering: .sequentiallyConsistent).exchanged ?? false
            let target = claimed ? slot!.reply : discard
            target.copyMemory(from: UnsafeRawBufferPointer(header))
            let length = Int(h.length)
            do {
                if length > Wire.headerSize {
                    guard try FD.readFully(fd, target.baseAddress! + Wire.headerSize, length - Wire.headerSize) else {
                        throw Errno.ioError
                    }
                }
            } catch {
                if claimed { slot!.failed = true; slot!.ready.signal() }
                return markLost("the home node closed the connection mid-reply")
            }
            if claimed {
                slot!.replyLength = length
                slot!.ready.signal()
            }
        }
    }

    /// Fails every waiting call and every later one; says so once.
    func markLost(_ why: String) {
        if lost.exchange(true, ordering: .sequentiallyConsistent) { return }
        shutdown(fd, Int32(SHUT_RDWR))
        for slot in slots {
            if slot.pending.exchange(0, ordering: .sequentiallyConsistent) != 0 {
                slot.failed = true
                slot.ready.signal()
            }
        }
        onLost(why)
    }
}

