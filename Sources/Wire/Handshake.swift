// The session handshake: pure state machines over frame bytes. The caller does the I/O
// and supplies the randomness (nonces). Allocation is fine here: once per session.
//
//   client                                server
//   hello [magic, version, caps] nonceC  →
//                                        ←  challenge [magic, version, caps, authRequired] nonceS
//   (authRequired 1)
//   authenticate clientProof             →
//                                        ←  welcome serverProof
//   (authRequired 0: the server sends challenge and an empty welcome together)
//
// Any failure on the server side is answered with `refused [reason]`, then the server closes.

/// A handshake frame decoded into owned values.
struct HandshakeFrame {
    var op: Op
    var scalars: Scalars
    var payload: [UInt8]

    /// Decodes `bytes` as a request-form frame with id 0.
    init(_ bytes: [UInt8]) throws(WireError) {
        let decoded: Result<HandshakeFrame, WireError> = bytes.withUnsafeBytes { raw in
            do throws(WireError) {
                let view = try RequestView(frame: raw)
                // Handshake frames carry request id 0; anything else is not a handshake frame.
                guard view.id == 0 else { throw .unexpectedOp(view.op) }
                return .success(HandshakeFrame(op: view.op, scalars: view.scalars, payload: Array(view.payload)))
            } catch {
                return .failure(error)
            }
        }
        self = try decoded.get()
    }

    init(op: Op, scalars: Scalars, payload: [UInt8]) {
        self.op = op
        self.scalars = scalars
        self.payload = payload
    }

    /// Encodes a handshake frame (id 0, flags 0).
    static func encode(_ op: Op, _ scalars: Scalars = Scalars(), payload: [UInt8] = []) -> [UInt8] {
        precondition(payload.count <= Wire.maxPayload)
        var frame = [UInt8](repeating: 0, count: RequestEncoder.payloadOffset(op) + payload.count)
        frame.withUnsafeMutableBytes { out in
            payload.withUnsafeBytes { p in
                do throws(WireError) {
                    _ = try RequestEncoder.encode(op: op, id: 0, scalars: scalars, payload: p, into: out)
                } catch {
                    preconditionFailure("handshake frame encoding cannot fail: \(error)")
                }
            }
        }
        return frame
    }

    static func refused(_ reason: RefusalReason) -> [UInt8] {
        encode(.refused, Scalars(reason.rawValue))
    }

    /// Checks magic then version (scalars 0 and 1 of hello/challenge).
    func checkMagicAndVersion() throws(WireError) {
        let magic = UInt64(bitPattern: scalars[0])
        guard magic == Wire.magic else { throw .badMagic(magic) }
        let version = scalars[1]
        guard version == Int64(Wire.protocolVersion) else {
            throw .unsupportedVersion(UInt16(clamping: version))
        }
    }
}

/// The client side of the handshake.
///
/// Send ``helloFrame()``, then feed each frame received from the server to
/// ``receive(_:)`` and send whatever it returns, until ``isComplete``.
public struct ClientHandshake: Sendable {
    enum State: Sendable {
        case awaitingChallenge
        case awaitingWelcome(expectedProof: [UInt8]?)
        case complete
        case failed(WireError)
    }

    let key: [UInt8]?
    let nonce: [UInt8]
    let capabilities: UInt64
    var state: State = .awaitingChallenge

    /// True after a valid `welcome`.
    public private(set) var isComplete = false
    /// The capabilities the server announced in its `challenge` (0 until then).
    public private(set) var serverCapabilities: UInt64 = 0
    /// After an authenticated handshake: the keys that seal the session's
    /// frames (nil without a key, and until `welcome` has verified).
    public var sessionKeys: SessionKeys? { isComplete ? pendingKeys : nil }
    private var pendingKeys: SessionKeys?

    /// - Parameters:
    ///   - key: nil: the stream is already trusted (ssh stdio, private socketpair) and the client
    ///     accepts a server that does not ask for auth (but cannot answer one that does).
    ///     Non-nil: auth is required — a server that says authRequired=0 fails with
    ///     ``WireError/authenticationFailed`` (no silent downgrade).
    ///   - nonce: 32 fresh random bytes (precondition).
    ///   - capabilities: bits announced in `hello`.
    public init(key: [UInt8]?, nonce: [UInt8], capabilities: UInt64 = 0) {
        precondition(nonce.count == Wire.nonceSize, "the client nonce must be \(Wire.nonceSize) bytes")
        self.key = key
        self.nonce = nonce
        self.capabilities = capabilities
    }

    /// The `hello` frame to send first.
    public func helloFrame() -> [UInt8] {
        HandshakeFrame.encode(
            .hello,
            Scalars(Int64(bitPattern: Wire.magic), Int64(Wire.protocolVersion), Int64(bitPattern: capabilities)),
            payload: nonce)
    }

    /// Feed each frame received from the server; returns the frame to send next (or nil).
    ///
    /// Throws on any protocol violation (``WireError/unexpectedOp(_:)``, ``WireError/badMagic(_:)``,
    /// ``WireError/unsupportedVersion(_:)``, ``WireError/malformedPayload``, decoding errors),
    /// ``WireError/refused(reason:)`` on `refused`, and ``WireError/authenticationFailed`` when the
    /// server's proof is wrong or it skips auth the client requires. After a throw every
    /// further call throws the same error.
    public mutating func receive(_ frame: [UInt8]) throws(WireError) -> [UInt8]? {
        do throws(WireError) {
            return try step(frame)
        } catch {
            state = .failed(error)
            throw error
        }
    }

    private mutating func step(_ bytes: [UInt8]) throws(WireError) -> [UInt8]? {
        switch state {
        case .failed(let error):
            throw error
        case .complete:
            let frame = try HandshakeFrame(bytes)
            throw .unexpectedOp(frame.op)
        case .awaitingChallenge:
            let frame = try HandshakeFrame(bytes)
            if frame.op == .refused { throw .refused(reason: frame.scalars[0]) }
            guard frame.op == .challenge else { throw .unexpectedOp(frame.op) }
            try frame.checkMagicAndVersion()
            let authRequired = frame.scalars[3]
            guard authRequired == 0 || authRequired == 1 else { throw .malformedPayload }
            guard frame.payload.count == Wire.nonceSize else { throw .malformedPayload }
            serverCapabilities = UInt64(bitPattern: frame.scalars[2])
            let serverNonce = frame.payload
            if authRequired == 1 {
                // A server asking for a key we do not have: we cannot authenticate.
                guard let key else { throw .authenticationFailed }
                pendingKeys = SessionKeys(key: key, clientNonce: nonce, serverNonce: serverNonce)
                state = .awaitingWelcome(
                    expectedProof: Auth.serverProof(key: key, clientNonce: nonce, serverNonce: serverNonce))
                return HandshakeFrame.encode(
                    .authenticate,
                    payload: Auth.clientProof(key: key, serverNonce: serverNonce, clientNonce: nonce))
            } else {
                // No silent downgrade: a client holding a key insists on auth.
                guard key == nil else { throw .authenticationFailed }
                state = .awaitingWelcome(expectedProof: nil)
                return nil
            }
        case .awaitingWelcome(let expectedProof):
            let frame = try HandshakeFrame(bytes)
            if frame.op == .refused { throw .refused(reason: frame.scalars[0]) }
            guard frame.op == .welcome else { throw .unexpectedOp(frame.op) }
            if let expectedProof {
                guard Auth.constantTimeEqual(frame.payload, expectedProof) else { throw .authenticationFailed }
            } else {
                guard frame.payload.isEmpty else { throw .malformedPayload }
            }
            state = .complete
            isComplete = true
            return nil
        }
    }
}

/// What ``ServerHandshake/receive(_:)`` asks the caller to do: send every frame in
/// ``send`` in order, then act on ``outcome`` (on `.failed`, close the stream).
public struct ServerStep: Sendable, Equatable {
    /// The handshake's state after this step.
    public enum Outcome: Sendable, Equatable {
        /// Wait for the client's next frame.
        case proceed
        /// The handshake is done; requests follow.
        case complete
        /// The handshake failed; after sending ``ServerStep/send`` (a `refused`), close.
        case failed(WireError)
    }

    /// Frames to send, in order (0, 1 or 2).
    public var send: [[UInt8]]
    /// What happens next.
    public var outcome: Outcome

    public init(send: [[UInt8]], outcome: Outcome) {
        self.send = send
        self.outcome = outcome
    }
}

/// The server (home) side of the handshake. Feed it each frame from the client.
public struct ServerHandshake: Sendable {
    enum State: Sendable {
        case awaitingHello
        case awaitingAuthenticate(clientNonce: [UInt8])
        case complete
        case failed(WireError)
    }

    let key: [UInt8]?
    let nonce: [UInt8]
    let capabilities: UInt64
    var state: State = .awaitingHello

    /// The capabilities the client announced in its `hello` (0 until then).
    public private(set) var clientCapabilities: UInt64 = 0
    /// True once the handshake has completed.
    public private(set) var isComplete = false
    /// After an authenticated handshake: the keys that seal the session's
    /// frames (nil without a key).
    public private(set) var sessionKeys: SessionKeys?

    /// - Parameters:
    ///   - key: nil: no auth (stdio/spawn: the stream is trusted); otherwise the client must
    ///     prove the key.
    ///   - nonce: 32 fresh random bytes (precondition).
    ///   - capabilities: bits announced in `challenge`.
    public init(key: [UInt8]?, nonce: [UInt8], capabilities: UInt64 = 0) {
        precondition(nonce.count == Wire.nonceSize, "the server nonce must be \(Wire.nonceSize) bytes")
        self.key = key
        self.nonce = nonce
        self.capabilities = capabilities
    }

    /// Feed a frame from the client; returns the frames to send and the outcome:
    /// `[challenge]` + `.proceed` after a hello when auth is required, `[challenge, welcome]` +
    /// `.complete` after a hello when it is not, `[welcome]` + `.complete` after a good
    /// authenticate, `[refused(reason)]` + `.failed(error)` on any failure. Once failed or
    /// complete, further frames yield no frames and `.failed`.
    public mutating func receive(_ frame: [UInt8]) -> ServerStep {
        switch state {
        case .failed(let error):
            return ServerStep(send: [], outcome: .failed(error))
        case .complete:
            // Requests are not handshake frames: the caller should not feed them here.
            let error: WireError
            do throws(WireError) {
                error = .unexpectedOp(try HandshakeFrame(frame).op)
            } catch let decodeError {
                error = decodeError
            }
            return ServerStep(send: [], outcome: .failed(error))
        case .awaitingHello, .awaitingAuthenticate:
            do throws(WireError) {
                return try step(frame)
            } catch {
                state = .failed(error)
                let reason: RefusalReason
                switch error {
                case .badMagic: reason = .badMagic
                case .unsupportedVersion: reason = .unsupportedVersion
                case .authenticationFailed: reason = .badKey
                default: reason = .protocolError
                }
                return ServerStep(send: [HandshakeFrame.refused(reason)], outcome: .failed(error))
            }
        }
    }

    private mutating func step(_ bytes: [UInt8]) throws(WireError) -> ServerStep {
        let frame = try HandshakeFrame(bytes)
        switch state {
        case .awaitingHello:
            guard frame.op == .hello else { throw .unexpectedOp(frame.op) }
            try frame.checkMagicAndVersion()
            guard frame.payload.count == Wire.nonceSize else { throw .malformedPayload }
            clientCapabilities = UInt64(bitPattern: frame.scalars[2])
            let challenge = HandshakeFrame.encode(
                .challenge,
                Scalars(
                    Int64(bitPattern: Wire.magic), Int64(Wire.protocolVersion),
                    Int64(bitPattern: capabilities), key == nil ? 0 : 1),
                payload: nonce)
            if key == nil {
                state = .complete
                isComplete = true
                return ServerStep(send: [challenge, HandshakeFrame.encode(.welcome)], outcome: .complete)
            }
            state = .awaitingAuthenticate(clientNonce: frame.payload)
            return ServerStep(send: [challenge], outcome: .proceed)
        case .awaitingAuthenticate(let clientNonce):
            guard frame.op == .authenticate, let key else { throw .unexpectedOp(frame.op) }
            let expected = Auth.clientProof(key: key, serverNonce: nonce, clientNonce: clientNonce)
            guard Auth.constantTimeEqual(frame.payload, expected) else { throw .authenticationFailed }
            state = .complete
            isComplete = true
            sessionKeys = SessionKeys(key: key, clientNonce: clientNonce, serverNonce: nonce)
            let proof = Auth.serverProof(key: key, clientNonce: clientNonce, serverNonce: nonce)
            return ServerStep(send: [HandshakeFrame.encode(.welcome, payload: proof)], outcome: .complete)
        case .complete, .failed:
            preconditionFailure("handled by receive(_:)")
        }
    }
}
