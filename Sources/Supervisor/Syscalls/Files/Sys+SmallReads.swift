import CShim
import Glibc
import SysKit
import Wire

/// read(2), pread64(2) and lseek(2) through the small-read cache
/// (`AttrCache.contents`): a regular file of at most 64 KiB that a handle
/// opened read-only reads from 0 to its end at home, while the file is
/// watched, is kept; a handle opened after the keep reads it, and seeks in
/// it, without a round trip. Its file offset is then the cursor's, and the
/// home handle stays at 0 until something else uses the offset
/// (`settleReadCache`). A file read whole a second time gets watched, so
/// the third read may keep it (a file read once costs no watch).
extension Call {
    /// Before a call that uses or moves `p`'s file offset at home (readv,
    /// lseek at home, sendfile, a stream view): puts the home handle where
    /// the small-read cache left the tracee's offset, and ends the cache's
    /// part in the handle. One load when it has none.
    func settleReadCache(_ p: Placeholder) throws(Failure) {
        guard p.readCacheLive.load(ordering: .relaxed) else { return }
        try p.reads.withLock { (cursor: inout ReadCursor) throws(Failure) in try leaveReadCache(p, cursor: &cursor) }
    }

    /// read(2) of up to `count` bytes of placeholder `p` into the tracee's
    /// buffer (argument 1): the bytes read, or nil when the cache has no
    /// part in it (the caller reads at home).
    func cachedRead(_ p: Placeholder, count: Int) throws(Failure) -> Int64? {
        guard p.readCacheLive.load(ordering: .relaxed) else { return nil }
        return try p.reads.withLock { (cursor: inout ReadCursor) throws(Failure) -> Int64? in
            if case .fresh = cursor.mode, !(try startReading(p, cursor: &cursor)) { return nil }
            let contents = sup.link.attributes.contents
            switch cursor.mode {
            case .servingFile(let entry, let generation):
                if servable, let n = try contents.copyBytes(entry, generation, from: cursor.offset, count: count,
                                                            to: memory, at: address(1)) {
                    cursor.offset += Int64(n)
                    return Int64(n)
                }
                try leaveReadCache(p, cursor: &cursor)
                return nil
            case .fillingFile(let entry, let generation):
                let n = try ReadWrite.receive(self, p, into: address(1), count: count, at: nil,
                                              keeping: (contents, entry, generation))
                cursor.offset += Int64(n)
                if cursor.offset > Int64(contents.maxBytes) {
                    try leaveReadCache(p, cursor: &cursor)
                } else if n < count {
                    // A short read of a regular file: its end.
                    contents.finish(entry, generation, keep: sup.link.attributes.beginFill() == cursor.openEpoch)
                    cursor.mode = .home
                    p.readCacheLive.store(false, ordering: .relaxed)
                }
                return Int64(n)
            default:
                return nil
            }
        }
    }

    /// pread64(2) of `p` at `offset`, answered from a kept file (the handle
    /// is served, or fresh and its file kept); nil: read at home.
    func cachedPread(_ p: Placeholder, count: Int, at offset: Int64) throws(Failure) -> Int64? {
        guard p.readCacheLive.load(ordering: .relaxed) else { return nil }
        return try p.reads.withLock { (cursor: inout ReadCursor) throws(Failure) -> Int64? in
            if case .fresh = cursor.mode, let (entry, generation) = kept(p, cursor: cursor), servable {
                cursor.mode = .servingFile(entry: entry, generation: generation)
            }
            guard case .servingFile(let entry, let generation) = cursor.mode, servable else { return nil }
            return try sup.link.attributes.contents.copyBytes(entry, generation, from: offset, count: count,
                                                              to: memory, at: address(1)).map { Int64($0) }
        }
    }

    /// lseek(2) of a file served from the cache (or fresh: its offset is
    /// 0), answered here when it needs no more than the kept size; nil:
    /// the caller settles the handle and seeks at home.
    func fileSeek(_ p: Placeholder, offset: Int64, whence: Int32, cursor: inout ReadCursor) -> Int64? {
        guard p.readCacheLive.load(ordering: .relaxed) else { return nil }
        let base: Int64
        switch (cursor.mode, whence) {
        case (.fresh, SEEK_CUR) where offset == 0: return 0
        case (.servingFile, SEEK_SET): base = 0
        case (.servingFile, SEEK_CUR): base = cursor.offset
        case (.servingFile(let entry, let generation), SEEK_END):
            guard servable, let size = sup.link.attributes.contents.size(entry, generation) else { return nil }
            base = Int64(size)
        default: return nil
        }
        let (target, overflow) = base.addingReportingOverflow(offset)
        guard !overflow, target >= 0 else { return nil }
        cursor.offset = target
        return target
    }

    // MARK: private

    /// A kept read may answer now: no write in flight, no frame waiting.
    private var servable: Bool {
        sup.link.writeBehind.writesInFlight.load(ordering: .relaxed) == 0 && !sup.link.attributes.homeHasNews()
    }

    /// The kept file for fresh handle `p`, kept before it was opened.
    private func kept(_ p: Placeholder, cursor: ReadCursor) -> (Int, UInt64)? {
        guard let path = p.path else { return nil }
        return path.withUnsafeBytes { sup.link.attributes.contents.find($0, openedAt: cursor.openStamp) }
    }

    /// The first read of a fresh handle: serve it from a kept file, or
    /// fill an entry with it, or (a regular file read a second time) have
    /// home watch it. False: this handle reads at home from now on.
    private func startReading(_ p: Placeholder, cursor: inout ReadCursor) throws(Failure) -> Bool {
        let cache = sup.link.attributes, contents = cache.contents
        guard let path = p.path else { cursor.mode = .home; p.readCacheLive.store(false, ordering: .relaxed); return false }
        if let (entry, generation) = kept(p, cursor: cursor) {
            cursor.mode = .servingFile(entry: entry, generation: generation)
            return true
        }
        cursor.mode = .home
        p.readCacheLive.store(false, ordering: .relaxed)
        let regular = path.withUnsafeBytes { key -> Bool in
            guard cache.lookup(key, tag: Wire.rootDir, nofollow: false, into: worker.scratch.baseAddress!) == .present else {
                return false
            }
            return UInt32(worker.scratch.load(fromByteOffset: 28, as: UInt16.self)) & S_IFMT == S_IFREG
        }
        if regular, cursor.watchedAtOpen, cache.beginFill() == cursor.openEpoch,
           sup.link.writeBehind.writesInFlight.load(ordering: .relaxed) == 0,
           let (entry, generation) = path.withUnsafeBytes({ contents.claim($0) }) {
            cursor.mode = .fillingFile(entry: entry, generation: generation)
            p.readCacheLive.store(true, ordering: .relaxed)
            return true
        }
        if !cursor.watchedAtOpen, path.withUnsafeBytes({ cache.missedBefore($0, tag: Wire.rootDir, nofollow: false) }) {
            try watch(path)
        }
        return false
    }
}
