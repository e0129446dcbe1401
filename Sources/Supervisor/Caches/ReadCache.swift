import CShim
import Glibc
import Synchronization
import SysKit
import Wire

/// Whole reads kept on the target: the getdents64 records of a forwarded
/// directory (the listing cache), or the bytes of a small forwarded file
/// (the small-read cache), read from offset 0 to the end, keyed by the
/// object's canonical path at home, served to a later open of that path
/// without a round trip.
///
/// Coherence rides on the attribute cache (`AttrCache`). A read is kept
/// only if the object was in the attribute cache (so the home watched it
/// and every directory above it) when the handle that read it was opened,
/// and no invalidation frame was applied from that open to the read's end;
/// the home turns any later change to it (a write, a truncation, a create,
/// delete or rename in a directory, an attribute change) or its own removal
/// or move into an invalidation that drops its name (or everything), and
/// `AttrCache.apply` drops the kept read with it. A kept read is served
/// only to a handle opened after it was kept (`validAt`, a clock of keeps
/// and drops), so a handle on an object since moved away is never answered
/// with what now has its name; and, like an attribute hit, only when no
/// frame from home is waiting and no write is in flight. A read dropped
/// while a handle is being served sends the handle home, repositioned
/// where the served bytes or records left it.
///
/// Layout: `entries` fixed buffers of `maxBytes`, allocated once (calloc:
/// pages cost only as they fill); an entry is reused round-robin. One
/// `Mutex` guards everything. (Unchecked Sendable: the raw memory and plain
/// vars are touched only under `lock`; the counters are atomic adds.)
final class ReadCache: @unchecked Sendable {
    /// The listing cache: 4 listings of up to 256 KiB; a larger directory
    /// is always read at home.
    static func listings(enabled: Bool, clock: ReadClock) -> ReadCache {
        ReadCache(enabled: enabled, entries: 4, maxBytes: 256 * 1024, what: "listings", clock: clock)
    }

    /// The small-read cache: 16 files of up to 64 KiB (a source file, a
    /// module, a configuration file); a larger file is always read at home.
    static func contents(enabled: Bool, clock: ReadClock) -> ReadCache {
        ReadCache(enabled: enabled, entries: 16, maxBytes: 64 * 1024, what: "files", clock: clock)
    }

    /// An entry's state.
    static let empty: UInt64 = 0, filling: UInt64 = 1, valid: UInt64 = 2
    /// Per entry: key length, record bytes, state, validAt, generation.
    private static let metaWidth = 5

    let enabled: Bool
    let entries: Int
    /// The largest read kept.
    let maxBytes: Int
    /// What an entry holds, for `--stats`.
    private let what: String
    private let lock = Mutex<Void>(())
    private let records: UnsafeMutableRawPointer
    private let keys: UnsafeMutableRawPointer
    private let meta: UnsafeMutablePointer<UInt64>
    private let clock: ReadClock
    private var victim = 0
    /// For `--stats`: hits (calls answered), listings kept.
    private let counters = UnsafeMutablePointer<UInt64>.allocate(capacity: 2)

    private init(enabled: Bool, entries: Int, maxBytes: Int, what: String, clock: ReadClock) {
        self.enabled = enabled
        self.clock = clock
        self.entries = entries
        self.maxBytes = maxBytes
        self.what = what
        let n = enabled ? entries : 1
        guard let r = calloc(n, maxBytes), let k = calloc(n, CacheKey.maxKey),
              let m = calloc(n * Self.metaWidth, MemoryLayout<UInt64>.size) else { fatalError("ReadCache: out of memory") }
        records = r
        keys = k
        meta = m.assumingMemoryBound(to: UInt64.self)
        counters.initialize(repeating: 0, count: 2)
    }

    deinit {
        free(records)
        free(keys)
        free(meta)
        counters.deallocate()
    }

    /// The `--stats` line: calls answered, reads kept.
    var summary: String {
        "\(cshim_counter_load(counters)) hits, \(cshim_counter_load(counters + 1)) \(what) kept"
    }

    /// The clock now: a handle stamped with it may be served reads kept up
    /// to now.
    var now: UInt64 { clock.now }

    /// The valid entry for `key` kept no later than `openedAt`: (entry, generation).
    func find(_ key: UnsafeRawBufferPointer, openedAt: UInt64) -> (Int, UInt64)? {
        guard enabled else { return nil }
        return lock.withLock { _ -> (Int, UInt64)? in
            for e in 0..<entries where m(e, 2) == Self.valid && m(e, 3) <= openedAt && matches(e, key) {
                return (e, m(e, 4))
            }
            return nil
        }
    }

    /// Takes an entry to fill for `key` (its old listing, an empty one, or
    /// the next victim): (entry, generation).
    func claim(_ key: UnsafeRawBufferPointer) -> (Int, UInt64)? {
        guard enabled, key.count <= CacheKey.maxKey else { return nil }
        return lock.withLock { _ -> (Int, UInt64)? in
            var e = -1
            for i in 0..<entries where m(i, 2) != Self.empty && matches(i, key) { e = i }
            if e < 0 { for i in 0..<entries where m(i, 2) == Self.empty { e = i } }
            if e < 0 { victim = (victim + 1) % entries; e = victim }
            setM(e, 4, m(e, 4) &+ 1)
            setM(e, 2, Self.filling)
            setM(e, 1, 0)
            setM(e, 0, UInt64(key.count))
            (keys + e * CacheKey.maxKey).copyMemory(from: key.baseAddress!, byteCount: key.count)
            return (e, m(e, 4))
        }
    }

    /// Appends records to a filling entry; false (and the entry is
    /// dropped) if it was dropped meanwhile or would pass `maxBytes`.
    func append(_ e: Int, _ generation: UInt64, _ bytes: UnsafeRawBufferPointer) -> Bool {
        lock.withLock { _ -> Bool in
            guard m(e, 4) == generation, m(e, 2) == Self.filling else { return false }
            let length = Int(m(e, 1))
            guard length + bytes.count <= maxBytes else { dropEntry(e); return false }
            (records + e * maxBytes + length).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
            setM(e, 1, UInt64(length + bytes.count))
            return true
        }
    }

    /// Ends a fill: the listing is kept if `keep` and it was not dropped
    /// meanwhile, else the entry is emptied.
    func finish(_ e: Int, _ generation: UInt64, keep: Bool) {
        lock.withLock { _ in
            guard m(e, 4) == generation, m(e, 2) == Self.filling else { return }
            guard keep else { dropEntry(e); return }
            setM(e, 3, clock.tick())
            setM(e, 2, Self.valid)
            cshim_counter_add(counters + 1, 1)
        }
    }

    /// Writes to `memory` at `address` the whole records of entry `e` from
    /// byte `position` that fit in `count` bytes: (bytes, d_off of the last
    /// record) — 0 bytes at the end, -1 when the next record does not fit —
    /// or nil when the entry was dropped.
    func copy(_ e: Int, _ generation: UInt64, from position: Int, count: Int, to memory: TraceeMemory,
              at address: UInt64) throws(Failure) -> (Int, Int64)? {
        try lock.withLock { _ throws(Failure) -> (Int, Int64)? in
            guard m(e, 4) == generation, m(e, 2) == Self.valid else { return nil }
            let base = records + e * maxBytes, length = Int(m(e, 1))
            var end = position, last: Int64 = 0
            while end + 19 <= length {
                let reclen = Int(base.loadUnaligned(fromByteOffset: end + 16, as: UInt16.self))
                guard reclen > 0, end + reclen <= length, end + reclen - position <= count else { break }
                last = base.loadUnaligned(fromByteOffset: end + 8, as: Int64.self)
                end += reclen
            }
            if end == position && position < length { return (-1, 0) }
            let n = end - position
            if n > 0 { try local { () throws(Errno) in try memory.write(address, from: base + position, count: n) } }
            cshim_counter_add(counters, 1)
            return (n, last)
        }
    }

    /// Writes to `memory` at `address` up to `count` bytes of entry `e`
    /// from byte `position` (0 at or past its end): the bytes written, or
    /// nil when the entry was dropped.
    func copyBytes(_ e: Int, _ generation: UInt64, from position: Int64, count: Int, to memory: TraceeMemory,
                   at address: UInt64) throws(Failure) -> Int? {
        try lock.withLock { _ throws(Failure) -> Int? in
            guard m(e, 4) == generation, m(e, 2) == Self.valid else { return nil }
            let length = Int64(m(e, 1))
            guard position < length else { return 0 }
            let n = Int(min(Int64(count), length - position))
            if n > 0 {
                try local { () throws(Errno) in try memory.write(address, from: records + e * maxBytes + Int(position), count: n) }
            }
            cshim_counter_add(counters, 1)
            return n
        }
    }

    /// The byte length of valid entry `e` (a kept file's size), or nil when
    /// it was dropped.
    func size(_ e: Int, _ generation: UInt64) -> Int? {
        lock.withLock { _ -> Int? in m(e, 4) == generation && m(e, 2) == Self.valid ? Int(m(e, 1)) : nil }
    }

    /// Drops the entry of a fill given up.
    func abandon(_ e: Int, _ generation: UInt64) {
        lock.withLock { _ in if m(e, 4) == generation { dropEntry(e) } }
    }

    /// Drops the listing of `key` (an invalidation named it).
    func drop(_ key: UnsafeRawBufferPointer) {
        guard enabled else { return }
        lock.withLock { _ in for e in 0..<entries where m(e, 2) != Self.empty && matches(e, key) { dropEntry(e) } }
    }

    /// Drops the listings of `dir` and of everything beneath it.
    func dropTree(_ dir: UnsafeRawBufferPointer) {
        guard enabled else { return }
        let n = dir.count
        lock.withLock { _ in
            for e in 0..<entries where m(e, 2) != Self.empty {
                let length = Int(m(e, 0)), key = keys + e * CacheKey.maxKey
                if n == 1 || (length >= n && memcmp(key, dir.baseAddress!, n) == 0
                    && (length == n || key.load(fromByteOffset: n, as: UInt8.self) == UInt8(ascii: "/"))) {
                    dropEntry(e)
                }
            }
        }
    }

    /// Drops every listing.
    func dropAll() {
        guard enabled else { return }
        lock.withLock { _ in for e in 0..<entries { dropEntry(e) } }
    }

    // MARK: under the lock

    private func m(_ e: Int, _ field: Int) -> UInt64 { meta[e * Self.metaWidth + field] }
    private func setM(_ e: Int, _ field: Int, _ v: UInt64) { meta[e * Self.metaWidth + field] = v }

    private func matches(_ e: Int, _ key: UnsafeRawBufferPointer) -> Bool {
        Int(m(e, 0)) == key.count && memcmp(keys + e * CacheKey.maxKey, key.baseAddress!, key.count) == 0
    }

    private func dropEntry(_ e: Int) {
        setM(e, 2, Self.empty)
        setM(e, 4, m(e, 4) &+ 1)
        _ = clock.tick()
    }
}

/// The clock of keeps and drops that the caches of one session share: a
/// handle's stamp at open is one read of it, without a lock (a keep ticks
/// it before its entry becomes valid, so a handle stamped before the keep
/// is never served it).
final class ReadClock: Sendable {
    private let value = Atomic<UInt64>(0)

    var now: UInt64 { value.load(ordering: .acquiring) }

    /// Advances the clock; its new value.
    func tick() -> UInt64 { value.wrappingAdd(1, ordering: .acquiringAndReleasing).newValue }
}

/// Where a forwarded handle (one open file description) stands with the
/// listing cache (a directory) or the small-read cache (a regular file
/// opened read-only); guarded by its placeholder's mutex, which also orders
/// its getdents64 and read calls as the kernel's f_pos lock would.
struct ReadCursor: Sendable {
    enum Mode: Sendable {
        /// Nothing read yet: the home handle is at 0.
        case fresh
        /// Read at home from 0, the records copied into the entry.
        case filling(entry: Int, generation: UInt64)
        /// Answered from the entry; the home handle is still at 0.
        case serving(entry: Int, generation: UInt64)
        /// A file read at home from 0, its bytes copied into the entry.
        case fillingFile(entry: Int, generation: UInt64)
        /// A file answered from the entry at `offset`; the home handle is
        /// still at 0.
        case servingFile(entry: Int, generation: UInt64)
        /// Everything goes home; the home handle's offset is the real one.
        case home
    }
    var mode: Mode
    /// Opened by a name the caches take.
    let cacheable: Bool
    /// The attribute cache's epoch at open (a fill needs it unchanged).
    let openEpoch: UInt64
    /// The object was in the attribute cache at open: watched.
    let watchedAtOpen: Bool
    /// The caches' clock at open (`ReadCache.now`).
    let openStamp: UInt64
    /// Serving a listing: bytes handed out, and the d_off of the last
    /// record handed out (where the home handle would stand). A file,
    /// filling or served: the tracee's file offset.
    var position = 0
    var offset: Int64 = 0
    /// A getdents64 on it succeeded: a directory (a rewind may make it
    /// fresh again; a regular file's seeks stay with its stream views).
    var listed = false

    /// The cursor of a handle just opened by `path` (nil: not a name the caches take).
    init(path: [UInt8]?, attributes: AttrCache) {
        guard attributes.enabled, let path, path.count <= CacheKey.maxKey,
              path.withUnsafeBytes({ CacheKey.isCanonical($0) }) else {
            mode = .home
            cacheable = false
            openEpoch = 0
            watchedAtOpen = false
            openStamp = 0
            return
        }
        mode = .fresh
        cacheable = true
        openEpoch = attributes.beginFill()
        openStamp = attributes.listings.now
        watchedAtOpen = path.withUnsafeBytes { attributes.isPresent($0, tag: Wire.rootDir, nofollow: false) }
    }
}
