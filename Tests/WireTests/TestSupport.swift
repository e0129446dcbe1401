import Wire

/// Parses hex, ignoring spaces and newlines: "28 00 00 00" → [0x28, 0, 0, 0].
func hexBytes(_ s: String) -> [UInt8] {
    let digits = s.filter { $0.isHexDigit }
    precondition(digits.count % 2 == 0, "odd hex digit count")
    var out: [UInt8] = []
    var it = digits.makeIterator()
    while let hi = it.next(), let lo = it.next() {
        out.append(UInt8(String([hi, lo]), radix: 16)!)
    }
    return out
}

func hexString(_ b: [UInt8]) -> String {
    b.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
}

/// Encodes a request into a fresh array sized exactly for it.
func encodeRequest(op: Op, id: UInt64, scalars: Scalars, payload: [UInt8] = []) throws -> [UInt8] {
    var out = [UInt8](repeating: 0xEE, count: RequestEncoder.payloadOffset(op) + payload.count)
    let n = try out.withUnsafeMutableBytes { buf in
        try payload.withUnsafeBytes { p in
            try RequestEncoder.encode(op: op, id: id, scalars: scalars, payload: p, into: buf)
        }
    }
    precondition(n == out.count)
    return out
}

/// Encodes a response into a fresh array sized exactly for it.
func encodeResponse(op: Op, id: UInt64, result: Int64, payload: [UInt8] = []) throws -> [UInt8] {
    var out = [UInt8](repeating: 0xEE, count: ResponseEncoder.payloadOffset + payload.count)
    let n = try out.withUnsafeMutableBytes { buf in
        try payload.withUnsafeBytes { p in
            try ResponseEncoder.encode(op: op, id: id, result: result, payload: p, into: buf)
        }
    }
    precondition(n == out.count)
    return out
}

/// The owned fields of a decoded request.
struct DecodedRequest: Equatable {
    var op: Op
    var id: UInt64
    var scalars: Scalars
    var payload: [UInt8]
}

struct DecodedResponse: Equatable {
    var op: Op
    var id: UInt64
    var result: Int64
    var payload: [UInt8]
}

func decodeRequest(_ frame: [UInt8]) throws -> DecodedRequest {
    try frame.withUnsafeBytes { raw in
        let v = try RequestView(frame: raw)
        var s = Scalars()
        for i in 0..<v.op.requestScalarCount { s[i] = v.scalar(i) }
        return DecodedRequest(op: v.op, id: v.id, scalars: s, payload: Array(v.payload))
    }
}

func decodeResponse(_ frame: [UInt8]) throws -> DecodedResponse {
    try frame.withUnsafeBytes { raw in
        let v = try ResponseView(frame: raw)
        return DecodedResponse(op: v.op, id: v.id, result: v.result, payload: Array(v.payload))
    }
}

func decodeHeader(_ bytes: [UInt8]) throws -> FrameHeader {
    try bytes.withUnsafeBytes { try FrameHeader.decode($0) }
}

/// A raw header (no validation), for building bad frames by hand.
func rawHeader(length: UInt32, op: UInt16, flags: UInt16 = 0, id: UInt64 = 0) -> [UInt8] {
    var b: [UInt8] = []
    withUnsafeBytes(of: length.littleEndian) { b += $0 }
    withUnsafeBytes(of: op.littleEndian) { b += $0 }
    withUnsafeBytes(of: flags.littleEndian) { b += $0 }
    withUnsafeBytes(of: id.littleEndian) { b += $0 }
    return b
}

/// Deterministic PRNG (SplitMix64) so the fuzz test is reproducible.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
