// TEMPORARY, until main lands sealed frames (Wire.SessionKeys,
// ServerHandshake.sessionKeys, Deputy.serve(keys:)): stand-ins with the
// same names and shapes, so the hand-over compiles today. They derive and
// seal nothing: frames stay unsealed until then. Delete this file when
// merging main brings the real ones.
import Wire

/// Stand-in for `Wire.SessionKeys` (64 bytes once encoded).
public struct SessionKeys: Sendable, Equatable {
    public static let encodedSize = 64
    public var encoded: [UInt8]

    public init(key: [UInt8], clientNonce: [UInt8], serverNonce: [UInt8]) {
        // No derivation here (HomeNode has no HKDF): the stand-in carries
        // zeros, and nothing is sealed with it.
        encoded = [UInt8](repeating: 0, count: Self.encodedSize)
    }

    public init?(encoded: [UInt8]) {
        guard encoded.count == Self.encodedSize else { return nil }
        self.encoded = encoded
    }
}

extension Deputy {
    /// Stand-in for main's `serve(keys:)`: serves the already-authenticated stream unsealed.
    func serve(keys: SessionKeys?) -> End {
        serve()
    }
}
