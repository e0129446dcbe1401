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
/// home-only server is reached. The socket is then a pumped placeholder as
/// an Internet stream is. Stream sockets only: datagram and seqpacket Unix
/// sockets keep their boundaries only on the target, and stay there.
enum UnixSockets {
    /// `sizeof(struct sockaddr_un)`: a longer address is the kernel's EINVAL.
    static let maxAddress = 110

    /// Where a Unix address goes.
    enum Target {
        /// Stays on the target: the kernel runs the call.
        case local
        /// An abstract name, in the home's network namespace: the address as given.
        case abstract
        /// A path at home, relative to `dir`; `length` bytes (NUL included)
        /// at `pathScratch` in the worker's scratch (a request made before
        /// the bind or connect, the socket's, reuses the slot's frame).
        case path(dir: Int64, keep: AnyObject?, length: Int)
    }

    /// bind(2) or connect(2) on a socket of the target: moves it home if it
    /// is a Unix stream socket whose address is at home (see above).
    static func moveHome(_ c: borrowing Call, connect: Bool) throws(Failure) -> Reply {
        let length = Int(Int32(truncatingIfNeeded: c.raw(2)))
        // A bad length or address is the kernel's to answer, on the target.
        guard length > 2, length <= maxAddress else { return .continueSyscall }
        var family: UInt16 = 0
        guard (try? c.memory.readExactly(c.address(1), into: &family, count: 2)) != nil,
              family == UInt16(AF_UNIX) else { return .continueSyscall }
        let t = try c.thread()
        guard let copy = try? PidFD.getFD(t.pidfd, c.fd(0)) else { return .continueSyscall }
        defer { Glibc.close(copy) }
        var domain: CInt = 0, type: CInt = 0, proto: CInt = 0
        var n = socklen_t(4)
        guard getsockopt(copy, SOL_SOCKET, SO_DOMAIN, &domain, &n) == 0, domain == AF_UNIX,
              getsockopt(copy, SOL_SOCKET, SO_TYPE, &type, &n) == 0, type == Int32(SOCK_STREAM.rawValue),
              getsockopt(copy, SOL_SOCKET, SO_PROTOCOL, &proto, &n) == 0 else { return .continueSyscall }
        let address = try readAddress(c, length)
        let where_ = try target(c, address)
        if case .local = where_ { return .continueSyscall }
        let flags = cshim_fcntl_int(copy, F_GETFL, 0)
        let nonBlocking = flags >= 0 && flags & O_NONBLOCK != 0
        let closeOnExec = try Memory.isCloseOnExec(c, c.fd(0))
        let r = try c.home(.socket, Scalars(Int64(AF_UNIX), Int64(type), Int64(proto)))
        let end: CInt, state: SocketState
        do {
            (end, state) = try c.sup.watchers.makeSocketPlaceholder(handle: r.result, nonBlocking: nonBlocking,
                                                                   kind: (AF_UNIX, type, proto))
        } catch {
            c.sup.link.release(handle: r.result)
            throw .errno(error)
        }
        defer { Glibc.close(end) }
        _ = try local { () throws(Errno) in
            try c.sup.listener.install(id: c.id, source: end, closeOnExec: closeOnExec, at: c.fd(0))
        }
        return try perform(c, state, address, where_, connect: connect)
    }

    /// bind(2) or connect(2) with a Unix address on a socket already at home.
    static func atHome(_ c: borrowing Call, _ s: SocketState, nonBlocking: Bool, connect: Bool) throws(Failure) -> Reply {
        let length = try Sockets.addressLength(c.raw(2))
        guard length >= 2, length <= maxAddress else { throw .errno(.invalidArgument) }
        let address = try readAddress(c, length)
        let where_ = try target(c, address)
        if case .local = where_ { return try Sockets.goLocal(c, s, nonBlocking: nonBlocking) }
        return try perform(c, s, address, where_, connect: connect)
    }

    /// The tracee's address (argument 1), `length` bytes, in the worker's scratch.
    private static func readAddress(_ c: borrowing Call, _ length: Int) throws(Failure) -> UnsafeMutableRawBufferPointer {
        let address = UnsafeMutableRawBufferPointer(rebasing: c.worker.scratch[0..<length])
        try local { () throws(Errno) in try c.memory.readExactly(c.address(1), into: address.baseAddress!, count: length) }
        return address
    }

    /// Where a routed path waits in the worker's scratch (after the address).
    private static let pathScratch = 256

    /// Where `address` (family AF_UNIX) goes: an abstract name by the
    /// network rule, a path by the binding policy. The path is copied,
    /// NUL-terminated, to `pathScratch` and routed there.
    private static func target(_ c: borrowing Call, _ address: UnsafeMutableRawBufferPointer) throws(Failure) -> Target {
        if address.count == 2 { return .local }   // unnamed: autobind, or the kernel's EINVAL
        if address[2] == 0 {
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

    /// Binds or connects home socket `s` to `address` (already routed).
    private static func perform(_ c: borrowing Call, _ s: SocketState, _ address: UnsafeMutableRawBufferPointer,
                                _ where_: Target, connect: Bool) throws(Failure) -> Reply {
        if connect {
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
            if connect {
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
        guard connect else { return .value(0) }
        s.connected()
        Sockets.enlargeTraceeEnd(c)
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
