import CShim
import Glibc
import Synchronization
import SysKit
import Wire

/// A character device at home (a terminal, a serial line) as its
/// placeholder knows it, beside its `SocketState` (a stream connected from
/// the start). The pump's `up` thread and the ioctl handler take turns
/// through `sending`: an ioctl first sends home what the tracee wrote
/// before it, so a TCSETS after a write applies after those bytes, as on
/// a local terminal.
final class DeviceLine: Sendable {
    /// Held while bytes taken from the pair are on their way home; holds
    /// the pump's copy of our end of the pair (-1 once both pump threads
    /// have ended), which outlives the placeholder.
    let sending = Mutex<CInt>(-1)
    /// The `down` thread has ended (its read at home answered).
    let downEnded = Atomic<Bool>(false)
    /// Pump threads still running; the last gives both slots back.
    let running = Atomic<Int>(2)

    /// Sends home, with `c`'s slot, every byte the tracee has written to
    /// its end and the pump has not taken yet, then runs `body`, before
    /// the pump may move more. Under `sending`.
    func afterWrites<T>(_ c: borrowing Call, _ s: SocketState, _ body: () throws(Failure) -> T) throws(Failure) -> T {
        try sending.withLock { (_: inout CInt) throws(Failure) -> T in
            guard sendPending(s.end, s, c.worker.slot) else { throw .errno(.ioError) }
            return try body()
        }
    }

    /// Sends home what the tracee wrote and the pump has not moved yet
    /// (the program has exited: its placeholder may be gone already, and
    /// wrap-and-run is about to end).
    func flush(_ s: SocketState, _ slot: HomeLink.Slot) {
        sending.withLock { fd in
            if fd >= 0 { _ = sendPending(fd, s, slot) }
        }
    }

    /// Under `sending`: the unread bytes of our end `fd`, home; false if
    /// home refused them.
    private func sendPending(_ fd: CInt, _ s: SocketState, _ slot: HomeLink.Slot) -> Bool {
        let buf = slot.payload(for: .write)
        while true {
            let n = recv(fd, buf.baseAddress, min(buf.count, Wire.maxPayload), Int32(MSG_DONTWAIT))
            if n <= 0 { return true }
            var done = 0
            while done < n {
                if done > 0 { memmove(buf.baseAddress!, buf.baseAddress! + done, n - done) }
                guard let r = try? s.link.call(slot, .write, Scalars(s.handle), payloadLength: n - done), r.result > 0 else {
                    return false
                }
                done += Int(r.result)
            }
        }
    }
}

/// The two threads that move a home device's data, as `SocketPump` does a
/// socket's: `down` reads at home and writes into the pair (blocking while
/// the tracee's receive buffer is full), `up` sends home what the tracee
/// writes. When the tracee has closed its last descriptor, `up` sees end
/// of file and interrupts `down`'s read at home (a terminal's read waits
/// for input that may never come). Both slots go back when both end.
enum DevicePump {
    /// Starts pumping `s` (its `device` set), listed in `watchers.devices`
    /// while it runs; false if no thread or slot could be had.
    static func start(_ s: SocketState, watchers: Watchers) -> Bool {
        guard let line = s.device, let (down, up, fd) = s.pumpResources(down: nil) else { return false }
        line.sending.withLock { $0 = fd }
        let key = ObjectIdentifier(s)
        watchers.devices.withLock { $0[key] = s }
        let finish: @Sendable () -> Void = {
            if line.running.wrappingSubtract(1, ordering: .acquiringAndReleasing).newValue == 0 {
                s.link.returnSlot(down)
                s.link.returnSlot(up)
                line.sending.withLock { fd in
                    Glibc.close(fd)
                    fd = -1
                }
                _ = watchers.devices.withLock { $0.removeValue(forKey: key) }
            }
        }
        s.startPumping()
        let downThread = ThreadRunner(name: "device-down") {
            pumpDown(s, fd, down)
            line.downEnded.store(true, ordering: .releasing)
            finish()
        }
        guard downThread.tryStart() != nil else {
            line.running.store(1, ordering: .relaxed)
            finish()
            s.writerFinished()
            return false
        }
        let upThread = ThreadRunner(name: "device-up") {
            pumpUp(s, line, fd, up)
            while !line.downEnded.load(ordering: .acquiring) {
                s.link.cancelCall(on: down)
                usleep(20_000)
            }
            finish()
        }
        guard upThread.tryStart() != nil else {
            // No thread: nothing the tracee writes can go home.
            Glibc.shutdown(fd, Int32(SHUT_RD))
            s.writerFinished()
            s.link.cancelCall(on: down)
            finish()
            return true
        }
        return true
    }

    /// Home → tracee, until the device's end of file or error (a pty whose
    /// master closed: EIO) or the tracee's end is gone.
    private static func pumpDown(_ s: SocketState, _ fd: CInt, _ slot: HomeLink.Slot) {
        while true {
            guard let r = try? s.link.call(slot, .read, Scalars(s.handle, Int64(SocketPump.readSize))), r.result > 0 else { break }
            guard (try? FD.writeFully(fd, r.payload.baseAddress!, r.payload.count)) != nil else { break }
        }
        Glibc.shutdown(fd, Int32(SHUT_WR))
    }

    /// Tracee → home, until the tracee's end of file (its last close).
    private static func pumpUp(_ s: SocketState, _ line: DeviceLine, _ fd: CInt, _ slot: HomeLink.Slot) {
        let buf = slot.payload(for: .write)
        reading: while true {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if Glibc.poll(&p, 1, -1) < 0 { if Glibc.errno == EINTR { continue } else { break } }
            let more = line.sending.withLock { _ -> Bool in
                let n = recv(fd, buf.baseAddress, min(buf.count, Wire.maxPayload), Int32(MSG_DONTWAIT))
                if n < 0 { return Glibc.errno == EAGAIN || Glibc.errno == EINTR }
                if n == 0 { return false }
                var left = n
                while left > 0 {
                    guard let r = try? s.link.call(slot, .write, Scalars(s.handle), payloadLength: left), r.result > 0 else {
                        // Home refuses the data: the tracee's writes fail from now on.
                        Glibc.shutdown(fd, Int32(SHUT_RD))
                        return false
                    }
                    let written = Int(r.result)
                    left -= written
                    if left > 0 { memmove(buf.baseAddress!, buf.baseAddress! + written, left) }
                }
                return true
            }
            if !more { break reading }
        }
        s.writerFinished()
    }
}
