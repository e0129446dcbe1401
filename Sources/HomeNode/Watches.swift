import CShim
import Glibc
import Synchronization
import SysKit
import Wire

/// The home's side of the client's attribute cache: inotify watches on
/// everything a session has stat'ed with `statxWatched`, turned into
/// `invalidate` frames.
///
/// What is watched for a canonical path P = /c1/…/cn (see `CacheKey`): the
/// export root's directory and every directory /c1…/ci on the way, each
/// verified once (opened with RESOLVE_NO_SYMLINKS: a path through a symlink
/// is not cached, its target's ancestors would be unwatched) and then
/// trusted while watched; and the object itself, by one inotify_add_watch
/// of its name that does not follow a final symlink (a symlink at the end
/// is answered, not cached). Watches are made before the stat they cover. Then any change that could alter the
/// answer for P is an event: on an entry of a directory on the way
/// (creation, deletion, rename, attribute change, write of a child), or on
/// the object itself through any of its names (a hard link elsewhere).
///
/// Event → what the client drops: an event on entry N of directory D (not
/// itself a directory) drops "D/N" and "D" (its times changed); anything
/// that happens to a directory (created, removed, renamed, chmod'ed:
/// everything under it may have changed), an object watched under two
/// names, and a queue overflow drop everything, and the home forgets every
/// watch (the next stats watch afresh); an event on a watched file itself
/// drops its name.
///
/// Ordering, which is the whole point: `pushPending` runs before every
/// reply leaves (`Session.reply`) and drains the inotify queue under the
/// lock, so the invalidation of any change the home's kernel saw before
/// the reply is on the stream before that reply. Between requests, the
/// watcher thread pushes events as they come, so a client that asks
/// nothing learns of a change one inotify wake-up and one wire hop later.
final class Watches: Sendable {
    /// The inotify descriptor (-1 until the first watch) and the watches.
    private let state = Mutex<State>(State())
    /// Set once the first watch exists: replies then drain the queue.
    private let active = Atomic<Bool>(false)
    /// Event and frame buffers, used only under `state`'s lock.
    private let buffers: Buffers

    private struct State {
        var fd: CInt = -1
        var byPath: [[UInt8]: Int32] = [:]
        var byWd: [Int32: Watched] = [:]
        var watcherStarted = false
    }

    /// One watch: the name it was made under, whether it is a directory,
    /// and whether another name led to the same object.
    private struct Watched {
        var path: [UInt8]
        var isDirectory: Bool
        var ambiguous = false
    }

    /// Preallocated buffers (the lock orders every use, hence unchecked).
    private final class Buffers: @unchecked Sendable {
        let events = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 8)
        let frame = UnsafeMutableRawBufferPointer.allocate(byteCount: ResponseEncoder.payloadOffset + 32 * 1024, alignment: 8)
        let trees = UnsafeMutableRawBufferPointer.allocate(byteCount: ResponseEncoder.payloadOffset + 32 * 1024, alignment: 8)
        /// A name with the root's prefix (`ExportRoot.pathMax`) and a key.
        let name = UnsafeMutableRawBufferPointer.allocate(byteCount: ExportRoot.pathMax + CacheKey.maxKey + 1, alignment: 8)
        deinit {
            events.deallocate()
            frame.deallocate()
            trees.deallocate()
            name.deallocate()
        }
    }

    /// The most watches a session holds; past it, the home forgets them all
    /// and the client drops everything (the next stats watch afresh).
    static let maxWatches = 16384

    /// How often the watcher thread looks whether its session has ended (ms).
    static let watcherPollMilliseconds: Int32 = 500

    init() {
        buffers = Buffers()
    }

    deinit {
        let fd = state.withLock { $0.fd }
        if fd >= 0 { Glibc.close(fd) }
    }

    /// What `watch` established for a path.
    struct Outcome {
        /// Every directory on the way to the object is watched (an ENOENT may be cached).
        var parentWatched = false
        /// The object itself is watched too (its attributes may be cached).
        var objectWatched = false
        /// Its watch.
        var wd: Int32 = -1
    }

    /// Watches the directories on the way to `path` (canonical, no NUL) and
    /// the object, before the caller stats it, so every later change is an
    /// event; the caller learns from its stat what the object is. Starts the
    /// watcher thread on first use.
    func watch(_ path: UnsafeRawBufferPointer, root: ExportRoot, session: Session) -> Outcome {
        state.withLock { s -> Outcome in
            if s.fd < 0 {
                s.fd = cshim_inotify_open()
                if s.fd < 0 { return Outcome() }
                active.store(true, ordering: .releasing)
            }
            if !s.watcherStarted {
                s.watcherStarted = ThreadRunner(name: "home-watches", body: { [self] in watcherLoop(session) }).tryStart() != nil
                if !s.watcherStarted { return Outcome() }
            }
            if s.byWd.count >= Self.maxWatches {
                drain(&s, session)   // what happened before goes first
                forgetAll(&s)
                send(Invalidation.dropAll, UnsafeMutableRawBufferPointer(start: nil, count: 0), 0, session)
            }
            var outcome = Outcome()
            // The directories on the way: each verified once (a directory,
            // reached without a symlink), then trusted while it is watched.
            var lastSlash = path.count - 1
            while lastSlash > 0 && path[lastSlash] != UInt8(ascii: "/") { lastSlash -= 1 }
            let parentLength = max(lastSlash, 1)
            if path.count > 1 && s.byPath[Array(path[0..<parentLength])] == nil {
                var end = 1
                while end <= parentLength {
                    let prefix = UnsafeRawBufferPointer(rebasing: path[0..<end])
                    if s.byPath[Array(prefix)] == nil && add(prefix, root: root, &s) != .added { return outcome }
                    var next = end + 1
                    while next < path.count && path[next] != UInt8(ascii: "/") { next += 1 }
                    end = next
                }
            }
            outcome.parentWatched = true
            // The object: one inotify_add_watch by its name on the home's
            // kernel, not following a final symlink (the caller's stat then
            // tells what it is).
            let key = Array(path)
            if let wd = s.byPath[key] { return Outcome(parentWatched: true, objectWatched: true, wd: wd) }
            let name = buffers.name
            guard root.prefix.count + path.count < name.count else { return outcome }
            root.prefix.withUnsafeBytes { name.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            (name.baseAddress! + root.prefix.count).copyMemory(from: path.baseAddress!, byteCount: path.count)
            name[root.prefix.count + path.count] = 0
            let wd = cshim_inotify_add(s.fd, name.baseAddress!.assumingMemoryBound(to: CChar.self),
                                       CSHIM_IN_WATCHED | CSHIM_IN_DONT_FOLLOW)
            if wd < 0 { return outcome }
            record(wd, key, isDirectory: false, &s)
            return Outcome(parentWatched: true, objectWatched: true, wd: wd)
        }
    }

    /// The caller's stat found the watched object `wd` is a directory: its
    /// events from now on drop its tree.
    func noteDirectory(_ wd: Int32) {
        state.withLock { s in s.byWd[wd]?.isDirectory = true }
    }

    private func record(_ wd: Int32, _ key: [UInt8], isDirectory: Bool, _ s: inout State) {
        s.byPath[key] = wd
        if let known = s.byWd[wd] {
            if known.path != key { s.byWd[wd]!.ambiguous = true }
        } else {
            s.byWd[wd] = Watched(path: key, isDirectory: isDirectory)
        }
    }

    private enum Added { case added, absent, failed }

    /// Opens directory `prefix` without following any symlink and watches it.
    private func add(_ prefix: UnsafeRawBufferPointer, root: ExportRoot, _ s: inout State) -> Added {
        let name = buffers.name
        name.baseAddress!.copyMemory(from: prefix.baseAddress!, byteCount: prefix.count)
        name[prefix.count] = 0
        let fd: CInt
        do {
            fd = try root.open(dir: nil, name.baseAddress!.assumingMemoryBound(to: CChar.self),
                               flags: CSHIM_O_PATH | O_NOFOLLOW | O_DIRECTORY, mode: 0,
                               resolve: UInt64(CSHIM_RESOLVE_NO_SYMLINKS), scratch: buffers.events)
        } catch {
            return error == .noSuchFileOrDirectory ? .absent : .failed
        }
        defer { Glibc.close(fd) }
        let wd = (try? ProcLink(fd).withCString { (link) throws(Errno) -> CInt in cshim_inotify_add(s.fd, link, CSHIM_IN_WATCHED) }) ?? -1
        if wd < 0 { return .failed }
        record(wd, Array(prefix), isDirectory: true, &s)
        return .added
    }

    /// Drains the inotify queue and sends the invalidations it holds through
    /// `session`'s stream: before every reply, and from the watcher thread.
    func pushPending(_ session: Session) {
        guard active.load(ordering: .acquiring) else { return }
        state.withLock { s in drain(&s, session) }
    }

    /// Reads every queued event and sends what it invalidates: names to
    /// drop, trees to drop (a frame of each per buffer's worth), or one
    /// "drop everything".
    private func drain(_ s: inout State, _ session: Session) {
        let events = buffers.events
        var names = Pending(buffer: buffers.frame, kind: Invalidation.dropListed)
        var trees = Pending(buffer: buffers.trees, kind: Invalidation.dropTrees)
        var dropAll = false
        while true {
            let n = read(s.fd, events.baseAddress!, events.count)
            if n <= 0 { break }
            var at = 0
            while at + Int(CSHIM_INOTIFY_EVENT_SIZE) <= n {
                let wd = events.load(fromByteOffset: at, as: Int32.self)
                let mask = events.load(fromByteOffset: at + 4, as: UInt32.self)
                let len = Int(events.load(fromByteOffset: at + 12, as: UInt32.self))
                let nameStart = at + Int(CSHIM_INOTIFY_EVENT_SIZE)
                at = nameStart + len
                if dropAll { continue }
                if mask & CSHIM_IN_Q_OVERFLOW != 0 { dropAll = true; continue }
                guard let w = s.byWd[wd] else { continue }
                if mask & CSHIM_IN_IGNORED != 0 {
                    s.byWd[wd] = nil
                    if s.byPath[w.path] == wd { s.byPath[w.path] = nil }
                    continue
                }
                if w.ambiguous { dropAll = true; continue }
                var nameLength = 0
                while nameLength < len && events[nameStart + nameLength] != 0 { nameLength += 1 }
                let name = UnsafeRawBufferPointer(rebasing: events[nameStart..<(nameStart + nameLength)])
                let none = UnsafeRawBufferPointer(start: nil, count: 0)
                let ok = w.path.withUnsafeBytes { dir -> Bool in
                    if nameLength == 0 {
                        // The watched object itself: a directory's change
                        // reaches everything beneath it.
                        if w.isDirectory || mask & (CSHIM_IN_DELETE_SELF | CSHIM_IN_MOVE_SELF) != 0 {
                            forget(under: dir, &s)
                        }
                        return w.isDirectory ? trees.add(dir, none, self, session) : names.add(dir, none, self, session)
                    }
                    // An entry of a watched directory: the directory's times changed too.
                    guard names.add(dir, none, self, session) else { return false }
                    if mask & CSHIM_IN_ISDIR == 0 {
                        guard names.add(dir, name, self, session) else { return false }
                        s.byPath[names.lastKey] = nil
                        return true
                    }
                    guard trees.add(dir, name, self, session) else { return false }
                    forget(under: UnsafeRawBufferPointer(trees.lastKeyBytes), &s)
                    return true
                }
                if !ok { dropAll = true }
            }
        }
        if dropAll {
            forgetAll(&s)
            send(Invalidation.dropAll, UnsafeMutableRawBufferPointer(start: nil, count: 0), 0, session)
            return
        }
        names.flush(self, session)
        trees.flush(self, session)
    }

    /// Keys waiting to be sent in one `invalidate` frame of `kind`.
    private struct Pending {
        let buffer: UnsafeMutableRawBufferPointer
        let kind: Int64
        var used = 0
        var lastStart = 0

        var payload: UnsafeMutableRawBufferPointer {
            UnsafeMutableRawBufferPointer(rebasing: buffer[ResponseEncoder.payloadOffset...])
        }
        /// The key added last (without its NUL).
        var lastKeyBytes: UnsafeMutableRawBufferPointer {
            UnsafeMutableRawBufferPointer(rebasing: payload[lastStart..<(used - 1)])
        }
        var lastKey: [UInt8] { Array(lastKeyBytes) }

        /// Adds "dir/name"; sends the frame first when it is nearly full.
        /// False when the key cannot be expressed (too long).
        mutating func add(_ dir: UnsafeRawBufferPointer, _ name: UnsafeRawBufferPointer,
                          _ watches: Watches, _ session: Session) -> Bool {
            if used > payload.count - 2 * (CacheKey.maxKey + 2) { flush(watches, session) }
            guard let end = Invalidation.append(dir: dir, name: name, to: payload, at: used) else { return false }
            lastStart = used
            used = end
            return true
        }

        mutating func flush(_ watches: Watches, _ session: Session) {
            if used == 0 { return }
            watches.send(kind, buffer, used, session)
            used = 0
        }
    }

    /// Forgets the names at and beneath `dir` (they may name other objects
    /// now: the next stat watches them afresh). Their watches stay until
    /// their objects go; events on them drop names that no longer matter.
    private func forget(under dir: UnsafeRawBufferPointer, _ s: inout State) {
        let n = dir.count
        for key in s.byPath.keys where key.count >= n && key.withUnsafeBytes({ memcmp($0.baseAddress!, dir.baseAddress!, n) == 0 })
            && (key.count == n || key[n] == UInt8(ascii: "/") || n == 1) {
            s.byPath[key] = nil
        }
    }

    /// Removes every watch: after a "drop everything" the client holds
    /// nothing, and the next stats watch their paths afresh.
    private func forgetAll(_ s: inout State) {
        for wd in s.byWd.keys { _ = cshim_inotify_remove(s.fd, wd) }
        s.byWd.removeAll(keepingCapacity: true)
        s.byPath.removeAll(keepingCapacity: true)
    }

    /// Sends one `invalidate` frame whose payload (`length` bytes) is in place in `frame`.
    fileprivate func send(_ result: Int64, _ frame: UnsafeMutableRawBufferPointer, _ length: Int, _ session: Session) {
        let frame = frame.count > 0 ? frame : buffers.frame
        guard let n = try? ResponseEncoder.encodeHeader(op: .invalidate, id: Wire.pushId, result: result,
                                                        payloadLength: length, into: frame) else { return }
        session.push(UnsafeRawBufferPointer(rebasing: frame[0..<n]))
    }

    /// The watcher thread: pushes events as they come, until the session ends.
    private func watcherLoop(_ session: Session) {
        let fd = state.withLock { $0.fd }
        while !session.ended.load(ordering: .acquiring) {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, Self.watcherPollMilliseconds) > 0 { pushPending(session) }
        }
    }
}

/// The `statxWatched` op.
enum HomeWatches {
    /// Implements statx(2) for the client's cache: scalars [dir, flags,
    /// mask, base]; payload: a canonical absolute path. Watches first (see
    /// `Watches`), then stats; result 1 / 2 when the client may cache the
    /// answer (see `Op.statxWatched`). With a handle as `dir`, the path's
    /// first `base` bytes must still be the handle's path, or the name after
    /// them is stat'ed relative to the handle and not watched.
    static func statxWatched(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let flags = c.int(1)
        let path = try c.path()
        let length = strlen(path)
        let bytes = UnsafeRawBufferPointer(start: path, count: length)
        let cacheable = flags & ~(AT_SYMLINK_NOFOLLOW | CSHIM_AT_NO_AUTOMOUNT) == 0 && CacheKey.isCanonical(bytes)
        var dir: CInt?
        var target = path
        var outcome = Watches.Outcome()
        if cacheable { outcome = c.session.watches.watch(bytes, root: c.session.root, session: c.session) }
        if c.r.scalar(0) != Wire.rootDir {
            let base = Int(clamping: c.r.scalar(3))
            guard base >= 1, base < length, bytes[base] == UInt8(ascii: "/") || base == 1 else { throw Errno.invalidArgument }
            let handle = try c.handle(c.r.scalar(0))
            // Checked after the watches: a move of the directory after the
            // check is an event, which the client applies after this reply.
            if !cacheable || !handlePath(c, handle, is: UnsafeRawBufferPointer(rebasing: bytes[0..<base])) {
                outcome = Watches.Outcome()
                dir = handle
                target = path + (bytes[base] == UInt8(ascii: "/") ? base + 1 : base)
            }
        }
        if outcome.objectWatched {
            // Without following first: what the watch is on.
            do { try statxNoFollow(c, path) } catch {
                if error == .noSuchFileOrDirectory { return (2, 0) }
                throw error
            }
            let kind = UInt32(c.out.loadUnaligned(fromByteOffset: 28, as: UInt16.self)) & UInt32(S_IFMT)
            if kind == UInt32(S_IFLNK) {
                // A symlink's target is not watched: answered, not cached.
                if flags & AT_SYMLINK_NOFOLLOW == 0 { _ = try HomeStat.statx(c, dir: nil, path) }
                return (0, Wire.statxSize)
            }
            if kind == UInt32(S_IFDIR) { c.session.watches.noteDirectory(outcome.wd) }
            return (1, Wire.statxSize)
        }
        do {
            _ = try HomeStat.statx(c, dir: dir, target)
        } catch {
            if error == .noSuchFileOrDirectory && outcome.parentWatched { return (2, 0) }
            throw error
        }
        return (0, Wire.statxSize)
    }

    /// statx(2) of `path` (absolute) without following a final symlink, with
    /// the request's mask and AT_NO_AUTOMOUNT.
    private static func statxNoFollow(_ c: HomeCall, _ path: UnsafePointer<CChar>) throws(Errno) {
        let flags = (c.int(1) & CSHIM_AT_NO_AUTOMOUNT) | AT_SYMLINK_NOFOLLOW
        let mask = UInt32(truncatingIfNeeded: c.r.scalar(2)), out = c.out
        _ = try c.withObject(dir: nil, path, follow: false) { (d, p, extra) throws(Errno) in
            try sys { cshim_statx(d, p, extra != 0 ? extra : flags, mask, out.baseAddress) }
        }
    }

    /// True if directory handle `fd` is at `expected` inside the root now.
    private static func handlePath(_ c: HomeCall, _ fd: CInt, is expected: UnsafeRawBufferPointer) -> Bool {
        guard let n = try? c.session.root.pathInRoot(of: fd, into: c.scratch) else { return false }
        return n == expected.count && memcmp(c.scratch.baseAddress!, expected.baseAddress!, n) == 0
    }
}
