// libFuzzer target: reply frames — `ResponseView` and `ResponseEncoder`.
//
// Input: one mode byte, then the frame. Mode bits 0-2 as in fuzz-request
// (fix the length, map the op onto a known one, set the response flag);
// bit 3: drive the encoder with sizes from the input and decode what it
// wrote; bit 4: put a request and a reply's numbers to `ReplyContract`.
//
// Invariants: the view exists exactly when the documented rules say so
// (else the documented error); its declared length is the input's size;
// result and payload are the bytes at the documented offsets; handshake ops
// never decode as replies; a reply never also decodes as a request; and
// re-encoding a decoded reply gives the same bytes. A reply the contract
// accepts never carries more bytes than the request's buffer holds, nor
// reports more than was asked for, and an error carries nothing.

import CFuzzDriver
import FuzzSupport
import Wire

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzResponse(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    withFuzzBytes(data, size) { bytes in
        var input = FuzzInput(bytes)
        let mode = input.byte()
        if mode & 8 != 0 {
            fuzzEncoder(&input)
            return
        }
        if mode & 16 != 0 {
            fuzzContract(&input)
            return
        }
        var frame = input.rest()
        if frame.count >= 16 {
            var h = RawHeader(frame)
            if mode & 1 != 0 { h.length = UInt32(truncatingIfNeeded: frame.count) }
            if mode & 2 != 0 { h.op = Op.allCases[Int(frame[4]) % Op.allCases.count].rawValue }
            if mode & 4 != 0 { h.flags = 1 }
            frame.replaceSubrange(0..<16, with: h.bytes)
        }
        frame.withUnsafeBytes { checkResponse($0) }
    }
    return 0
}

/// What `ResponseView(frame:)` must throw for `raw`, or nil.
func expectedResponseError(_ raw: UnsafeRawBufferPointer) -> WireError? {
    if let e = expectedHeaderError(raw) { return e }
    let h = RawHeader(raw)!
    let op = Op(rawValue: h.op)!
    if h.flags & 1 == 0 || op.isHandshake { return .unexpectedOp(op) }
    if h.flags & 2 != 0 { return .unknownFlags(h.flags) }   // stablePayload: requests only
    if raw.count < Int(h.length) { return .truncated(needed: Int(h.length), available: raw.count) }
    if raw.count > Int(h.length) { return .malformedPayload }
    return nil
}

func checkResponse(_ raw: UnsafeRawBufferPointer) {
    guard let view = decodedView(raw, expected: expectedResponseError(raw), kind: "reply",
                                 { (b) throws(WireError) in try ResponseView(frame: b) },
                                 frame: { $0.frame }, opAndID: { ($0.op.rawValue, $0.id) }) else { return }
    invariant(!view.op.isHandshake, "a handshake op decoded as a reply")
    invariant(view.result == int64LE(raw, 16), "result differs from the bytes")
    let payload = view.payload
    invariant(lies(payload, within: raw) && payload.count == raw.count - 24, "payload bounds")
    if payload.count > 0 { invariant(offset(of: payload, in: raw) == 24, "payload offset") }

    checkReencoding(raw, headerBytes: 24, kind: "reply",
                    encode: { (out) throws(WireError) in
                        try ResponseEncoder.encode(op: view.op, id: view.id, result: view.result, payload: payload, into: out)
                    },
                    encodeHeader: { (out) throws(WireError) in
                        try ResponseEncoder.encodeHeader(op: view.op, id: view.id, result: view.result,
                                                         payloadLength: payload.count, into: out)
                    })
    if (try? RequestView(frame: raw)) != nil { invariant(false, "bytes decode as both a reply and a request") }
}

/// The most bytes the client may copy to the tracee for a reply to `op`:
/// the buffer the request names, the struct's size, or nothing.
func replyBound(_ op: Op, _ s: Scalars) -> Int {
    switch op {
    case .read, .pread, .getdents64, .readlinkat: return Int(max(s[1], 0))
    case .getxattr, .listxattr: return Int(max(s[2], 0))
    case .fstat, .statx, .statxWatched: return 256
    case .statfs: return 120
    case .lock, .posixLock: return 32
    case .chdir, .getcwd: return 4096
    case .echo: return Int(max(s[0], 0))
    case .getsockopt: return Int(min(max(s[3], 0), Int64(Wire.maxSockopt)))
    case .sockname: return Int(min(max(s[2], 0), Int64(Wire.maxSockaddr)))
    case .accept: return Wire.maxSockaddr
    // The datagram, then the sender's address.
    case .recvfrom: return Int(max(s[2], 0)) + Wire.maxSockaddr
    // A character device's marker byte.
    case .openat: return 1
    // The largest struct an ioctl writes: the kernel's struct termios.
    case .ioctl: return 36
    case .windowSize: return 8
    // The rendezvous: its secret, then its socket's path.
    case .terminalOffer: return Wire.terminalSecretSize + 4096
    default: return 0
    }
}

/// `ReplyContract.violation` on numbers from the input.
func fuzzContract(_ input: inout FuzzInput) {
    let op = Op.allCases[Int(input.byte()) % Op.allCases.count]
    var s = Scalars()
    for i in 0..<6 {
        // Mostly small numbers, sometimes anything.
        let raw = input.uint64()
        s[i] = raw & 0x8000_0000_0000_0000 != 0 ? Int64(bitPattern: raw) : Int64(raw & 0xFFFF_FFFF) - 0x100
    }
    let requestPayload = Int(input.uint64() & 0x1F_FFFF)
    let rawResult = input.uint64()
    let result = rawResult & 1 != 0 ? Int64(bitPattern: rawResult) : Int64(bitPattern: rawResult >> 1 & 0xF_FFFF) - 5000
    let payloadCount = Int(input.uint64() & 0x1F_FFFF)
    checkContract(op, s, requestPayload: requestPayload, result: result, payloadCount: payloadCount)
    // Every struct size a reply carries, with the small results a struct
    // reply has, so that an op the model bounds too low is met at once
    // rather than when the random sizes happen to land on its struct.
    for size in [1, 4, 8, 32, 36, 120, 256] {
        for small: Int64 in 0...2 {
            checkContract(op, s, requestPayload: requestPayload, result: small, payloadCount: size)
        }
    }
}

/// The model's checks of a reply `ReplyContract` accepts.
func checkContract(_ op: Op, _ s: Scalars, requestPayload: Int, result: Int64, payloadCount: Int) {
    guard ReplyContract.violation(op: op, scalars: s, requestPayload: requestPayload,
                                  result: result, payloadCount: payloadCount) == nil else { return }
    if result < 0 {
        invariant(result >= -4095 && payloadCount == 0, "an error reply \(result) with \(payloadCount) bytes accepted")
        return
    }
    let bound = replyBound(op, s)
    invariant(payloadCount <= bound, "\(op): \(payloadCount) bytes accepted where the request holds \(bound)")
    switch op {
    case .read, .pread, .getdents64, .readlinkat, .getxattr, .listxattr:
        if !(op == .getxattr || op == .listxattr) || s[2] != 0 {
            invariant(result <= Int64(bound) && payloadCount == Int(result), "\(op): result \(result), \(payloadCount) bytes")
        }
    case .write, .pwrite, .streamWrite:
        invariant(result <= Int64(requestPayload), "wrote more than was sent")
    case .copyFileRange:
        invariant(result <= max(s[4], 0), "copied more than was asked")
    case .sendfile:
        invariant(result <= max(s[3], 0), "sendfile: sent more than was asked")
    case .sendto, .sendtoPath:
        invariant(result <= Int64(requestPayload), "sent more than was given")
    case .recvfrom:
        // The datagram's bytes (at most the size asked; with MSG_TRUNC the
        // result is its full length), then the sender's address.
        let truncates = s[1] & ReplyContract.recvfromTruncate != 0
        let carried = Int(min(result, max(s[2], 0), Int64(Wire.maxPayload - Wire.maxSockaddr)))
        invariant((truncates || result <= max(s[2], 0)) && payloadCount >= carried
                  && payloadCount - carried <= Wire.maxSockaddr, "recvfrom: result \(result), \(payloadCount) bytes")
    case .ioctl:
        // Exactly the struct of a request the table knows, nothing for any other.
        let known: [Int64: Int] = [0x5401: 36, 0x540F: 4, 0x5429: 4, 0x5411: 4, 0x5413: 8, 0x541B: 4]
        invariant(payloadCount == known[Int64(UInt32(truncatingIfNeeded: s[1]))] ?? 0,
                  "ioctl \(s[1]): \(payloadCount) bytes accepted")
    case .windowSize:
        invariant(payloadCount == 8, "windowSize: \(payloadCount) bytes accepted")
    case .statxWatched:
        // 0 or 1 (watched or not) with the struct; 2 (no watch given) without.
        invariant(result <= 2 && payloadCount == (result == 2 ? 0 : 256),
                  "statxWatched: result \(result), \(payloadCount) bytes")
    case .sockname:
        invariant(result <= Int64(Wire.maxSockaddr) && payloadCount == Int(min(result, max(s[2], 0))),
                  "sockname: result \(result), \(payloadCount) bytes")
    default:
        break
    }
}

/// Drives `ResponseEncoder` with an op, sizes and a buffer from the input.
func fuzzEncoder(_ input: inout FuzzInput) {
    let op = Op.allCases[Int(input.byte()) % Op.allCases.count]
    let id = input.uint64()
    let result = Int64(bitPattern: input.uint64())
    let run = EncoderCase(&input)
    let expected = op.isHandshake ? WireError.unexpectedOp(op) : run.expectedError(payloadOffset: 24)
    run.check(payloadOffset: 24, expected: expected, encode: { payload, out throws(WireError) in
        if let payload { return try ResponseEncoder.encode(op: op, id: id, result: result, payload: payload, into: out) }
        return try ResponseEncoder.encodeHeader(op: op, id: id, result: result, payloadLength: run.payloadLength, into: out)
    }, decodes: { frame in
        do throws(WireError) {
            let v = try ResponseView(frame: frame)
            invariant(v.op == op && v.id == id && v.result == result, "op/id/result round trip")
            if run.withPayload { invariant(Array(v.payload) == run.payload, "payload round trip") }
        } catch {
            invariant(false, "an encoded reply does not decode: \(error)")
        }
    })
}

/// The entry point SwiftPM links as main (see CFuzzDriver.h).
@_cdecl("fuzz_response_main")
public func fuzzResponseMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    tether_fuzz_main(argc, argv, fuzzResponse)
}
