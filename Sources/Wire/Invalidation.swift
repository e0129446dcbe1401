/// The paths the client's attribute cache may hold, and the payload of an
/// ``Op/invalidate`` frame.
///
/// A cache key is the path exactly as the tracee gave it and the home
/// received it, when that path is *canonical*: absolute, no empty, "." or
/// ".." component, no trailing slash, at most ``maxKey`` bytes. Only then
/// is every prefix of it a directory the home can watch under the same
/// name, and an event in directory D on entry N the key "D/N". Other
/// spellings are simply not cached.
public enum CacheKey {
    /// The longest cacheable path, in bytes (NUL not counted).
    public static let maxKey = 240

    /// True if `path` (no NUL) is a canonical absolute path of at most `maxKey` bytes.
    public static func isCanonical(_ path: UnsafeRawBufferPointer) -> Bool {
        let n = path.count
        guard n >= 1, n <= maxKey, path[0] == UInt8(ascii: "/") else { return false }
        if n == 1 { return true }
        guard path[n - 1] != UInt8(ascii: "/") else { return false }
        var start = 1
        for i in 1...n where i == n || path[i] == UInt8(ascii: "/") {
            let len = i - start
            if len == 0 { return false }
            if path[start] == UInt8(ascii: ".") && (len == 1 || (len == 2 && path[start + 1] == UInt8(ascii: "."))) {
                return false
            }
            if path[start..<i].contains(0) { return false }
            start = i + 1
        }
        return true
    }
}

/// The payload of an ``Op/invalidate`` frame: cache keys, each followed by
/// one NUL. Building and reading it never allocates.
public enum Invalidation {
    /// Frame result: drop the listed keys.
    public static let dropListed: Int64 = 0
    /// Frame result: drop every entry (payload empty).
    public static let dropAll: Int64 = 1
    /// Frame result: drop the listed keys and every key beneath them
    /// (a directory that moved, went away or changed its permissions).
    public static let dropTrees: Int64 = 2

    /// Appends `dir` joined with `name` (just `dir` when `name` is empty;
    /// "/" joined with N is "/N") and a NUL at `offset` of `buffer`.
    /// Returns the new offset, or nil when it does not fit.
    public static func append(dir: UnsafeRawBufferPointer, name: UnsafeRawBufferPointer,
                              to buffer: UnsafeMutableRawBufferPointer, at offset: Int) -> Int? {
        let slash = name.count > 0 && !(dir.count == 1 && dir[0] == UInt8(ascii: "/")) ? 1 : 0
        let end = offset + dir.count + slash + name.count
        guard offset >= 0, end < buffer.count else { return nil }
        var at = offset
        if dir.count > 0 { (buffer.baseAddress! + at).copyMemory(from: dir.baseAddress!, byteCount: dir.count) }
        at += dir.count
        if slash == 1 { buffer[at] = UInt8(ascii: "/"); at += 1 }
        if name.count > 0 { (buffer.baseAddress! + at).copyMemory(from: name.baseAddress!, byteCount: name.count) }
        at += name.count
        buffer[at] = 0
        return at + 1
    }

    /// Calls `body` with each key of `payload` (without its NUL). Throws
    /// ``WireError/malformedPayload`` (before calling `body` at all) when the
    /// payload does not end with a NUL or holds an empty key.
    public static func forEachKey(_ payload: UnsafeRawBufferPointer,
                                  _ body: (UnsafeRawBufferPointer) -> Void) throws(WireError) {
        guard payload.isEmpty || payload[payload.count - 1] == 0 else { throw .malformedPayload }
        var start = 0
        for i in 0..<payload.count where payload[i] == 0 {
            if i == start { throw .malformedPayload }
            start = i + 1
        }
        start = 0
        for i in 0..<payload.count where payload[i] == 0 {
            body(UnsafeRawBufferPointer(rebasing: payload[start..<i]))
            start = i + 1
        }
    }
}
