// libFuzzer target: request frames — `RequestView`, its per-op payload
// readers (`path`, `twoPaths`, `cString(at:)` chains as the home's
// handlers walk them) and `RequestEncoder`.
//
// Input: one mode byte, then the frame. Mode bit 0: overwrite the length
// field with the real size (so mutations of the body keep a well-formed
// frame); bit 1: map the op field onto a known op (byte 4 modulo the op
// count); bit 2: clear the flags; bit 3: instead of decoding, drive the
// encoder with sizes taken from the input and decode what it wrote; bits
// 4-7: an extra offset for `cString(at:)`.
//
// Invariants: the view exists exactly when the documented rules say so
// (else the documented error); a view never reaches outside the input and
// its declared length equals the input's size; scalars and payload are the
// bytes at the documented offsets; re-encoding a decoded request gives the
// same bytes; every string reader returns a slice of the payload that ends
// with its only NUL, and fails exactly when no such string is there.

import CFuzzDriver
import FuzzSupport
import Wire

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRequest(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    withFuzzBytes(data, size) { bytes in
        var input = FuzzInput(bytes)
        let mode = input.byte()
        if mode & 8 != 0 {
            fuzzEncoder(&input)
            return
        }
        var frame = input.rest()
        shape(&frame, mode: mode, response: false)
        frame.withUnsafeBytes { raw in checkRequest(raw, extraOffset: Int(mode >> 4)) }
    }
    return 0
}

/// Applies the mode's fix-ups to a frame's header.
func shape(_ frame: inout [UInt8], mode: UInt8, response: Bool) {
    guard frame.count >= 16 else { return }
    var h = RawHeader(frame)
    if mode & 1 != 0 { h.length = UInt32(truncatingIfNeeded: frame.count) }
    if mode & 2 != 0 { h.op = Op.allCases[Int(frame[4]) % Op.allCases.count].rawValue }
    if mode & 4 != 0 { h.flags = response ? 1 : 0 }
    frame.replaceSubrange(0..<16, with: h.bytes)
}

/// What `RequestView(frame:)` must throw for `raw`, or nil.
func expectedRequestError(_ raw: UnsafeRawBufferPointer) -> WireError? {
    if let e = expectedHeaderError(raw) { return e }
    let h = RawHeader(raw)!
    if h.flags & 1 != 0 { return .unexpectedOp(Op(rawValue: h.op)!) }
    if raw.count < Int(h.length) { return .truncated(needed: Int(h.length), available: raw.count) }
    if raw.count > Int(h.length) { return .malformedPayload }
    return nil
}

func checkRequest(_ raw: UnsafeRawBufferPointer, extraOffset: Int) {
    guard let view = decodedView(raw, expected: expectedRequestError(raw), kind: "request",
                                 { (b) throws(WireError) in try RequestView(frame: b) },
                                 frame: { $0.frame }, opAndID: { ($0.op.rawValue, $0.id) }) else { return }
    let count = view.op.requestScalarCount
    let scalars = view.scalars
    for i in 0..<6 {
        let want: Int64 = i < count ? int64LE(raw, 16 + 8 * i) : 0
        invariant(scalars[i] == want, "scalar \(i) is \(scalars[i]), the bytes say \(want)")
        if i < count { invariant(view.scalar(i) == want, "scalar(\(i)) differs") }
    }
    let payload = view.payload
    invariant(lies(payload, within: raw), "payload outside the frame")
    invariant(payload.count == raw.count - RequestEncoder.payloadOffset(view.op), "payload size")
    if payload.count > 0 {
        invariant(offset(of: payload, in: raw) == RequestEncoder.payloadOffset(view.op), "payload offset")
    }

    // Re-encoding gives the same bytes, both ways.
    checkReencoding(raw, headerBytes: 16, kind: "request",
                    encode: { (out) throws(WireError) in
                        try RequestEncoder.encode(op: view.op, id: view.id, scalars: scalars, payload: payload, into: out,
                                                  flags: view.flags)
                    },
                    encodeHeader: { (out) throws(WireError) in
                        try RequestEncoder.encodeHeader(op: view.op, id: view.id, scalars: scalars,
                                                        payloadLength: payload.count, into: out, flags: view.flags)
                    })

    // A request is never also a response.
    if (try? ResponseView(frame: raw)) != nil { invariant(false, "bytes decode as both a request and a response") }

    checkStrings(view, extraOffset: extraOffset)
}

/// Offsets of the NULs in `p`.
func nuls(_ p: UnsafeRawBufferPointer) -> [Int] {
    var out: [Int] = []
    for i in 0..<p.count where p[i] == 0 { out.append(i) }
    return out
}

func checkStrings(_ view: RequestView, extraOffset: Int) {
    let p = view.payload
    let zeros = nuls(p)

    // path(): exactly one NUL, at the end.
    do throws(WireError) {
        let path = try view.path()
        invariant(zeros == [p.count - 1], "path() accepted a payload with NULs at \(zeros)")
        invariant(path.baseAddress == p.baseAddress && path.count == p.count, "path() is not the payload")
    } catch {
        invariant(error == .malformedPayload, "path() threw \(error)")
        invariant(zeros != [p.count - 1], "path() refused a payload that is one path")
    }

    // twoPaths(): exactly two NULs, the second at the end.
    do throws(WireError) {
        let (a, b) = try view.twoPaths()
        invariant(zeros.count == 2 && zeros[1] == p.count - 1, "twoPaths() accepted NULs at \(zeros)")
        invariant(a.baseAddress == p.baseAddress && a.count == zeros[0] + 1, "first path")
        invariant(lies(b, within: p) && offset(of: b, in: p) == zeros[0] + 1 && b.count == p.count - zeros[0] - 1,
                  "second path")
    } catch {
        invariant(error == .malformedPayload, "twoPaths() threw \(error)")
        invariant(!(zeros.count == 2 && zeros[1] == p.count - 1), "twoPaths() refused two paths")
    }

    // cString(at:) anywhere, including outside the payload.
    for start in [0, extraOffset, p.count, p.count + 1, -1, Int.min, Int.max, p.count / 2] {
        checkCString(view, p, zeros, at: start)
    }

    // The chains the home's handlers walk: getxattr/removexattr (name, path),
    // setxattr (name, path, value), utimensat (32 bytes of times, then path):
    // every link is a string of the payload, and the walk ends.
    var at = view.op == .utimensat ? 32 : 0
    var links = 0
    while true {
        do throws(WireError) {
            let (s, next) = try view.cString(at: at)
            invariant(next > at && next <= p.count && s.count == next - at, "chain did not advance inside the payload")
            at = next
            links += 1
            invariant(links <= p.count + 1, "chain longer than the payload")
        } catch {
            break
        }
    }
    if view.op == .setxattr {
        // What is left after name and path is the value; the home checks it against scalar 3.
        invariant(at <= p.count, "value starts past the payload")
    }
}

func checkCString(_ view: RequestView, _ p: UnsafeRawBufferPointer, _ zeros: [Int], at start: Int) {
    let nul = zeros.first(where: { $0 >= start })
    let valid = start >= 0 && start <= p.count && nul != nil
    do throws(WireError) {
        let (s, next) = try view.cString(at: start)
        invariant(valid, "cString(at: \(start)) accepted; NULs at \(zeros), payload \(p.count)")
        invariant(lies(s, within: p), "cString slice outside the payload")
        invariant(offset(of: s, in: p) == start && s.count == nul! - start + 1 && next == nul! + 1,
                  "cString(at: \(start)) returned the wrong slice")
        invariant(s[s.count - 1] == 0, "cString slice does not end with NUL")
    } catch {
        invariant(error == .malformedPayload, "cString threw \(error)")
        invariant(!valid, "cString(at: \(start)) refused a string; NULs at \(zeros)")
    }
}

/// Drives `RequestEncoder` with an op, sizes and a buffer from the input; what it
/// writes must decode back to what it was given.
func fuzzEncoder(_ input: inout FuzzInput) {
    let op = Op.allCases[Int(input.byte()) % Op.allCases.count]
    let id = input.uint64()
    var scalars = Scalars()
    for i in 0..<6 { scalars[i] = Int64(bitPattern: input.uint64()) }
    let run = EncoderCase(&input)
    let offset = RequestEncoder.payloadOffset(op)
    run.check(payloadOffset: offset, expected: run.expectedError(payloadOffset: offset), encode: { payload, out throws(WireError) in
        if let payload { return try RequestEncoder.encode(op: op, id: id, scalars: scalars, payload: payload, into: out) }
        return try RequestEncoder.encodeHeader(op: op, id: id, scalars: scalars, payloadLength: run.payloadLength, into: out)
    }, decodes: { frame in
        do throws(WireError) {
            let v = try RequestView(frame: frame)
            invariant(v.op == op && v.id == id, "op/id round trip")
            for i in 0..<op.requestScalarCount { invariant(v.scalar(i) == scalars[i], "scalar round trip") }
            if run.withPayload { invariant(Array(v.payload) == run.payload, "payload round trip") }
        } catch {
            invariant(false, "an encoded request does not decode: \(error)")
        }
    })
}

/// The entry point SwiftPM links as main (see CFuzzDriver.h).
@_cdecl("fuzz_request_main")
public func fuzzRequestMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    tether_fuzz_main(argc, argv, fuzzRequest)
}
