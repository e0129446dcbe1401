import CShim
import Glibc
import SysKit
import Wire

/// The reader role: whichever waiting worker holds `readerBusy` reads the
/// stream and delivers each reply to its slot (see `HomeLink`).
extension HomeLink {
    /// As the reader: reads frames, delivering each to its slot, until
    /// `mine` has its reply (or the stream fails). While nothing arrives,
    /// watches `mine`'s tracee thread for signals as `call` does. A parked
    /// call (blocked at home) stops reading as soon as another call waits,
    /// and returns true: that call then reads its own reply, with no
    /// thread hand-off, and the parked one sleeps.
    ///
    /// While it polls, it also watches the seccomp listener for `receiver`
    /// (see `call`); before anything that may block, it hands the
    /// receiving on.
    func readUntilDelivered(_ mine: Slot, watcher: inout SignalWatch, receiver: Worker?) -> Bool {
        while !mine.delivered.load(ordering: .acquiring) && !lost.load(ordering: .acquiring) {
            if mine.parked.load(ordering: .relaxed) && activeCalls > 0 { return true }
            // Polls only while its call is the only one, and only as long
            // as replies have lately come that fast (`SpinBudget`).
            let spun = pollMicroseconds > 0 && activeCalls <= 1
            var ready = false
            if spun {
                switch scratch.spin.spin(fd, watching: receiver?.receivingFrom ?? -1) {
                case .ready: ready = true
                case .other:
                    receiver?.attend()
                    continue
                case .timedOut: break
                }
            }
            if !ready {
                receiver?.handOffReceiving()
                // The tracer's worker also wakes for the tracer's work.
                let serving = receiver?.duty?.servingFD ?? -1
                if watcher.tid > 0 || spun || serving >= 0 {
                    // Timed even after the watch has fired, so a parked reader
                    // notices an active call and leaves the stream to it.
                    let timeout = watcher.tid > 0 ? Int32(watcher.nextWaitMicroseconds / 1000) : -1
                    let (readable, work) = pollEither(fd, serving, timeout: timeout)
                    if work { receiver?.attend() }
                    if !readable {
                        if !work && watcher.tid > 0 { waitedWithoutReply(mine, &watcher) }
                        continue
                    }
                }
                if spun { scratch.spin.woke() }
            }
            let delivered: Slot?
            do throws(ReadFailure) {
                delivered = scratch.opener != nil ? try readSealedFrame() : try readPlainFrame()
            } catch {
                markLost(error.why); return false
            }
            if let target = delivered {
                target.delivered.store(true, ordering: .releasing)
                if target !== mine { target.wake() }
            }
        }
        return false
    }

    struct ReadFailure: Error {
        var why: String
    }

    /// The slot whose call a reply with header `h` answers, claimed, or nil
    /// for the reply to a detached request. A reply nobody asked for ends
    /// the session: it is a broken or hostile home, or an injected frame.
    private func claim(_ h: FrameHeader) throws(ReadFailure) -> Slot? {
        guard h.flags.contains(.response) else { throw ReadFailure(why: "home sent a request (\(h.op)), not a reply") }
        let index = Int(h.id & 0xffff)
        if UInt64(index) == Self.detachedSlot || h.id & WriteBehind.unwaitedBit != 0 { return nil }
        guard index < slots.count,
              slots[index].pending.compareExchange(expected: h.id, desired: 0, ordering: .sequentiallyConsistent).exchanged
        else { throw ReadFailure(why: "home sent a reply to request \(h.id), which is not in flight") }
        return slots[index]
    }

    /// Reads one plain frame: its header first, so its body goes straight
    /// into the slot of the call it answers. Returns that slot.
    private func readPlainFrame() throws(ReadFailure) -> Slot? {
        let h: FrameHeader
        do {
            guard try FD.readFully(fd, scratch.header.baseAddress!, Wire.headerSize) else {
                throw ReadFailure(why: "the home node closed the connection")
            }
            h = try FrameHeader.decode(UnsafeRawBufferPointer(scratch.header))
        } catch let e as ReadFailure {
            throw e
        } catch let e as Errno {
            throw ReadFailure(why: String(cString: strerror(e.rawValue)))
        } catch {
            throw ReadFailure(why: "malformed frame from home: \(error)")
        }
        let target = try claim(h)
        let into = target?.reply ?? scratch.discard
        into.copyMemory(from: UnsafeRawBufferPointer(scratch.header))
        let length = Int(h.length)
        do {
            if length > Wire.headerSize {
                guard try FD.readFully(fd, into.baseAddress! + Wire.headerSize, length - Wire.headerSize) else {
                    throw Errno.ioError
                }
            }
        } catch {
            if let target { target.failed.store(true, ordering: .releasing); target.wake() }
            throw ReadFailure(why: "the home node closed the connection mid-reply")
        }
        target?.replyLength = length
        if target == nil { try unclaimed(h, UnsafeRawBufferPointer(rebasing: scratch.discard[0..<length])) }
        return target
    }

    /// Reads one sealed frame whole, opens it, and copies the plain frame
    /// into the slot of the call it answers. Returns that slot.
    private func readSealedFrame() throws(ReadFailure) -> Slot? {
        let prefix = UnsafeMutableRawBufferPointer(rebasing: scratch.header[0..<4])
        let n: Int
        do {
            guard try FD.readFully(fd, prefix.baseAddress!, 4) else {
                throw ReadFailure(why: "the home node closed the connection")
            }
            n = try FrameOpener.sealedLength(prefix: UnsafeRawBufferPointer(prefix))
            guard try FD.readFully(fd, scratch.sealed.baseAddress!, n) else { throw Errno.ioError }
        } catch let e as ReadFailure {
            throw e
        } catch let e as WireError {
            throw ReadFailure(why: "malformed frame from home: \(e)")
        } catch {
            throw ReadFailure(why: "the home node closed the connection mid-reply")
        }
        // Opened in place; then the header picks the slot it is copied to.
        let length: Int, h: FrameHeader
        do {
            (length, h) = try scratch.opener!.open(prefix: UnsafeRawBufferPointer(prefix),
                                                   UnsafeRawBufferPointer(rebasing: scratch.sealed[0..<n]),
                                                   into: scratch.sealed)
        } catch {
            throw ReadFailure(why: "a frame from home failed to open: \(error); the session is closed")
        }
        let target = try claim(h)
        if let target {
            target.reply.copyMemory(from: UnsafeRawBufferPointer(rebasing: scratch.sealed[0..<length]))
            target.replyLength = length
        } else {
            try unclaimed(h, UnsafeRawBufferPointer(rebasing: scratch.sealed[0..<length]))
        }
        return target
    }

    /// A frame no call waits for, before any later frame is read: an
    /// `invalidate` the home pushed (`AttrCache`), or the reply to an
    /// unwaited write (`WriteBehind`). A malformed one ends the session.
    private func unclaimed(_ h: FrameHeader, _ frame: UnsafeRawBufferPointer) throws(ReadFailure) {
        if h.op == .invalidate {
            guard attributes.apply(frame) else { throw ReadFailure(why: "malformed invalidation from home") }
        } else if h.id & WriteBehind.unwaitedBit != 0 {
            guard let r = try? ResponseView(frame: frame), r.op == .write || r.op == .pwrite, r.payload.isEmpty,
                  writeBehind.completed(h.id, result: r.result) else {
                throw ReadFailure(why: "home's reply to an unwaited write does not match it")
            }
        }
    }

    /// After giving up the reader role: if another call still waits for its
    /// reply, wake its worker to take the stream over. Parked calls are not
    /// woken: they look at the stream on their own every few milliseconds.
    func promoteWaitingReader() {
        for slot in slots[0...highWater.load(ordering: .relaxed)] where slot.pending.load(ordering: .sequentiallyConsistent) != 0 {
            if !slot.parked.load(ordering: .relaxed) && slot.phase.load(ordering: .sequentiallyConsistent) == Phase.asleep.rawValue {
                slot.wake()
                return
            }
        }
    }
}
