/// Writes request frames (and handshake frames, which have the same shape) into a
/// caller-provided buffer without allocating.
///
/// Two ways: ``encode(op:id:scalars:payload:into:)`` copies the payload in;
/// ``encodeHeader(op:id:scalars:payloadLength:into:)`` writes only the header and scalars,
/// for a payload the caller has already placed at ``payloadOffset(_:)`` (so a write's
/// data can be read straight from the tracee into the frame).
public enum RequestEncoder {
    /// Where the payload of an `op` request starts: `16 + 8 * op.requestScalarCount`.
    @inlinable
    public static func payloadOffset(_ op: Op) -> Int {
        Wire.headerSize + 8 * op.requestScalarCount
    }

    /// Encodes a whole request frame: header, the op's scalars, then a copy of `payload`
    /// (which may overlap `buffer`). Returns the frame length.
    ///
    /// Throws ``WireError/bufferTooSmall(needed:available:)`` if the payload exceeds
    /// ``Wire/maxPayload`` or the frame does not fit in `buffer`.
    public static func encode(
        op: Op, id: UInt64, scalars: Scalars, payload: UnsafeRawBufferPointer,
        into buffer: UnsafeMutableRawBufferPointer, flags: FrameFlags = []
    ) throws(WireError) -> Int {
        let length = try encodeHeader(
            op: op, id: id, scalars: scalars, payloadLength: payload.count, into: buffer, flags: flags)
        if payload.count > 0 {
            // copyMemory is a memmove: overlap is fine.
            (buffer.baseAddress! + payloadOffset(op))
                .copyMemory(from: payload.baseAddress!, byteCount: payload.count)
        }
        return length
    }

    /// Encodes the header and scalars of a request whose `payloadLength` payload bytes are
    /// already at ``payloadOffset(_:)`` in `buffer`. Returns the frame length.
    ///
    /// Throws ``WireError/bufferTooSmall(needed:available:)`` if `payloadLength` exceeds
    /// ``Wire/maxPayload`` or the whole frame does not fit in `buffer`;
    /// ``WireError/malformedPayload`` if `payloadLength` is negative. `flags`: none, or
    /// ``FrameFlags/stablePayload``.
    public static func encodeHeader(
        op: Op, id: UInt64, scalars: Scalars, payloadLength: Int,
        into buffer: UnsafeMutableRawBufferPointer, flags: FrameFlags = []
    ) throws(WireError) -> Int {
        guard payloadLength >= 0 else { throw .malformedPayload }
        guard payloadLength <= Wire.maxPayload else {
            throw .bufferTooSmall(needed: payloadLength, available: Wire.maxPayload)
        }
        let offset = payloadOffset(op)
        let length = offset + payloadLength
        guard buffer.count >= length else {
            throw .bufferTooSmall(needed: length, available: buffer.count)
        }
        FrameHeader(length: UInt32(length), op: op, flags: flags, id: id).encode(into: buffer)
        for i in 0..<op.requestScalarCount {
            storeLE(scalars[i], buffer, Wire.headerSize + 8 * i)
        }
        return length
    }
}

/// A decoded request (or handshake frame) over the caller's frame bytes — the whole
/// frame, header included. It borrows the bytes: valid only while they are.
///
/// The initializer validates the header (see ``FrameHeader/decode(_:)``), that the frame
/// is not a response, that the header's length equals `frame.count`, and that the body
/// holds the op's scalars. It never allocates.
public struct RequestView {
    /// The frame bytes this view reads.
    public let frame: UnsafeRawBufferPointer
    /// The operation.
    public let op: Op
    /// The request id.
    public let id: UInt64
    /// The header's flags (a request's: none, or ``FrameFlags/stablePayload``).
    public let flags: FrameFlags

    /// Throws the errors of ``FrameHeader/decode(_:)``; ``WireError/unexpectedOp(_:)`` if the
    /// frame is a response; ``WireError/truncated(needed:available:)`` if `frame` is shorter
    /// than the header's length; ``WireError/malformedPayload`` if it is longer.
    public init(frame: UnsafeRawBufferPointer) throws(WireError) {
        let header = try FrameHeader.decode(frame)
        guard !header.flags.contains(.response) else { throw .unexpectedOp(header.op) }
        let length = Int(header.length)
        guard frame.count >= length else { throw .truncated(needed: length, available: frame.count) }
        guard frame.count == length else { throw .malformedPayload }
        // FrameHeader.decode already ensured length >= header + scalars.
        self.frame = frame
        self.op = header.op
        self.id = header.id
        self.flags = header.flags
    }

    /// Request scalar `i`. Precondition: `i < op.requestScalarCount`.
    @inlinable
    public func scalar(_ i: Int) -> Int64 {
        precondition(i >= 0 && i < op.requestScalarCount, "scalar index out of range for op")
        return Int64(littleEndian: frame.loadUnaligned(fromByteOffset: Wire.headerSize + 8 * i, as: Int64.self))
    }

    /// All of the op's scalars (the rest zero).
    public var scalars: Scalars {
        var s = Scalars()
        for i in 0..<op.requestScalarCount { s[i] = scalar(i) }
        return s
    }

    /// The payload bytes (after the scalars).
    public var payload: UnsafeRawBufferPointer {
        slice(frame, from: RequestEncoder.payloadOffset(op), to: frame.count)
    }

    /// The payload as one NUL-terminated path, returned INCLUDING its NUL (so it can be
    /// passed to C as a C string). The empty path is the payload `[0]`.
    ///
    /// Throws ``WireError/malformedPayload`` if the payload is empty, does not end with
    /// NUL, or has an interior NUL.
    public func path() throws(WireError) -> UnsafeRawBufferPointer {
        let p = payload
        guard let nul = firstNUL(p, from: 0), nul == p.count - 1 else { throw .malformedPayload }
        return p
    }

    /// The NUL-terminated string starting at payload offset `offset`, INCLUDING its NUL,
    /// and the offset just after it: for payloads that chain strings and bytes (setxattr's
    /// name NUL path NUL value, utimensat's times then path).
    ///
    /// Throws ``WireError/malformedPayload`` if no NUL follows `offset`.
    public func cString(at offset: Int) throws(WireError) -> (UnsafeRawBufferPointer, next: Int) {
        let p = payload
        guard offset >= 0, offset <= p.count, let nul = firstNUL(p, from: offset) else { throw .malformedPayload }
        return (slice(p, from: offset, to: nul + 1), nul + 1)
    }

    /// Two NUL-terminated paths (renameat2: oldpath NUL newpath NUL), each INCLUDING its NUL.
    ///
    /// Throws ``WireError/malformedPayload`` unless the payload is exactly two such paths.
    public func twoPaths() throws(WireError) -> (UnsafeRawBufferPointer, UnsafeRawBufferPointer) {
        let p = payload
        guard let first = firstNUL(p, from: 0) else { throw .malformedPayload }
        guard let second = firstNUL(p, from: first + 1), second == p.count - 1 else {
            throw .malformedPayload
        }
        return (slice(p, from: 0, to: first + 1), slice(p, from: first + 1, to: p.count))
    }
}

/// Index of the first zero byte at or after `start`, or nil.
@inline(__always)
func firstNUL(_ bytes: UnsafeRawBufferPointer, from start: Int) -> Int? {
    var i = start
    let n = bytes.count
    while i < n {
        if bytes[i] == 0 { return i }
        i += 1
    }
    return nil
}
