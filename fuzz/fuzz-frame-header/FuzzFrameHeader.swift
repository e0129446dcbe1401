// libFuzzer target: `FrameHeader.decode` on any bytes.
//
// Invariants: it decodes exactly when the protocol's documented rules say
// so, and otherwise throws the documented error in the documented order;
// a decoded header's length lies in 16 ... Wire.maxFrameLength and covers
// the op's minimum body; encoding a decoded header gives back the same 16
// bytes.

import CFuzzDriver
import FuzzSupport
import Wire

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFrameHeader(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    withFuzzBytes(data, size) { bytes in
        let expected = expectedHeaderError(bytes)
        do throws(WireError) {
            let h = try FrameHeader.decode(bytes)
            invariant(expected == nil, "decoded a header the protocol rejects: \(String(describing: expected))")
            let raw = RawHeader(bytes)!
            invariant(h.length == raw.length && h.op.rawValue == raw.op && h.flags.rawValue == raw.flags && h.id == raw.id,
                      "decoded fields differ from the bytes")
            let minimum = 16 + (h.flags.contains(.response) ? 8 : 8 * h.op.requestScalarCount)
            invariant(Int(h.length) >= minimum && Int(h.length) <= Wire.maxFrameLength,
                      "decoded length \(h.length) outside \(minimum) ... \(Wire.maxFrameLength)")
            invariant(FrameFlags.known.isSuperset(of: h.flags), "unknown flags decoded")
            var out = [UInt8](repeating: 0xA5, count: 17)
            out.withUnsafeMutableBytes { h.encode(into: $0) }
            invariant(Array(out[0..<16]) == Array(bytes[0..<16]), "encode(decode(x)) != x")
            invariant(out[16] == 0xA5, "encode wrote past the header")
        } catch {
            invariant(error == expected, "threw \(error), the protocol says \(String(describing: expected))")
            _ = error.description
        }
    }
    return 0
}

/// The entry point SwiftPM links as main (see CFuzzDriver.h).
@_cdecl("fuzz_frame_header_main")
public func fuzzFrameHeaderMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    tether_fuzz_main(argc, argv, fuzzFrameHeader)
}
