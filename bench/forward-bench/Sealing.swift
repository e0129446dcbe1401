import Crypto
import Foundation
import Wire

/// The sealing section (issue 8): what sealed frames cost.
///
/// - Sealing then opening one frame (a fresh nonce each, the 4-byte prefix
///   as associated data) for a small request, a 4 KiB reply and a 1 MiB
///   frame, with both AEADs: through swift-crypto's Swift API, and through
///   Tether's FrameSealer + FrameOpener, which keep one BoringSSL context.
/// - Forwarded calls over the same transport with and without sealing: a
///   homestub started by `--home-command … --stdio`, once with a key (the
///   session is authenticated and sealed) and once without (plain frames).
extension Bench {
    static let sealSizes = [64, 4096, 1 << 20]
    static let sealedOps = ["stat", "pread-random", "seqread"]
    static let sealCases = ["swift-crypto chacha20-poly1305", "swift-crypto aes-256-gcm",
                            "kept context chacha20-poly1305", "kept context aes-256-gcm"]
    static var chosenName: String { FrameCipher.chosen == .aes256GCM ? "aes-256-gcm" : "chacha20-poly1305" }

    func runSealing() {
        warn("forward-bench: sealing: AEAD cost per frame, and forwarded calls sealed vs plain")
        let iterations = o.quick ? 2_000 : 20_000
        for size in Self.sealSizes {
            let n = size >= 1 << 20 ? max(20, iterations / 200) : iterations
            let cases: [(String, (Int, Int) -> Double)] = [
                ("swift-crypto chacha20-poly1305", chachaRoundTrip), ("swift-crypto aes-256-gcm", aesRoundTrip),
                ("kept context chacha20-poly1305", { tetherRoundTrip($0, $1, .chacha20Poly1305) }),
                ("kept context aes-256-gcm", { tetherRoundTrip($0, $1, .aes256GCM) }),
            ]
            for (name, f) in cases {
                let ns = bestMedian(rounds: rounds) { f(size, n) }
                sealing["\(name)/\(size)"] = ns
            }
        }
        for _ in 0..<rounds {
            for config in ["stdio-plain", "stdio-sealed"] {
                for name in Self.sealedOps {
                    guard let op = ops.first(where: { $0.name == name }),
                          let lines = run(wrapStdio(sealed: config == "stdio-sealed") + workload(op), what: "\(name) [\(config)]"),
                          let f = Figure(lines[0], config: config) else { continue }
                    let key = "\(name)/\(config)"
                    if let old = sealedFigures[key], !f.better(than: old) { continue }
                    sealedFigures[key] = f
                }
            }
        }
    }

    func wrapStdio(sealed: Bool) -> [String] {
        let home = bin + "/homestub --stdio" + (sealed ? " --key-file " + keyFile : "")
        return [bin + "/wrap-and-run", "--home-command", home] + (sealed ? ["--key-file", keyFile] : []) + ["--"]
    }

    /// The best of `rounds` medians of ns per call of `body` (which returns its own median).
    func bestMedian(rounds: Int, _ body: () -> Double) -> Double {
        (0..<max(1, rounds)).map { _ in body() }.min() ?? 0
    }

    func sealingLines() -> [String] {
        guard !sealing.isEmpty else { return [] }
        var lines = ["sealing: seal + open of one frame, median ns (MB/s for 1 MiB); * Tether's"]
        for name in Self.sealCases {
            var s = "  " + name.padding(toLength: 32, withPad: " ", startingAt: 0)
                + (name.hasSuffix(Self.chosenName) && name.hasPrefix("kept") ? "* " : "  ")
            for size in Self.sealSizes {
                guard let ns = sealing["\(name)/\(size)"] else { continue }
                s += size >= 1 << 20 ? String(format: "  1 MiB %7.0f ns (%.0f MB/s)", ns, Double(size) / ns * 1000)
                                     : String(format: "  %5d B %6.0f ns", size, ns)
            }
            lines.append(s)
        }
        lines.append("  forwarded over one socketpair to homestub --stdio: plain vs sealed")
        for name in Self.sealedOps {
            guard let p = sealedFigures["\(name)/stdio-plain"], let s = sealedFigures["\(name)/stdio-sealed"] else { continue }
            let label = name.padding(toLength: 14, withPad: " ", startingAt: 0)
            if let a = p.mbS, let b = s.mbS {
                lines.append("    \(label)" + String(format: "%8.0f MB/s  %8.0f MB/s  %.2f×", a, b, b / a))
            } else {
                let a = p.medianNs, b = s.medianNs
                lines.append("    \(label)" + String(format: "%8.2f µs   %8.2f µs   %+.2f µs", a / 1000, b / 1000, (b - a) / 1000))
            }
        }
        return lines
    }

    /// Sealing's targets: under 1 µs more per small forwarded call, and a
    /// sealed sequential rate of at least 1.5 GB/s through the AEAD.
    func sealingTargets(_ add: (String, Double?, (Double) -> Bool, (Double) -> String) -> Void) {
        for name in ["stat", "pread-random"] {
            let p = sealedFigures["\(name)/stdio-plain"]?.medianNs, s = sealedFigures["\(name)/stdio-sealed"]?.medianNs
            add("sealing adds < 1 µs to a forwarded \(name)", p.flatMap { a in s.map { ($0 - a) / 1000 } }, { $0 < 1 },
                { String(format: "%+.2f µs", $0) })
        }
        if let ns = sealing["kept context \(Self.chosenName)/\(1 << 20)"] {
            add("seal + open of 1 MiB frames ≥ 1.5 GB/s", Double(1 << 20) / ns, { $0 >= 1.5 }, { String(format: "%.2f GB/s", $0) })
        }
    }
}

// MARK: the round trips (each returns the median ns of one seal + open)

private func frame(_ size: Int) -> [UInt8] {
    var f = [UInt8](repeating: 0x5a, count: size)
    // A valid plain frame: an echo reply header with the right length.
    f.withUnsafeMutableBytes { raw in
        raw.storeBytes(of: UInt32(size).littleEndian, toByteOffset: 0, as: UInt32.self)
        raw.storeBytes(of: UInt16(37).littleEndian, toByteOffset: 4, as: UInt16.self)
        raw.storeBytes(of: UInt16(1).littleEndian, toByteOffset: 6, as: UInt16.self)
    }
    return f
}

private func medianOf(_ n: Int, _ body: (Int) -> Void) -> Double {
    // Batches of calls, timed per batch: the clock costs less than a small seal.
    let batch = 10
    var samples: [Double] = []
    samples.reserveCapacity(n / batch + 1)
    var i = 0
    while i < n {
        let t0 = nowNs()
        for k in 0..<batch { body(i + k) }
        samples.append(Double(nowNs() - t0) / Double(batch))
        i += batch
    }
    samples.sort()
    return samples[samples.count / 2]
}

private func nonceBytes(_ i: Int) -> [UInt8] {
    withUnsafeBytes(of: UInt64(i).littleEndian) { [0, 0, 0, 0] + Array($0) }
}

private func chachaRoundTrip(_ size: Int, _ n: Int) -> Double {
    let key = SymmetricKey(size: .bits256), plain = frame(size), prefix: [UInt8] = [1, 2, 3, 4]
    return medianOf(n) { i in
        let nonce = try! ChaChaPoly.Nonce(data: nonceBytes(i))
        let box = try! ChaChaPoly.seal(plain, using: key, nonce: nonce, authenticating: prefix)
        let opened = try! ChaChaPoly.open(box, using: key, authenticating: prefix)
        precondition(opened.count == size)
    }
}

private func aesRoundTrip(_ size: Int, _ n: Int) -> Double {
    let key = SymmetricKey(size: .bits256), plain = frame(size), prefix: [UInt8] = [1, 2, 3, 4]
    return medianOf(n) { i in
        let nonce = try! AES.GCM.Nonce(data: nonceBytes(i))
        let box = try! AES.GCM.seal(plain, using: key, nonce: nonce, authenticating: prefix)
        let opened = try! AES.GCM.open(box, using: key, authenticating: prefix)
        precondition(opened.count == size)
    }
}

private func tetherRoundTrip(_ size: Int, _ n: Int, _ cipher: FrameCipher) -> Double {
    let key = [UInt8](repeating: 7, count: 32), plain = frame(size)
    let sealer = FrameSealer(key: key, cipher: cipher), opener = FrameOpener(key: key, cipher: cipher)
    let out = UnsafeMutableRawBufferPointer.allocate(byteCount: Wire.maxSealedLength, alignment: 16)
    let back = UnsafeMutableRawBufferPointer.allocate(byteCount: Wire.maxFrameLength, alignment: 16)
    defer { out.deallocate(); back.deallocate() }
    return plain.withUnsafeBytes { p in
        medianOf(n) { _ in
            let m = try! sealer.seal(p, into: out)
            let got = try! opener.open(prefix: UnsafeRawBufferPointer(rebasing: out[0..<4]),
                                       UnsafeRawBufferPointer(rebasing: out[4..<m]), into: back)
            precondition(got.0 == size)
        }
    }
}
