// libFuzzer target: sealed frames — `FrameOpener` (`sealedLength`, `open`),
// `FrameSealer`, `OutgoingFrames` and `SessionKeys`, with a fixed key and
// nonces fresh for every input.
//
// Input: a mode byte, then by mode bits 0-1:
//   0  random bytes as a sealed frame: a 4-byte prefix, then the rest (mode
//      bit 2: set the prefix to the rest's real size, so the AEAD itself is
//      what refuses it);
//   1  a stream: chunks are plain frames (bit 2: set each header's length to
//      the frame's size), sealed by the client in order; then the input
//      steers what reaches the server's opener: the next frame, the next
//      with bits flipped, any earlier or later frame (replay, reorder), a cut
//      or lengthened one, bytes of its own (injection), or the next one to
//      the client's own opener (reflection); bit 3: open in place;
//   2  keys from the input: both pairs of a `SessionKeys` talk to each other.
//
// Invariants: a sealed frame opens only if it is, byte for byte, the one
// sealed at the opener's position in its own direction: random bytes,
// flipped bits, replays, reorders, cuts, injections and reflections never
// open; what opens is exactly the plain frame that was sealed; a frame whose
// plain header is bad still never reaches the caller; `OutgoingFrames`
// writes the same bytes as a bare sealer; `sealedLength` accepts exactly the
// documented range.

import CFuzzDriver
import FuzzSupport
import Wire

import Crypto

let key: [UInt8] = (0..<32).map { UInt8($0) }

/// The session's keys: the fixed key with nonces hashed from the whole input.
/// Real sessions draw fresh nonces; with fixed ones a frame sealed in one run
/// (which libFuzzer can pick up from a comparison and splice into another
/// input) would be a replay across sessions that rightly opens.
func sessionKeys(_ input: UnsafeRawBufferPointer) -> SessionKeys {
    func nonce(_ label: String) -> [UInt8] {
        var hash = SHA256()
        hash.update(data: Array(label.utf8))
        hash.update(data: Array(input))
        return Array(hash.finalize())
    }
    return SessionKeys(key: key, clientNonce: nonce("client"), serverNonce: nonce("server"))
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSealed(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    withFuzzBytes(data, size) { bytes in
        var input = FuzzInput(bytes)
        let mode = input.byte()
        switch mode & 3 {
        case 0: fuzzRandom(&input, keys: sessionKeys(bytes), fixPrefix: mode & 4 != 0)
        case 1: fuzzStream(&input, keys: sessionKeys(bytes), fixHeaders: mode & 4 != 0, inPlace: mode & 8 != 0)
        default: fuzzKeys(&input)
        }
    }
    return 0
}

/// What `sealedLength(prefix:)` must return for a prefix, or its error.
func checkSealedLength(_ prefix: [UInt8]) {
    let expected: Result<Int, WireError>
    if prefix.count < 4 {
        expected = .failure(.truncated(needed: 4, available: prefix.count))
    } else {
        let n = Int(UInt32(prefix[0]) | UInt32(prefix[1]) << 8 | UInt32(prefix[2]) << 16 | UInt32(prefix[3]) << 24)
        expected = n < 16 + 16 ? .failure(.undersized(length: n - 16))
            : n > Wire.maxFrameLength + 16 ? .failure(.oversized(length: n - 16)) : .success(n)
    }
    let got: Result<Int, WireError> = prefix.withUnsafeBytes { p in
        do throws(WireError) { return .success(try FrameOpener.sealedLength(prefix: p)) } catch { return .failure(error) }
    }
    invariant(got == expected, "sealedLength(\(prefix)) = \(got), documented \(expected)")
}

/// Opens `delivered` (prefix and sealed part) with `opener`; nil if it threw
/// `openFailed`, else the plain frame (or the decoding error that followed a
/// successful open).
func deliver(_ delivered: [UInt8], to opener: FrameOpener, inPlace: Bool) -> Result<[UInt8], WireError>? {
    guard delivered.count >= 4 else { return nil }
    let prefix = Array(delivered[0..<4])
    var sealed = Array(delivered[4...])
    var out = [UInt8](repeating: 0, count: sealed.count)
    let result: Result<(Int, FrameHeader), WireError> = prefix.withUnsafeBytes { p in
        if inPlace {
            return sealed.withUnsafeMutableBytes { s in
                do throws(WireError) {
                    return .success(try opener.open(prefix: p, UnsafeRawBufferPointer(s), into: s))
                } catch { return .failure(error) }
            }
        }
        return sealed.withUnsafeBytes { s in
            out.withUnsafeMutableBytes { o in
                do throws(WireError) { return .success(try opener.open(prefix: p, s, into: o)) } catch { return .failure(error) }
            }
        }
    }
    switch result {
    case .failure(.openFailed): return nil
    case .failure(let error): return .failure(error)
    case .success(let (length, header)):
        let plain = Array((inPlace ? sealed : out)[0..<length])
        invariant(Int(header.length) == length, "opened a frame whose header does not state its length")
        return .success(plain)
    }
}

func fuzzRandom(_ input: inout FuzzInput, keys: SessionKeys, fixPrefix: Bool) {
    var bytes = input.rest()
    checkSealedLength(Array(bytes.prefix(4)))
    if fixPrefix && bytes.count >= 4 {
        let n = UInt32(truncatingIfNeeded: bytes.count - 4)
        for i in 0..<4 { bytes[i] = UInt8(truncatingIfNeeded: n >> (8 * UInt32(i))) }
    }
    let (_, serverOpen) = keys.forServer()
    let (_, clientOpen) = keys.forClient()
    invariant(deliver(bytes, to: serverOpen, inPlace: false) == nil, "random bytes opened (client to server)")
    invariant(deliver(bytes, to: clientOpen, inPlace: true) == nil, "random bytes opened (server to client)")
}

func fuzzStream(_ input: inout FuzzInput, keys: SessionKeys, fixHeaders: Bool, inPlace: Bool) {
    // The plain frames.
    var plain: [[UInt8]] = []
    for _ in 0..<Int(input.byte() % 6) + 1 {
        var frame = input.chunk()
        if frame.count < 16 { frame += [UInt8](repeating: 0, count: 16 - frame.count) }
        if fixHeaders {
            var h = RawHeader(frame)
            h.length = UInt32(frame.count)
            frame.replaceSubrange(0..<16, with: h.bytes)
        }
        plain.append(frame)
    }
    // Sealed in order by the client, twice: a bare sealer and OutgoingFrames.
    let (sealer, _) = keys.forClient()
    let outgoing = OutgoingFrames(sealer: keys.forClient().seal)
    var sealed: [[UInt8]] = []
    for frame in plain {
        var out = [UInt8](repeating: 0, count: frame.count + Wire.sealOverhead)
        let n = frame.withUnsafeBytes { f in
            out.withUnsafeMutableBytes { o -> Int in
                do throws(WireError) { return try sealer.seal(f, into: o) } catch {
                    invariant(false, "sealing threw \(error)")
                    return 0
                }
            }
        }
        invariant(n == frame.count + Wire.sealOverhead, "sealed size")
        var written: [UInt8] = []
        let ok = frame.withUnsafeBytes { f in outgoing.send(f) { written = Array($0); return true } }
        invariant(ok && written == out, "OutgoingFrames wrote other bytes than the sealer")
        sealed.append(out)
    }

    // What reaches the openers.
    let (_, opener) = keys.forServer()
    let (_, reflected) = keys.forClient()
    var position = 0  // the opener's counter: frames it has opened
    var next = 0      // the next frame in order
    for _ in 0..<12 where !input.isEmpty {
        let instruction = input.byte()
        var toReflected = false
        var bytes: [UInt8]
        switch instruction % 6 {
        case 0:
            bytes = next < sealed.count ? sealed[next] : []
            next += 1
        case 1:
            bytes = next < sealed.count ? sealed[next] : []
            next += 1
            for _ in 0..<Int(input.byte() % 4) + 1 where !bytes.isEmpty {
                bytes[Int(input.uint16()) % bytes.count] ^= input.byte()
            }
        case 2:
            bytes = sealed[Int(input.byte()) % sealed.count]
        case 3:
            bytes = next < sealed.count ? sealed[next] : []
            next += 1
            let cut = Int(input.byte())
            if cut & 1 == 0 { bytes = Array(bytes.dropLast(cut >> 1 + 1)) } else { bytes += input.take(cut >> 1 + 1) }
        case 4:
            bytes = input.chunk()
        default:
            bytes = next < sealed.count ? sealed[next] : []
            toReflected = true
        }
        if toReflected {
            invariant(deliver(bytes, to: reflected, inPlace: inPlace) == nil, "a frame opened in the other direction")
            continue
        }
        let expected = position < sealed.count && bytes == sealed[position] ? plain[position] : nil
        let got = deliver(bytes, to: opener, inPlace: inPlace)
        if let expected {
            guard let got else {
                invariant(false, "the frame sealed at position \(position) did not open")
                return
            }
            position += 1
            let validHeader: Bool = expected.withUnsafeBytes { raw in
                expectedHeaderError(raw) == nil && Int(RawHeader(raw)!.length) == expected.count
            }
            switch got {
            case .success(let frame):
                invariant(validHeader && frame == expected, "opened something other than the frame sealed")
            case .failure:
                invariant(!validHeader, "a frame with a good header failed after opening")
            }
        } else {
            invariant(got == nil, "a frame opened that is not the one sealed at position \(position)")
        }
    }
}

func fuzzKeys(_ input: inout FuzzInput) {
    let k = input.take(32 + Int(input.byte() % 32))
    guard k.count >= 32 else { return }
    let cn = input.take(32), sn = input.take(32)
    let keys = SessionKeys(key: k, clientNonce: cn, serverNonce: sn)
    invariant(keys.clientToServer.count == 32 && keys.serverToClient.count == 32, "key sizes")
    invariant(keys.clientToServer != keys.serverToClient, "both directions share a key")
    invariant(SessionKeys(encoded: keys.encoded) == keys, "encoded round trip")
    invariant(SessionKeys(key: k, clientNonce: cn, serverNonce: sn) == keys, "derivation is not deterministic")
    let client = keys.forClient(), server = keys.forServer()
    let frame = input.rest()
    var plain = frame.count >= 16 ? frame : frame + [UInt8](repeating: 0, count: 16 - frame.count)
    var h = RawHeader(plain)
    h.length = UInt32(plain.count)
    h.op = Op.allCases[Int(h.op) % Op.allCases.count].rawValue
    h.flags &= 1
    plain.replaceSubrange(0..<16, with: h.bytes)
    let valid = plain.withUnsafeBytes { expectedHeaderError($0) == nil }
    for (sealer, opener, other) in [(client.seal, server.open, client.open), (server.seal, client.open, server.open)] {
        var out = [UInt8](repeating: 0, count: plain.count + Wire.sealOverhead)
        _ = plain.withUnsafeBytes { f in out.withUnsafeMutableBytes { o in try? sealer.seal(f, into: o) } }
        invariant(deliver(out, to: other, inPlace: false) == nil, "a frame opened with its own direction's opener")
        let got = deliver(out, to: opener, inPlace: false)
        invariant(got != nil, "a sealed frame did not open at the other end")
        if valid { invariant(got == .success(plain), "the frame changed on the way") }
    }
}

/// The entry point SwiftPM links as main (see CFuzzDriver.h).
@_cdecl("fuzz_sealed_main")
public func fuzzSealedMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    tether_fuzz_main(argc, argv, fuzzSealed)
}
