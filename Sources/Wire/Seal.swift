import Crypto
import Foundation
import Synchronization

// Sealed frames. After an authenticated handshake every frame, both ways,
// travels as
//
//   u32 sealedLength (little-endian; authenticated, not secret)
//   ciphertext of the whole plain frame (header included)
//   16-byte tag
//
// sealedLength = plain frame length + 16. The cipher is an AEAD with a key
// per direction (HKDF-SHA256 of the pre-shared key, salted with both
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

/// The nonce of the `counter`th frame of a direction: 4 zero bytes, then
/// the counter, little-endian. Each direction has its own key, so a
/// counter value is never used twice with one key.
@inline(__always)
func frameNonce(_ counter: UInt64) throws(WireError) -> ChaChaPoly.Nonce {
    var bytes: (UInt32, UInt32, UInt32) = (0, UInt32(truncatingIfNeeded: counter).littleEndian,
                                           UInt32(truncatingIfNeeded: counter >> 32).littleEndian)
    do {
        return try withUnsafeBytes(of: &bytes) { raw in try ChaChaPoly.Nonce(data: raw) }
    } catch {
        throw .sealFailed
    }
}

/// Seals one direction's frames, in the order they are written: callers
/// hold the stream's write lock across `seal` and the write.
public final class FrameSealer {
    let key: SymmetricKey
    private var counter: UInt64 = 0

    public init(key: [UInt8]) {
        self.key = SymmetricKey(data: key)
    }

    /// Seals the plain frame `frame` into `out` (prefix, ciphertext, tag);
    /// returns the bytes to write. `out` holds at least
    /// `frame.count + Wire.sealOverhead` bytes (precondition).
    public func seal(_ frame: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) throws(WireError) -> Int {
        let total = frame.count + Wire.sealOverhead
        precondition(out.count >= total && frame.count <= Wire.maxFrameLength, "sealed frame buffer too small")
        guard counter < UInt64.max else { throw .sealFailed }
        let prefix = UInt32(frame.count + 16)
        storeLE(prefix, out, 0)
        let box: ChaChaPoly.SealedBox
        do {
            box = try ChaChaPoly.seal(frame, using: key, nonce: try frameNonce(counter),
                                      authenticating: UnsafeRawBufferPointer(rebasing: out[0..<4]))
        } catch {
            throw .sealFailed
        }
        counter += 1
        box.ciphertext.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: out[4...]).copyMemory(from: $0) }
        box.tag.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: out[(4 + frame.count)...]).copyMemory(from: $0) }
        return total
    }
}

/// Opens one direction's frames, in the order they arrive (one reader at a time).
public final class FrameOpener {
    let key: SymmetricKey
    private var counter: UInt64 = 0

    public init(key: [UInt8]) {
        self.key = SymmetricKey(data: key)
    }

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

    /// Opens `sealed` (ciphertext and tag, `sealedLength(prefix:)` bytes)
    /// and passes the plain frame to `body`. The plain frame's header must
    /// state exactly its length. Any failure is final for the stream:
    /// the session must end.
    public func open<R>(prefix: UnsafeRawBufferPointer, _ sealed: UnsafeRawBufferPointer,
                        _ body: (UnsafeRawBufferPointer) throws(WireError) -> R) throws(WireError) -> R {
        guard sealed.count >= Wire.headerSize + 16, prefix.count == 4,
              Int(loadLE(prefix, 0, as: UInt32.self)) == sealed.count, counter < UInt64.max else {
            throw .openFailed
        }
        let plain: Data
        do {
            let box = try ChaChaPoly.SealedBox(nonce: try frameNonce(counter),
                                               ciphertext: UnsafeRawBufferPointer(rebasing: sealed[..<(sealed.count - 16)]),
                                               tag: UnsafeRawBufferPointer(rebasing: sealed[(sealed.count - 16)...]))
            plain = try ChaChaPoly.open(box, using: key, authenticating: prefix)
        } catch {
            throw .openFailed
        }
        counter += 1
        let result: Result<R, WireError> = plain.withUnsafeBytes { raw in
            do throws(WireError) {
                let header = try FrameHeader.decode(raw)
                guard Int(header.length) == raw.count else { throw .malformedPayload }
                return .success(try body(raw))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
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

    public var isSealed: Bool { sealer != nil }

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
