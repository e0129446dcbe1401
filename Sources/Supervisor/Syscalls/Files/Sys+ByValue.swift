import CShim
import Glibc
import Policy
import SysKit
import Wire

/// Opens of `copy` paths (bind by value): the file is fetched from home
/// into the `ValueCache` on first use and the tracee gets a read-only
/// descriptor of the cached object, so its reads and maps are the target
/// kernel's. Whether home still has that version is asked through the
/// coherent attribute cache on every open (a hit costs no round trip);
/// a different version is fetched again.
enum ByValue {
    /// The reply to an open of a path the policy copies, or nil when the
    /// open is not one a copy serves (O_PATH, O_DIRECTORY, a resolve
    /// restriction, not a regular file): it is then forwarded as usual.
    /// Opens for writing fail with EROFS: a copy is read-only.
    static func open(_ c: borrowing Call, to: Destination, pathLength len: Int, flags: Int32,
                     resolve: UInt64) throws(Failure) -> Reply? {
        let writes = flags & O_ACCMODE != O_RDONLY || flags & (O_CREAT | O_TRUNC) != 0
            || flags & CSHIM_O_TMPFILE == CSHIM_O_TMPFILE
        if writes { throw .errno(.readOnlyFileSystem) }
        guard flags & (CSHIM_O_PATH | O_DIRECTORY) == 0, resolve == 0,
              let (source, _) = try object(c, to: to, pathLength: len) else { return nil }
        defer { Glibc.close(source) }
        let fd = try local { () throws(Errno) in
            try c.sup.listener.installAndRespond(id: c.id, source: source, closeOnExec: flags & O_CLOEXEC != 0)
        }
        c.worker.decided = .copy
        return .answered(Int64(fd))
    }

    /// A read-only descriptor (the supervisor's, to close) of the cached
    /// copy of the home file routed to `to` (its name, `len` bytes with the
    /// NUL, in the openat payload; its normalized absolute path in the
    /// worker's), fetched first if the cache lacks home's current version;
    /// with the file's mode at home. Nil if it is not a regular file at home
    /// (the openat payload is then as it was).
    static func object(_ c: borrowing Call, to: Destination, pathLength len: Int) throws(Failure) -> (CInt, UInt32)? {
        let cache = c.sup.valueCache
        let key = Array(UnsafeRawBufferPointer(rebasing: c.worker.normalized[0..<c.worker.normalizedLength]))
        let openPayload = c.worker.slot.payload(for: .openat)
        let name = Array(UnsafeRawBufferPointer(rebasing: openPayload[0..<len]))
        // The version at home: the statx request carries the same name.
        let statPayload = c.worker.slot.payload(for: .statx)
        name.withUnsafeBytes { statPayload.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: len) }
        let mask = UInt32(AttrCache.fillMask)
        var statx = try c.cachedStatx(to, flags: 0, mask: mask, pathLength: len)
        // A first miss is answered plainly; ask again so that the next
        // open finds it in the cache, watched.
        if statx == nil { statx = try c.cachedStatx(to, flags: 0, mask: mask, pathLength: len) }
        if statx == nil { statx = try c.send(to, .statx, Scalars(to.dir, 0, Int64(mask)), payloadLength: len).payload }
        guard let s = statx, s.count == Wire.statxSize else { throw .transport(.lost) }
        let mode = UInt32(UInt16(littleEndian: s.loadUnaligned(fromByteOffset: 28, as: UInt16.self)))
        let identity = HomeIdentity(statx: s)
        guard mode & S_IFMT == S_IFREG else {
            name.withUnsafeBytes { openPayload.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: len) }
            return nil
        }
        try local { () throws(Errno) in try cache.prepare() }
        var source: CInt = -1
        if let object = cache.sessionObject(key, identity) {
            source = Glibc.open(cache.objectPath(object), O_RDONLY | O_CLOEXEC)
        } else if let object = cache.recordedObject(key, identity) {
            source = Glibc.open(cache.objectPath(object), O_RDONLY | O_CLOEXEC)
        }
        if source >= 0 {
            cache.hits.add(1, ordering: .relaxed)
        } else {
            // Not cached, or evicted by another session since: fetch it.
            name.withUnsafeBytes { openPayload.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: len) }
            let object = try fetch(c, to: to, pathLength: len, identity: identity, cache: cache, key: key)
            source = try local { () throws(Errno) in try sys { Glibc.open(cache.objectPath(object), O_RDONLY | O_CLOEXEC) } }
        }
        return (source, mode)
    }

    /// Copies the home file (its name in the openat payload) into a
    /// temporary of the cache, hashing it on the way, and renames it to its
    /// object; returns the object's name. Says how far it is on stderr each
    /// second once a copy has taken longer than one.
    private static func fetch(_ c: borrowing Call, to: Destination, pathLength len: Int, identity: HomeIdentity,
                              cache: ValueCache, key: [UInt8]) throws(Failure) -> String {
        let opened = try c.send(to, .openat, Scalars(to.dir, Int64(O_RDONLY | O_CLOEXEC), 0, 0), payloadLength: len)
        defer { c.sup.link.release(handle: opened.result) }
        return try fetch(c, handle: opened.result, identity: identity, cache: cache, key: key)
    }

    /// A read-only descriptor (the supervisor's) of the cached copy of the
    /// file open at home as `handle`, known by the normalized absolute
    /// `path`: the cache entry if it holds the handle's version, else a copy
    /// fetched through the handle.
    static func object(_ c: borrowing Call, handle: Int64, path: [UInt8]) throws(Failure) -> CInt {
        let cache = c.sup.valueCache
        let stat = try c.home(.fstat, Scalars(handle))
        guard stat.payload.count == Wire.statxSize else { throw .transport(.lost) }
        let identity = HomeIdentity(statx: stat.payload)
        try local { () throws(Errno) in try cache.prepare() }
        if let object = cache.sessionObject(path, identity) ?? cache.recordedObject(path, identity) {
            let fd = Glibc.open(cache.objectPath(object), O_RDONLY | O_CLOEXEC)
            if fd >= 0 {
                cache.hits.add(1, ordering: .relaxed)
                return fd
            }
        }
        let object = try fetch(c, handle: handle, identity: identity, cache: cache, key: path)
        return try local { () throws(Errno) in try sys { Glibc.open(cache.objectPath(object), O_RDONLY | O_CLOEXEC) } }
    }

    /// Copies the file open at home as `handle` into the cache (see the
    /// other `fetch`).
    private static func fetch(_ c: borrowing Call, handle: Int64, identity: HomeIdentity,
                              cache: ValueCache, key: [UInt8]) throws(Failure) -> String {
        let tmp = cache.temporaryPath()
        let fd = try local { () throws(Errno) in try sys { Glibc.open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600) } }
        var hash = SHA256Stream()
        var done: Int64 = 0
        let started = monotonicSeconds()
        var lastReport = started
        do {
            while true {
                let r = try c.home(.pread, Scalars(handle, Int64(Wire.maxPayload), done))
                if r.result <= 0 { break }
                try local { () throws(Errno) in
                    var at = 0
                    while at < r.payload.count {
                        at += try sys { Glibc.pwrite(fd, r.payload.baseAddress! + at, r.payload.count - at, off_t(done) + off_t(at)) }
                    }
                }
                hash.update(r.payload)
                done += Int64(r.payload.count)
                let now = monotonicSeconds()
                if now - lastReport >= 1 {
                    lastReport = now
                    printError("wrap-and-run: copying \(String(decoding: key, as: UTF8.self)) from home: "
                               + "\(done >> 20) of \(identity.size >> 20) MiB")
                }
            }
            _ = try local { () throws(Errno) in try sys { fchmod(fd, 0o555) } }
        } catch {
            Glibc.close(fd)
            unlink(tmp)
            throw error
        }
        Glibc.close(fd)
        let object = hash.finish()
        if rename(tmp, cache.objectPath(object)) != 0 {
            let e = lastErrno()
            unlink(tmp)
            throw .errno(e)
        }
        if lastReport != started { printError("wrap-and-run: copied \(String(decoding: key, as: UTF8.self)) (\(done >> 20) MiB)") }
        cache.record(key, identity, object)
        cache.fetches.add(1, ordering: .relaxed)
        cache.fetchedBytes.add(Int(done), ordering: .relaxed)
        cache.evict(keep: object)
        return object
    }

    private static func monotonicSeconds() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
    }
}
