/// Writes response frames into a caller-provided buffer without allocating.
///
/// A response echoes its request's op and id, sets ``FrameFlags/response``, and carries an
/// `Int64` result (>= 0 success value; < 0 `-errno` from the home kernel, passed through
/// unchanged) followed by the payload at ``payloadOffset``.
public enum ResponseEncoder {
    /// Where a response payload starts: header + `Int64` result.
    public static let payloadOffset = 24

    /// Encodes a whole response frame with a copy of `payload` (which may overlap `buffer`).
    /// Returns the frame length.
    ///
    /// Throws ``WireError/bufferTooSmall(needed:available:)`` if the payload exceeds
    /// ``Wire/maxPayload`` or the frame does not fit; ``WireError/unexpectedOp(_:)`` for a
    /// handshake op (handshake frames have no responses).
    public static func encode(
        op: Op, id: UInt64, result: Int64, payload: UnsafeRawBufferPointer,
        into buffer: UnsafeMutableRawBufferPointer
    ) throws(WireError) -> Int {
        let length = try encodeHeader(
            op: op, id: id, result: result, payloadLength: payload.count, into: buffer)
        if payload.count > 0 {
            (buffer.baseAddress! + payloadOffset)
                .copyMemory(from: payload.baseAddress!, byteCount: payload.count)
        }
        return length
    }

    /// Encodes the header and result of a response whose `payloadLength` payload bytes are
    /// already at ``payloadOffset`` in `buffer` (e.g. read straight into the frame).
    /// Returns the frame length. Throws as ``encode(op:id:result:payload:into:)``, and
    /// ``WireError/malformedPayload`` if `payloadLength` is negative.
    public static func encodeHeader(
        op: Op, id: UInt64, result: Int64, payloadLength: Int,
        into buffer: UnsafeMutableRawBufferPointer
    ) throws(WireError) -> Int {
        guard !op.isHandshake else { throw .unexpectedOp(op) }
        guard payloadLength >= 0 else { throw .malformedPayload }
        guard payloadLength <= Wire.maxPayload else {
            throw .bufferTooSmall(needed: payloadLength, available: Wire.maxPayload)
        }
        let length = payloadOffset + payloadLength
        guard buffer.count >= length else {
            throw .bufferTooSmall(needed: length, available: buffer.count)
        }
        FrameHeader(length: UInt32(length), op: op, flags: .response, id: id).encode(into: buffer)
        storeLE(result, buffer, Wire.headerSize)
        return length
    }
}

/// A decoded response over the caller's frame bytes (whole frame, header included). It
/// borrows the bytes: valid only while they are. Never allocates.
///
/// `result >= 0`: success value; `result < 0`: `-errno` from the home kernel, passed
/// through unchanged.
public struct ResponseView {
    /// The frame bytes this view reads.
    public let frame: UnsafeRawBufferPointer
    /// The operation (echoed from the request).
    public let op: Op
    /// The request id (echoed from the request).
    public let id: UInt64
    /// The result: >= 0 success value, < 0 `-errno`.
    public let result: Int64

    /// Throws the errors of ``FrameHeader/decode(_:)``; ``WireError/unexpectedOp(_:)`` if the
    /// frame is not a response or its op is a handshake op; ``WireError/unknownFlags(_:)``
    /// if it says ``FrameFlags/stablePayload`` (a request's flag only);
    /// ``WireError/truncated(needed:available:)`` if `frame` is shorter than the header's
    /// length; ``WireError/malformedPayload`` if it is longer.
    public init(frame: UnsafeRawBufferPointer) throws(WireError) {
        let header = try FrameHeader.decode(frame)
        guard header.flags.contains(.response), !header.op.isHandshake else {
            throw .unexpectedOp(header.op)
        }
        // Only a request's payload can be stable (see FrameFlags).
        guard !header.flags.contains(.stablePayload) else { throw .unknownFlags(header.flags.rawValue) }
        let length = Int(header.length)
        guard frame.count >= length else { throw .truncated(needed: length, available: frame.count) }
        guard frame.count == length else { throw .malformedPayload }
        // FrameHeader.decode already ensured length >= header + 8.
        self.frame = frame
        self.op = header.op
        self.id = header.id
        self.result = loadLE(frame, Wire.headerSize, as: Int64.self)
    }

    /// The payload bytes (after the result).
    public var payload: UnsafeRawBufferPointer {
        slice(frame, from: ResponseEncoder.payloadOffset, to: frame.count)
    }
}
