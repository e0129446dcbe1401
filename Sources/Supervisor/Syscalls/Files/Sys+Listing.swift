import CShim
import Glibc
import SysKit
import Wire

/// getdents64 through the listing cache (`ReadCache`), one open
/// directory's cursor at a time.
extension Call {
    /// getdents64(2) of placeholder `p` into the tracee's buffer (argument 1)
    /// of `count` bytes: served from a kept listing while the handle reads
    /// it sequentially from 0, else at home (copying a whole read from 0
    /// into the cache when the directory is watched).
    func listedGetdents(_ p: Placeholder, count: Int, cursor: inout ReadCursor) throws(Failure) -> Int64 {
        let cache = sup.link.attributes, listings = cache.listings
        let quiet = sup.link.writeBehind.writesInFlight.load(ordering: .relaxed) == 0
        switch cursor.mode {
        case .home, .fillingFile, .servingFile:
            if case .home = cursor.mode {} else { try leaveReadCache(p, cursor: &cursor) }
            return Int64(try forwardedGetdents(p, count: count).count)
        case .serving(let entry, let generation):
            if quiet, !cache.homeHasNews(), let n = try served(entry, generation, count: count, cursor: &cursor) {
                return n
            }
            try leaveReadCache(p, cursor: &cursor)
            return Int64(try forwardedGetdents(p, count: count).count)
        case .filling(let entry, let generation):
            let records = try forwardedGetdents(p, count: count)
            if records.isEmpty {
                listings.finish(entry, generation, keep: cache.beginFill() == cursor.openEpoch)
                cursor.mode = .home
            } else if !listings.append(entry, generation, records) {
                cursor.mode = .home
            }
            return Int64(records.count)
        case .fresh:
            guard let path = p.path else { cursor.mode = .home; return try listedGetdents(p, count: count, cursor: &cursor) }
            let kept = path.withUnsafeBytes { listings.find($0, openedAt: cursor.openStamp) }
            if let (entry, generation) = kept, quiet, !cache.homeHasNews() {
                cursor.mode = .serving(entry: entry, generation: generation)
                return try listedGetdents(p, count: count, cursor: &cursor)
            }
            // A kept listing not answered now (a frame is waiting) stays
            // kept: this read goes home without refilling it.
            if kept == nil, cursor.watchedAtOpen, cache.beginFill() == cursor.openEpoch,
               let (entry, generation) = path.withUnsafeBytes({ listings.claim($0) }) {
                cursor.mode = .filling(entry: entry, generation: generation)
                return try listedGetdents(p, count: count, cursor: &cursor)
            }
            cursor.mode = .home
            // A directory listed a second time gets watched (through the
            // attribute cache): its next open may keep its listing.
            if !cursor.watchedAtOpen,
               path.withUnsafeBytes({ cache.missedBefore($0, tag: Wire.rootDir, nofollow: false) }) {
                try watch(path)
            }
            return Int64(try forwardedGetdents(p, count: count).count)
        }
    }

    /// lseek(2) and the read caches: a seek in a file served from the
    /// small-read cache is answered here (`fileSeek`); a rewind of a handle served from the
    /// cache is answered here (its home handle never moved); a rewind of a
    /// directory read at home is forwarded here and makes the handle fresh
    /// (a kept listing may answer its next read); any other seek first
    /// puts the home handle where the served records left it. Nil: the
    /// caller forwards the seek.
    func cachedSeek(_ p: Placeholder, offset: Int64, whence: Int32) throws(Failure) -> Int64? {
        try p.reads.withLock { (cursor: inout ReadCursor) throws(Failure) -> Int64? in
            if let answer = fileSeek(p, offset: offset, whence: whence, cursor: &cursor) { return answer }
            let rewind = offset == 0 && whence == SEEK_SET
            switch cursor.mode {
            case .serving where rewind:
                cursor.mode = .fresh
                cursor.position = 0
                cursor.offset = 0
                return 0
            case .fresh:
                if !rewind { cursor.mode = .home }
                return nil
            default:
                try leaveReadCache(p, cursor: &cursor)
                guard rewind, cursor.cacheable, cursor.listed else { return nil }
                let r = try home(.lseek, Scalars(p.handle, 0, Int64(SEEK_SET))).result
                cursor.mode = .fresh
                cursor.position = 0
                return r
            }
        }
    }

    /// Before anything that reads or moves the handle's offset at home
    /// (lseek, a fallback): puts the home handle where what was served
    /// from a cache left it (the d_off of the last record, or the file
    /// offset), gives up a fill, and sends the handle home for good.
    func leaveReadCache(_ p: Placeholder, cursor: inout ReadCursor) throws(Failure) {
        switch cursor.mode {
        case .serving where cursor.position > 0, .servingFile where cursor.offset > 0:
            _ = try home(.lseek, Scalars(p.handle, cursor.offset, Int64(SEEK_SET)))
        case .filling(let entry, let generation):
            sup.link.attributes.listings.abandon(entry, generation)
        case .fillingFile(let entry, let generation):
            sup.link.attributes.contents.abandon(entry, generation)
        default: break
        }
        cursor.mode = .home
        p.readCacheLive.store(false, ordering: .relaxed)
    }

    /// Answers from the kept listing; nil when it was dropped.
    private func served(_ entry: Int, _ generation: UInt64, count: Int, cursor: inout ReadCursor) throws(Failure) -> Int64? {
        guard let (n, last) = try sup.link.attributes.listings.copy(entry, generation, from: cursor.position, count: count,
                                                                     to: memory, at: address(1)) else { return nil }
        if n < 0 { throw .errno(.invalidArgument) }
        cursor.position += n
        if n > 0 { cursor.offset = last }
        return Int64(n)
    }

    /// One getdents64 at home, written to the tracee; the records.
    private func forwardedGetdents(_ p: Placeholder, count: Int) throws(Failure) -> UnsafeRawBufferPointer {
        let r = try home(.getdents64, Scalars(p.handle, Int64(min(count, Wire.maxPayload))))
        let n = min(Int(r.result), r.payload.count)
        try local { () throws(Errno) in try memory.write(address(1), from: r.payload.baseAddress!, count: n) }
        return UnsafeRawBufferPointer(rebasing: r.payload[0..<n])
    }

    /// Has the home watch `path`, a directory or a file (a `statxWatched`
    /// whose answer fills the attribute cache). A failure here is left to
    /// the listing or the read.
    func watch(_ path: [UInt8]) throws(Failure) {
        let cache = sup.link.attributes, payload = worker.slot.payload(for: .statxWatched)
        guard path.count < payload.count else { return }
        path.withUnsafeBytes { payload.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        payload[path.count] = 0
        let since = cache.beginFill()
        let r: ResponseView
        do {
            r = try home(.statxWatched, Scalars(Wire.rootDir, 0, Int64(AttrCache.fillMask), 0), payloadLength: path.count + 1)
        } catch {
            if case .errno = error { return }
            throw error
        }
        if r.result == 1 { path.withUnsafeBytes { cache.fill($0, tag: Wire.rootDir, nofollow: false, statx: r.payload, since: since) } }
    }
}
