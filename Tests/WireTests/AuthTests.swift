import Testing
@testable import Wire

@Suite("Auth")
struct AuthTests {
    @Test func rfc4231TestCase2() {
        let mac = Auth.hmac(key: Array("Jefe".utf8), Array("what do ya want for nothing?".utf8))
        #expect(hexString(mac) == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        // Split updates give the same MAC as one update.
        let split = Auth.hmac(key: Array("Jefe".utf8), Array("what do ya ".utf8), Array("want for nothing?".utf8))
        #expect(split == mac)
    }

    @Test func proofsMatchIndependentReference() {
        // Reference values computed with Python's hmac module:
        // hmac.new(bytes(range(32)), b"tether-v1 client" + b"\x5a"*32 + b"\xc3"*32, sha256)
        let key = (0..<32).map { UInt8($0) }
        let serverNonce = [UInt8](repeating: 0x5A, count: 32)
        let clientNonce = [UInt8](repeating: 0xC3, count: 32)
        let client = Auth.clientProof(key: key, serverNonce: serverNonce, clientNonce: clientNonce)
        let server = Auth.serverProof(key: key, clientNonce: clientNonce, serverNonce: serverNonce)
        #expect(hexString(client) == "273a1485d69c850eba6b6cca7083aae7ad6698e3f9127d7ec7281bc00d92c7c8")
        #expect(hexString(server) == "1111edcd883ef84685f804a546b7bc6f9ea2d46e763e71b135bacc4a6aa36ae2")
        #expect(client.count == 32 && server.count == 32)
        #expect(client != server)
        #expect(client == Auth.hmac(key: key, Array("tether-v1 client".utf8) + serverNonce + clientNonce))
    }

    @Test func constantTimeEqual() {
        #expect(Auth.constantTimeEqual([], []))
        #expect(Auth.constantTimeEqual([1, 2, 3], [1, 2, 3]))
        #expect(!Auth.constantTimeEqual([1, 2, 3], [1, 2, 4]))
        #expect(!Auth.constantTimeEqual([0x80, 2, 3], [0, 2, 3]))
        #expect(!Auth.constantTimeEqual([1, 2, 3], [1, 2]))
        #expect(!Auth.constantTimeEqual([], [0]))
    }

    @Test func keyFromFileContents() {
        let k32 = [UInt8](repeating: 0x61, count: 32)
        let nl = UInt8(ascii: "\n")
        #expect(Auth.key(fromFileContents: k32) == k32)
        #expect(Auth.key(fromFileContents: k32 + [nl]) == k32)
        // Exactly one newline is stripped.
        #expect(Auth.key(fromFileContents: k32 + [nl, nl]) == k32 + [nl])
        // "\r\n": only the "\n" goes.
        #expect(Auth.key(fromFileContents: k32 + [13, nl]) == k32 + [13])
        // Too short after stripping.
        #expect(Auth.key(fromFileContents: Array(k32.dropLast()) + [nl]) == nil)
        #expect(Auth.key(fromFileContents: Array(k32.dropLast())) == nil)
        #expect(Auth.key(fromFileContents: []) == nil)
        #expect(Auth.key(fromFileContents: [nl]) == nil)
        // Longer keys are kept whole.
        let k64 = (0..<64).map { UInt8($0) }
        #expect(Auth.key(fromFileContents: k64 + [nl]) == k64)
    }
}
