import CAead
import Crypto
import Synchronization

// Sealed frames. After an authenticated handshake every frame, both ways,
// travels as
//
//   u32 sealedLength (little-endian; authenticated, not secret)
//   ciphertext of the whole plain frame (header included)
//   16-byte tag
//
// sealedLength = plain frame length + 16. The cipher is an AEAD
// (`FrameCipher.chosen`) with a key per direction (HKDF-SHA256 of the pre-shared key, salted with both
// nonces) and the frame's position in its direction's stream as nonce. A
// frame that was altered, dropped, replayed, reordered or injected fails
// to open, and the session ends. Only sizes and timing stay visible: which
// ops travel, and their ids, do not.

/// The two keys of a session, one per direction, derived from the
/// pre-shared key and both handshake nonces (fresh for every session).
public struct SessionKeys: Sendable, Equatable {
    /// Seals what the client (target) sends.
    public let clientToServer: [UInt8]
    /// Seals what the server (home) sends.
    public let serverToClient: [UInt8]

    static let clientToServerInfo = Array("tether-v1 frames client to server".utf8)
    static let serverToClientInfo = Array("tether-v1 frames server to client".utf8)

    public init(key: [UInt8], clientNonce: [UInt8], serverNonce: [UInt8]) {
        let material = SymmetricKey(data: key)
        let salt = clientNonce + serverNonce
        func derive(_ info: [UInt8]) -> [UInt8] {
            HKDF<SHA256>.deriveKey(inputKeyMaterial: material, salt: salt, info: info, outputByteCount: 32)
                .withUnsafeBytes { Array($0) }
        }
        clientToServer = derive(Self.clientToServerInfo)
        serverToClient = derive(Self.serverToClientInfo)
    }

    /// The 64 bytes `encoded` gives (e.g. handed to a deputy process); nil
    /// for any other length.
    public init?(encoded: [UInt8]) {
        guard encoded.count == 64 else { return nil }
        clientToServer = Array(encoded[0..<32])
        serverToClient = Array(encoded[32..<64])
    }

    public var encoded: [UInt8] { clientToServer + serverToClient }

    /// The client's pair: it seals with `clientToServer`, opens with `serverToClient`.
    public func forClient() -> (seal: FrameSealer, open: FrameOpener) {
        (FrameSealer(key: clientToServer), FrameOpener(key: serverToClient))
    }

    /// The server's pair.
    public func forServer() -> (seal: FrameSealer, open: FrameOpener) {
        (FrameSealer(key: serverToClient), FrameOpener(key: clientToServer))
    }
}

extension Wire {
    /// Bytes a sealed frame adds to the plain one: the length prefix and the tag.
    public static let sealOverhead = 4 + 16
    /// Largest sealed frame on the wire.
    public static let maxSealedLength = maxFrameLength + sealOverhead
}

/// The frame AEAD. ChaCha20-Poly1305 and AES-256-GCM both come from
/// BoringSSL (CAead); Tether uses `FrameCipher.chosen` (see the README, "Sealed
/// frames", for the measurements behind the choice).
public enum FrameCipher: Int32, Sendable, CaseIterable {
    case chacha20Poly1305 = 0
    case aes256GCM = 1

    public static let chosen = FrameCipher.aes256GCM
}

/// The nonce of the `counter`th frame of a direction: 4 zero bytes, then
/// the counter, little-endian. Each direction has its own key, so a
/// counter value is never used twice with one key.
@inline(__always)
func withFrameNonce<R>(_ counter: UInt64, _ body: (UnsafePointer<UInt8>) -> R) -> R {
    var bytes: (UInt32, UInt32, UInt32) = (0, UInt32(truncatingIfNeeded: counter).littleEndian,
                                           UInt32(truncatingIfNeeded: counter >> 32).littleEndian)
    return withUnsafeBytes(of: &bytes) { body($0.baseAddress!.assumingMemoryBound(to: UInt8.self)) }
}

/// One direction of a sealed stream: its AEAD context (the key schedule,
/// kept) and the count of frames so far, which is the next nonce.
public class FrameDirection {
    let ctx: OpaquePointer
    var counter: UInt64 = 0

    public init(key: [UInt8], cipher: FrameCipher = .chosen) {
        precondition(key.count == 32, "a frame key is 32 bytes")
        guard let ctx = caead_new(cipher.rawValue, key) else { preconditionFailure("BoringSSL has no \(cipher)") }
        self.ctx = ctx
    }

    deinit { caead_free(ctx) }
}

/// Seals one direction's frames, in the order they are written: callers
/// hold the stream's write lock across `seal` and the write.
public final class FrameSealer: FrameDirection {
    /// Seals the plain frame `frame` into `out` (prefix, ciphertext, tag);
    /// returns the bytes to write. `out` holds at least
    /// `frame.count + Wire.sealOverhead` bytes (precondition).
    public func seal(_ frame: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) throws(WireError) -> Int {
        let total = frame.count + Wire.sealOverhead
        precondition(out.count >= total && frame.count <= Wire.maxFrameLength, "sealed frame buffer too small")
        guard counter < UInt64.max else { throw .sealFailed }
        storeLE(UInt32(frame.count + 16), out, 0)
        let base = out.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let rc = withFrameNonce(counter) { nonce in
            caead_seal(ctx, nonce, base, 4, frame.baseAddress?.assumingMemoryBound(to: UInt8.self), base + 4,
                       frame.count, base + 4 + frame.count)
        }
        guard rc == 0 else { throw .sealFailed }
        counter += 1
        return total
    }
}

/// Opens one direction's frames, in the order they arrive (one reader at a time).
public final class FrameOpener: FrameDirection {
    /// The length of the sealed part that follows a 4-byte prefix, checked
    /// against the limits before anything is read: at least a header and
    /// a tag, at most the largest frame and a tag.
    public static func sealedLength(prefix: UnsafeRawBufferPointer) throws(WireError) -> Int {
        guard prefix.count >= 4 else { throw .truncated(needed: 4, available: prefix.count) }
        let n = Int(loadLE(prefix, 0, as: UInt32.self))
        guard n >= Wire.headerSize + 16 else { throw .undersized(length: n - 16) }
        guard n <= Wire.maxFrameLength + 16 else { throw .oversized(length: n - 16) }
        return n
    }

    /// Opens `sealed` (ciphertext and tag, `sealedLength(prefix:)` bytes
    /// long) into `out` (which may be `sealed` itself, at the same address)
    /// and checks the plain frame's header, whose length must be the
    /// frame's. Returns that length and the header. Any failure (altered,
    /// replayed, reordered, injected) throws: the session must end, and
    /// nothing in `out` may be used.
    public func open(prefix: UnsafeRawBufferPointer, _ sealed: UnsafeRawBufferPointer,
                     into out: UnsafeMutableRawBufferPointer) throws(WireError) -> (Int, FrameHeader) {
        let length = sealed.count - 16
        guard length >= Wire.headerSize, out.count >= length, prefix.count == 4,
              Int(loadLE(prefix, 0, as: UInt32.self)) == sealed.count, counter < UInt64.max else {
            throw .openFailed
        }
        let input = sealed.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let rc = withFrameNonce(counter) { nonce in
            caead_open(ctx, nonce, prefix.baseAddress!.assumingMemoryBound(to: UInt8.self), 4, input,
                       out.baseAddress!.assumingMemoryBound(to: UInt8.self), length, input + length)
        }
        guard rc == 0 else { throw .openFailed }
        counter += 1
        let header = try FrameHeader.decode(UnsafeRawBufferPointer(rebasing: out[0..<length]))
        guard Int(header.length) == length else { throw .malformedPayload }
        return (length, header)
    }
}

/// One direction's outgoing frames: plain, or sealed in the order they
/// are written. Every writer of the stream goes through `send`, which holds
/// a lock across sealing and writing, so frames leave whole and in counter
/// order. (Unchecked Sendable: the sealer and buffer are touched only
/// under that lock.)
public final class OutgoingFrames: @unchecked Sendable {
    private let lock = Mutex<Void>(())
    private let sealer: FrameSealer?
    private let out: UnsafeMutableRawBufferPointer

    public init(sealer: FrameSealer?) {
        self.sealer = sealer
        out = .allocate(byteCount: sealer == nil ? 0 : Wire.maxSealedLength, alignment: 16)
    }

    deinit { out.deallocate() }

    /// Seals the plain frame `frame` if the stream is sealed, and passes the
    /// bytes to put on the stream to `write`, all under the lock. False if
    /// sealing or `write` failed.
    public func send(_ frame: UnsafeRawBufferPointer, _ write: (UnsafeRawBufferPointer) -> Bool) -> Bool {
        lock.withLock { _ -> Bool in
            guard let sealer else { return write(frame) }
            guard let n = try? sealer.seal(frame, into: out) else { return false }
            return write(UnsafeRawBufferPointer(rebasing: out[0..<n]))
        }
    }
}
