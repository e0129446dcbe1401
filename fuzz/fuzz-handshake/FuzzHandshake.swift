// libFuzzer target: the handshake state machines, `ServerHandshake` and
// `ClientHandshake`, with fixed keys and nonces.
//
// Input: a mode byte, then chunks (a little-endian UInt16 length, then the
// bytes). Mode bits 0-1: 0 frames to a server, 1 frames to a client, 2 and
// 3 a client and a server talking through a man in the middle whom the
// input steers (deliver, flip bits, drop, replace, inject). Bit 2: the
// server holds the key; bit 3: the client holds a key; bit 4: the client's
// key is the wrong one; bit 5: frames fed directly get their length field
// set to their real size.
//
// Invariants: a side holding a key never completes without the peer's valid
// proof, computed here with HMAC-SHA256 straight from the documented labels;
// a client holding a key never completes against a server that skips auth;
// every frame either side sends is a well-formed handshake frame; a failed
// server sends exactly one `refused` with the right reason, then nothing; a
// failed client keeps throwing the same error; an untouched exchange with
// matching keys always completes on both sides; session keys exist exactly
// after an authenticated handshake, are those of the key and both nonces,
// and are the same at both ends.

import Crypto
import CFuzzDriver
import FuzzSupport
import Wire

let key: [UInt8] = (0..<32).map { UInt8($0) }
let wrongKey: [UInt8] = (0..<32).map { UInt8(255 - $0) }
let serverNonce = [UInt8](repeating: 0x5A, count: 32)
let clientNonce = [UInt8](repeating: 0xC3, count: 32)
let magic = Int64(bitPattern: 0x3130_5245_4854_4554)  // "TETHER01"

func proof(_ key: [UInt8], _ label: String, _ a: [UInt8], _ b: [UInt8]) -> [UInt8] {
    var mac = HMAC<SHA256>(key: SymmetricKey(data: key))
    mac.update(data: Array(label.utf8))
    mac.update(data: a)
    mac.update(data: b)
    return Array(mac.finalize())
}
func clientProof(_ key: [UInt8], serverNonce: [UInt8], clientNonce: [UInt8]) -> [UInt8] {
    proof(key, "tether-v1 client", serverNonce, clientNonce)
}
func serverProof(_ key: [UInt8], clientNonce: [UInt8], serverNonce: [UInt8]) -> [UInt8] {
    proof(key, "tether-v1 server", clientNonce, serverNonce)
}

/// A handshake frame as the documentation describes it: request form, id 0.
struct Decoded {
    var op: Op
    var scalars: [Int64]
    var payload: [UInt8]

    init?(_ bytes: [UInt8]) {
        guard let d = bytes.withUnsafeBytes({ raw -> Decoded? in
            guard let v = try? RequestView(frame: raw), v.id == 0 else { return nil }
            return Decoded(op: v.op, scalars: (0..<v.op.requestScalarCount).map { v.scalar($0) }, payload: Array(v.payload))
        }) else { return nil }
        self = d
    }
    private init(op: Op, scalars: [Int64], payload: [UInt8]) {
        self.op = op
        self.scalars = scalars
        self.payload = payload
    }

    /// A hello or challenge this version accepts.
    var speaksOurProtocol: Bool { scalars[0] == magic && scalars[1] == 1 && payload.count == 32 }
}

/// Every frame a machine sends must be a well-formed handshake frame.
func checkSent(_ bytes: [UInt8]) -> Decoded {
    guard let d = Decoded(bytes) else {
        invariant(false, "sent a frame that does not decode as a handshake frame")
        fatalError()
    }
    invariant(d.op.isHandshake, "sent a non-handshake op \(d.op)")
    return d
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHandshake(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    withFuzzBytes(data, size) { bytes in
        var input = FuzzInput(bytes)
        let mode = input.byte()
        let serverKey = mode & 4 != 0 ? key : nil
        let clientKey = mode & 8 != 0 ? (mode & 16 != 0 ? wrongKey : key) : nil
        switch mode & 3 {
        case 0: fuzzServer(&input, key: serverKey, fixLengths: mode & 32 != 0)
        case 1: fuzzClient(&input, key: clientKey, fixLengths: mode & 32 != 0)
        default: fuzzPair(&input, serverKey: serverKey, clientKey: clientKey)
        }
    }
    return 0
}

func nextFrame(_ input: inout FuzzInput, fixLengths: Bool) -> [UInt8] {
    var frame = input.chunk()
    if fixLengths && frame.count >= 16 {
        var h = RawHeader(frame)
        h.length = UInt32(truncatingIfNeeded: frame.count)
        frame.replaceSubrange(0..<16, with: h.bytes)
    }
    return frame
}

/// Frames straight from the input to a server.
func fuzzServer(_ input: inout FuzzInput, key: [UInt8]?, fixLengths: Bool) {
    var server = ServerHandshake(key: key, nonce: serverNonce)
    var helloNonce: [UInt8]?
    var complete = false
    var failure: WireError?
    for _ in 0..<8 where !input.isEmpty {
        let frame = nextFrame(&input, fixLengths: fixLengths)
        let step = server.receive(frame)
        let sent = step.send.map(checkSent)
        switch step.outcome {
        case .proceed:
            invariant(key != nil && helloNonce == nil && !complete && failure == nil, "proceed out of turn")
            guard let hello = Decoded(frame), hello.op == .hello, hello.speaksOurProtocol else {
                invariant(false, "proceeded on a frame that is not a valid hello")
                return
            }
            helloNonce = hello.payload
            invariant(sent.count == 1 && sent[0].op == .challenge && sent[0].scalars == [magic, 1, 0, 1]
                      && sent[0].payload == serverNonce, "the challenge")
        case .complete:
            invariant(!complete && failure == nil, "completed twice or after failing")
            guard let d = Decoded(frame) else {
                invariant(false, "completed on a frame that does not decode")
                return
            }
            if let key {
                guard let helloNonce else {
                    invariant(false, "completed with a key but without a hello")
                    return
                }
                invariant(d.op == .authenticate, "completed on \(d.op), not authenticate")
                invariant(d.payload == clientProof(key, serverNonce: serverNonce, clientNonce: helloNonce),
                          "completed without the client's valid proof")
                invariant(sent.count == 1 && sent[0].op == .welcome
                          && sent[0].payload == serverProof(key, clientNonce: helloNonce, serverNonce: serverNonce),
                          "the welcome does not carry the server's proof")
            } else {
                invariant(d.op == .hello && d.speaksOurProtocol, "completed without a valid hello")
                invariant(sent.count == 2 && sent[0].op == .challenge && sent[0].scalars == [magic, 1, 0, 0]
                          && sent[0].payload == serverNonce && sent[1].op == .welcome && sent[1].payload.isEmpty,
                          "challenge and empty welcome")
            }
            complete = true
        case .failed(let error):
            if let failure {
                invariant(error == failure && sent.isEmpty, "a failed server changed its error or sent more")
            } else if complete {
                invariant(sent.isEmpty, "a complete server answered a handshake frame")
            } else {
                invariant(sent.count == 1 && sent[0].op == .refused, "a failure must send one refused")
                let reason: Int64
                switch error {
                case .badMagic: reason = 3
                case .unsupportedVersion: reason = 2
                case .authenticationFailed: reason = 1
                default: reason = 4
                }
                invariant(sent[0].scalars == [reason], "refused reason \(sent[0].scalars) for \(error)")
                failure = error
            }
        }
        invariant(server.isComplete == complete, "isComplete disagrees with the outcomes")
        if complete, let key, let helloNonce {
            invariant(server.sessionKeys == SessionKeys(key: key, clientNonce: helloNonce, serverNonce: serverNonce),
                      "the session keys are not those of the key and both nonces")
        } else {
            invariant(server.sessionKeys == nil, "session keys without an authenticated handshake")
        }
    }
}

/// Frames straight from the input to a client.
func fuzzClient(_ input: inout FuzzInput, key: [UInt8]?, fixLengths: Bool) {
    var client = ClientHandshake(key: key, nonce: clientNonce)
    let hello = checkSent(client.helloFrame())
    invariant(hello.op == .hello && hello.scalars == [magic, 1, 0] && hello.payload == clientNonce, "the hello")
    enum Model { case awaitingChallenge, awaitingWelcome(proof: [UInt8]?), complete, failed(WireError) }
    var model = Model.awaitingChallenge
    var challengeNonce: [UInt8]?
    for _ in 0..<8 where !input.isEmpty {
        let frame = nextFrame(&input, fixLengths: fixLengths)
        let before = model
        let result: Result<[UInt8]?, WireError>
        do throws(WireError) { result = .success(try client.receive(frame)) } catch { result = .failure(error) }
        switch (before, result) {
        case (.failed(let old), .failure(let error)):
            invariant(error == old, "a failed client changed its error")
        case (.failed, .success):
            invariant(false, "a failed client accepted a frame")
        case (.complete, .success):
            invariant(false, "a complete client accepted a handshake frame")
        case (.complete, .failure(let error)):
            model = .failed(error)
        case (.awaitingChallenge, .success(let reply)):
            guard let d = Decoded(frame), d.op == .challenge, d.speaksOurProtocol else {
                invariant(false, "accepted something other than a valid challenge")
                return
            }
            if let reply {
                guard let key else {
                    invariant(false, "answered a challenge without a key")
                    return
                }
                invariant(d.scalars[3] == 1, "authenticated when not asked to")
                let auth = checkSent(reply)
                invariant(auth.op == .authenticate
                          && auth.payload == clientProof(key, serverNonce: d.payload, clientNonce: clientNonce),
                          "the authenticate frame does not carry the client's proof")
                model = .awaitingWelcome(proof: serverProof(key, clientNonce: clientNonce, serverNonce: d.payload))
                challengeNonce = d.payload
            } else {
                invariant(key == nil, "a client holding a key accepted a server that skips auth")
                invariant(d.scalars[3] == 0, "no answer to a challenge that asks for auth")
                model = .awaitingWelcome(proof: nil)
            }
        case (.awaitingWelcome(let expected), .success(let reply)):
            invariant(reply == nil, "answered a welcome")
            guard let d = Decoded(frame), d.op == .welcome else {
                invariant(false, "completed on something other than welcome")
                return
            }
            if let expected {
                invariant(d.payload == expected, "completed without the server's valid proof")
            } else {
                invariant(d.payload.isEmpty, "completed on a welcome with a payload when no auth was asked")
            }
            model = .complete
        case (_, .failure(let error)):
            if case .refused(let reason) = error {
                let d = Decoded(frame)
                invariant(d?.op == .refused && d?.scalars == [reason], "refused(\(reason)) without a refused frame")
            }
            model = .failed(error)
        }
        if case .complete = model {
            invariant(client.isComplete, "the model completed, the client did not")
        } else if case .failed = model {
        } else {
            invariant(!client.isComplete, "the client completed, the model did not")
        }
        if client.isComplete, let key, let challengeNonce {
            invariant(client.sessionKeys == SessionKeys(key: key, clientNonce: clientNonce, serverNonce: challengeNonce),
                      "the session keys are not those of the key and both nonces")
        } else {
            invariant(client.sessionKeys == nil, "session keys before an authenticated handshake completed")
        }
    }
}

/// A nonce the input cannot know in advance: a hash of the whole input.
/// Real sessions draw fresh random nonces; with fixed ones, a proof from
/// another run (the seeds hold some) is a replay that completes a
/// handshake, which is why the pair's nonces change with every input.
func freshNonce(_ label: String, _ input: FuzzInput) -> [UInt8] {
    var hash = SHA256()
    hash.update(data: Array(label.utf8))
    hash.update(data: Array(input.bytes))
    return Array(hash.finalize())
}

/// A client and a server through a man in the middle the input steers.
func fuzzPair(_ input: inout FuzzInput, serverKey: [UInt8]?, clientKey: [UInt8]?) {
    let clientNonce = freshNonce("client", input), serverNonce = freshNonce("server", input)
    var client = ClientHandshake(key: clientKey, nonce: clientNonce)
    var server = ServerHandshake(key: serverKey, nonce: serverNonce)
    var queue: [(toServer: Bool, bytes: [UInt8])] = [(true, client.helloFrame())]
    var tampered = false
    var clientSentAuthenticate: [UInt8]?
    var rounds = 0
    while rounds < 12 {
        rounds += 1
        var message: (toServer: Bool, bytes: [UInt8])
        if !queue.isEmpty {
            message = queue.removeFirst()
        } else if !input.isEmpty {
            // Nothing in flight: the man in the middle may inject a frame either way.
            message = (input.byte() & 1 == 0, input.chunk())
            tampered = true
        } else {
            break
        }
        let original = message.bytes
        switch input.byte() % 4 {
        case 0: break
        case 1:
            for _ in 0..<Int(input.byte() % 8) where !message.bytes.isEmpty {
                let at = Int(input.uint16()) % message.bytes.count
                message.bytes[at] ^= input.byte()
            }
        case 2: message.bytes = []  // dropped
        default: message.bytes = input.chunk()
        }
        if message.bytes != original { tampered = true }
        if message.bytes.isEmpty && original.isEmpty == false { continue }
        if message.toServer {
            let step = server.receive(message.bytes)
            for frame in step.send {
                _ = checkSent(frame)
                queue.append((false, frame))
            }
        } else if let reply = try? client.receive(message.bytes) {
            let d = checkSent(reply)
            if d.op == .authenticate { clientSentAuthenticate = d.payload }
            queue.append((true, reply))
        }
    }
    if client.isComplete, let clientKey {
        invariant(serverKey == clientKey && server.isComplete,
                  "a client holding a key completed without a server that proved the same key")
    }
    if server.isComplete, let serverKey {
        invariant(clientKey == serverKey && clientSentAuthenticate != nil,
                  "a server holding a key completed without a client that proved it")
    }
    if client.isComplete && server.isComplete && clientKey != nil {
        invariant(client.sessionKeys != nil && client.sessionKeys == server.sessionKeys,
                  "the two ends of one handshake derived different session keys")
    }
    if !tampered && queue.isEmpty {
        switch (serverKey, clientKey) {
        case (nil, nil):
            invariant(server.isComplete && client.isComplete, "an untouched keyless exchange did not complete")
        case (let s?, let c?) where s == c:
            invariant(server.isComplete && client.isComplete, "an untouched exchange with one key did not complete")
        default:
            invariant(!client.isComplete, "a client completed with mismatched keys")
        }
    }
}

/// The entry point SwiftPM links as main (see CFuzzDriver.h).
@_cdecl("fuzz_handshake_main")
public func fuzzHandshakeMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    tether_fuzz_main(argc, argv, fuzzHandshake)
}
