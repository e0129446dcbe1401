import Glibc
import SysKit
import Wire

/// A connection that has not authenticated yet, served by the listener's
/// one thread: a non-blocking socket, the handshake state machine and a
/// deadline. It reads exactly one frame at a time (a header, then the
/// length the header gives, at most `maxFrame`), so it never takes a byte
/// of what follows the handshake: the deputy reads the session from the
/// first request on.
final class PendingConnection {
    /// Handshake frames are small (a hello is 72 bytes): anything longer is refused.
    static let maxFrame = 256

    /// Where the handshake stands.
    enum Phase: Equatable {
        case handshaking
        /// The client proved the key: hand the stream to a deputy (once `outbox` is sent).
        case authenticated
        /// The handshake failed: send `outbox` (a `refused`), then close.
        case refused(String)
        /// The peer went away or the socket failed: close.
        case gone(String)
        /// The peer closed before finishing the handshake (not worth a log
        /// line each: anyone can connect and go).
        case left
    }

    let fd: CInt
    let peer: String
    let deadline: UInt64
    private(set) var phase = Phase.handshaking
    private var handshake: ServerHandshake
    private var frame = [UInt8](repeating: 0, count: maxFrame)
    private var have = 0
    private var want = Wire.headerSize
    private var outbox: [UInt8] = []

    init(fd: CInt, peer: String, key: [UInt8]?, deadline: UInt64) {
        self.fd = fd
        self.peer = peer
        self.deadline = deadline
        handshake = ServerHandshake(key: key, nonce: randomBytes(Wire.nonceSize), capabilities: Wire.capabilityWatches)
    }

    deinit { Glibc.close(fd) }

    /// Wants POLLIN (still reading the handshake) and/or POLLOUT (replies not yet sent).
    var events: Int16 {
        var e: Int16 = 0
        if phase == .handshaking { e |= Int16(POLLIN) }
        if !outbox.isEmpty { e |= Int16(POLLOUT) }
        return e
    }

    /// Done with this connection one way or another (its replies are out).
    var isSettled: Bool { phase != .handshaking && (outbox.isEmpty || isGone) }

    private var isGone: Bool {
        switch phase {
        case .gone, .left: return true
        default: return false
        }
    }

    /// The keys the session's frames are sealed with (nil without a key).
    var sessionKeys: SessionKeys? {
        phase == .authenticated ? handshake.sessionKeys : nil
    }

    /// Reads what has arrived and feeds each whole frame to the handshake.
    func receive() {
        while phase == .handshaking {
            let n = frame.withUnsafeMutableBytes { b in recv(fd, b.baseAddress! + have, want - have, Int32(MSG_DONTWAIT)) }
            if n == 0 { phase = .left; return }
            if n < 0 {
                if failedMayRetry() { continue }
                return
            }
            have += n
            if have < want { continue }
            if want == Wire.headerSize {
                let header: FrameHeader
                do {
                    header = try frame.withUnsafeBytes { (b) throws(WireError) in
                        try FrameHeader.decode(UnsafeRawBufferPointer(rebasing: b[0..<Wire.headerSize]))
                    }
                } catch {
                    phase = .gone("protocol error: \(error)")
                    return
                }
                guard Int(header.length) <= Self.maxFrame else {
                    phase = .gone("protocol error: a handshake frame of \(header.length) bytes")
                    return
                }
                want = Int(header.length)
                if have < want { continue }
            }
            take(Array(frame[0..<want]))
            have = 0
            want = Wire.headerSize
        }
    }

    private func take(_ bytes: [UInt8]) {
        let step = handshake.receive(bytes)
        for out in step.send { outbox += out }
        switch step.outcome {
        case .proceed: break
        case .complete: phase = .authenticated
        case .failed(let e):
            phase = .refused(e == .authenticationFailed ? "wrong key (authentication failed)" : e.description)
        }
    }

    /// After a recv or send failed: true to try again at once (EINTR);
    /// false to wait for the socket (EAGAIN), or because the connection is
    /// gone (then `phase` says so).
    private func failedMayRetry() -> Bool {
        let e = Glibc.errno
        if e == EINTR { return true }
        if e != EAGAIN && e != EWOULDBLOCK { phase = .gone(String(cString: strerror(e))) }
        return false
    }

    /// Sends what the handshake has to say, as far as the socket takes it.
    func flush() {
        while !outbox.isEmpty && !isGone {
            let n = outbox.withUnsafeBytes { b in send(fd, b.baseAddress, b.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
            if n < 0 {
                if failedMayRetry() { continue }
                return
            }
            outbox.removeFirst(n)
        }
    }
}
