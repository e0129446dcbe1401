import Testing
import Wire

@Suite("Fuzz")
struct FuzzTests {
    /// Random bytes, half of them shaped like plausible frames (length field near the real
    /// size, a known op, flags 0/1) so the checks past the header are exercised too.
    static func randomFrame(_ rng: inout SplitMix64) -> [UInt8] {
        let n: Int
        switch rng.next() % 4 {
        case 0: n = Int(rng.next() % 16)
        case 1, 2: n = Int(rng.next() % 80)
        default: n = Int(rng.next() % 400)
        }
        var bytes = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        if n >= 16 && rng.next() % 2 == 0 {
            let declared = UInt32(truncatingIfNeeded: n + Int(rng.next() % 3) - 1)
            let op = Op.allCases[Int(rng.next() % UInt64(Op.allCases.count))].rawValue
            let flags = UInt16(rng.next() % 2)
            bytes.replaceSubrange(0..<16, with: rawHeader(length: declared, op: op, flags: flags, id: rng.next()))
            // Sprinkle NULs so path()/twoPaths() sometimes succeed.
            if n > 16 && rng.next() % 2 == 0 {
                for _ in 0..<Int(rng.next() % 3) { bytes[16 + Int(rng.next() % UInt64(n - 16))] = 0 }
                bytes[n - 1] = 0
            }
        }
        return bytes
    }

    @Test func randomBytesNeverCrash() {
        var rng = SplitMix64(seed: 0x7E7E_4E5201)
        var headerOK = 0, requestOK = 0, responseOK = 0, pathOK = 0, twoPathsOK = 0, thrown = 0
        for _ in 0..<10_000 {
            let bytes = Self.randomFrame(&rng)
            bytes.withUnsafeBytes { raw in
                do throws(WireError) {
                    let h = try FrameHeader.decode(raw)
                    #expect(Int(h.length) >= Wire.headerSize && Int(h.length) <= Wire.maxFrameLength)
                    headerOK += 1
                } catch { thrown += 1 }
                do throws(WireError) {
                    let v = try RequestView(frame: raw)
                    #expect(v.payload.count == raw.count - RequestEncoder.payloadOffset(v.op))
                    for i in 0..<v.op.requestScalarCount { _ = v.scalar(i) }
                    requestOK += 1
                    if let p = try? v.path() {
                        #expect(p.last == 0)
                        pathOK += 1
                    }
                    if let (a, b) = try? v.twoPaths() {
                        #expect(a.last == 0 && b.last == 0 && a.count + b.count == v.payload.count)
                        twoPathsOK += 1
                    }
                } catch { thrown += 1 }
                do throws(WireError) {
                    let v = try ResponseView(frame: raw)
                    #expect(v.payload.count == raw.count - 24)
                    responseOK += 1
                } catch { thrown += 1 }
            }
        }
        // The generator reaches both outcomes of every decoder.
        #expect(headerOK > 500 && requestOK > 200 && responseOK > 200 && pathOK > 10 && twoPathsOK > 10)
        #expect(thrown > 10_000)
    }

    @Test func handshakeMachinesNeverCrashOnRandomFrames() {
        var rng = SplitMix64(seed: 42)
        let key = [UInt8](repeating: 7, count: 32)
        let nonce = [UInt8](repeating: 1, count: 32)
        for _ in 0..<2_000 {
            var server = ServerHandshake(key: rng.next() % 2 == 0 ? key : nil, nonce: nonce)
            var client = ClientHandshake(key: rng.next() % 2 == 0 ? key : nil, nonce: nonce)
            for _ in 0..<3 {
                let bytes = Self.randomFrame(&rng)
                let step = server.receive(bytes)
                if case .failed = step.outcome { #expect(step.send.count <= 1) }
                _ = try? client.receive(bytes)
            }
        }
    }
}
