// The Tether wire protocol: constants, errors and little-endian helpers.
//
// Everything in this module is pure Swift with no I/O. The per-request
// encoders and views work on caller-provided raw buffers and never allocate;
// the handshake (once per session) uses arrays.

/// Namespace for the protocol's constants.
///
/// A frame is a 16-byte ``FrameHeader`` followed by a body. A request body is
/// `op.requestScalarCount` little-endian `Int64` scalars followed by the
/// payload; a response body is one little-endian `Int64` result followed by
/// the payload. All integers on the wire are little-endian.
public enum Wire {
    /// Size of a ``FrameHeader`` in bytes.
    public static let headerSize = 16
    /// Largest number of `Int64` scalars a request carries.
    public static let maxScalars = 6
    /// Largest data payload of one read/write (bulk I/O is chunked to this).
    public static let maxPayload = 1 << 20  // 1 MiB
    /// Largest frame accepted: header + 6 scalars + maxPayload + 4 KiB slack (a path).
    public static let maxFrameLength = headerSize + 8 * maxScalars + maxPayload + 4096
    /// The protocol version this implementation speaks.
    public static let protocolVersion: UInt16 = 1
    /// Sent in `hello` and `challenge`: the little-endian bytes spell "TETHER01".
    public static let magic: UInt64 = 0x3130_5245_4854_4554
    /// The `dir` scalar meaning "the export root" (relative paths resolve against the root).
    public static let rootDir: Int64 = -1
    /// Most supplementary groups a ``Op/credentials`` frame carries (the kernel's NGROUPS_MAX).
    public static let maxGroups = 65536
    /// Size of a handshake nonce, and of an HMAC-SHA256 proof.
    public static let nonceSize = 32
    /// Size of the one-time secret of a terminal handover (``Op/terminalOffer``).
    public static let terminalSecretSize = 32
    /// Size of the `struct statx` payload returned by `fstat` and `statx`.
    public static let statxSize = 256
    /// Largest socket address a socket op carries: `struct sockaddr_storage`.
    public static let maxSockaddr = 128
    /// Largest socket option value a socket op carries.
    public static let maxSockopt = 1024
    /// The byte an ``Op/openat`` reply carries when it opened a character device.
    public static let openedDevice: UInt8 = 1
    /// The id of frames the home pushes unasked (``Op/invalidate``), and of the
    /// client's fire-and-forget requests (a release, credentials, a cancel), to
    /// which the home sends no reply.
    public static let pushId: UInt64 = 0xffff
    /// Handshake capability bit: the home watches what a session stats and pushes
    /// invalidations (``Op/statxWatched``, ``Op/invalidate``).
    public static let capabilityWatches: UInt64 = 1
}

/// Why a server refused a session: the scalar of a `refused` frame.
public enum RefusalReason: Int64, Sendable, CaseIterable {
    /// The client's proof of the key did not verify.
    case badKey = 1
    /// The client's `hello` carried a protocol version the server does not speak.
    case unsupportedVersion = 2
    /// The client's `hello` did not carry ``Wire/magic``.
    case badMagic = 3
    /// A malformed or out-of-order frame during the handshake.
    case protocolError = 4
}

/// Every way decoding, encoding or the handshake can fail. Thrown with typed throws.
public enum WireError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Fewer bytes than the frame (or its header) needs.
    case truncated(needed: Int, available: Int)
    /// A header length below 16, or below the minimum body for its op.
    case undersized(length: Int)
    /// A header length above ``Wire/maxFrameLength``.
    case oversized(length: Int)
    /// An op number that is not an ``Op``.
    case unknownOp(UInt16)
    /// Flag bits other than ``FrameFlags/response``.
    case unknownFlags(UInt16)
    /// A valid op where the protocol state does not allow it (including a
    /// response where a request was expected and vice versa).
    case unexpectedOp(Op)
    /// A `hello`/`challenge` whose magic is not ``Wire/magic``.
    case badMagic(UInt64)
    /// A `hello`/`challenge` whose version is not ``Wire/protocolVersion``.
    case unsupportedVersion(UInt16)
    /// Proof mismatch, or a server that skips auth when the client requires it.
    case authenticationFailed
    /// The server sent `refused` with this reason (see ``RefusalReason``).
    case refused(reason: Int64)
    /// E.g. a path without its NUL, a nonce of the wrong size, an interior NUL,
    /// trailing bytes after the frame's declared length.
    case malformedPayload
    /// The caller's output buffer is too small, or a payload exceeds ``Wire/maxPayload``.
    case bufferTooSmall(needed: Int, available: Int)
    /// A frame could not be sealed (the direction's counter is exhausted).
    case sealFailed
    /// A sealed frame did not open: altered, replayed, reordered, injected,
    /// or sealed with another key.
    case openFailed

    public var description: String {
        switch self {
        case .truncated(let needed, let available):
            return "truncated frame: needed \(needed) bytes but only \(available) are available"
        case .undersized(let length):
            return "frame length \(length) is too small for its header and op"
        case .oversized(let length):
            return "frame length \(length) exceeds the maximum frame length of \(Wire.maxFrameLength) bytes"
        case .unknownOp(let raw):
            return "unknown op 0x\(String(raw, radix: 16))"
        case .unknownFlags(let raw):
            return "unknown frame flags 0x\(String(raw, radix: 16))"
        case .unexpectedOp(let op):
            return "unexpected op '\(op)' at this point in the protocol"
        case .badMagic(let magic):
            return "bad magic 0x\(String(magic, radix: 16)): the peer does not speak the Tether protocol"
        case .unsupportedVersion(let version):
            return "unsupported protocol version \(version) (this side speaks version \(Wire.protocolVersion))"
        case .authenticationFailed:
            return "authentication failed: the peer did not prove knowledge of the shared key"
        case .refused(let reason):
            let why: String
            switch RefusalReason(rawValue: reason) {
            case .badKey: why = "bad key"
            case .unsupportedVersion: why = "unsupported protocol version"
            case .badMagic: why = "bad magic"
            case .protocolError: why = "protocol error"
            case nil: why = "unknown reason"
            }
            return "the server refused the session: \(why) (reason \(reason))"
        case .malformedPayload:
            return "malformed payload (e.g. a path without its NUL, an interior NUL, or a nonce of the wrong size)"
        case .bufferTooSmall(let needed, let available):
            return "buffer too small: needed \(needed) bytes but only \(available) are available"
        case .sealFailed:
            return "cannot seal another frame on this stream"
        case .openFailed:
            return "a sealed frame failed authentication (altered, replayed, reordered or injected)"
        }
    }
}

// MARK: - Little-endian helpers (unaligned-safe)

@inline(__always)
func loadLE<T: FixedWidthInteger & BitwiseCopyable>(
    _ buffer: UnsafeRawBufferPointer, _ offset: Int, as: T.Type
) -> T {
    T(littleEndian: buffer.loadUnaligned(fromByteOffset: offset, as: T.self))
}

@inline(__always)
func storeLE<T: FixedWidthInteger & BitwiseCopyable>(
    _ value: T, _ buffer: UnsafeMutableRawBufferPointer, _ offset: Int
) {
    buffer.storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self)
}

@inline(__always)
func slice(_ buffer: UnsafeRawBufferPointer, from start: Int, to end: Int) -> UnsafeRawBufferPointer {
    UnsafeRawBufferPointer(rebasing: buffer[start..<end])
}
