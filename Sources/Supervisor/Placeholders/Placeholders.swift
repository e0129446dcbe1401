import CShim
import Glibc
import Synchronization
import SysKit

/// A forwarded open file description as the tracee sees it: one end of a
/// socketpair installed in the tracee (so dup, dup2, fork, SCM_RIGHTS,
/// CLOEXEC and close are the kernel's own), identified by that end's inode.
/// The supervisor keeps the other end; when it hangs up, the tracee's last
/// reference is gone and the home handle is closed.
final class Placeholder: Sendable {
    /// The deputy's handle of the open file.
    let handle: Int64
    /// Inode of the tracee's end: the key the tracee's fd maps back to.
    let inode: UInt64
    /// Our end of the pair, watched for hang-up.
    let supervisorEnd: CInt
    let link: HomeLink
    /// O_RDONLY, O_WRONLY or O_RDWR, as opened.
    let accessMode: Int32
    /// The normalized absolute name it was opened by (routing of names
    /// relative to it); nil for stream views, which use their owner's.
    let path: [UInt8]?
    /// For a stream view (see `StreamPump`): the placeholder whose home
    /// handle it shares and keeps open.
    let owner: Placeholder?
    /// Set for stream views: their data moves through the socket.
    let stream: StreamPump?
    /// Set for a socket at home (see `SocketState`), which also decides
    /// when its handle is closed.
    let socket: SocketState?
    /// On an owner: its stream views. The lock also serializes the pump
    /// with calls that depend on the file's offset.
    let views = Mutex<[StreamView]>([])
    let hasViews = Atomic<Bool>(false)
    /// Where this open file description stands with the listing or the
    /// small-read cache.
    let reads: Mutex<ReadCursor>
    /// A read-only regular file whose cursor may still be fresh, filling or
    /// served from the small-read cache: whatever uses the home offset
    /// otherwise first settles it (`Call.settleReadCache`). False for good
    /// once it went home.
    let readCacheLive: Atomic<Bool>

    /// `readOnly`: opened for reading only (not O_PATH), so its reads may be
    /// kept in, or served from, the small-read cache.
    init(handle: Int64, inode: UInt64, supervisorEnd: CInt, link: HomeLink, accessMode: Int32, path: [UInt8]? = nil,
         readOnly: Bool = false, owner: Placeholder? = nil, stream: StreamPump? = nil, socket: SocketState? = nil) {
        self.socket = socket
        self.path = path
        self.handle = handle
        self.inode = inode
        self.supervisorEnd = supervisorEnd
        self.link = link
        self.accessMode = accessMode
        self.owner = owner
        self.stream = stream
        let cursor = ReadCursor(path: owner == nil ? path : nil, attributes: link.attributes)
        readCacheLive = Atomic(cursor.cacheable && readOnly && link.attributes.contents.enabled)
        reads = Mutex(cursor)
    }

    deinit {
        if let socket {
            socket.placeholderGone()
        } else if owner == nil {
            link.release(handle: handle)
        }
        Glibc.close(supervisorEnd)
    }
}

/// Where a stream view was installed: (process, descriptor number), to
/// find the tracee's end of it again and take back unread read-ahead.
struct StreamView: Sendable {
    let inode: UInt64
    let tgid: pid_t
    let fd: Int32
}

/// A working directory at home: a deputy handle and the path it had, inside
/// the export root, when the tracee moved there. Shared by processes that
/// inherited it; closed at home when the last one leaves it.
final class RemoteDir: Sendable {
    let handle: Int64
    let path: [UInt8]
    let link: HomeLink

    init(handle: Int64, path: [UInt8], link: HomeLink) {
        self.handle = handle
        self.path = path
        self.link = link
    }

    deinit { link.release(handle: handle) }
}

/// Placeholders by inode, and the epoll set that watches for their hang-up
/// and for tracee threads' exit.
final class Watchers: Sendable {
    let epoll: CInt
    let placeholders = Mutex<[UInt64: Placeholder]>([:])
    let link: HomeLink
    /// The home slot the stream pump uses (only on the watcher thread).
    let pumpSlot: HomeLink.Slot
    /// Set (for good) once a device at home has had a placeholder: until
    /// then an ioctl cannot concern one (`Devices.ioctl`).
    let hadDevices = Atomic<Bool>(false)
    /// Devices at home whose pumps run (`DevicePump`), for the last flush.
    let devices = Mutex<[ObjectIdentifier: SocketState]>([:])

    /// epoll data tag for a thread's pidfd (the rest is the tid).
    static let threadTag: UInt64 = 1 << 63

    init(link: HomeLink, pumpSlot: HomeLink.Slot) throws(Errno) {
        self.link = link
        self.pumpSlot = pumpSlot
        epoll = try sys { cshim_epoll_create() }
    }

    func lookup(inode: UInt64) -> Placeholder? {
        placeholders.withLock { $0[inode] }
    }

    /// Makes a socketpair for a new placeholder of `handle`; returns the
    /// tracee's end (to install, then close) and registers the other. With
    /// `streamOf`, the new placeholder is a stream view of that one.
    func makePlaceholder(handle: Int64, accessMode: Int32, path: [UInt8]? = nil, readOnly: Bool = false,
                         streamOf owner: Placeholder? = nil) throws(Errno) -> CInt {
        let (traceeEnd, ours) = try FD.socketPair()
        do {
            let (ino, _) = try FD.inode(traceeEnd)
            var events = CSHIM_EPOLLRDHUP | CSHIM_EPOLLHUP
            var stream: StreamPump?
            if owner != nil {
                try FD.setNonBlocking(ours)
                stream = StreamPump(accessMode: accessMode)
                // Edge-triggered: each wake-up drains what the tracee wrote and
                // refills what it read.
                events |= CSHIM_EPOLLIN | CSHIM_EPOLLOUT | CSHIM_EPOLLET
                if !stream!.readable { shutdown(ours, Int32(SHUT_WR)) }   // reads see end of file
            }
            let p = Placeholder(handle: handle, inode: ino, supervisorEnd: ours, link: link, accessMode: accessMode,
                                path: path, readOnly: readOnly, owner: owner, stream: stream)
            placeholders.withLock { $0[ino] = p }
            try sys { cshim_epoll_add(epoll, ours, events, ino) }
            return traceeEnd
        } catch {
            Glibc.close(traceeEnd)
            throw error
        }
    }

    /// Sends home what the tracee wrote through stream views and to devices
    /// and the pumps have not moved yet (when the program has exited), using `slot`.
    func flushStreams(slot: HomeLink.Slot) {
        for s in devices.withLock({ Array($0.values) }) { s.device?.flush(s, slot) }
        let all = placeholders.withLock { Array($0.values) }
        for p in all {
            guard let stream = p.stream, let owner = p.owner else { continue }
            owner.views.withLock { _ in _ = stream.drainWrites(p, slot) }
        }
    }

    private func forget(_ inode: UInt64) {
        let p = placeholders.withLock { $0.removeValue(forKey: inode) }
        if let p { _ = cshim_epoll_del(epoll, p.supervisorEnd) }
    }

    func watchThread(tid: pid_t, pidfd: CInt) {
        _ = cshim_epoll_add(epoll, pidfd, CSHIM_EPOLLIN, Self.threadTag | UInt64(UInt32(bitPattern: tid)))
    }

    /// Runs forever on its own thread: releases placeholders whose tracee
    /// ends are all closed, and forgets threads that exited.
    func run(onThreadExit: @Sendable (pid_t) -> Void) {
        var tags = [UInt64](repeating: 0, count: 64)
        var events = [UInt32](repeating: 0, count: 64)
        while true {
            let n = cshim_epoll_wait(epoll, &tags, &events, 64, -1)
            if n < 0 { if Glibc.errno == EINTR { continue } else { return } }
            for i in 0..<Int(n) {
                let data = tags[i]
                if data & Self.threadTag != 0 {
                    onThreadExit(pid_t(bitPattern: UInt32(truncatingIfNeeded: data)))
                } else {
                    let hangUp = events[i] & (CSHIM_EPOLLRDHUP | CSHIM_EPOLLHUP) != 0
                    if let p = lookup(inode: data), let stream = p.stream {
                        // Data first: what the tracee wrote before it closed still goes home.
                        if !stream.pump(p, events: events[i], slot: pumpSlot) || hangUp { forget(data) }
                    } else if hangUp {
                        forget(data)
                    }
                }
            }
        }
    }
}
