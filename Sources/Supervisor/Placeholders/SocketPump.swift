import CShim
import Glibc
import Synchronization
import SysKit
import Wire

/// A socket at home, as its placeholder knows it: the pair end the
/// supervisor keeps, where its connect stands, and who closes the home
/// handle.
///
/// Until the connect succeeds, the tracee's end is kept unwritable: before
/// it is installed, the supervisor fills its send buffer from that end
/// (`filler` bytes, queued at our end), so `poll`/`select`/`epoll` on it
/// show no `POLLOUT`, exactly as a connecting TCP socket. Once home has
/// connected, the filler is read away and the tracee sees the socket
/// become writable; then two pump threads move the data (`SocketPump`).
final class SocketState: Sendable {
    /// Where the socket's connect stands.
    enum Phase: Int {
        case fresh = 0, connecting, connected, failed, listening
    }

    let handle: Int64
    let link: HomeLink
    /// Our end of the pair (the placeholder's; it owns and closes it).
    let end: CInt
    /// Bytes the tracee's end queued at ours to stay unwritable.
    let filler: Int
    /// A datagram socket: its data goes through the supervisor (`Datagrams`).
    let datagram: Bool
    /// socket(2)'s domain, type (without flags) and protocol, to make a
    /// local one in its place (`Sockets.goLocal`).
    let kind: (domain: Int32, type: Int32, proto: Int32)
    /// Set for a character device at home (a terminal): its data is pumped
    /// as a connected stream's, by `DevicePump`.
    let device: DeviceLine?
    let phase = Atomic<Int>(Phase.fresh.rawValue)
    /// What a failed non-blocking connect left for `SO_ERROR` (read once).
    let pendingError = Atomic<Int32>(0)
    /// The errno of a failed connect, for a later connect on the socket.
    let failure = Atomic<Int32>(0)
    private let life = Mutex<Life>(Life())
    /// A listening socket's readiness byte was taken by an accept (or the
    /// placeholder is gone): the listen pump looks at home again.
    let tokenTaken = CountingSemaphore(value: 0)
    /// The up pump's turn: held while it moves a chunk home, and by a
    /// `sendfile` at home, which must follow what the tracee wrote before.
    let upTurn = CountingSemaphore(value: 1)
    /// The options set at home, for a local socket in its place.
    let options = Mutex<SavedOptions>(SavedOptions())
    /// A bound Unix socket's path, as the tracee gave it (`UnixSockets`; empty: none).
    let unixName = Mutex<[UInt8]>([])

    /// Who still needs the home handle: it is closed once the placeholder
    /// is gone (the tracee's last descriptor closed) and the pump has sent
    /// home everything the tracee wrote.
    private struct Life {
        var pumping = false
        var gone = false
        var writerDone = false
        var released = false
    }

    init(handle: Int64, link: HomeLink, end: CInt, filler: Int, datagram: Bool = false,
         kind: (domain: Int32, type: Int32, proto: Int32) = (0, 0, 0), device: DeviceLine? = nil) {
        self.device = device
        self.datagram = datagram
        self.kind = kind
        self.handle = handle
        self.link = link
        self.end = end
        self.filler = filler
    }

    var current: Phase { Phase(rawValue: phase.load(ordering: .acquiring)) ?? .fresh }

    /// Moves fresh → connecting; false if the socket was not fresh.
    func beginConnect() -> Bool {
        phase.compareExchange(expected: Phase.fresh.rawValue, desired: Phase.connecting.rawValue,
                              ordering: .acquiringAndReleasing).exchanged
    }

    /// The connect failed with `error`: the tracee's end becomes writable
    /// and readable at end of file (a refused socket polls ready), and
    /// `SO_ERROR` says why once.
    func connectFailed(_ error: Int32, pending: Bool) {
        failure.store(error, ordering: .releasing)
        if pending { pendingError.store(error, ordering: .releasing) }
        phase.store(Phase.failed.rawValue, ordering: .releasing)
        dropFiller()
        // Reads see end of file; our end keeps its read side, so the
        // watcher does not take this for the tracee's last close.
        Glibc.shutdown(end, Int32(SHUT_WR))
    }

    /// Reads the filler away, so the tracee's end becomes writable.
    func dropFiller() {
        var left = filler
        let b = Self.fillerSink
        while left > 0 {
            let n = recv(end, b.baseAddress, min(left, b.count), Int32(MSG_DONTWAIT))
            if n <= 0 { if n < 0 && Glibc.errno == EINTR { continue } else { return } }
            left -= n
        }
    }

    /// Where the filler is read to (64 KiB a call: 64 bytes a call cost
    /// 2 ms a connect). Written by any thread, never read: its contents
    /// are garbage by design.
    nonisolated(unsafe) static let fillerSink = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 16)

    /// The pump took over the handle's data.
    func startPumping() {
        life.withLock { $0.pumping = true }
    }

    /// The placeholder is gone (the tracee closed its last descriptor of it).
    func placeholderGone() {
        let release = life.withLock { l -> Bool in
            l.gone = true
            return takeRelease(&l, when: !l.pumping || l.writerDone)
        }
        if release { link.release(handle: handle) }
        tokenTaken.signal()
    }

    /// The tracee has closed its last descriptor of the socket.
    var isGone: Bool { life.withLock { $0.gone } }

    /// The pump sent home all the tracee wrote (and the half-close).
    func writerFinished() {
        let release = life.withLock { l -> Bool in
            l.writerDone = true
            return takeRelease(&l, when: l.gone)
        }
        if release { link.release(handle: handle) }
    }

    private func takeRelease(_ l: inout Life, when ready: Bool) -> Bool {
        guard ready, !l.released else { return false }
        l.released = true
        return true
    }
}

/// The two threads that move a connected home socket's data: `up` sends
/// home what the tracee writes to its end (then the half-close at its end
/// of file), `down` reads from home and writes into the pair, blocking
/// while the tracee's receive buffer is full (back-pressure both ways:
/// the home socket's own buffers fill while we wait). Each has its own
/// link slot, so a read blocked at home never delays a write.
enum SocketPump {
    /// Most bytes one home read asks for.
    static let readSize = 256 * 1024

    /// Starts pumping `s`; with `connect` (the address already in the
    /// down slot's `connect` payload, `connectLength` bytes), first connects
    /// at home and answers the outcome on the socket (a non-blocking
    /// connect). False if no thread or slot could be had.
    static func start(_ s: SocketState, connect slot: HomeLink.Slot? = nil, connectLength: Int = 0) -> Bool {
        guard let (down, up, fd) = s.pumpResources(down: slot) else { return false }
        let ends = PumpEnds(fd: fd, link: s.link)
        let connecting = slot != nil
        s.startPumping()
        let ok = ThreadRunner(name: "socket-down") {
            if connecting {
                let r = try? s.link.call(down, .connect, Scalars(s.handle), payloadLength: connectLength)
                guard let r, r.result == 0 else {
                    s.connectFailed(Int32(truncatingIfNeeded: -(r?.result ?? -Int64(ENOTCONN))), pending: true)
                    s.writerFinished()
                    ends.done(down)
                    ends.done(up)
                    return
                }
                s.connected()
                startUp(s, ends, up)
            }
            pumpDown(s, fd, down)
            ends.done(down)
        }.tryStart() != nil
        if !ok {
            s.link.returnSlot(down)
            s.link.returnSlot(up)
            Glibc.close(fd)
            s.writerFinished()
            return false
        }
        if !connecting { startUp(s, ends, up) }
        return true
    }

    private static func startUp(_ s: SocketState, _ ends: PumpEnds, _ up: HomeLink.Slot) {
        let ok = ThreadRunner(name: "socket-up") {
            pumpUp(s, ends.fd, up)
            ends.done(up)
        }.tryStart() != nil
        if !ok {
            // No thread: nothing the tracee writes can go home.
            Glibc.shutdown(ends.fd, Int32(SHUT_RD))
            s.writerFinished()
            ends.done(up)
        }
    }

    /// Home → tracee, until home's end of file or the tracee's end is gone.
    private static func pumpDown(_ s: SocketState, _ fd: CInt, _ slot: HomeLink.Slot) {
        var busy = BusyHome()
        while true {
            guard let r = try? s.link.call(slot, .read, Scalars(s.handle, Int64(readSize))) else { break }
            if r.result == -Int64(EAGAIN), busy.waited() { continue }
            guard r.result > 0 else { break }
            busy = BusyHome()
            guard (try? FD.writeFully(fd, r.payload.baseAddress!, r.payload.count)) != nil else { break }
        }
        // The tracee reads end of file (EPOLLRDHUP).
        Glibc.shutdown(fd, Int32(SHUT_WR))
    }

    /// Tracee → home, until the tracee's end of file (shutdown or close);
    /// then the half-close goes home.
    private static func pumpUp(_ s: SocketState, _ fd: CInt, _ slot: HomeLink.Slot) {
        let buf = slot.payload(for: .streamWrite)
        var spliced = UpSplice(s, fd)
        reading: while true {
            // Takes the bytes only in its turn (see `upTurn`); waits outside it.
            s.upTurn.wait()
            switch spliced.send(s, fd, slot) {
            case nil:
                // The chunk is lost: the tracee's writes fail from now on.
                Glibc.shutdown(fd, Int32(SHUT_RD))
                s.upTurn.signal()
                break reading
            case 0?:
                break
            default:
                s.upTurn.signal()
                continue
            }
            let n = receive(fd, buf)
            if n == -2 {
                // Ancillary data (SCM_RIGHTS …) cannot reach home: rather
                // than drop it silently, the connection is reset both ways.
                s.upTurn.signal()
                Glibc.shutdown(fd, Int32(SHUT_RDWR))
                _ = try? s.link.call(slot, .shutdown, Scalars(s.handle, Int64(SHUT_RDWR)))
                break
            }
            if n < 0 {
                let e = Glibc.errno
                s.upTurn.signal()
                // A seqpacket pair reports the tracee's close with unread
                // data (ECONNRESET, once) before the messages it sent last:
                // those still go home.
                if e == ECONNRESET { continue }
                guard e == EAGAIN || e == EINTR else { break }
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                _ = poll(&p, 1, -1)
                continue
            }
            if n == 0 {
                s.upTurn.signal()
                break
            }
            var left = n
            var busy = BusyHome()
            while left > 0 {
                // Answered once home has taken it (it writes while we read on).
                let r = try? s.link.call(slot, .streamWrite, Scalars(s.handle), payloadLength: left)
                if let r, r.result == -Int64(EAGAIN), busy.waited() { continue }   // the bytes are still in `buf`
                guard let r, r.result > 0 else {
                    // Home refuses the data (reset): the tracee's writes fail from now on.
                    Glibc.shutdown(fd, Int32(SHUT_RD))
                    s.upTurn.signal()
                    break reading
                }
                let written = Int(r.result)
                left -= written
                if left > 0 { memmove(buf.baseAddress!, buf.baseAddress! + written, left) }
            }
            s.upTurn.signal()
        }
        // Home's last write has ended before the half-close (an empty
        // streamWrite's turn comes after it).
        _ = try? s.link.call(slot, .streamWrite, Scalars(s.handle))
        _ = try? s.link.call(slot, .shutdown, Scalars(s.handle, Int64(SHUT_WR)))
        s.writerFinished()
    }
}

/// Home answered a pump's call with EAGAIN: it has as many calls in flight
/// as it allows (`--max-inflight`), so the call was not run. The pump waits
/// for one to end and asks again, backing off from 0.5 ms to 50 ms, for
/// 10 s in all; past that the stream ends as on an error (a program with
/// more connections than home allows calls must not hang for ever).
struct BusyHome {
    private var total: UInt32 = 0
    private var step: UInt32 = 500

    /// Waits before the next try; false once the 10 s are spent.
    mutating func waited() -> Bool {
        if total >= 10_000_000 { return false }
        usleep(step)
        total += step
        step = min(step * 2, 50_000)
        return true
    }
}

extension SocketPump {
    /// One recvmsg from the pair into `buf`, without waiting: its byte
    /// count, -1 with errno set, or -2 if the message carried ancillary
    /// data (its descriptors are closed).
    private static func receive(_ fd: CInt, _ buf: UnsafeMutableRawBufferPointer) -> Int {
        var control = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        var iov = iovec(iov_base: buf.baseAddress, iov_len: min(buf.count, Wire.maxPayload))
        return withUnsafeMutableBytes(of: &control) { cb in
            withUnsafeMutablePointer(to: &iov) { ip in
                var m = msghdr()
                m.msg_iov = ip
                m.msg_iovlen = 1
                m.msg_control = cb.baseAddress
                m.msg_controllen = cb.count
                let n = recvmsg(fd, &m, Int32(MSG_DONTWAIT) | Messages.MSG_CMSG_CLOEXEC)
                guard n >= 0, m.msg_controllen > 0 || m.msg_flags & Int32(MSG_CTRUNC) != 0 else { return n }
                closeDescriptors(UnsafeRawBufferPointer(rebasing: cb[0..<min(m.msg_controllen, cb.count)]))
                return -2
            }
        }
    }

    /// Closes the descriptors of the SCM_RIGHTS messages in `control`.
    private static func closeDescriptors(_ control: UnsafeRawBufferPointer) {
        var offset = 0
        while offset + 16 <= control.count {
            let length = Int(control.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
            guard length >= 16, offset + length <= control.count else { return }
            if control.loadUnaligned(fromByteOffset: offset + 8, as: Int32.self) == SOL_SOCKET,
               control.loadUnaligned(fromByteOffset: offset + 12, as: Int32.self) == Messages.SCM_RIGHTS {
                for k in 0..<((length - 16) / 4) { Glibc.close(control.loadUnaligned(fromByteOffset: offset + 16 + 4 * k, as: CInt.self)) }
            }
            offset += (length + 7) & ~7
        }
    }
}

extension SocketState {
    /// What a pump of this socket runs with: a slot for each direction
    /// (`down` when the caller already holds one) and its own copy of our
    /// end of the pair; nil, with nothing kept, when one cannot be had.
    func pumpResources(down given: HomeLink.Slot?) -> (down: HomeLink.Slot, up: HomeLink.Slot, fd: CInt)? {
        guard let down = given ?? link.takeSlot() else { return nil }
        guard let up = link.takeSlot() else {
            link.returnSlot(down)
            return nil
        }
        let fd = dup(end)
        guard fd >= 0 else {
            link.returnSlot(down)
            link.returnSlot(up)
            return nil
        }
        return (down, up, fd)
    }

    /// Home connected: drop the filler, so the tracee sees the socket writable.
    func connected() {
        dropFiller()
        phase.store(Phase.connected.rawValue, ordering: .releasing)
    }
}

/// The pump's copy of our end of the pair, closed when both threads have
/// ended, each giving its slot back.
final class PumpEnds: Sendable {
    let fd: CInt
    let link: HomeLink
    private let running = Atomic<Int>(2)

    init(fd: CInt, link: HomeLink) {
        self.fd = fd
        self.link = link
    }

    func done(_ slot: HomeLink.Slot) {
        link.returnSlot(slot)
        if running.wrappingSubtract(1, ordering: .acquiringAndReleasing).newValue == 0 { Glibc.close(fd) }
    }
}
