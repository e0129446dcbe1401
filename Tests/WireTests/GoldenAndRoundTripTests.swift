import Testing
import Wire

@Suite("Golden bytes")
struct GoldenTests {
    @Test func constants() {
        #expect(Wire.headerSize == 16)
        #expect(Wire.maxFrameLength == 16 + 48 + (1 << 20) + 4096)
        // The magic's little-endian bytes spell "TETHER01".
        let magicBytes = withUnsafeBytes(of: Wire.magic.littleEndian) { Array($0) }
        #expect(magicBytes == Array("TETHER01".utf8))
        #expect(RequestEncoder.payloadOffset(.pread) == 40)
        #expect(RequestEncoder.payloadOffset(.authenticate) == 16)
        #expect(ResponseEncoder.payloadOffset == 24)
    }

    @Test func headerAlone() throws {
        let header = FrameHeader(length: 0x0000_0123, op: .openat, flags: .response, id: 0xDEAD_BEEF_0000_0001)
        var out = [UInt8](repeating: 0xEE, count: 20)
        out.withUnsafeMutableBytes { header.encode(into: $0) }
        //                            length    op   flags id
        #expect(out == hexBytes("23010000 1000 0100 01000000efbeadde EEEEEEEE"))
        #expect(try decodeHeader(out) == header)
    }

    @Test func preadRequest() throws {
        let frame = try encodeRequest(op: .pread, id: 0x0102_0304_0506_0708, scalars: Scalars(7, 4096, 8192))
        let expected = hexBytes("""
            28000000 1400 0000 0807060504030201
            0700000000000000
            0010000000000000
            0020000000000000
            """)
        #expect(frame == expected, "got \(hexString(frame))")
        let d = try decodeRequest(expected)
        #expect(d == DecodedRequest(op: .pread, id: 0x0102_0304_0506_0708, scalars: Scalars(7, 4096, 8192), payload: []))
    }

    @Test func openatRequestWithPath() throws {
        // openat(root, "a/b", O_CLOEXEC, 0644), resolve 0.
        let frame = try encodeRequest(
            op: .openat, id: 1, scalars: Scalars(Wire.rootDir, 0x80000, 0o644, 0), payload: Array("a/b\0".utf8))
        let expected = hexBytes("""
            34000000 1000 0000 0100000000000000
            ffffffffffffffff
            0000080000000000
            a401000000000000
            0000000000000000
            612f6200
            """)
        #expect(frame == expected, "got \(hexString(frame))")
        try expected.withUnsafeBytes { raw in
            let v = try RequestView(frame: raw)
            #expect(v.scalar(0) == -1)
            let path = try v.path()
            #expect(Array(path) == Array("a/b\0".utf8))
        }
    }

    @Test func responseWithPayload() throws {
        let frame = try encodeResponse(op: .read, id: 0x0102_0304_0506_0708, result: 5, payload: Array("hello".utf8))
        let expected = hexBytes("1d000000 1200 0100 0807060504030201 0500000000000000 68656c6c6f")
        #expect(frame == expected, "got \(hexString(frame))")
        #expect(try decodeResponse(expected)
            == DecodedResponse(op: .read, id: 0x0102_0304_0506_0708, result: 5, payload: Array("hello".utf8)))
    }

    @Test func errnoResponse() throws {
        // -ENOENT passes through unchanged.
        let frame = try encodeResponse(op: .openat, id: 9, result: -2)
        #expect(frame == hexBytes("18000000 1000 0100 0900000000000000 feffffffffffffff"))
        #expect(try decodeResponse(frame).result == -2)
    }

    @Test func helloFrame() {
        let hello = ClientHandshake(key: nil, nonce: [UInt8](repeating: 0xAA, count: 32), capabilities: 5).helloFrame()
        let expected = hexBytes("""
            48000000 0100 0000 0000000000000000
            5445544845523031
            0100000000000000
            0500000000000000
            """) + [UInt8](repeating: 0xAA, count: 32)
        #expect(hello == expected, "got \(hexString(hello))")
    }

    @Test func unalignedBuffers() throws {
        // Encode and decode at an odd offset inside a larger buffer.
        var big = [UInt8](repeating: 0, count: 200)
        let payload: [UInt8] = [1, 2, 3]
        let n = try big.withUnsafeMutableBytes { whole in
            let odd = UnsafeMutableRawBufferPointer(rebasing: whole[3...])
            return try payload.withUnsafeBytes { p in
                try RequestEncoder.encode(op: .pwrite, id: 77, scalars: Scalars(3, -5), payload: p, into: odd)
            }
        }
        let frame = Array(big[3..<(3 + n)])
        #expect(try decodeRequest(frame) == DecodedRequest(op: .pwrite, id: 77, scalars: Scalars(3, -5), payload: payload))
        try big.withUnsafeBytes { whole in
            let v = try RequestView(frame: UnsafeRawBufferPointer(rebasing: whole[3..<(3 + n)]))
            #expect(v.scalar(1) == -5)
        }
    }
}

@Suite("Round trips")
struct RoundTripTests {
    static let scalarValues: [Int64] = [7, -1, Int64.max, Int64.min, 0x0102_0304_0506_0708, 42]

    @Test(arguments: Op.allCases)
    func requestRoundTrip(op: Op) throws {
        var scalars = Scalars()
        for i in 0..<op.requestScalarCount { scalars[i] = Self.scalarValues[i] }
        for payload in [[], [0x00], Array("some/path\0".utf8), [UInt8](repeating: 0xA5, count: 4097)] as [[UInt8]] {
            let id = UInt64(op.rawValue) << 32 | 0xFFFF_0001
            let frame = try encodeRequest(op: op, id: id, scalars: scalars, payload: payload)
            #expect(frame.count == 16 + 8 * op.requestScalarCount + payload.count)
            #expect(try decodeRequest(frame) == DecodedRequest(op: op, id: id, scalars: scalars, payload: payload))
            let header = try decodeHeader(frame)
            #expect(header == FrameHeader(length: UInt32(frame.count), op: op, flags: [], id: id))
        }
    }

    @Test(arguments: Op.allCases)
    func requestHeaderOnlyWithPayloadInPlace(op: Op) throws {
        // The payload is placed at payloadOffset first (as a read from the tracee would), then the header.
        let payload = (0..<300).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        var buffer = [UInt8](repeating: 0, count: 2000)
        let offset = RequestEncoder.payloadOffset(op)
        buffer.replaceSubrange(offset..<(offset + payload.count), with: payload)
        var scalars = Scalars()
        for i in 0..<op.requestScalarCount { scalars[i] = Int64(i + 1) * -3 }
        let n = try buffer.withUnsafeMutableBytes {
            try RequestEncoder.encodeHeader(op: op, id: 5, scalars: scalars, payloadLength: payload.count, into: $0)
        }
        #expect(n == offset + payload.count)
        #expect(try decodeRequest(Array(buffer[..<n])) == DecodedRequest(op: op, id: 5, scalars: scalars, payload: payload))
    }

    @Test(arguments: Op.allCases.filter { !$0.isHandshake })
    func responseRoundTrip(op: Op) throws {
        for (result, payload) in [(Int64(0), [UInt8]()), (-13, []), (256, [UInt8](repeating: 9, count: 256)), (Int64.max, [1])] {
            let frame = try encodeResponse(op: op, id: 0xABCD, result: result, payload: payload)
            #expect(try decodeResponse(frame) == DecodedResponse(op: op, id: 0xABCD, result: result, payload: payload))
            #expect(try decodeHeader(frame) == FrameHeader(length: UInt32(frame.count), op: op, flags: .response, id: 0xABCD))
        }
        // Header-only form with the payload already in place.
        var buffer = [UInt8](repeating: 0, count: 64)
        buffer.replaceSubrange(24..<27, with: [7, 8, 9])
        let n = try buffer.withUnsafeMutableBytes {
            try ResponseEncoder.encodeHeader(op: op, id: 3, result: 3, payloadLength: 3, into: $0)
        }
        #expect(try decodeResponse(Array(buffer[..<n])) == DecodedResponse(op: op, id: 3, result: 3, payload: [7, 8, 9]))
    }

    @Test func maximalPayloadRoundTrips() throws {
        let payload = [UInt8](repeating: 0x5A, count: Wire.maxPayload)
        let req = try encodeRequest(op: .write, id: 1, scalars: Scalars(3), payload: payload)
        #expect(try decodeRequest(req).payload.count == Wire.maxPayload)
        let resp = try encodeResponse(op: .read, id: 1, result: Int64(Wire.maxPayload), payload: payload)
        #expect(try decodeResponse(resp).payload.count == Wire.maxPayload)
        // A frame of exactly maxFrameLength is accepted by the decoder.
        var big = rawHeader(length: UInt32(Wire.maxFrameLength), op: Op.openat.rawValue)
        big += [UInt8](repeating: 1, count: Wire.maxFrameLength - 16)
        #expect(try decodeRequest(big).payload.count == Wire.maxFrameLength - 48)
    }

    @Test func paths() throws {
        let one = try encodeRequest(op: .mkdirat, id: 1, scalars: Scalars(-1, 0o755), payload: Array("dir\0".utf8))
        try one.withUnsafeBytes { raw in
            let path = try RequestView(frame: raw).path()
            #expect(Array(path) == Array("dir\0".utf8))
        }
        let empty = try encodeRequest(op: .statx, id: 1, scalars: Scalars(3, 0x1000, 0xFFF), payload: [0])
        try empty.withUnsafeBytes { raw in
            let path = try RequestView(frame: raw).path()
            #expect(Array(path) == [0])
        }
        let two = try encodeRequest(op: .renameat2, id: 1, scalars: Scalars(-1, -1, 1), payload: Array("old\0new/name\0".utf8))
        try two.withUnsafeBytes { raw in
            let (a, b) = try RequestView(frame: raw).twoPaths()
            #expect(Array(a) == Array("old\0".utf8))
            #expect(Array(b) == Array("new/name\0".utf8))
        }
        let secondEmpty = try encodeRequest(op: .renameat2, id: 1, scalars: Scalars(), payload: Array("old\0\0".utf8))
        try secondEmpty.withUnsafeBytes { raw in
            let (a, b) = try RequestView(frame: raw).twoPaths()
            #expect(Array(a) == Array("old\0".utf8))
            #expect(Array(b) == [0])
        }
    }

    @Test func scalarsValueType() {
        var s = Scalars(1, 2, 3)
        #expect(s[0] == 1 && s[2] == 3 && s[3] == 0 && s[5] == 0)
        s[5] = -9
        #expect(s[5] == -9)
        #expect(s != Scalars(1, 2, 3))
        #expect(Scalars() == Scalars(0, 0, 0, 0, 0, 0))
        #expect(MemoryLayout<Scalars>.size == 48)
    }

    @Test func opTable() {
        let expected: [Op: Int] = [
            .hello: 3, .challenge: 4, .authenticate: 0, .welcome: 0, .refused: 1,
            .openat: 4, .close: 1, .read: 2, .write: 1, .pread: 3, .pwrite: 2, .lseek: 3, .fstat: 1,
            .statx: 3, .faccessat: 3, .getdents64: 2, .mkdirat: 2, .unlinkat: 2, .renameat2: 3,
            .readlinkat: 2, .ftruncate: 2, .truncate: 2, .fsync: 2, .chdir: 1, .getcwd: 1, .cancel: 1, .echo: 1,
            .fchmodat: 3, .fchownat: 4, .utimensat: 3, .linkat: 3, .symlinkat: 1, .mknodat: 3, .statfs: 1,
            .fallocate: 4, .fcntl: 3, .lock: 2, .flock: 2, .getxattr: 3, .setxattr: 4, .listxattr: 3,
            .removexattr: 2, .copyFileRange: 6, .credentials: 4,
            .posixLock: 3, .lockOwnerClose: 2, .lockOwnerExit: 1, .statxWatched: 4, .invalidate: 0,
            .socket: 3, .connect: 1, .shutdown: 2, .getsockopt: 4, .setsockopt: 3, .sockname: 3,
            .bind: 1, .listen: 2, .accept: 2, .poll: 2, .sendto: 3, .recvfrom: 3,
            .bindPath: 2, .connectPath: 2, .sendfile: 4, .sendtoPath: 4, .ioctl: 3, .terminal: 0, .windowSize: 3,
            .terminalOffer: 0, .terminalAccept: 1, .streamWrite: 1,
        ]
        #expect(Op.allCases.count == expected.count)
        for op in Op.allCases {
            #expect(op.requestScalarCount == expected[op], "\(op)")
            #expect(op.requestScalarCount <= Wire.maxScalars)
            #expect(op.isHandshake == (op.rawValue <= 5))
        }
    }
}
