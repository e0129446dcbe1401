import Testing
@testable import Wire

@Suite("Handshake")
struct HandshakeTests {
    let key = (0..<32).map { UInt8($0) }
    let otherKey = (0..<32).map { UInt8(255 - $0) }
    let clientNonce = [UInt8](repeating: 0xC3, count: 32)
    let serverNonce = [UInt8](repeating: 0x5A, count: 32)

    /// A handshake frame built by hand (id 0, flags 0).
    func frame(_ op: Op, _ scalars: Scalars = Scalars(), payload: [UInt8] = [], id: UInt64 = 0) throws -> [UInt8] {
        try encodeRequest(op: op, id: id, scalars: scalars, payload: payload)
    }

    func refusedReason(_ bytes: [UInt8]) throws -> Int64 {
        let d = try decodeRequest(bytes)
        #expect(d.op == .refused)
        #expect(d.id == 0)
        return d.scalars[0]
    }

    @Test func sameKeyCompletesAndProofsVerify() throws {
        var client = ClientHandshake(key: key, nonce: clientNonce, capabilities: 0xF0)
        var server = ServerHandshake(key: key, nonce: serverNonce, capabilities: 0x0F)

        let step1 = server.receive(client.helloFrame())
        #expect(step1.outcome == .proceed)
        #expect(step1.send.count == 1)
        #expect(server.clientCapabilities == 0xF0)
        let challenge = try decodeRequest(step1.send[0])
        #expect(challenge.op == .challenge)
        #expect(challenge.scalars == Scalars(Int64(bitPattern: Wire.magic), 1, 0x0F, 1))
        #expect(challenge.payload == serverNonce)

        let auth = try #require(try client.receive(step1.send[0]))
        #expect(client.serverCapabilities == 0x0F)
        #expect(!client.isComplete)
        let authDecoded = try decodeRequest(auth)
        #expect(authDecoded.op == .authenticate)
        #expect(authDecoded.payload == Auth.clientProof(key: key, serverNonce: serverNonce, clientNonce: clientNonce))

        let step2 = server.receive(auth)
        #expect(step2.outcome == .complete)
        #expect(server.isComplete)
        #expect(step2.send.count == 1)
        let welcome = try decodeRequest(step2.send[0])
        #expect(welcome.op == .welcome)
        #expect(welcome.payload == Auth.serverProof(key: key, clientNonce: clientNonce, serverNonce: serverNonce))

        #expect(try client.receive(step2.send[0]) == nil)
        #expect(client.isComplete)

        // After completion neither side accepts more handshake frames.
        #expect(throws: WireError.unexpectedOp(.welcome)) { _ = try client.receive(step2.send[0]) }
        #expect(server.receive(auth).outcome == .failed(.unexpectedOp(.authenticate)))
        #expect(server.receive(auth).send.isEmpty)
    }

    @Test func wrongKeyIsRefusedWithReasonOne() throws {
        var client = ClientHandshake(key: otherKey, nonce: clientNonce)
        var server = ServerHandshake(key: key, nonce: serverNonce)
        let step1 = server.receive(client.helloFrame())
        let auth = try #require(try client.receive(step1.send[0]))
        let step2 = server.receive(auth)
        #expect(step2.outcome == .failed(.authenticationFailed))
        #expect(step2.send.count == 1)
        #expect(try refusedReason(step2.send[0]) == 1)
        #expect(!server.isComplete)
        #expect(throws: WireError.refused(reason: 1)) { _ = try client.receive(step2.send[0]) }
        #expect(!client.isComplete)
        // A failed client stays failed.
        #expect(throws: WireError.refused(reason: 1)) { _ = try client.receive(step1.send[0]) }
        // A failed server stays failed and sends nothing more.
        let again = server.receive(auth)
        #expect(again == ServerStep(send: [], outcome: .failed(.authenticationFailed)))
    }

    @Test func noKeyOnEitherSideCompletesWithoutAuthenticate() throws {
        var client = ClientHandshake(key: nil, nonce: clientNonce, capabilities: 3)
        var server = ServerHandshake(key: nil, nonce: serverNonce, capabilities: 4)
        let step = server.receive(client.helloFrame())
        #expect(step.outcome == .complete)
        #expect(server.isComplete)
        #expect(step.send.count == 2)
        let challenge = try decodeRequest(step.send[0])
        #expect(challenge.op == .challenge)
        #expect(challenge.scalars[3] == 0)
        let welcome = try decodeRequest(step.send[1])
        #expect(welcome.op == .welcome)
        #expect(welcome.payload.isEmpty)

        #expect(try client.receive(step.send[0]) == nil, "no authenticate step")
        #expect(!client.isComplete)
        #expect(try client.receive(step.send[1]) == nil)
        #expect(client.isComplete)
        #expect(client.serverCapabilities == 4)
        #expect(server.clientCapabilities == 3)
    }

    @Test func clientWithKeyRejectsServerWithoutAuth() throws {
        var client = ClientHandshake(key: key, nonce: clientNonce)
        var server = ServerHandshake(key: nil, nonce: serverNonce)
        let step = server.receive(client.helloFrame())
        #expect(throws: WireError.authenticationFailed) { _ = try client.receive(step.send[0]) }
        #expect(!client.isComplete)
        // Even if the welcome arrives, it is not accepted.
        #expect(throws: WireError.authenticationFailed) { _ = try client.receive(step.send[1]) }
        #expect(!client.isComplete)
    }

    @Test func clientWithoutKeyCannotAnswerAuthRequired() throws {
        var client = ClientHandshake(key: nil, nonce: clientNonce)
        var server = ServerHandshake(key: key, nonce: serverNonce)
        let step = server.receive(client.helloFrame())
        #expect(throws: WireError.authenticationFailed) { _ = try client.receive(step.send[0]) }
    }

    @Test func badVersionIsRefusedWithReasonTwo() throws {
        var server = ServerHandshake(key: key, nonce: serverNonce)
        let hello = try frame(.hello, Scalars(Int64(bitPattern: Wire.magic), 2, 0), payload: clientNonce)
        let step = server.receive(hello)
        #expect(step.outcome == .failed(.unsupportedVersion(2)))
        #expect(step.send.count == 1)
        #expect(try refusedReason(step.send[0]) == 2)
        var client = ClientHandshake(key: key, nonce: clientNonce)
        #expect(throws: WireError.refused(reason: 2)) { _ = try client.receive(step.send[0]) }
    }

    @Test func badMagicIsRefusedWithReasonThree() throws {
        var server = ServerHandshake(key: nil, nonce: serverNonce)
        let hello = try frame(.hello, Scalars(0x1234, 1, 0), payload: clientNonce)
        let step = server.receive(hello)
        #expect(step.outcome == .failed(.badMagic(0x1234)))
        #expect(try refusedReason(step.send[0]) == 3)
    }

    @Test func authenticateBeforeHelloIsRefusedWithReasonFour() throws {
        var server = ServerHandshake(key: key, nonce: serverNonce)
        let auth = try frame(.authenticate, payload: Auth.clientProof(key: key, serverNonce: serverNonce, clientNonce: clientNonce))
        let step = server.receive(auth)
        #expect(step.outcome == .failed(.unexpectedOp(.authenticate)))
        #expect(try refusedReason(step.send[0]) == 4)
    }

    @Test func fileOpDuringHandshakeIsRefusedWithReasonFour() throws {
        // Before hello.
        var server = ServerHandshake(key: key, nonce: serverNonce)
        let open = try encodeRequest(op: .openat, id: 1, scalars: Scalars(-1, 0, 0, 0), payload: Array("x\0".utf8))
        let step = server.receive(open)
        #expect(step.outcome == .failed(.unexpectedOp(.openat)))
        #expect(try refusedReason(step.send[0]) == 4)
        // Between hello and authenticate.
        var server2 = ServerHandshake(key: key, nonce: serverNonce)
        let client = ClientHandshake(key: key, nonce: clientNonce)
        #expect(server2.receive(client.helloFrame()).outcome == .proceed)
        let step2 = server2.receive(open)
        #expect(step2.outcome == .failed(.unexpectedOp(.openat)))
        #expect(try refusedReason(step2.send[0]) == 4)
        // A second hello is out of order too.
        var server3 = ServerHandshake(key: key, nonce: serverNonce)
        _ = server3.receive(client.helloFrame())
        #expect(server3.receive(client.helloFrame()).outcome == .failed(.unexpectedOp(.hello)))
    }

    @Test func garbageAndMalformedHelloAreRefusedWithReasonFour() throws {
        var server = ServerHandshake(key: nil, nonce: serverNonce)
        let step = server.receive([1, 2, 3])
        #expect(step.outcome == .failed(.truncated(needed: 16, available: 3)))
        #expect(try refusedReason(step.send[0]) == 4)

        var server2 = ServerHandshake(key: nil, nonce: serverNonce)
        let shortNonce = try frame(.hello, Scalars(Int64(bitPattern: Wire.magic), 1, 0), payload: [1, 2, 3])
        let step2 = server2.receive(shortNonce)
        #expect(step2.outcome == .failed(.malformedPayload))
        #expect(try refusedReason(step2.send[0]) == 4)

        var server3 = ServerHandshake(key: nil, nonce: serverNonce)
        let withId = try frame(.hello, Scalars(Int64(bitPattern: Wire.magic), 1, 0), payload: clientNonce, id: 9)
        let step3 = server3.receive(withId)
        #expect(step3.outcome == .failed(.unexpectedOp(.hello)))
        #expect(try refusedReason(step3.send[0]) == 4)
    }

    @Test func tamperedServerProofFailsClient() throws {
        var client = ClientHandshake(key: key, nonce: clientNonce)
        var server = ServerHandshake(key: key, nonce: serverNonce)
        let step1 = server.receive(client.helloFrame())
        let auth = try #require(try client.receive(step1.send[0]))
        let step2 = server.receive(auth)
        #expect(step2.outcome == .complete)
        var tampered = step2.send[0]
        tampered[tampered.count - 1] ^= 0x01
        #expect(throws: WireError.authenticationFailed) { _ = try client.receive(tampered) }
        #expect(!client.isComplete)
    }

    @Test func emptyWelcomeWhenAuthRequiredFailsClient() throws {
        var client = ClientHandshake(key: key, nonce: clientNonce)
        var server = ServerHandshake(key: key, nonce: serverNonce)
        let step1 = server.receive(client.helloFrame())
        _ = try client.receive(step1.send[0])
        #expect(throws: WireError.authenticationFailed) { _ = try client.receive(try frame(.welcome)) }
    }

    @Test func clientRejectsBadChallenges() throws {
        let magic = Int64(bitPattern: Wire.magic)
        let cases: [([UInt8], WireError)] = [
            (try frame(.challenge, Scalars(42, 1, 0, 0), payload: serverNonce), .badMagic(42)),
            (try frame(.challenge, Scalars(magic, 7, 0, 0), payload: serverNonce), .unsupportedVersion(7)),
            (try frame(.challenge, Scalars(magic, 1, 0, 2), payload: serverNonce), .malformedPayload),
            (try frame(.challenge, Scalars(magic, 1, 0, 0), payload: [1]), .malformedPayload),
            (try frame(.welcome), .unexpectedOp(.welcome)),
            (try frame(.hello, Scalars(magic, 1, 0), payload: serverNonce), .unexpectedOp(.hello)),
            (try encodeResponse(op: .read, id: 1, result: 0), .unexpectedOp(.read)),
            ([0, 0, 0], .truncated(needed: 16, available: 3)),
        ]
        for (bytes, error) in cases {
            var client = ClientHandshake(key: nil, nonce: clientNonce)
            #expect(throws: error) { _ = try client.receive(bytes) }
        }
    }

    @Test func clientRejectsNonEmptyWelcomeWithoutAuth() throws {
        var client = ClientHandshake(key: nil, nonce: clientNonce)
        var server = ServerHandshake(key: nil, nonce: serverNonce)
        let step = server.receive(client.helloFrame())
        _ = try client.receive(step.send[0])
        #expect(throws: WireError.malformedPayload) { _ = try client.receive(try frame(.welcome, payload: [1])) }
    }

    @Test func refusedDuringWelcomeWait() throws {
        var client = ClientHandshake(key: key, nonce: clientNonce)
        var server = ServerHandshake(key: key, nonce: serverNonce)
        _ = try client.receive(server.receive(client.helloFrame()).send[0])
        #expect(throws: WireError.refused(reason: 4)) { _ = try client.receive(try frame(.refused, Scalars(4))) }
    }
}
