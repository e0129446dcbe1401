/// Lexical path normalization: joins a relative path to a base directory,
/// drops "." and empty components, and applies ".." to the text (never
/// above "/"). Routing decides on this form; the kernel that executes the
/// call still resolves the original path, symlinks and all.
public enum PathNormalizer {
    /// Writes the normalized absolute form of `path` (relative to the
    /// absolute `base` when it does not start with "/") into `out`. Returns
    /// its length, or nil if `out` is too small.
    public static func normalize(base: UnsafeRawBufferPointer, path: UnsafeRawBufferPointer,
                                 into out: UnsafeMutableRawBufferPointer) -> Int? {
        guard out.count >= 1 else { return nil }
        out[0] = UInt8(ascii: "/")
        var len = 1
        func append(_ part: UnsafeRawBufferPointer) -> Bool {
            var i = 0
            while i < part.count {
                while i < part.count && part[i] == UInt8(ascii: "/") { i += 1 }
                let start = i
                while i < part.count && part[i] != UInt8(ascii: "/") { i += 1 }
                let n = i - start
                if n == 0 || (n == 1 && part[start] == UInt8(ascii: ".")) { continue }
                if n == 2 && part[start] == UInt8(ascii: ".") && part[start + 1] == UInt8(ascii: ".") {
                    // Drop the last component (stay at "/").
                    while len > 1 && out[len - 1] != UInt8(ascii: "/") { len -= 1 }
                    if len > 1 { len -= 1 }
                    continue
                }
                let need = (len > 1 ? 1 : 0) + n
                if len + need > out.count { return false }
                if len > 1 { out[len] = UInt8(ascii: "/"); len += 1 }
                for k in 0..<n { out[len + k] = part[start + k] }
                len += n
            }
            return true
        }
        let relative = path.count == 0 || path[0] != UInt8(ascii: "/")
        if relative && !append(base) { return nil }
        if !append(path) { return nil }
        return len
    }

    /// Whether a relative `path` has a ".." component: only then can it
    /// leave the directory it is relative to.
    public static func climbs(_ path: UnsafeRawBufferPointer) -> Bool {
        var start = 0
        for i in 0...path.count where i == path.count || path[i] == UInt8(ascii: "/") {
            if i - start == 2 && path[start] == UInt8(ascii: ".") && path[start + 1] == UInt8(ascii: ".") { return true }
            start = i + 1
        }
        return false
    }

    /// String convenience for tests, rules and messages.
    public static func normalize(_ path: String, base: String = "/") -> String {
        let p = Array(path.utf8), b = Array(base.utf8)
        var out = [UInt8](repeating: 0, count: p.count + b.count + 2)
        let n = p.withUnsafeBytes { pp in b.withUnsafeBytes { bb in
            out.withUnsafeMutableBytes { normalize(base: bb, path: pp, into: $0) }
        } }!
        return String(decoding: out[0..<n], as: UTF8.self)
    }
}
