import Testing
import Wire

/// The attribute cache's frames (`statxWatched`, `invalidate`), its keys and
/// the invalidation payload.
@Suite("Cache frames")
struct InvalidationTests {
    @Test func statxWatchedRequestGolden() throws {
        let frame = try encodeRequest(op: .statxWatched, id: 1, scalars: Scalars(7, 0x100, 0xFFF, 2),
                                      payload: Array("/a/b\0".utf8))
        let expected = hexBytes("""
            3500000 0 3a00 0000 0100000000000000
            0700000000000000
            0001000000000000
            ff0f000000000000
            0200000000000000
            2f612f6200
            """)
        #expect(frame == expected, "got \(hexString(frame))")
        #expect(try decodeRequest(expected)
            == DecodedRequest(op: .statxWatched, id: 1, scalars: Scalars(7, 0x100, 0xFFF, 2), payload: Array("/a/b\0".utf8)))
    }

    @Test func invalidateFrameGolden() throws {
        let frame = try encodeResponse(op: .invalidate, id: Wire.pushId, result: Invalidation.dropListed,
                                       payload: Array("/d/f\0/d\0".utf8))
        let expected = hexBytes("20000000 3b00 0100 ffff000000000000 0000000000000000 2f642f66002f6400")
        #expect(frame == expected, "got \(hexString(frame))")
        #expect(try decodeResponse(expected)
            == DecodedResponse(op: .invalidate, id: 0xffff, result: 0, payload: Array("/d/f\0/d\0".utf8)))
        let all = try encodeResponse(op: .invalidate, id: Wire.pushId, result: Invalidation.dropAll)
        #expect(all == hexBytes("18000000 3b00 0100 ffff000000000000 0100000000000000"))
    }

    func keys(_ payload: [UInt8]) throws -> [String] {
        var out: [String] = []
        try payload.withUnsafeBytes { p in
            try Invalidation.forEachKey(p) { out.append(String(decoding: $0, as: UTF8.self)) }
        }
        return out
    }

    @Test func appendJoinsDirectoryAndName() throws {
        var buf = [UInt8](repeating: 0xEE, count: 64)
        var at = 0
        buf.withUnsafeMutableBytes { b in
            for (dir, name) in [("/", "f"), ("/d", "g"), ("/d", "")] {
                Array(dir.utf8).withUnsafeBytes { d in
                    Array(name.utf8).withUnsafeBytes { n in at = Invalidation.append(dir: d, name: n, to: b, at: at)! }
                }
            }
        }
        #expect(Array(buf[0..<at]) == Array("/f\0/d/g\0/d\0".utf8))
        #expect(try keys(Array(buf[0..<at])) == ["/f", "/d/g", "/d"])
    }

    @Test func appendRefusesWhatDoesNotFit() {
        var buf = [UInt8](repeating: 0, count: 4)
        let r = buf.withUnsafeMutableBytes { b in
            Array("/abc".utf8).withUnsafeBytes { d in
                Invalidation.append(dir: d, name: UnsafeRawBufferPointer(start: nil, count: 0), to: b, at: 0)
            }
        }
        #expect(r == nil)
    }

    @Test func malformedPayloadsThrowBeforeAnyKey() {
        for bad in ["/a", "/a\0\0", "\0", "/a\0/b"] {
            var seen = 0
            #expect(throws: WireError.malformedPayload) {
                try Array(bad.utf8).withUnsafeBytes { p in try Invalidation.forEachKey(p) { _ in seen += 1 } }
            }
            #expect(seen == 0, "\(bad)")
        }
        #expect((try? keys([])) == [])
    }

    @Test func canonicalKeys() {
        func canonical(_ s: String) -> Bool { Array(s.utf8).withUnsafeBytes { CacheKey.isCanonical($0) } }
        for good in ["/", "/a", "/a/b.c", "/.hidden/x", "/a/..b", "/a/b..", "/" + String(repeating: "x", count: 239)] {
            #expect(canonical(good), "\(good)")
        }
        for bad in ["", "a", "a/b", "/a/", "//a", "/a//b", "/.", "/a/.", "/a/./b", "/a/..", "/../a", "/a\0b",
                    "/" + String(repeating: "x", count: 240)] {
            #expect(!canonical(bad), "\(bad)")
        }
    }

    @Test func replyContractOfStatxWatched() {
        let s = Scalars(Wire.rootDir, 0, 0xFFF)
        func check(_ result: Int64, _ count: Int) -> String? {
            ReplyContract.violation(op: .statxWatched, scalars: s, requestPayload: 3, result: result, payloadCount: count)
        }
        #expect(check(0, 256) == nil)
        #expect(check(1, 256) == nil)
        #expect(check(2, 0) == nil)
        #expect(check(-2, 0) == nil)
        #expect(check(1, 255) != nil)
        #expect(check(2, 256) != nil)
        #expect(check(3, 256) != nil)
    }
}
