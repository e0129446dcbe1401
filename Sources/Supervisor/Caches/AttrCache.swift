import CShim
import Glibc
import Synchronization
import SysKit
import Wire

/// The target's attribute cache: the home's `struct statx` (or its ENOENT)
/// for canonical absolute paths at home (`CacheKey`), shared by every
/// thread and process of the session.
///
/// Coherence. The home is the authority: an entry exists only because the
/// home answered `statxWatched` with "watched" (it watches every directory
/// on the path and the object before it stats, see the home's `Watches`),
/// and the home pushes an `invalidate` frame for every later change it
/// sees. The rules that make a hit as good as asking:
/// - Ordering: the home drains its inotify queue before every reply, and
///   the reader applies an `invalidate` frame before it reads the next
///   frame, so after any reply the tracee has seen, the cache reflects every
///   change the home's kernel saw before that reply was sent. That covers
///   the session's own writes, renames, unlinks, chmods… (their events are
///   queued before their own reply leaves) and, across sessions, every
///   change made before this session's last forwarded call got its answer.
/// - Between calls: a hit asks nothing, so it is served only when no frame
///   from home is waiting on the stream (one `poll`); a change at home is
///   then missed only while its invalidation is on its way: the home's
///   watcher thread wakes on the inotify event and writes the frame, one
///   wire hop. That is the window.
/// - Unwaited writes (`WriteBehind`): while any is in flight, the cache
///   answers nothing (the home has not run them yet).
/// - Fills race with invalidations: a fill is stored only if no
///   invalidation was applied since its request was sent (`epoch`).
/// Keys: the canonical absolute path (`CacheKey`), or for a name relative
/// to the working directory or a directory descriptor at home, that
/// directory's path joined with the name, tagged with the directory's
/// handle: the home lets it be cached only while that directory is still at
/// that path, and a move of it drops its tree, so a tagged entry never
/// outlives the directory's stay there (a name relative to a working
/// directory that moved is not confused with the same path's new object). Not tracked: atime (relatime updates
/// it on reads without events). Not cached: non-canonical spellings, paths
/// through a symlink, sync-forcing statx flags, errors other than ENOENT.
///
/// A key is filled from its second miss on (`missedBefore`): a path stat'ed
/// once costs no watch at home.
///
/// Layout: a fixed open-addressing table of `slotCount` slots of
/// `slotSize` bytes, probed `probes` deep from the key's hash; an insert
/// into a full run evicts in turn. Dropping everything is a generation
/// bump. Nothing here allocates after `init`; one `Mutex` guards it.
/// (Unchecked Sendable: the table and the mutable fields are raw memory and
/// plain vars that every thread touches only under `lock`; the counters
/// are atomic adds through CShim.)
final class AttrCache: @unchecked Sendable {
    /// Slots of the session's cache (≈ 2 MiB).
    static let defaultSlots = 4096
    static let probes = 8
    /// hash u64 @0, generation u64 @8, key length u16 @16, state u8 @18,
    /// nofollow u8 @19, directory tag i64 @24, key @32 (`CacheKey.maxKey`
    /// bytes), statx @272.
    static let slotSize = 528
    static let keyOffset = 32, statxOffset = 272
    /// A slot's state byte.
    static let empty: UInt8 = 0, present: UInt8 = 1, absent: UInt8 = 2
    /// The statx mask asked of home on a fill; a statx call asking for no
    /// more than this is served from the entry.
    static let fillMask = CSHIM_STATX_BASIC_STATS | 0x800  // STATX_BTIME

    let slotCount: Int
    /// The directory listings and small files kept on the same
    /// invalidations (`ReadCache`).
    let listings: ReadCache, contents: ReadCache
    /// The stream from home (a hit needs it quiet).
    let stream: CInt
    private let table: UnsafeMutableRawPointer
    /// Guards the table, `generation`, `epoch` and `victim`.
    private let lock = Mutex<Void>(())
    private var generation: UInt64 = 1
    /// Invalidation frames applied so far.
    private var epoch: UInt64 = 0
    private var victim = 0
    /// The tags entries were filled with since the table was last emptied
    /// (at most `maxTags`; `tagsOverflowed` after that), so that dropping a
    /// name looks up each (tag, flag) pair instead of scanning the table.
    private let tags = UnsafeMutablePointer<Int64>.allocate(capacity: maxTags)
    private var tagCount = 0
    private var tagsOverflowed = false
    static let maxTags = 8
    /// Keys looked up once and missed (their hashes, direct-mapped): a key
    /// is filled, and the home asked to watch it, from its second miss on,
    /// so a stat that is never repeated (a tree walked once) costs no watch.
    private let seen: UnsafeMutablePointer<UInt64>
    /// For `--stats`: hits, fills, invalidation frames applied (relaxed counters).
    private let counters = UnsafeMutablePointer<UInt64>.allocate(capacity: 3)

    /// A cache of `slots` entries (a power of two; 0: disabled) for the
    /// session on `stream`.
    init(slots: Int, stream: CInt) {
        precondition(slots & (slots - 1) == 0, "AttrCache slots must be a power of two")
        slotCount = slots
        self.stream = stream
        let clock = ReadClock()
        listings = .listings(enabled: slots > 0, clock: clock)
        contents = .contents(enabled: slots > 0, clock: clock)
        // calloc: memory fresh from the kernel is zero already, so the
        // 2 MiB table costs page faults only as its slots fill, not all at
        // start-up (zeroing it was a third of wrap-and-run's page faults).
        guard let t = calloc(max(slots, 1), Self.slotSize),
              let s = calloc(max(2 * slots, 1), MemoryLayout<UInt64>.size) else {
            fatalError("AttrCache: out of memory")
        }
        table = t
        seen = s.assumingMemoryBound(to: UInt64.self)
        counters.initialize(repeating: 0, count: 3)
        tags.initialize(repeating: 0, count: Self.maxTags)
    }

    deinit {
        free(table)
        counters.deallocate()
        tags.deallocate()
        free(seen)
    }

    /// Counts a lookup that answered the tracee (for `--stats`).
    func countHit() { cshim_counter_add(counters, 1) }

    /// The `--stats` line.
    var summary: String {
        "attribute cache: \(cshim_counter_load(counters)) hits, \(cshim_counter_load(counters + 1)) fills, "
            + "\(cshim_counter_load(counters + 2)) invalidations from home"
    }

    var enabled: Bool { slotCount > 0 }

    /// What a lookup found.
    enum Hit {
        case miss
        /// The statx bytes were copied out.
        case present
        /// The home said ENOENT.
        case absent
    }

    /// True when a frame from home is waiting to be read: an invalidation
    /// may be among them, so the cache must not answer.
    func homeHasNews() -> Bool {
        var p = pollfd(fd: stream, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, 0) != 0
    }

    /// Looks `key` up; on `.present` copies its 256-byte statx to `out`.
    func lookup(_ key: UnsafeRawBufferPointer, tag: Int64, nofollow: Bool, into out: UnsafeMutableRawPointer) -> Hit {
        guard enabled else { return .miss }
        let h = Self.hash(key, tag, nofollow)
        return lock.withLock { _ -> Hit in
            guard let slot = find(key, tag, nofollow, h) else { return .miss }
            if slot.load(fromByteOffset: 18, as: UInt8.self) == Self.absent { return .absent }
            out.copyMemory(from: slot + Self.statxOffset, byteCount: Wire.statxSize)
            return .present
        }
    }

    /// True if `key` is cached as present (the home watches it).
    func isPresent(_ key: UnsafeRawBufferPointer, tag: Int64, nofollow: Bool) -> Bool {
        guard enabled else { return false }
        let h = Self.hash(key, tag, nofollow)
        return lock.withLock { _ -> Bool in
            find(key, tag, nofollow, h)?.load(fromByteOffset: 18, as: UInt8.self) == Self.present
        }
    }

    /// True if `key` is cached as absent (under either symlink flag: a
    /// name that does not exist is absent both ways).
    func isAbsent(_ key: UnsafeRawBufferPointer, tag: Int64) -> Bool {
        guard enabled else { return false }
        return lock.withLock { _ -> Bool in
            for bit in 0..<2 {
                let nofollow = bit == 1
                if let slot = find(key, tag, nofollow, Self.hash(key, tag, nofollow)),
                   slot.load(fromByteOffset: 18, as: UInt8.self) == Self.absent {
                    return true
                }
            }
            return false
        }
    }

    /// True if `key` missed before (recently): worth a fill. Otherwise
    /// remembers it and says false.
    func missedBefore(_ key: UnsafeRawBufferPointer, tag: Int64, nofollow: Bool) -> Bool {
        guard enabled else { return false }
        let h = Self.hash(key, tag, nofollow)
        return lock.withLock { _ -> Bool in
            let i = Int(truncatingIfNeeded: h) & (2 * slotCount - 1)
            if seen[i] == h { return true }
            seen[i] = h
            return false
        }
    }

    /// The epoch to hand to `fill` once the reply of a request sent now is in.
    func beginFill() -> UInt64 {
        lock.withLock { _ in epoch }
    }

    /// Stores the home's answer for `key` (`statx` nil: absent), unless an
    /// invalidation was applied since `since` (`beginFill`).
    func fill(_ key: UnsafeRawBufferPointer, tag: Int64, nofollow: Bool, statx: UnsafeRawBufferPointer?, since: UInt64) {
        guard enabled, key.count <= CacheKey.maxKey else { return }
        let h = Self.hash(key, tag, nofollow)
        lock.withLock { _ in
            guard epoch == since else { return }
            cshim_counter_add(counters + 1, 1)
            let slot = find(key, tag, nofollow, h) ?? freeSlot(h)
            slot.storeBytes(of: h, toByteOffset: 0, as: UInt64.self)
            slot.storeBytes(of: generation, toByteOffset: 8, as: UInt64.self)
            slot.storeBytes(of: UInt16(key.count), toByteOffset: 16, as: UInt16.self)
            slot.storeBytes(of: statx == nil ? Self.absent : Self.present, toByteOffset: 18, as: UInt8.self)
            slot.storeBytes(of: nofollow ? 1 : 0, toByteOffset: 19, as: UInt8.self)
            slot.storeBytes(of: tag, toByteOffset: 24, as: Int64.self)
            noteTag(tag)
            (slot + Self.keyOffset).copyMemory(from: key.baseAddress!, byteCount: key.count)
            if let statx { (slot + Self.statxOffset).copyMemory(from: statx.baseAddress!, byteCount: Wire.statxSize) }
        }
    }

    /// Applies an `invalidate` frame from home (the reader, in stream
    /// order); false if it is malformed.
    func apply(_ frame: UnsafeRawBufferPointer) -> Bool {
        guard let r = try? ResponseView(frame: frame), r.op == .invalidate else { return false }
        let payload = r.payload
        return lock.withLock { _ -> Bool in
            epoch &+= 1
            cshim_counter_add(counters + 2, 1)
            if r.result == Invalidation.dropAll {
                generation &+= 1
                listings.dropAll()
                contents.dropAll()
                tagCount = 0
                tagsOverflowed = false
                return payload.isEmpty
            }
            guard r.result == Invalidation.dropListed || r.result == Invalidation.dropTrees else { return false }
            let trees = r.result == Invalidation.dropTrees
            do throws(WireError) {
                try Invalidation.forEachKey(payload) { key in
                    if trees { dropTree(key); listings.dropTree(key); contents.dropTree(key); return }
                    if key.count <= CacheKey.maxKey { dropName(key); listings.drop(key); contents.drop(key) }
                }
            } catch { return false }
            return true
        }
    }

    // MARK: the table (under the lock)

    private func noteTag(_ tag: Int64) {
        for i in 0..<tagCount where tags[i] == tag { return }
        if tagCount < Self.maxTags { tags[tagCount] = tag; tagCount += 1 } else { tagsOverflowed = true }
    }

    /// Drops every entry of `key`, whatever its tag and symlink flag: a
    /// lookup per known tag, or a scan of the table when they overflowed.
    private func dropName(_ key: UnsafeRawBufferPointer) {
        guard enabled else { return }
        if !tagsOverflowed {
            for i in 0..<tagCount {
                for bit in 0..<2 {
                    let nofollow = bit == 1
                    find(key, tags[i], nofollow, Self.hash(key, tags[i], nofollow))?
                        .storeBytes(of: Self.empty, toByteOffset: 18, as: UInt8.self)
                }
            }
            return
        }
        for i in 0..<slotCount {
            let slot = table + i * Self.slotSize
            guard slot.load(fromByteOffset: 18, as: UInt8.self) != Self.empty,
                  Int(slot.load(fromByteOffset: 16, as: UInt16.self)) == key.count,
                  memcmp(slot + Self.keyOffset, key.baseAddress!, key.count) == 0 else { continue }
            slot.storeBytes(of: Self.empty, toByteOffset: 18, as: UInt8.self)
        }
    }

    /// Drops `dir` and every key beneath it: a scan of the table (a
    /// directory's change, rarer than a file's).
    private func dropTree(_ dir: UnsafeRawBufferPointer) {
        guard enabled else { return }
        let n = dir.count, everything = n == 1
        for i in 0..<slotCount {
            let slot = table + i * Self.slotSize
            guard slot.load(fromByteOffset: 18, as: UInt8.self) != Self.empty,
                  slot.load(fromByteOffset: 8, as: UInt64.self) == generation else { continue }
            let length = Int(slot.load(fromByteOffset: 16, as: UInt16.self))
            guard everything || (length >= n && memcmp(slot + Self.keyOffset, dir.baseAddress!, n) == 0
                  && (length == n || slot.load(fromByteOffset: Self.keyOffset + n, as: UInt8.self) == UInt8(ascii: "/")))
            else { continue }
            slot.storeBytes(of: Self.empty, toByteOffset: 18, as: UInt8.self)
        }
    }

    /// The live slot holding `key`, or nil.
    private func find(_ key: UnsafeRawBufferPointer, _ tag: Int64, _ nofollow: Bool, _ h: UInt64) -> UnsafeMutableRawPointer? {
        guard enabled else { return nil }
        let mask = slotCount - 1
        for i in 0..<Self.probes {
            let slot = table + ((Int(truncatingIfNeeded: h) &+ i) & mask) * Self.slotSize
            guard slot.load(as: UInt64.self) == h, slot.load(fromByteOffset: 18, as: UInt8.self) != Self.empty,
                  slot.load(fromByteOffset: 8, as: UInt64.self) == generation,
                  slot.load(fromByteOffset: 19, as: UInt8.self) == (nofollow ? 1 : 0),
                  slot.load(fromByteOffset: 24, as: Int64.self) == tag,
                  Int(slot.load(fromByteOffset: 16, as: UInt16.self)) == key.count,
                  memcmp(slot + Self.keyOffset, key.baseAddress!, key.count) == 0 else { continue }
            return slot
        }
        return nil
    }

    /// An empty or stale slot of `h`'s run, else the next victim in it.
    private func freeSlot(_ h: UInt64) -> UnsafeMutableRawPointer {
        let mask = slotCount - 1
        for i in 0..<Self.probes {
            let slot = table + ((Int(truncatingIfNeeded: h) &+ i) & mask) * Self.slotSize
            if slot.load(fromByteOffset: 18, as: UInt8.self) == Self.empty
                || slot.load(fromByteOffset: 8, as: UInt64.self) != generation { return slot }
        }
        victim = (victim + 1) % Self.probes
        return table + ((Int(truncatingIfNeeded: h) &+ victim) & mask) * Self.slotSize
    }

    /// FNV-1a over the key, seeded with the tag and the nofollow bit.
    static func hash(_ key: UnsafeRawBufferPointer, _ tag: Int64, _ nofollow: Bool) -> UInt64 {
        var h: UInt64 = (nofollow ? 0x84222325_cbf29ce4 : 0xcbf29ce4_84222325) ^ UInt64(bitPattern: tag) &* 0x9E37_79B9_7F4A_7C15
        for b in key { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h
    }
}

extension Call {
    /// The cache key of the path routed to `to` (its `pathLength` bytes,
    /// NUL included, at the start of `payload`), built in the worker's
    /// scratch: the path itself when it is absolute from the root, or the
    /// directory's path (the working directory's, or a directory
    /// descriptor's) joined with a relative name. Returns the key and the
    /// length of its directory part (0 for an absolute path); nil when the
    /// cache cannot take it (a non-canonical spelling, a local destination).
    private func cacheKey(_ to: Destination, payload: UnsafeMutableRawBufferPointer,
                          pathLength: Int) -> (key: UnsafeRawBufferPointer, base: Int)? {
        guard sup.link.attributes.enabled, !to.isLocal, pathLength >= 2, pathLength - 1 <= CacheKey.maxKey else { return nil }
        let out = worker.scratch
        if to.dir == Wire.rootDir {
            out.baseAddress!.copyMemory(from: payload.baseAddress!, byteCount: pathLength - 1)
            let key = UnsafeRawBufferPointer(rebasing: out[0..<(pathLength - 1)])
            return CacheKey.isCanonical(key) ? (key, 0) : nil
        }
        guard payload[0] != UInt8(ascii: "/") else { return nil }
        let dirPath: [UInt8]?
        if let d = to.keep as? RemoteDir { dirPath = d.path } else if let p = to.keep as? Placeholder { dirPath = (p.owner ?? p).path } else { dirPath = nil }
        guard let dirPath, !dirPath.isEmpty, dirPath.count + pathLength <= CacheKey.maxKey else { return nil }
        let base = dirPath.count, slash = base == 1 ? 0 : 1
        dirPath.withUnsafeBytes { out.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: base) }
        out[base] = UInt8(ascii: "/")
        (out.baseAddress! + base + slash).copyMemory(from: payload.baseAddress!, byteCount: pathLength - 1)
        let key = UnsafeRawBufferPointer(rebasing: out[0..<(base + slash + pathLength - 1)])
        return CacheKey.isCanonical(key) ? (key, base) : nil
    }

    /// True when the path routed to `to` (its `pathLength` bytes, NUL
    /// included, at the start of `payload`) is cached as absent at home:
    /// an open without O_CREAT, an access check, fail with ENOENT without
    /// asking (Python's and compilers' probes of names that do not exist).
    func knownAbsent(_ to: Destination, payload: UnsafeMutableRawBufferPointer, pathLength: Int) -> Bool {
        let cache = sup.link.attributes
        guard let (key, _) = cacheKey(to, payload: payload, pathLength: pathLength),
              sup.link.writeBehind.writesInFlight.load(ordering: .relaxed) == 0 else { return false }
        guard cache.isAbsent(key, tag: to.dir), !cache.homeHasNews() else { return false }
        cache.countHit()
        return true
    }

    /// A stat of the path routed to `to` (its `pathLength` bytes, NUL
    /// included, in the slot's statx payload), through the attribute cache:
    /// the 256-byte statx, or ENOENT thrown; nil when the call is not one
    /// the cache takes (the caller sends its own request). `flags` are the
    /// statx flags, `mask` the statx mask asked for.
    func cachedStatx(_ to: Destination, flags: Int32, mask: UInt32, pathLength: Int) throws(Failure) -> UnsafeRawBufferPointer? {
        let cache = sup.link.attributes
        // The stat handlers routed the path into the statx payload; the
        // statxWatched request (one scalar more) starts its payload later.
        guard flags & ~(AT_SYMLINK_NOFOLLOW | CSHIM_AT_NO_AUTOMOUNT) == 0, mask & ~AttrCache.fillMask == 0,
              let (key, base) = cacheKey(to, payload: worker.slot.payload(for: .statx), pathLength: pathLength)
        else { return nil }
        let payload = worker.slot.payload(for: .statxWatched)
        let nofollow = flags & AT_SYMLINK_NOFOLLOW != 0
        let out = UnsafeMutableRawBufferPointer(rebasing: worker.slot.reply[0..<Wire.statxSize])
        if sup.link.writeBehind.writesInFlight.load(ordering: .relaxed) == 0 {
            // The stream is looked at only for a hit (a miss asks home anyway).
            switch cache.lookup(key, tag: to.dir, nofollow: nofollow, into: out.baseAddress!) {
            case .present where !cache.homeHasNews():
                cache.countHit()
                return UnsafeRawBufferPointer(out)
            case .absent where !cache.homeHasNews():
                cache.countHit()
                throw .errno(.noSuchFileOrDirectory)
            default: break
            }
        }
        // A first miss asks home plainly: no watch for what is never asked again.
        if !cache.missedBefore(key, tag: to.dir, nofollow: nofollow) { return nil }
        // The request names the key itself (the home checks a directory's
        // path is still the key's first `base` bytes).
        payload.baseAddress!.copyMemory(from: key.baseAddress!, byteCount: key.count)
        payload[key.count] = 0
        let since = cache.beginFill()
        let r = try send(to, .statxWatched, Scalars(to.dir, Int64(flags), Int64(AttrCache.fillMask), Int64(base)),
                         payloadLength: key.count + 1)
        if r.result == 2 {
            cache.fill(key, tag: to.dir, nofollow: nofollow, statx: nil, since: since)
            throw .errno(.noSuchFileOrDirectory)
        }
        if r.result == 1 { cache.fill(key, tag: to.dir, nofollow: nofollow, statx: r.payload, since: since) }
        return r.payload
    }
}
