import Crypto

/// The handshake's key proofs (HMAC-SHA256 over fixed labels and both nonces) and key-file parsing.
///
/// The client proves the key with HMAC(key, "tether-v1 client" ‖ serverNonce ‖ clientNonce);
/// the server answers with HMAC(key, "tether-v1 server" ‖ clientNonce ‖ serverNonce). The
/// distinct labels stop one side's proof being reflected back as the other's.
public enum Auth {
    static let clientLabel: [UInt8] = Array("tether-v1 client".utf8)
    static let serverLabel: [UInt8] = Array("tether-v1 server".utf8)

    /// HMAC-SHA256(key, "tether-v1 client" ‖ serverNonce ‖ clientNonce): 32 bytes.
    public static func clientProof(key: [UInt8], serverNonce: [UInt8], clientNonce: [UInt8]) -> [UInt8] {
        hmac(key: key, clientLabel, serverNonce, clientNonce)
    }

    /// HMAC-SHA256(key, "tether-v1 server" ‖ clientNonce ‖ serverNonce): 32 bytes.
    public static func serverProof(key: [UInt8], clientNonce: [UInt8], serverNonce: [UInt8]) -> [UInt8] {
        hmac(key: key, serverLabel, clientNonce, serverNonce)
    }

    /// Compares two byte strings in time that depends only on their lengths (which are public).
    public static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for i in 0..<a.count { difference |= a[i] ^ b[i] }
        return difference == 0
    }

    /// Key file contents → key: the bytes with one trailing "\n" removed, or nil if
    /// fewer than 32 bytes remain.
    public static func key(fromFileContents contents: [UInt8]) -> [UInt8]? {
        var key = contents
        if key.last == UInt8(ascii: "\n") { key.removeLast() }
        return key.count >= 32 ? key : nil
    }

    /// HMAC-SHA256 of the concatenation of `parts` (exposed internally for tests).
    static func hmac(key: [UInt8], _ parts: [UInt8]...) -> [UInt8] {
        var mac = HMAC<SHA256>(key: SymmetricKey(data: key))
        for part in parts { mac.update(data: part) }
        return Array(mac.finalize())
    }
}
