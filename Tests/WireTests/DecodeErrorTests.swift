import Testing
import Wire

@Suite("Bad input throws the right typed error")
struct DecodeErrorTests {
    /// Runs all three decoders over `frame` and checks each throws `error` (or, for the
    /// views, `viewError` when the view detects something beyond the header).
    func expectAll(_ frame: [UInt8], _ error: WireError, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(throws: error, sourceLocation: sourceLocation) { _ = try decodeHeader(frame) }
        #expect(throws: error, sourceLocation: sourceLocation) { _ = try decodeRequest(frame) }
        #expect(throws: error, sourceLocation: sourceLocation) { _ = try decodeResponse(frame) }
    }

    @Test func errorsAreTypedAtCompileTime() {
        // `throws(WireError)`: the caught error is a WireError without a cast.
        let bytes: [UInt8] = [1, 2, 3]
        let result: Result<FrameHeader, WireError> = bytes.withUnsafeBytes { raw in
            Result { () throws(WireError) in try FrameHeader.decode(raw) }
        }
        #expect(result == .failure(.truncated(needed: 16, available: 3)))
    }

    @Test func frameShorterThanHeader() {
        let full = rawHeader(length: 40, op: Op.pread.rawValue)
        for n in 0..<16 {
            expectAll(Array(full[..<n]), .truncated(needed: 16, available: n))
        }
    }

    @Test func headerLengthBelowSixteen() {
        for length: UInt32 in [0, 1, 15] {
            expectAll(rawHeader(length: length, op: Op.close.rawValue), .undersized(length: Int(length)))
        }
    }

    @Test func headerLengthAboveMaximum() {
        // Only 16 bytes exist: the decoders must reject the length before trusting it
        // (they never allocate or read by it).
        expectAll(rawHeader(length: 0xFFFF_FFFF, op: Op.read.rawValue), .oversized(length: 0xFFFF_FFFF))
        let justOver = UInt32(Wire.maxFrameLength + 1)
        expectAll(rawHeader(length: justOver, op: Op.read.rawValue), .oversized(length: Wire.maxFrameLength + 1))
        // Exactly the maximum passes header decoding, and a view over only the header says truncated.
        let atMax = rawHeader(length: UInt32(Wire.maxFrameLength), op: Op.read.rawValue)
        #expect(throws: Never.self) { _ = try decodeHeader(atMax) }
        #expect(throws: WireError.truncated(needed: Wire.maxFrameLength, available: 16)) { _ = try decodeRequest(atMax) }
    }

    @Test func unknownOps() {
        for raw: UInt16 in [0x7777, 0, 6, 15, 90, 0xFFFF] {  // 90: past the last op
            expectAll(rawHeader(length: 64, op: raw) + [UInt8](repeating: 0, count: 48), .unknownOp(raw))
        }
    }

    @Test func unknownFlags() {
        for flags: UInt16 in [0x0004, 0x0005, 0x8000, 0xFFFF] {
            expectAll(rawHeader(length: 24, op: Op.close.rawValue, flags: flags) + [UInt8](repeating: 0, count: 8),
                      .unknownFlags(flags))
        }
    }

    @Test func stablePayloadIsARequestsFlagOnly() {
        // A request may say it; a reply that does is refused.
        let request = rawHeader(length: 24, op: Op.close.rawValue, flags: 2) + [UInt8](repeating: 0, count: 8)
        #expect(throws: Never.self) { _ = try decodeRequest(request) }
        let reply = rawHeader(length: 24, op: Op.close.rawValue, flags: 3) + [UInt8](repeating: 0, count: 8)
        #expect(throws: WireError.unknownFlags(3)) { _ = try decodeResponse(reply) }
    }

    @Test func bodyShorterThanScalars() {
        // pread needs 3 scalars (16 + 24 = 40); a frame declaring 32 is undersized even when complete.
        let short = rawHeader(length: 32, op: Op.pread.rawValue) + [UInt8](repeating: 0, count: 16)
        #expect(throws: WireError.undersized(length: 32)) { _ = try decodeHeader(short) }
        #expect(throws: WireError.undersized(length: 32)) { _ = try decodeRequest(short) }
        // openat needs 4 scalars.
        let noScalars = rawHeader(length: 16, op: Op.openat.rawValue)
        #expect(throws: WireError.undersized(length: 16)) { _ = try decodeRequest(noScalars) }
        // A response needs its 8-byte result.
        let bareResponse = rawHeader(length: 16, op: Op.close.rawValue, flags: 1)
        #expect(throws: WireError.undersized(length: 16)) { _ = try decodeResponse(bareResponse) }
        let halfResult = rawHeader(length: 20, op: Op.close.rawValue, flags: 1) + [0, 0, 0, 0]
        #expect(throws: WireError.undersized(length: 20)) { _ = try decodeResponse(halfResult) }
        // Zero-scalar ops accept a bare header.
        #expect(throws: Never.self) { _ = try decodeRequest(rawHeader(length: 16, op: Op.authenticate.rawValue)) }
    }

    @Test func frameCountDiffersFromHeaderLength() throws {
        let frame = try encodeRequest(op: .pread, id: 1, scalars: Scalars(1, 2, 3))
        #expect(throws: WireError.truncated(needed: 40, available: 39)) { _ = try decodeRequest(Array(frame.dropLast())) }
        #expect(throws: WireError.truncated(needed: 40, available: 20)) { _ = try decodeRequest(Array(frame[..<20])) }
        #expect(throws: WireError.malformedPayload) { _ = try decodeRequest(frame + [0]) }
        let resp = try encodeResponse(op: .read, id: 1, result: 2, payload: [1, 2])
        #expect(throws: WireError.truncated(needed: 26, available: 25)) { _ = try decodeResponse(Array(resp.dropLast())) }
        #expect(throws: WireError.malformedPayload) { _ = try decodeResponse(resp + [0]) }
    }

    @Test func requestResponseConfusion() throws {
        let request = try encodeRequest(op: .close, id: 1, scalars: Scalars(3))
        let response = try encodeResponse(op: .close, id: 1, result: 0)
        #expect(throws: WireError.unexpectedOp(.close)) { _ = try decodeResponse(request) }
        #expect(throws: WireError.unexpectedOp(.close)) { _ = try decodeRequest(response) }
        // Handshake ops have no responses.
        let fakeWelcomeResponse = rawHeader(length: 24, op: Op.welcome.rawValue, flags: 1) + [UInt8](repeating: 0, count: 8)
        #expect(throws: WireError.unexpectedOp(.welcome)) { _ = try decodeResponse(fakeWelcomeResponse) }
        var buffer = [UInt8](repeating: 0, count: 64)
        #expect(throws: WireError.unexpectedOp(.hello)) {
            _ = try buffer.withUnsafeMutableBytes {
                try ResponseEncoder.encodeHeader(op: .hello, id: 0, result: 0, payloadLength: 0, into: $0)
            }
        }
    }

    func pathRequest(_ payload: [UInt8], op: Op = .openat) throws -> [UInt8] {
        try encodeRequest(op: op, id: 1, scalars: Scalars(), payload: payload)
    }

    @Test func pathWithoutNUL() throws {
        for payload in [Array("abc".utf8), []] {
            let frame = try pathRequest(payload)
            #expect(throws: WireError.malformedPayload) {
                try frame.withUnsafeBytes { _ = try RequestView(frame: $0).path() }
            }
        }
    }

    @Test func pathWithInteriorNUL() throws {
        for payload in [Array("a\0b\0".utf8), [0, 0], Array("\0abc\0".utf8)] {
            let frame = try pathRequest(payload)
            #expect(throws: WireError.malformedPayload) {
                try frame.withUnsafeBytes { _ = try RequestView(frame: $0).path() }
            }
        }
    }

    @Test func twoPathsMalformed() throws {
        for payload in [
            Array("only\0".utf8),       // one path
            Array("old\0new".utf8),     // second without NUL
            Array("a\0b\0c\0".utf8),    // three paths
            Array("noNUL".utf8),
            [],
        ] {
            let frame = try pathRequest(payload, op: .renameat2)
            #expect(throws: WireError.malformedPayload, "\(payload)") {
                try frame.withUnsafeBytes { _ = try RequestView(frame: $0).twoPaths() }
            }
        }
    }

    @Test func payloadOverMaxPayloadAtEncode() {
        let payload = [UInt8](repeating: 1, count: Wire.maxPayload + 1)
        var out = [UInt8](repeating: 0, count: Wire.maxFrameLength + 100)
        let tooBig = WireError.bufferTooSmall(needed: Wire.maxPayload + 1, available: Wire.maxPayload)
        #expect(throws: tooBig) {
            _ = try out.withUnsafeMutableBytes { o in
                try payload.withUnsafeBytes { try RequestEncoder.encode(op: .write, id: 1, scalars: Scalars(1), payload: $0, into: o) }
            }
        }
        #expect(throws: tooBig) {
            _ = try out.withUnsafeMutableBytes { o in
                try payload.withUnsafeBytes { try ResponseEncoder.encode(op: .read, id: 1, result: 0, payload: $0, into: o) }
            }
        }
        #expect(throws: tooBig) {
            _ = try out.withUnsafeMutableBytes {
                try RequestEncoder.encodeHeader(op: .write, id: 1, scalars: Scalars(1), payloadLength: Wire.maxPayload + 1, into: $0)
            }
        }
        #expect(throws: tooBig) {
            _ = try out.withUnsafeMutableBytes {
                try ResponseEncoder.encodeHeader(op: .read, id: 1, result: 0, payloadLength: Wire.maxPayload + 1, into: $0)
            }
        }
    }

    @Test func outputBufferTooSmall() {
        var out = [UInt8](repeating: 0xEE, count: 39)
        #expect(throws: WireError.bufferTooSmall(needed: 40, available: 39)) {
            _ = try out.withUnsafeMutableBytes {
                try RequestEncoder.encode(op: .pread, id: 1, scalars: Scalars(1, 2, 3), payload: UnsafeRawBufferPointer(start: nil, count: 0), into: $0)
            }
        }
        // Nothing was written.
        #expect(out.allSatisfy { $0 == 0xEE })
        #expect(throws: WireError.bufferTooSmall(needed: 28, available: 27)) {
            _ = try out.withUnsafeMutableBytes { o in
                try ([1, 2, 3, 4] as [UInt8]).withUnsafeBytes {
                    try ResponseEncoder.encode(op: .read, id: 1, result: 4, payload: $0, into: UnsafeMutableRawBufferPointer(rebasing: o[..<27]))
                }
            }
        }
        #expect(throws: WireError.bufferTooSmall(needed: 16 + 8 + 100, available: 39)) {
            _ = try out.withUnsafeMutableBytes {
                try RequestEncoder.encodeHeader(op: .write, id: 1, scalars: Scalars(1), payloadLength: 100, into: $0)
            }
        }
        #expect(throws: WireError.malformedPayload) {
            _ = try out.withUnsafeMutableBytes {
                try RequestEncoder.encodeHeader(op: .write, id: 1, scalars: Scalars(1), payloadLength: -1, into: $0)
            }
        }
    }

    @Test func descriptionsAreHuman() {
        let all: [WireError] = [
            .truncated(needed: 16, available: 3), .undersized(length: 4), .oversized(length: 99),
            .unknownOp(0x7777), .unknownFlags(2), .unexpectedOp(.openat), .badMagic(1), .unsupportedVersion(9),
            .authenticationFailed, .refused(reason: 1), .refused(reason: 99), .malformedPayload,
            .bufferTooSmall(needed: 2, available: 1),
        ]
        for e in all { #expect(!e.description.isEmpty) }
        #expect(WireError.unknownOp(0x7777).description.contains("0x7777"))
        #expect(WireError.refused(reason: 1).description.contains("bad key"))
        #expect(WireError.truncated(needed: 16, available: 3).description.contains("16"))
    }
}

@Suite("Chained payload strings") struct ChainedStringTests {
    @Test func walksStringsAndRejectsUnterminated() throws {
        var frame = [UInt8](repeating: 0, count: 256)
        let payload: [UInt8] = Array("user.x\0/a/b\0VALUE".utf8)
        let n = try frame.withUnsafeMutableBytes { out in
            try payload.withUnsafeBytes { p in
                try RequestEncoder.encode(op: .setxattr, id: 9, scalars: Scalars(-1, 0, 0, 5), payload: p, into: out)
            }
        }
        try frame.withUnsafeBytes { raw in
            let view = try RequestView(frame: UnsafeRawBufferPointer(rebasing: raw[0..<n]))
            let (name, next) = try view.cString(at: 0)
            #expect(Array(name) == Array("user.x\0".utf8))
            let (path, rest) = try view.cString(at: next)
            #expect(Array(path) == Array("/a/b\0".utf8))
            #expect(Array(view.payload[rest...]) == Array("VALUE".utf8))
            #expect(throws: WireError.malformedPayload) { try view.cString(at: rest) }
            #expect(throws: WireError.malformedPayload) { try view.cString(at: 999) }
        }
    }
}
