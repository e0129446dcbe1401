import Foundation
import Testing
import Wire

/// The fuzzers' seed corpus (fuzz/corpus, written by fuzz/make-seeds.py) is only
/// useful while its valid seeds are valid: a protocol change that leaves them
/// stale fails here, not silently in a fuzzer that never gets past the header.
@Suite("Seed corpus")
struct SeedCorpusTests {
    static let corpus = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("fuzz/corpus")

    /// The seeds of `target` whose names start with `prefix`, without the fuzzer's mode byte.
    func seeds(_ target: String, _ prefix: String) throws -> [(String, [UInt8])] {
        let dir = Self.corpus.appendingPathComponent(target)
        return try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
            .filter { $0.hasPrefix(prefix) }
            .map { ($0, Array(try Data(contentsOf: dir.appendingPathComponent($0)))) }
    }

    @Test func everyOpHasAValidRequestSeed() throws {
        let valid = try seeds("fuzz-request", "valid-")
        var ops = Set<Op>()
        for (name, bytes) in valid {
            #expect(bytes.first == 0, "\(name): mode byte")
            let frame = Array(bytes.dropFirst())
            let d = try #require(try? decodeRequest(frame), "\(name) does not decode")
            #expect(name == "valid-\(d.op)")
            ops.insert(d.op)
        }
        #expect(ops == Set(Op.allCases))
    }

    @Test func validReplySeedsDecode() throws {
        let valid = try seeds("fuzz-response", "valid-")
        #expect(valid.count > 10)
        for (name, bytes) in valid {
            #expect((try? decodeResponse(Array(bytes.dropFirst()))) != nil, "\(name) does not decode")
        }
    }

    @Test func headerSeedsDecodeOrNot() throws {
        for (name, bytes) in try seeds("fuzz-frame-header", "valid-") {
            #expect((try? decodeHeader(bytes)) != nil, "\(name) does not decode")
        }
        let bad = try seeds("fuzz-frame-header", "bad-")
        #expect(bad.count == 6)
        for (name, bytes) in bad {
            #expect((try? decodeHeader(bytes)) == nil, "\(name) decodes")
        }
    }
}
