import Crypto
import Glibc
import Synchronization
import SysKit

/// Which version of a home file a cache entry holds: what a statx at home
/// says of it (device, inode, size, modification time to the nanosecond).
struct HomeIdentity: Equatable, Sendable {
    var device: UInt64
    var inode: UInt64
    var size: UInt64
    var mtimeSeconds: Int64
    var mtimeNanoseconds: UInt32

    /// From a 256-byte `struct statx`.
    init(statx s: UnsafeRawBufferPointer) {
        func u32(_ o: Int) -> UInt32 { UInt32(littleEndian: s.loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
        func u64(_ o: Int) -> UInt64 { UInt64(littleEndian: s.loadUnaligned(fromByteOffset: o, as: UInt64.self)) }
        device = UInt64(u32(136)) << 32 | UInt64(u32(140))
        inode = u64(32)
        size = u64(40)
        mtimeSeconds = Int64(bitPattern: u64(112))
        mtimeNanoseconds = u32(120)
    }

    init?(text: Substring) {
        let f = text.split(separator: " ")
        guard f.count == 5, let d = UInt64(f[0]), let i = UInt64(f[1]), let s = UInt64(f[2]), let m = Int64(f[3]),
              let n = UInt32(f[4]) else { return nil }
        (device, inode, size, mtimeSeconds, mtimeNanoseconds) = (d, i, s, m, n)
    }

    var text: String { "\(device) \(inode) \(size) \(mtimeSeconds) \(mtimeNanoseconds)" }
}

/// The local cache of `copy` files (bind by value), content-addressed:
///
///     DIR/objects/SHA256   the contents, read-only (0555: programs run from it)
///     DIR/index/SHA256-OF-PATH   "IDENTITY SHA256 STAMP" of the home path's last
///                          copy (its mtime: the path's last use)
///     DIR/tmp/             files being filled, renamed into place when whole
///
/// DIR is `$XDG_CACHE_HOME/tether` or `~/.cache/tether`, mode 0700. Many
/// sessions may fill it at once: every file appears by `rename` of a
/// private temporary, so a reader sees a whole object or none, and two
/// sessions copying the same file end with one entry. An entry is checked
/// against home on each session's first use of the path (identity, then the
/// object's own hash if its inode changed since it was written, which finds
/// a corrupt or truncated object); within a session the coherent attribute
/// cache says whether home changed.
final class ValueCache: Sendable {
    let directory: String
    /// Most bytes kept in objects/ (0: no bound); least recently used go first.
    let maxBytes: Int64

    private struct Session {
        /// Paths checked this session: their identity at home and object.
        var entries: [[UInt8]: (identity: HomeIdentity, object: String)] = [:]
        /// Objects whose hash was checked this session.
        var verified: Set<String> = []
        var prepared = false
    }
    private let session = Mutex(Session())

    /// For --stats: files fetched from home, their bytes, opens served from the cache.
    let fetches = Atomic<Int>(0)
    let fetchedBytes = Atomic<Int>(0)
    let hits = Atomic<Int>(0)

    init(environment: [String], maxBytes: Int64) {
        func value(_ name: String) -> String? {
            environment.first { $0.hasPrefix(name + "=") }.map { String($0.dropFirst(name.count + 1)) }
        }
        var base = value("XDG_CACHE_HOME").flatMap { $0.hasPrefix("/") ? $0 : nil }
        if base == nil {
            let home = value("HOME") ?? getpwuid(getuid()).map { String(cString: $0.pointee.pw_dir) } ?? "/tmp"
            base = home + "/.cache"
        }
        directory = base! + "/tether"
        self.maxBytes = maxBytes
    }

    /// Whether this session used the cache (--stats reports it then).
    var used: Bool { session.withLock { $0.prepared } }

    var summary: String {
        "copy cache: \(fetches.load(ordering: .relaxed)) fetched from home (\(fetchedBytes.load(ordering: .relaxed)) bytes), "
            + "\(hits.load(ordering: .relaxed)) opened from the cache"
    }

    /// Creates the directories (once per session).
    func prepare() throws(Errno) {
        try session.withLock { (s: inout Session) throws(Errno) in
            if s.prepared { return }
            var path = ""
            for part in directory.split(separator: "/") {
                path += "/" + part
                if mkdir(path, 0o700) != 0 && Glibc.errno != EEXIST { throw lastErrno() }
            }
            try sys { chmod(directory, 0o700) }
            for sub in ["objects", "index", "tmp"] where mkdir(directory + "/" + sub, 0o700) != 0 && Glibc.errno != EEXIST {
                throw lastErrno()
            }
            s.prepared = true
        }
    }

    /// The object of `path` if this session already checked it and home
    /// still has the same version.
    func sessionObject(_ path: [UInt8], _ identity: HomeIdentity) -> String? {
        session.withLock { s in
            guard let e = s.entries[path], e.identity == identity else { return nil }
            return e.object
        }
    }

    /// The object an earlier session recorded for `path` at `identity`,
    /// if it is still there and whole. Its hash is checked when the object
    /// file is not the inode the record saw (inode, size, ctime: any write,
    /// truncation or chmod of it since changes the ctime), once a session;
    /// a corrupt or truncated object is deleted and nil returned. The
    /// record's mtime says when the path was last used (`evict`).
    func recordedObject(_ path: [UInt8], _ identity: HomeIdentity) -> String? {
        let index = indexPath(path)
        guard let line = try? FD.readSmallFile(index) else { return nil }
        let f = String(decoding: line, as: UTF8.self).split(separator: "\n").first?.split(separator: " ") ?? []
        guard f.count == 7, HomeIdentity(text: f[0..<5].joined(separator: " ")[...]) == identity, f[5].count == 64 else {
            return nil
        }
        let object = String(f[5])
        let file = objectPath(object)
        let checked = session.withLock { $0.verified.contains(object) }
        if !checked {
            if Self.stamp(file) != String(f[6]) {
                guard Self.hash(file: file) == object else {
                    // Corrupt or truncated: fetched again.
                    unlink(file)
                    return nil
                }
                record(path, identity, object)
            }
            _ = session.withLock { $0.verified.insert(object) }
        }
        _ = utimensat(AT_FDCWD, index, nil, 0)
        remember(path, identity, object)
        return object
    }

    /// Records that `path` at `identity` is `object`, for this session and
    /// the next (with the object file's stamp as it is now).
    func record(_ path: [UInt8], _ identity: HomeIdentity, _ object: String) {
        remember(path, identity, object)
        _ = session.withLock { $0.verified.insert(object) }
        let tmp = temporaryPath()
        let text = Array((identity.text + " " + object + " " + Self.stamp(objectPath(object)) + "\n").utf8)
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        let ok = text.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) } == text.count
        close(fd)
        if !ok || rename(tmp, indexPath(path)) != 0 { unlink(tmp) }
    }

    /// "INODE:SIZE:CTIME_NS" of a file, which changes with any write to it.
    private static func stamp(_ file: String) -> String {
        var st = stat()
        guard stat(file, &st) == 0 else { return "-" }
        return "\(st.st_ino):\(st.st_size):\(Int64(st.st_ctim.tv_sec) * 1_000_000_000 + Int64(st.st_ctim.tv_nsec))"
    }

    private func remember(_ path: [UInt8], _ identity: HomeIdentity, _ object: String) {
        session.withLock { $0.entries[path] = (identity, object) }
    }

    func objectPath(_ object: String) -> String { directory + "/objects/" + object }

    private func indexPath(_ path: [UInt8]) -> String {
        directory + "/index/" + SHA256.hash(data: path).map { Self.hexByte($0) }.joined()
    }

    /// A fresh name in tmp/.
    func temporaryPath() -> String {
        let r = UInt64.random(in: 0...UInt64.max)
        return directory + "/tmp/" + String(getpid()) + "." + String(r, radix: 16)
    }

    /// Stores `bytes` as an object (not indexed by any home path); returns its name.
    func store(_ bytes: [UInt8]) throws(Errno) -> String {
        try prepare()
        var h = SHA256Stream()
        bytes.withUnsafeBytes { h.update($0) }
        let object = h.finish()
        let tmp = temporaryPath()
        let fd = try sys { open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600) }
        let ok = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) } == bytes.count
            && fchmod(fd, 0o555) == 0
        close(fd)
        guard ok, rename(tmp, objectPath(object)) == 0 else {
            let e = lastErrno()
            unlink(tmp)
            throw e
        }
        return object
    }

    /// Deletes least recently used objects until objects/ holds at most
    /// `maxBytes` (never `keep`, the object just used). An object's last
    /// use is the latest mtime of the index records naming it (its own
    /// mtime for one no record names, such as a script variant).
    func evict(keep: String) {
        guard maxBytes > 0 else { return }
        var lastUse: [String: Int64] = [:]
        for name in Self.names(directory + "/index") {
            let file = directory + "/index/" + name
            var st = stat()
            guard let line = try? FD.readSmallFile(file), stat(file, &st) == 0 else { continue }
            let f = String(decoding: line, as: UTF8.self).split(separator: " ")
            guard f.count == 7 else { continue }
            lastUse[String(f[5]), default: 0] = max(lastUse[String(f[5])] ?? 0, Self.nanoseconds(st.st_mtim))
        }
        var objects: [(name: String, size: Int64, used: Int64)] = []
        for name in Self.names(directory + "/objects") where name.count == 64 {
            var st = stat()
            guard stat(objectPath(name), &st) == 0 else { continue }
            objects.append((name, Int64(st.st_size), lastUse[name] ?? Self.nanoseconds(st.st_mtim)))
        }
        var total = objects.reduce(0) { $0 + $1.size }
        for o in objects.sorted(by: { $0.used < $1.used }) where total > maxBytes && o.name != keep {
            if unlink(objectPath(o.name)) == 0 { total -= o.size }
        }
    }

    private static func nanoseconds(_ t: timespec) -> Int64 { Int64(t.tv_sec) * 1_000_000_000 + Int64(t.tv_nsec) }

    /// The names in a directory (no "." or "..").
    private static func names(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var out: [String] = []
        while let e = readdir(dir) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { out.append(name) }
        }
        return out
    }

    /// The SHA-256 of a file's contents in hex, or nil if it cannot be read.
    static func hash(file: String) -> String? {
        let fd = open(file, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var h = SHA256()
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buf.deallocate() }
        while true {
            let n = read(fd, buf.baseAddress, buf.count)
            if n < 0 { if Glibc.errno == EINTR { continue }; return nil }
            if n == 0 { break }
            h.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buf[0..<n]))
        }
        return hex(h.finalize())
    }

    static func hex(_ digest: SHA256.Digest) -> String { digest.map { hexByte($0) }.joined() }

    private static func hexByte(_ b: UInt8) -> String {
        let digits = Array("0123456789abcdef".utf8)
        return String(decoding: [digits[Int(b >> 4)], digits[Int(b & 15)]], as: UTF8.self)
    }
}

extension String {
    fileprivate func trimmingSuffixNewline() -> String { hasSuffix("\n") ? String(dropLast()) : self }
}

/// SHA-256 over a stream of chunks, in hex at the end (so that callers need
/// not import Crypto).
struct SHA256Stream {
    private var h = SHA256()

    mutating func update(_ bytes: UnsafeRawBufferPointer) { h.update(bufferPointer: bytes) }

    func finish() -> String { ValueCache.hex(h.finalize()) }
}
