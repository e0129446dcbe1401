// What every libFuzzer target over the Wire module shares: a reader over
// the fuzzer's bytes, an invariant check that crashes with a message, and
// a reference reading of the frame format written from the protocol's
// documentation (not from the decoder it checks).

import Wire

/// Stops the fuzzer with the broken invariant: a crash libFuzzer reports
/// and saves the input for. `fatalError` prints its message in release
/// builds too, where `precondition` would not.
@inline(never)
public func invariant(
    _ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
    file: StaticString = #fileID, line: UInt = #line
) {
    if !condition() { fatalError("invariant broken at \(file):\(line): \(message())") }
}

/// Reads the fuzzer's bytes front to back; past the end every read is zero
/// or empty, so a harness never has to check lengths.
public struct FuzzInput {
    public let bytes: UnsafeRawBufferPointer
    public private(set) var offset = 0

    public init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    public var remaining: Int { bytes.count - offset }
    public var isEmpty: Bool { remaining == 0 }

    public mutating func byte() -> UInt8 {
        guard offset < bytes.count else { return 0 }
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func uint16() -> UInt16 { UInt16(byte()) | UInt16(byte()) << 8 }

    public mutating func uint64() -> UInt64 {
        var v: UInt64 = 0
        for i in 0..<8 { v |= UInt64(byte()) << (8 * UInt64(i)) }
        return v
    }

    /// Up to `count` bytes (fewer at the end).
    public mutating func take(_ count: Int) -> [UInt8] {
        let n = max(0, min(count, remaining))
        defer { offset += n }
        return Array(bytes[offset..<offset + n])
    }

    /// Everything left.
    public mutating func rest() -> [UInt8] { take(remaining) }

    /// A chunk prefixed by its little-endian `UInt16` length (clamped to what is left).
    public mutating func chunk() -> [UInt8] { take(Int(uint16())) }
}

/// Calls `body` with the bytes libFuzzer passed (an empty buffer for size 0).
@inline(__always)
public func withFuzzBytes(_ data: UnsafePointer<UInt8>?, _ size: Int, _ body: (UnsafeRawBufferPointer) -> Void) {
    body(UnsafeRawBufferPointer(start: size > 0 ? data : nil, count: size))
}

/// The header fields as the protocol documents them: u32 length, u16 op,
/// u16 flags, u64 id, little-endian, at offsets 0, 4, 6, 8.
public struct RawHeader {
    public var length: UInt32
    public var op: UInt16
    public var flags: UInt16
    public var id: UInt64

    /// Nil if fewer than 16 bytes.
    public init?(_ b: UnsafeRawBufferPointer) {
        guard b.count >= 16 else { return nil }
        func le(_ at: Int, _ n: Int) -> UInt64 {
            var v: UInt64 = 0
            for i in 0..<n { v |= UInt64(b[at + i]) << (8 * UInt64(i)) }
            return v
        }
        length = UInt32(le(0, 4))
        op = UInt16(le(4, 2))
        flags = UInt16(le(6, 2))
        id = le(8, 8)
    }

    public init(_ b: [UInt8]) {
        self = b.withUnsafeBytes { RawHeader($0)! }
    }

    public var bytes: [UInt8] {
        var out: [UInt8] = []
        for i in 0..<4 { out.append(UInt8(truncatingIfNeeded: length >> (8 * UInt32(i)))) }
        for i in 0..<2 { out.append(UInt8(truncatingIfNeeded: op >> (8 * UInt16(i)))) }
        for i in 0..<2 { out.append(UInt8(truncatingIfNeeded: flags >> (8 * UInt16(i)))) }
        for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: id >> (8 * UInt64(i)))) }
        return out
    }
}

/// What the protocol documentation says a header decodes to: the error it
/// throws, in the documented order, or nil when it decodes.
public func expectedHeaderError(_ b: UnsafeRawBufferPointer) -> WireError? {
    guard let h = RawHeader(b) else { return .truncated(needed: 16, available: b.count) }
    if h.length < 16 { return .undersized(length: Int(h.length)) }
    if Int(h.length) > Wire.maxFrameLength { return .oversized(length: Int(h.length)) }
    guard let op = Op(rawValue: h.op) else { return .unknownOp(h.op) }
    if h.flags & ~3 != 0 { return .unknownFlags(h.flags) }
    let minimum = 16 + (h.flags & 1 != 0 ? 8 : 8 * op.requestScalarCount)
    if Int(h.length) < minimum { return .undersized(length: Int(h.length)) }
    return nil
}

/// Decodes `raw` with `decode` (a request or reply view). When it throws,
/// the error must be `expected`, and nil is returned; when it does not, the
/// protocol must have expected no error, and the view must lie over the
/// whole input with the header's op and id.
public func decodedView<V>(
    _ raw: UnsafeRawBufferPointer, expected: WireError?, kind: String,
    _ decode: (UnsafeRawBufferPointer) throws(WireError) -> V,
    frame: (V) -> UnsafeRawBufferPointer, opAndID: (V) -> (UInt16, UInt64)
) -> V? {
    let view: V
    do throws(WireError) {
        view = try decode(raw)
    } catch {
        invariant(error == expected, "threw \(error), the protocol says \(String(describing: expected))")
        return nil
    }
    invariant(expected == nil, "accepted a \(kind) the protocol rejects: \(String(describing: expected))")
    let h = RawHeader(raw)!
    invariant(Int(h.length) == raw.count, "declared length \(h.length) is not the input's \(raw.count)")
    let f = frame(view)
    invariant(f.baseAddress == raw.baseAddress && f.count == raw.count, "view is not over the input")
    let (op, id) = opAndID(view)
    invariant(op == h.op && id == h.id, "op or id differ from the header")
    return view
}

/// Encoding a decoded frame again gives the input's bytes, both ways:
/// whole (`encode` into a fresh buffer) and header only (`encodeHeader`
/// over a copy of the input whose first `headerBytes` are zeroed).
public func checkReencoding(
    _ raw: UnsafeRawBufferPointer, headerBytes: Int, kind: String,
    encode: (UnsafeMutableRawBufferPointer) throws(WireError) -> Int,
    encodeHeader: (UnsafeMutableRawBufferPointer) throws(WireError) -> Int
) {
    var again = [UInt8](repeating: 0xEE, count: raw.count)
    let n = again.withUnsafeMutableBytes { out -> Int in
        do throws(WireError) { return try encode(out) } catch {
            invariant(false, "re-encoding a decoded \(kind) threw \(error)")
            return -1
        }
    }
    invariant(n == raw.count && again == Array(raw), "encode(decode(x)) != x")
    var inPlace = Array(raw)
    let m = inPlace.withUnsafeMutableBytes { out -> Int in
        for i in 0..<headerBytes { out[i] = 0 }
        do throws(WireError) { return try encodeHeader(out) } catch {
            invariant(false, "re-encoding a decoded \(kind) header threw \(error)")
            return -1
        }
    }
    invariant(m == raw.count && inPlace == Array(raw), "encodeHeader(decode(x)) != x")
}

/// Little-endian `Int64` at `offset` of `b`, byte by byte.
public func int64LE(_ b: UnsafeRawBufferPointer, _ offset: Int) -> Int64 {
    var v: UInt64 = 0
    for i in 0..<8 { v |= UInt64(b[offset + i]) << (8 * UInt64(i)) }
    return Int64(bitPattern: v)
}

/// True when `inner` lies entirely within `outer` (an empty slice at its end counts).
public func lies(_ inner: UnsafeRawBufferPointer, within outer: UnsafeRawBufferPointer) -> Bool {
    guard inner.count > 0 else { return true }
    guard let i = inner.baseAddress, let o = outer.baseAddress else { return false }
    return i >= o && i + inner.count <= o + outer.count
}

/// Offset of `inner`'s first byte inside `outer` (precondition: it lies within).
public func offset(of inner: UnsafeRawBufferPointer, in outer: UnsafeRawBufferPointer) -> Int {
    guard let i = inner.baseAddress, let o = outer.baseAddress else { return outer.count }
    return o.distance(to: i)
}

/// One run of an encoder (`RequestEncoder` or `ResponseEncoder`) drawn from
/// the input: a buffer size, and a payload length that is the payload's own
/// or, one time in four each, negative, beyond the largest payload, or one
/// the buffer may not hold.
public struct EncoderCase {
    public let bufferSize: Int
    public let payload: [UInt8]
    public let payloadLength: Int
    /// The encoder is given the payload itself (else only its length).
    public let withPayload: Bool

    public init(_ input: inout FuzzInput) {
        bufferSize = Int(input.uint16())
        let lengthMode = input.byte()
        payload = input.rest()
        withPayload = lengthMode % 4 == 0
        switch lengthMode % 4 {
        case 0: payloadLength = payload.count
        case 1: payloadLength = -Int(lengthMode)
        case 2: payloadLength = Wire.maxPayload + Int(lengthMode)
        default: payloadLength = Int(lengthMode) << 16 | Int(bufferSize)
        }
    }

    /// What an encoder must throw for a frame whose payload starts at
    /// `payloadOffset`, or nil if it must succeed.
    public func expectedError(payloadOffset: Int) -> WireError? {
        payloadLength < 0 ? .malformedPayload
            : payloadLength > Wire.maxPayload ? .bufferTooSmall(needed: payloadLength, available: Wire.maxPayload)
            : payloadOffset + payloadLength > bufferSize
            ? .bufferTooSmall(needed: payloadOffset + payloadLength, available: bufferSize)
            : nil
    }

    /// Runs `encode` into a buffer of 0xEE bytes (given the payload when
    /// `withPayload`, else nil) and checks what holds for every encoder: it
    /// throws exactly `expected` and then writes nothing; or it succeeds
    /// only when nothing was expected, writes exactly `payloadOffset +
    /// payloadLength` bytes and none past them, and `decodes` the frame.
    public func check(payloadOffset: Int, expected: WireError?,
                      encode: (UnsafeRawBufferPointer?, UnsafeMutableRawBufferPointer) throws(WireError) -> Int,
                      decodes: (UnsafeRawBufferPointer) -> Void) {
        var buffer = [UInt8](repeating: 0xEE, count: bufferSize)
        buffer.withUnsafeMutableBytes { out in
            let result: Result<Int, WireError> = payload.withUnsafeBytes { p in
                do throws(WireError) { return .success(try encode(withPayload ? p : nil, out)) } catch { return .failure(error) }
            }
            switch result {
            case .failure(let error):
                invariant(error == expected, "encoder threw \(error), expected \(String(describing: expected))")
                invariant(out.allSatisfy { $0 == 0xEE }, "a failed encode wrote to the buffer")
            case .success(let length):
                invariant(expected == nil, "encoder accepted what it should refuse: \(String(describing: expected))")
                invariant(length == payloadOffset + payloadLength, "encoded length")
                for i in length..<bufferSize { invariant(out[i] == 0xEE, "encoder wrote past the frame") }
                decodes(UnsafeRawBufferPointer(rebasing: out[0..<length]))
            }
        }
    }
}
