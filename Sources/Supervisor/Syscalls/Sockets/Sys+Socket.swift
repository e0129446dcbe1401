import CShim
import Glibc
import SysKit
import Wire

/// Sockets at home: an Internet stream socket is made at home and shows in
/// the tracee as a placeholder (see `SocketState`); its connect runs at
/// home, and from then on its data is pumped (`SocketPump`), so the
/// tracee's read, write, send, recv, poll, select and epoll run natively on
/// its end; a UDP socket's data goes through the supervisor (`Datagrams`).
/// Unix sockets move home when their address is at home (`UnixSockets`);
/// netlink and packet sockets and, with `--local-net`, every Internet
/// socket stay local.
enum Sockets {
    /// Implements socket(2).
    static func socket(_ c: borrowing Call) throws(Failure) -> Reply {
        let domain = c.int(0), type = c.int(1), proto = c.int(2)
        let nonBlock = Int32(SOCK_NONBLOCK.rawValue), closeOnExec = Int32(SOCK_CLOEXEC.rawValue)
        let kind = type & 0xf, datagram = kind == Int32(SOCK_DGRAM.rawValue)
        if domain == AF_UNIX && datagram { return try UnixSockets.datagramSocket(c, type: type, proto: proto) }
        guard !c.sup.options.localNetwork, domain == AF_INET || domain == AF_INET6,
              kind == Int32(SOCK_STREAM.rawValue) || datagram else { return .continueSyscall }
        let r = try c.home(.socket, Scalars(Int64(domain), Int64(type & ~(nonBlock | closeOnExec)), Int64(proto)))
        let end: CInt, state: SocketState
        do {
            (end, state) = try c.sup.watchers.makeSocketPlaceholder(
                handle: r.result, nonBlocking: type & nonBlock != 0, datagram: datagram,
                kind: (domain, type & ~(nonBlock | closeOnExec), proto))
        } catch {
            c.sup.link.release(handle: r.result)
            throw .errno(error)
        }
        defer { Glibc.close(end) }
        if datagram {
            // In the range the filter watches, for its sends and receives (see `Datagrams`).
            guard SocketListen.start(state) else { throw .errno(Errno(rawValue: ENOBUFS)) }
            return try c.place(end, closeOnExec: type & closeOnExec != 0, minimum: 0)
        }
        // The lowest free number, as socket(2) gives (select(2) takes no
        // more than 1023): its data calls run natively, so it needs no
        // number the filter watches.
        let fd = try local { () throws(Errno) in
            try c.sup.listener.installAndRespond(id: c.id, source: end, closeOnExec: type & closeOnExec != 0)
        }
        return .answered(Int64(fd))
    }

    /// Implements connect(2). A blocking connect waits for home's outcome
    /// (a signal cancels it: EINTR); a non-blocking one is EINPROGRESS, and
    /// the socket turns writable when home has connected, or writable and at
    /// end of file with `SO_ERROR` set when it failed.
    static func connect(_ c: borrowing Call) throws(Failure) -> Reply {
        guard let (p, s, nonBlocking) = try socket(c, fd: c.fd(0)) else { return try UnixSockets.moveHome(c, connect: true) }
        if s.kind.domain == AF_UNIX { return try UnixSockets.atHome(c, s, nonBlocking: nonBlocking, connect: true) }
        let length = try addressLength(c.raw(2))
        if s.current == .fresh || s.datagram {
            let address = c.worker.slot.payload(for: .connect)
            try readAddress(c, length, at: c.address(1), into: address)
            if c.sup.options.network.decide(sockaddr: UnsafeRawBufferPointer(rebasing: address[0..<length])) == .local {
                return try goLocal(c, s, nonBlocking: nonBlocking)
            }
        }
        if s.datagram {
            // Sets (or, with AF_UNSPEC, clears) the default peer: at once.
            _ = try c.home(.connect, Scalars(p.handle), payloadLength: length)
            return .value(0)
        }
        switch s.current {
        case .connecting: throw .errno(Errno(rawValue: EALREADY))
        case .connected, .listening: throw .errno(Errno(rawValue: EISCONN))
        case .failed: throw .errno(Errno(rawValue: s.failure.load(ordering: .acquiring)))
        case .fresh: break
        }
        if nonBlocking {
            guard let slot = c.sup.link.takeSlot() else { throw .errno(Errno(rawValue: ENOBUFS)) }
            do { try readAddress(c, length, at: c.address(1), into: slot.payload(for: .connect)) } catch {
                c.sup.link.returnSlot(slot)
                throw error
            }
            guard s.beginConnect() else {
                c.sup.link.returnSlot(slot)
                throw .errno(Errno(rawValue: EALREADY))
            }
            guard SocketPump.start(s, connect: slot, connectLength: length) else {
                s.connectFailed(ENOBUFS, pending: false)
                throw .errno(Errno(rawValue: ENOBUFS))
            }
            throw .errno(Errno(rawValue: EINPROGRESS))
        }
        try readAddress(c, length, at: c.address(1), into: c.worker.slot.payload(for: .connect))
        guard s.beginConnect() else { throw .errno(Errno(rawValue: EALREADY)) }
        do { _ = try c.home(.connect, Scalars(p.handle), payloadLength: length) } catch {
            if case .errno(let e) = error, e != .interrupted {
                s.connectFailed(e.rawValue, pending: false)
            } else {
                // Interrupted: the kernel goes on connecting at home; the
                // next connect asks home again (EALREADY, EISCONN).
                s.phase.store(SocketState.Phase.fresh.rawValue, ordering: .releasing)
            }
            throw error
        }
        s.connected()
        enlargeTraceeEnd(c)
        guard SocketPump.start(s) else { throw .errno(Errno(rawValue: ENOBUFS)) }
        return .value(0)
    }

    /// A connected socket's end in the tracee (argument 0) gets the pair's
    /// full send buffer (see `Watchers.enlarge`); a non-blocking connect's
    /// keeps the default.
    static func enlargeTraceeEnd(_ c: borrowing Call) {
        guard let t = try? c.thread(), let copy = try? PidFD.getFD(t.pidfd, c.fd(0)) else { return }
        Watchers.enlarge(copy)
        Glibc.close(copy)
    }

    /// Implements getsockopt(2). `SO_ERROR` of a connect still under way is
    /// 0, of one that failed its errno (once); every other option is home's.
    static func getsockopt(_ c: borrowing Call) throws(Failure) -> Reply {
        guard let (p, s, _) = try socket(c, fd: c.fd(0)) else { return .continueSyscall }
        let level = c.int(1), name = c.int(2)
        var length = try readLength(c, at: c.address(4))
        if level == SOL_SOCKET && name == SO_ERROR {
            let pending = s.pendingError.exchange(0, ordering: .acquiringAndReleasing)
            if pending != 0 || s.current == .connecting {
                var value = pending
                length = min(length, 4)
                try local { () throws(Errno) in
                    try c.memory.write(c.address(3), from: &value, count: Int(length))
                    try c.memory.write(c.address(4), from: &length, count: 4)
                }
                return .value(0)
            }
        }
        let r = try c.home(.getsockopt, Scalars(p.handle, Int64(level), Int64(name), Int64(min(Int(length), Wire.maxSockopt))))
        var got = Int32(r.result)
        try local { () throws(Errno) in
            try c.memory.write(c.address(3), from: r.payload.baseAddress!, count: r.payload.count)
            try c.memory.write(c.address(4), from: &got, count: 4)
        }
        return .value(0)
    }

    /// Implements setsockopt(2). Receive and send timeouts and the receive
    /// low-water mark govern the tracee's own reads and writes: they are set
    /// on its end; every other option is set at home.
    static func setsockopt(_ c: borrowing Call) throws(Failure) -> Reply {
        guard let (p, s, _) = try socket(c, fd: c.fd(0)) else { return .continueSyscall }
        let level = c.int(1), name = c.int(2)
        if level == SOL_SOCKET && governsTraceeEnd(name) { return .continueSyscall }
        let length = c.int(4)
        guard length >= 0 else { throw .errno(.invalidArgument) }
        guard Int(length) <= Wire.maxSockopt else { throw .errno(.invalidArgument) }
        let payload = c.worker.slot.payload(for: .setsockopt)
        try local { () throws(Errno) in try c.memory.readExactly(c.address(3), into: payload.baseAddress!, count: Int(length)) }
        var value = (UInt64(0), UInt64(0))
        let kept = Int(length) <= MemoryLayout.size(ofValue: value)
        if kept { withUnsafeMutableBytes(of: &value) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: payload[0..<Int(length)])) } }
        _ = try c.home(.setsockopt, Scalars(p.handle, Int64(level), Int64(name)), payloadLength: Int(length))
        if kept { s.options.withLock { $0.keep(level: level, name: name, value: value, length: Int(length)) } }
        return .value(0)
    }

    /// Implements getsockname(2).
    static func getsockname(_ c: borrowing Call) throws(Failure) -> Reply { try name(c, peer: false) }

    /// Implements getpeername(2).
    static func getpeername(_ c: borrowing Call) throws(Failure) -> Reply { try name(c, peer: true) }

    private static func name(_ c: borrowing Call, peer: Bool) throws(Failure) -> Reply {
        guard let (p, s, _) = try socket(c, fd: c.fd(0)) else { return .continueSyscall }
        let room = try readLength(c, at: c.address(2))
        if !peer, let kept = s.boundName {
            var full = Int32(kept.count)
            let n = min(Int(room), kept.count)
            try local { () throws(Errno) in
                if n > 0 { try c.memory.write(c.address(1), from: kept, count: n) }
                try c.memory.write(c.address(2), from: &full, count: 4)
            }
            return .value(0)
        }
        let r = try c.home(.sockname, Scalars(p.handle, peer ? 1 : 0, Int64(room)))
        var full = Int32(r.result)
        try local { () throws(Errno) in
            if r.payload.count > 0 { try c.memory.write(c.address(1), from: r.payload.baseAddress!, count: r.payload.count) }
            try c.memory.write(c.address(2), from: &full, count: 4)
        }
        return .value(0)
    }

    // MARK: Shared

    /// Puts a new local socket of `s`'s kind at the tracee's descriptor
    /// (argument 0) in place of the home one, and lets the call run on it
    /// natively: its destination is local by a `--local-net` rule. The
    /// options set at home follow (`SavedOptions`); copies of the
    /// descriptor made before keep the home socket.
    static func goLocal(_ c: borrowing Call, _ s: SocketState, nonBlocking: Bool) throws(Failure) -> Reply {
        guard s.kind.domain != 0 else { throw .errno(Errno(rawValue: EISCONN)) }
        let flags = Int32(SOCK_CLOEXEC.rawValue) | (nonBlocking ? Int32(SOCK_NONBLOCK.rawValue) : 0)
        let fresh = try local { () throws(Errno) in try sys { Glibc.socket(s.kind.domain, s.kind.type | flags, s.kind.proto) } }
        defer { Glibc.close(fresh) }
        s.options.withLock { $0.replay(on: fresh) }
        let closeOnExec = try Memory.isCloseOnExec(c, c.fd(0))
        _ = try local { () throws(Errno) in
            try c.sup.listener.install(id: c.id, source: fresh, closeOnExec: closeOnExec, at: c.fd(0))
        }
        return .continueSyscall
    }

    /// SO_RCVLOWAT, SO_RCVTIMEO and SO_SNDTIMEO (old and new forms).
    private static func governsTraceeEnd(_ name: Int32) -> Bool {
        switch name {
        case SO_RCVLOWAT, SO_RCVTIMEO, SO_SNDTIMEO, 66, 67: return true
        default: return false
        }
    }

    /// The socket placeholder behind the tracee's `fd` (any number: a
    /// socket's aliases below the placeholder range are its own), its
    /// state, and whether the tracee's descriptor is non-blocking; nil for
    /// anything else.
    static func socket(_ c: borrowing Call, fd: Int32) throws(Failure) -> (Placeholder, SocketState, Bool)? {
        if fd < 0 { return nil }
        let t = try c.thread()
        let copy: CInt
        do { copy = try PidFD.getFD(t.pidfd, fd) } catch {
            if error == .badFileDescriptor { return nil }
            throw .errno(.badFileDescriptor)
        }
        defer { Glibc.close(copy) }
        guard let info = try? FD.inode(copy), info.isSocket, let p = c.sup.watchers.lookup(inode: info.ino),
              let s = p.socket else { return nil }
        let flags = cshim_fcntl_int(copy, F_GETFL, 0)
        return (p, s, flags >= 0 && flags & O_NONBLOCK != 0)
    }

    /// A sockaddr length argument: the kernel's EINVAL beyond a
    /// `sockaddr_storage` (or negative).
    static func addressLength(_ raw: UInt64) throws(Failure) -> Int {
        let n = Int32(truncatingIfNeeded: raw)
        guard n >= 0, Int(n) <= Wire.maxSockaddr else { throw .errno(.invalidArgument) }
        return Int(n)
    }

    /// Copies the tracee's address at `address` into `payload`.
    static func readAddress(_ c: borrowing Call, _ length: Int, at address: UInt64,
                            into payload: UnsafeMutableRawBufferPointer) throws(Failure) {
        guard length >= 2 else { throw .errno(.invalidArgument) }
        try local { () throws(Errno) in try c.memory.readExactly(address, into: payload.baseAddress!, count: length) }
    }

    /// The int a length argument points to: EFAULT if unreadable, EINVAL if negative.
    static func readLength(_ c: borrowing Call, at address: UInt64) throws(Failure) -> Int32 {
        var n: Int32 = 0
        try local { () throws(Errno) in try c.memory.readExactly(address, into: &n, count: 4) }
        guard n >= 0 else { throw .errno(.invalidArgument) }
        return n
    }
}

extension Watchers {
    /// Makes the pair for a new socket placeholder of home `handle` and
    /// returns the tracee's end, unwritable until its connect succeeds (see
    /// `SocketState`), or at once if `connected` (an accepted connection);
    /// our end is watched for the tracee's last close. A seqpacket socket's
    /// pair is a seqpacket pair (`pairType`), so its messages keep their
    /// boundaries natively and the pump moves them one by one.
    func makeSocketPlaceholder(handle: Int64, nonBlocking: Bool, connected: Bool = false, datagram: Bool = false,
                               kind: (domain: Int32, type: Int32, proto: Int32) = (0, 0, 0),
                               pairType: Int32 = Int32(SOCK_STREAM.rawValue),
                               device: DeviceLine? = nil) throws(Errno) -> (CInt, SocketState) {
        let (traceeEnd, ours) = try FD.socketPair(type: pairType)
        var placed = false
        do {
            // A Unix stream's sender is bounded by its own send buffer: ours
            // is enlarged now, the tracee's once connected (until then it
            // stays full: a larger one would take longer to fill and drain).
            // A seqpacket end keeps the default: its send buffer bounds the
            // largest message (EMSGSIZE), as home's does. It is never
            // spliced either (a splice would join its messages), so only a
            // stream end refuses descriptors (see `UpSplice`).
            let stream = pairType == Int32(SOCK_STREAM.rawValue)
            if !datagram { Self.enlarge(ours) }
            if stream { UpSplice.refuseDescriptors(ours) }
            if connected && stream { Self.enlarge(traceeEnd) }
            let (ino, _) = try FD.inode(traceeEnd)
            try FD.setNonBlocking(traceeEnd)
            var filler = 0
            while !connected && !datagram {
                let n = send(traceeEnd, Self.zeros.baseAddress, Self.zeros.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
                if n <= 0 { break }
                filler += n
            }
            if !nonBlocking { try FD.setBlocking(traceeEnd) }
            let state = SocketState(handle: handle, link: link, end: ours, filler: filler, datagram: datagram, kind: kind,
                                    device: device)
            if connected { state.phase.store(SocketState.Phase.connected.rawValue, ordering: .relaxed) }
            let p = Placeholder(handle: handle, inode: ino, supervisorEnd: ours, link: link, accessMode: O_RDWR, socket: state)
            placed = true
            if device != nil { hadDevices.store(true, ordering: .releasing) }
            placeholders.withLock { $0[ino] = p }
            // Only the hang-up of the last close: a half-close is the pump's.
            try sys { cshim_epoll_add(epoll, ours, CSHIM_EPOLLHUP, ino) }
            return (traceeEnd, state)
        } catch {
            Glibc.close(traceeEnd)
            if !placed { Glibc.close(ours) }
            throw error
        }
    }

    /// The pair's send buffers, each way.
    static let pairBuffer: CInt = 1 << 20

    /// Sets `fd`'s send buffer to `pairBuffer` (past wmem_max when allowed).
    static func enlarge(_ fd: CInt) {
        var size = pairBuffer
        if setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, 4) != 0 { _ = setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, 4) }
    }

    /// What fills a new socket's send buffer (read by every socket(2), never written).
    nonisolated(unsafe) static let zeros: UnsafeRawBufferPointer = {
        let b = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 16)
        b.initializeMemory(as: UInt8.self, repeating: 0)
        return UnsafeRawBufferPointer(b)
    }()
}

/// The options a tracee set on a socket at home, for the local socket that
/// may take its place (`Sockets.goLocal`): up to eight, of at most 16 bytes
/// each (flags, sizes, `SO_LINGER`, `IP_TTL` …); a later set of the same
/// option replaces its value. Kept inline: setting one allocates nothing.
struct SavedOptions: Sendable {
    struct Entry: Sendable {
        var level: Int32 = 0, name: Int32 = 0, length = 0
        var value = (UInt64(0), UInt64(0))
    }

    private var entries = InlineArray<8, Entry>(repeating: Entry())
    private var count = 0

    /// Keeps one option (a ninth distinct one is not kept).
    mutating func keep(level: Int32, name: Int32, value: (UInt64, UInt64), length: Int) {
        var i = 0
        while i < count && !(entries[i].level == level && entries[i].name == name) { i += 1 }
        guard i < entries.count else { return }
        entries[i] = Entry(level: level, name: name, length: length, value: value)
        if i == count { count += 1 }
    }

    /// Sets every kept option on `fd`, in the order first set (one the
    /// local kernel refuses is left unset, as home's answer already went).
    func replay(on fd: CInt) {
        for i in 0..<count {
            var v = entries[i].value
            _ = Glibc.setsockopt(fd, entries[i].level, entries[i].name, &v, socklen_t(entries[i].length))
        }
    }
}
