import CShim
import Glibc
import SysKit
import Wire

/// Unix sockets at home. socket(2) cannot know where a Unix socket's
/// address will be, so it is made on the target; a `bind` or `connect` to
/// a path the policy forwards (resolved from the tracee's working
/// directory, which may be at home), or to an abstract name while the
/// network is at home, moves it home first: a home socket of the same kind
/// takes its descriptor number (as `Sockets.goLocal` does the other way)
/// and the call runs there, so the socket file is made at home and a
/// home-only server is reached. A stream socket is then a pumped
/// placeholder as an Internet stream is; a seqpacket socket too, over a
/// seqpacket pair that keeps its messages whole; a datagram socket is a
/// datagram placeholder as a UDP socket is (`Datagrams`), and a `sendto`
/// or `sendmsg` to an address at home moves it as well. Only a socket
/// still unnamed and unconnected on the target moves (a socketpair end, or
/// one bound to a local name, stays).
enum UnixSockets {
    /// `sizeof(struct sockaddr_un)`: a longer address is the kernel's EINVAL.
    static let maxAddress = 110

    /// Where a Unix address goes.
    enum Target {
        /// Stays on the target: the kernel runs the call.
        case local
        /// An abstract name, in the home's network namespace, or an address
        /// of another family on a datagram socket (home's kernel answers
        /// it): the address as given.
        case abstract
        /// A path at home, relative to `dir`; `length` bytes (NUL included)
        /// at `pathScratch` in the worker's scratch (a request made before
        /// the bind or connect, the socket's, reuses the slot's frame).
        case path(dir: Int64, keep: AnyObject?, length: Int)
    }

    /// The type of a placeholder's pair for a socket of `type`: seqpacket
    /// for seqpacket (its boundaries kept natively), stream otherwise.
    static func pairType(_ type: Int32) -> Int32 {
        type == Int32(SOCK_SEQPACKET.rawValue) ? type : Int32(SOCK_STREAM.rawValue)
    }

    /// socket(2) of a Unix datagram socket: made on the target like every
    /// Unix socket (its address decides later), but placed in the range
    /// the filter watches, so that a send to an address at home is seen
    /// and can move it home, where its data calls must be watched too.
    static func datagramSocket(_ c: borrowing Call, type: Int32, proto: Int32) throws(Failure) -> Reply {
        let closeOnExec = Int32(SOCK_CLOEXEC.rawValue)
        let fd = try local { () throws(Errno) in try sys { Glibc.socket(AF_UNIX, type | closeOnExec, proto) } }
        defer { Glibc.close(fd) }
        return try c.place(fd, closeOnExec: type & closeOnExec != 0, minimum: c.sup.placeholderBase)
    }

    /// bind(2) or connect(2) on a socket of the target: moves it home if it
    /// is a Unix socket whose address is at home (see above).
    static func moveHome(_ c: borrowing Call, connect: Bool) throws(Failure) -> Reply {
        guard let address = try homeCandidate(c, at: c.address(1), length: c.raw(2)),
              let (state, where_) = try move(c, address, send: false) else { return .continueSyscall }
        return try perform(c, state, address, where_, connect: connect)
    }

    /// sendto(2), sendmsg(2) or sendmmsg(2) to the address at `name`
    /// (`length` bytes) on a socket of the target: moves it home if it is a
    /// Unix datagram socket and the address is at home. True if it moved:
    /// the caller runs its call again, on the placeholder.
    static func moveHomeToSend(_ c: borrowing Call, name: UInt64, length: UInt64) throws(Failure) -> Bool {
        guard name != 0, let address = try homeCandidate(c, at: name, length: length) else { return false }
        return try move(c, address, send: true) != nil
    }

    /// The tracee's AF_UNIX address at `at` in the worker's scratch; nil
    /// for a bad length, an unreadable address or another family, which
    /// are the kernel's to answer, on the target.
    private static func homeCandidate(_ c: borrowing Call, at: UInt64, length raw: UInt64) throws(Failure) -> UnsafeMutableRawBufferPointer? {
        let length = Int(Int32(truncatingIfNeeded: raw))
        guard length > 2, length <= maxAddress else { return nil }
        var family: UInt16 = 0
        guard (try? c.memory.readExactly(at, into: &family, count: 2)) != nil, family == UInt16(AF_UNIX) else { return nil }
        return try readAddress(c, length, at: at)
    }

    /// Moves the target's socket at the tracee's descriptor (argument 0)
    /// home, if it may move (see above; a send moves only a datagram
    /// socket, which must sit in the watched range) and `address` is at
    /// home: a home socket of its kind takes its number. Nil: it stays.
    private static func move(_ c: borrowing Call, _ address: UnsafeMutableRawBufferPointer,
                             send: Bool) throws(Failure) -> (SocketState, Target)? {
        let t = try c.thread()
        guard let copy = try? PidFD.getFD(t.pidfd, c.fd(0)) else { return nil }
        defer { Glibc.close(copy) }
        var domain: CInt = 0, type: CInt = 0, proto: CInt = 0
        var n = socklen_t(4)
        guard getsockopt(copy, SOL_SOCKET, SO_DOMAIN, &domain, &n) == 0, domain == AF_UNIX,
              getsockopt(copy, SOL_SOCKET, SO_TYPE, &type, &n) == 0,
              getsockopt(copy, SOL_SOCKET, SO_PROTOCOL, &proto, &n) == 0 else { return nil }
        let datagram = type == Int32(SOCK_DGRAM.rawValue)
        if datagram {
            guard c.fd(0) >= c.sup.placeholderBase else { return nil }
        } else {
            guard !send, type == Int32(SOCK_STREAM.rawValue) || type == Int32(SOCK_SEQPACKET.rawValue) else { return nil }
        }
        guard isUnnamedAndUnconnected(copy) else { return nil }
        let where_ = try target(c, address)
        if case .local = where_ { return nil }
        let flags = cshim_fcntl_int(copy, F_GETFL, 0)
        let nonBlocking = flags >= 0 && flags & O_NONBLOCK != 0
        let closeOnExec = try Memory.isCloseOnExec(c, c.fd(0))
        let r = try c.home(.socket, Scalars(Int64(AF_UNIX), Int64(type), Int64(proto)))
        let end: CInt, state: SocketState
        do {
            (end, state) = try c.sup.watchers.makeSocketPlaceholder(handle: r.result, nonBlocking: nonBlocking, datagram: datagram,
                                                                   kind: (AF_UNIX, type, proto), pairType: pairType(type))
        } catch {
            c.sup.link.release(handle: r.result)
            throw .errno(error)
        }
        defer { Glibc.close(end) }
        // Readiness to receive, as a UDP socket's (see `Datagrams`).
        if datagram { guard SocketListen.start(state) else { throw .errno(Errno(rawValue: ENOBUFS)) } }
        _ = try local { () throws(Errno) in
            try c.sup.listener.install(id: c.id, source: end, closeOnExec: closeOnExec, at: c.fd(0))
        }
        return (state, where_)
    }

    /// Whether the target's socket `fd` has no name and no peer yet.
    private static func isUnnamedAndUnconnected(_ fd: CInt) -> Bool {
        var address = sockaddr_un()
        var length = socklen_t(MemoryLayout<sockaddr_un>.size)
        let named = withUnsafeMutablePointer(to: &address) { p in
            p.withMemoryRebound(to: Glibc.sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) == 0 && length > 2 }
        }
        length = socklen_t(MemoryLayout<sockaddr_un>.size)
        let connected = withUnsafeMutablePointer(to: &address) { p in
            p.withMemoryRebound(to: Glibc.sockaddr.self, capacity: 1) { getpeername(fd, $0, &length) == 0 }
        }
        return !named && !connected
    }

    /// bind(2) or connect(2) with a Unix address on a socket already at home.
    static func atHome(_ c: borrowing Call, _ s: SocketState, nonBlocking: Bool, connect: Bool) throws(Failure) -> Reply {
        let length = try Sockets.addressLength(c.raw(2))
        guard length >= 2, length <= maxAddress else { throw .errno(.invalidArgument) }
        let address = try readAddress(c, length, at: c.address(1))
        if address.load(as: UInt16.self) != UInt16(AF_UNIX) {
            // A datagram's AF_UNSPEC connect forgets its peer: home's kernel
            // answers that and any other family; a stream's is EINVAL.
            guard s.datagram else { throw .errno(.invalidArgument) }
            return try perform(c, s, address, .abstract, connect: connect)
        }
        let where_ = try target(c, address)
        if case .local = where_ {
            // Only a socket that is nothing yet can become a local one.
            guard s.datagram || s.current == .fresh else {
                throw .errno(connect && s.current == .connected ? Errno(rawValue: EISCONN) : .invalidArgument)
            }
            return try Sockets.goLocal(c, s, nonBlocking: nonBlocking)
        }
        return try perform(c, s, address, where_, connect: connect)
    }

    /// The tracee's address at `at`, `length` bytes, in the worker's scratch.
    static func readAddress(_ c: borrowing Call, _ length: Int, at: UInt64) throws(Failure) -> UnsafeMutableRawBufferPointer {
        let address = UnsafeMutableRawBufferPointer(rebasing: c.worker.scratch[0..<length])
        try local { () throws(Errno) in try c.memory.readExactly(at, into: address.baseAddress!, count: length) }
        return address
    }

    /// Where a routed path waits in the worker's scratch (after the address).
    static let pathScratch = 256

    /// Where `address` (family AF_UNIX) goes: an abstract name, or none
    /// (a bind's autobind to one, or the kernel's EINVAL), by the network
    /// rule; a path by the binding policy. The path is copied,
    /// NUL-terminated, to `pathScratch` and routed there.
    static func target(_ c: borrowing Call, _ address: UnsafeMutableRawBufferPointer) throws(Failure) -> Target {
        if address.count == 2 || address[2] == 0 {
            return c.sup.options.network.decide(sockaddr: UnsafeRawBufferPointer(address)) == .local ? .local : .abstract
        }
        let buf = UnsafeMutableRawBufferPointer(rebasing: c.worker.scratch[pathScratch...])
        var n = 0
        while 2 + n < address.count && address[2 + n] != 0 { n += 1 }
        buf.baseAddress!.copyMemory(from: address.baseAddress! + 2, byteCount: n)
        buf[n] = 0
        let (route, length) = try c.routeName(in: buf, length: n, dirfd: AT_FDCWD)
        switch route {
        case .forward(let dir, let keep): return .path(dir: dir, keep: keep, length: length)
        // A relative name from a directory at home into a local tree: the
        // target's kernel would resolve it from its own directory; stays local.
        case .local, .emulated: return .local
        }
    }

    /// Binds or connects home socket `s` to `address` (already routed). A
    /// datagram socket's connect only sets its peer (again and again, as
    /// the kernel's); a stream's or seqpacket's starts its pump.
    private static func perform(_ c: borrowing Call, _ s: SocketState, _ address: UnsafeMutableRawBufferPointer,
                                _ where_: Target, connect: Bool) throws(Failure) -> Reply {
        let stream = connect && !s.datagram
        if stream {
            switch s.current {
            case .connecting: throw .errno(Errno(rawValue: EALREADY))
            case .connected: throw .errno(Errno(rawValue: EISCONN))
            case .listening: throw .errno(.invalidArgument)
            case .failed: throw .errno(Errno(rawValue: s.failure.load(ordering: .acquiring)))
            case .fresh: break
            }
            guard s.beginConnect() else { throw .errno(Errno(rawValue: EALREADY)) }
        }
        do {
            switch where_ {
            case .local: return .continueSyscall
            case .abstract:
                let payload = c.worker.slot.payload(for: .bind)
                payload.baseAddress!.copyMemory(from: address.baseAddress!, byteCount: address.count)
                _ = try c.home(connect ? .connect : .bind, Scalars(s.handle), payloadLength: address.count)
            case .path(let dir, let keep, let length):
                defer { withExtendedLifetime(keep) {} }
                c.worker.slot.payload(for: .bindPath).baseAddress!.copyMemory(from: c.worker.scratch.baseAddress! + pathScratch,
                                                                              byteCount: length)
                _ = try c.home(connect ? .connectPath : .bindPath, Scalars(s.handle, dir), payloadLength: length)
            }
        } catch {
            if stream {
                if case .errno(let e) = error, e != .interrupted { s.connectFailed(e.rawValue, pending: false) } else {
                    s.phase.store(SocketState.Phase.fresh.rawValue, ordering: .releasing)
                }
            }
            throw error
        }
        if case .path = where_, !connect {
            // The kernel names a bound socket as it was given (with a NUL).
            var n = 2
            while n < address.count && address[n] != 0 { n += 1 }
            s.remember(UnsafeRawBufferPointer(rebasing: address[0..<n]))
        }
        guard stream else { return .value(0) }
        s.connected()
        if s.kind.type == Int32(SOCK_STREAM.rawValue) { Sockets.enlargeTraceeEnd(c) }
        guard SocketPump.start(s) else { throw .errno(Errno(rawValue: ENOBUFS)) }
        return .value(0)
    }
}

extension SocketState {
    /// Keeps the path a Unix socket was bound to (`sockaddr_un` bytes
    /// without the NUL) as the tracee gave it: home may know it by a
    /// `/proc/self/fd` path. Its peers ask home, which names it as bound.
    func remember(_ name: UnsafeRawBufferPointer) {
        let bytes = Array(name) + [0]
        unixName.withLock { $0 = bytes }
    }

    /// The kept name of a bound Unix socket (`sockaddr_un` bytes with the NUL), if any.
    var boundName: [UInt8]? {
        let bytes = unixName.withLock { $0 }
        return bytes.isEmpty ? nil : bytes
    }
}
