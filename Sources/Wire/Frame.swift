/// Frame flags (a little-endian `UInt16` in the header): ``response`` and
/// ``stablePayload``; any other bit makes ``FrameHeader/decode(_:)`` throw
/// ``WireError/unknownFlags(_:)``.
public struct FrameFlags: OptionSet, Sendable, Hashable {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    /// The frame is a response (body: `Int64` result + payload) rather than a request.
    public static let response = FrameFlags(rawValue: 1)
    /// A request whose payload's pages stay unchanged for good once sent
    /// (the sender spliced them from the kernel's buffers, not from memory
    /// it reuses): the receiver may keep references to them past its
    /// reply, as a splice into a socket or a pipe does, rather than copy them.
    public static let stablePayload = FrameFlags(rawValue: 2)
    /// All bits this protocol version defines.
    public static let known: FrameFlags = [.response, .stablePayload]
}

/// Frame header, 16 bytes: u32 length (total frame bytes incl. header), u16 op,
/// u16 flags, u64 request id — all little-endian.
public struct FrameHeader: Equatable, Sendable {
    /// Total frame length in bytes, header included.
    public var length: UInt32
    /// The operation.
    public var op: Op
    /// The flags (``FrameFlags/response`` or none).
    public var flags: FrameFlags
    /// The request id (0 for handshake frames); a response echoes its request's id.
    public var id: UInt64

    public init(length: UInt32, op: Op, flags: FrameFlags, id: UInt64) {
        self.length = length
        self.op = op
        self.flags = flags
        self.id = id
    }

    /// The smallest valid frame length for `op` with these flags: header plus the
    /// request scalars, or header plus the `Int64` result for a response.
    @inline(__always)
    static func minimumLength(op: Op, response: Bool) -> Int {
        Wire.headerSize + (response ? 8 : 8 * op.requestScalarCount)
    }

    /// Decodes the first 16 bytes (any further bytes are ignored). Never reads
    /// beyond the buffer and never allocates, whatever the length field says.
    ///
    /// Throws, in this order: ``WireError/truncated(needed:available:)`` if fewer than 16 bytes;
    /// ``WireError/undersized(length:)`` if length < 16; ``WireError/oversized(length:)`` if
    /// length > ``Wire/maxFrameLength``; ``WireError/unknownOp(_:)``; ``WireError/unknownFlags(_:)``
    /// if any bit other than `response` is set; ``WireError/undersized(length:)`` if length is
    /// below the op's minimum (header + 8 × requestScalarCount for a request, header + 8 for a response).
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(WireError) -> FrameHeader {
        guard bytes.count >= Wire.headerSize else {
            throw .truncated(needed: Wire.headerSize, available: bytes.count)
        }
        let length = loadLE(bytes, 0, as: UInt32.self)
        let rawOp = loadLE(bytes, 4, as: UInt16.self)
        let rawFlags = loadLE(bytes, 6, as: UInt16.self)
        let id = loadLE(bytes, 8, as: UInt64.self)
        guard length >= UInt32(Wire.headerSize) else { throw .undersized(length: Int(length)) }
        guard Int(length) <= Wire.maxFrameLength else { throw .oversized(length: Int(length)) }
        guard let op = Op(rawValue: rawOp) else { throw .unknownOp(rawOp) }
        guard rawFlags & ~FrameFlags.known.rawValue == 0 else { throw .unknownFlags(rawFlags) }
        let flags = FrameFlags(rawValue: rawFlags)
        guard Int(length) >= minimumLength(op: op, response: flags.contains(.response)) else {
            throw .undersized(length: Int(length))
        }
        return FrameHeader(length: length, op: op, flags: flags, id: id)
    }

    /// Writes the 16 header bytes at the start of `buffer`. Precondition: `buffer.count >= 16`.
    public func encode(into buffer: UnsafeMutableRawBufferPointer) {
        precondition(buffer.count >= Wire.headerSize, "FrameHeader.encode needs 16 bytes")
        storeLE(length, buffer, 0)
        storeLE(op.rawValue, buffer, 4)
        storeLE(flags.rawValue, buffer, 6)
        storeLE(id, buffer, 8)
    }
}

/// Six `Int64` request scalars, stored inline (a tuple; no heap). Only the first
/// `op.requestScalarCount` are put on the wire; the rest are ignored when encoding
/// and zero when decoded.
public struct Scalars: Sendable, Equatable {
    @usableFromInline
    var storage: (Int64, Int64, Int64, Int64, Int64, Int64)

    /// The scalars in order; unspecified trailing ones are 0. `Scalars()` is all zeros.
    public init(
        _ s0: Int64 = 0, _ s1: Int64 = 0, _ s2: Int64 = 0,
        _ s3: Int64 = 0, _ s4: Int64 = 0, _ s5: Int64 = 0
    ) {
        storage = (s0, s1, s2, s3, s4, s5)
    }

    /// Scalar `i`, 0 ..< 6 (precondition).
    @inlinable
    public subscript(i: Int) -> Int64 {
        get {
            switch i {
            case 0: return storage.0
            case 1: return storage.1
            case 2: return storage.2
            case 3: return storage.3
            case 4: return storage.4
            case 5: return storage.5
            default: preconditionFailure("Scalars index \(i) out of range 0..<6")
            }
        }
        set {
            switch i {
            case 0: storage.0 = newValue
            case 1: storage.1 = newValue
            case 2: storage.2 = newValue
            case 3: storage.3 = newValue
            case 4: storage.4 = newValue
            case 5: storage.5 = newValue
            default: preconditionFailure("Scalars index \(i) out of range 0..<6")
            }
        }
    }

    public static func == (a: Scalars, b: Scalars) -> Bool {
        a.storage.0 == b.storage.0 && a.storage.1 == b.storage.1 && a.storage.2 == b.storage.2
            && a.storage.3 == b.storage.3 && a.storage.4 == b.storage.4 && a.storage.5 == b.storage.5
    }
}
