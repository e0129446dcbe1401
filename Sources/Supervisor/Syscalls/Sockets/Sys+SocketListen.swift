import CShim
import Glibc
import SysKit
import Wire

/// Servers at home: `bind`, `listen` and `accept` on a socket at home. A
/// listening socket's readiness shows in the tracee as a byte waiting on
/// its end of the pair, put there by a listen pump thread when home's
/// socket has a connection to accept (`SocketListen`); `accept` takes the
/// connection at home and the byte, and returns a new pumped placeholder.
extension Sockets {
    /// Implements bind(2).
    static func bind(_ c: borrowing Call) throws(Failure) -> Reply {
        guard let (p, s, nonBlocking) = try socket(c, fd: c.fd(0)) else { return try UnixSockets.moveHome(c, connect: false) }
        if s.kind.domain == AF_UNIX { return try UnixSockets.atHome(c, s, nonBlocking: nonBlocking, connect: false) }
        let length = try addressLength(c.raw(2))
        let address = c.worker.slot.payload(for: .bind)
        try readAddress(c, length, at: c.address(1), into: address)
        if c.sup.options.network.decide(sockaddr: UnsafeRawBufferPointer(rebasing: address[0..<length])) == .local {
            return try goLocal(c, s, nonBlocking: nonBlocking)
        }
        _ = try c.home(.bind, Scalars(p.handle), payloadLength: length)
        return .value(0)
    }

    /// Implements listen(2).
    static func listen(_ c: borrowing Call) throws(Failure) -> Reply {
        guard let (p, s, _) = try socket(c, fd: c.fd(0)) else { return .continueSyscall }
        switch s.current {
        case .fresh, .listening: break
        default: throw .errno(.invalidArgument)
        }
        _ = try c.home(.listen, Scalars(p.handle, Int64(c.int(1))))
        if s.current == .fresh {
            s.phase.store(SocketState.Phase.listening.rawValue, ordering: .releasing)
            guard SocketListen.start(s) else { throw .errno(Errno(rawValue: ENOBUFS)) }
        }
        return .value(0)
    }

    /// Implements accept(2).
    static func accept(_ c: borrowing Call) throws(Failure) -> Reply { try acceptCommon(c, flags: 0) }

    /// Implements accept4(2).
    static func accept4(_ c: borrowing Call) throws(Failure) -> Reply { try acceptCommon(c, flags: c.int(3)) }

    /// Takes a connection at home (waiting unless the tracee's descriptor is
    /// non-blocking; a signal interrupts the wait), writes its peer's
    /// address, and installs it as a new pumped socket placeholder.
    private static func acceptCommon(_ c: borrowing Call, flags: Int32) throws(Failure) -> Reply {
        guard let (p, s, nonBlocking) = try socket(c, fd: c.fd(0)) else { return .continueSyscall }
        let nonBlock = Int32(SOCK_NONBLOCK.rawValue), closeOnExec = Int32(SOCK_CLOEXEC.rawValue)
        guard flags & ~(nonBlock | closeOnExec) == 0, s.current == .listening else { throw .errno(.invalidArgument) }
        let addressAt = c.address(1), lengthAt = c.address(2)
        let room = addressAt == 0 ? 0 : try readLength(c, at: lengthAt)
        let r = try c.home(.accept, Scalars(p.handle, nonBlocking ? 1 : 0))
        let handle = r.result
        SocketListen.takeToken(c, s)
        do {
            if addressAt != 0 {
                var full = Int32(r.payload.count)
                let n = min(Int(room), r.payload.count)
                try local { () throws(Errno) in
                    if n > 0 { try c.memory.write(addressAt, from: r.payload.baseAddress!, count: n) }
                    try c.memory.write(lengthAt, from: &full, count: 4)
                }
            }
        } catch {
            c.sup.link.release(handle: handle)
            throw error
        }
        let end: CInt, state: SocketState
        do {
            (end, state) = try c.sup.watchers.makeSocketPlaceholder(handle: handle, nonBlocking: flags & nonBlock != 0,
                                                                   connected: true, pairType: UnixSockets.pairType(s.kind.type))
        } catch {
            c.sup.link.release(handle: handle)
            throw .errno(error)
        }
        defer { Glibc.close(end) }
        // An accepted Unix connection is named as its listener.
        if let name = s.boundName { state.unixName.withLock { $0 = name } }
        guard SocketPump.start(state) else { throw .errno(Errno(rawValue: ENOBUFS)) }
        let fd = try local { () throws(Errno) in
            try c.sup.listener.installAndRespond(id: c.id, source: end, closeOnExec: flags & closeOnExec != 0)
        }
        return .answered(Int64(fd))
    }
}

/// The listen pump: one thread per listening socket at home, waiting there
/// for a connection to accept; it then puts one byte on the tracee's end
/// (readable: `poll`, `select`, `epoll` see a pending connection) and waits
/// until an accept has taken it.
enum SocketListen {
    static func start(_ s: SocketState) -> Bool {
        guard let slot = s.link.takeSlot() else { return false }
        let fd = dup(s.end)
        guard fd >= 0 else {
            s.link.returnSlot(slot)
            return false
        }
        let ok = ThreadRunner(name: "socket-listen") {
            while !s.isGone {
                guard let r = try? s.link.call(slot, .poll, Scalars(s.handle, Int64(POLLIN))),
                      r.result > 0, r.result & Int64(POLLIN) != 0 else { break }
                var token: UInt8 = 1
                guard send(fd, &token, 1, Int32(MSG_NOSIGNAL)) == 1 else { break }
                s.tokenTaken.wait()
            }
            Glibc.close(fd)
            s.link.returnSlot(slot)
        }.tryStart() != nil
        if !ok {
            Glibc.close(fd)
            s.link.returnSlot(slot)
        }
        return ok
    }

    /// Takes the readiness byte from the tracee's end of the listening
    /// socket `c.fd(0)`, if it is there, and lets the pump look again.
    static func takeToken(_ c: borrowing Call, _ s: SocketState) {
        guard let t = try? c.thread(), let copy = try? PidFD.getFD(t.pidfd, c.fd(0)) else { return }
        defer { Glibc.close(copy) }
        var token: UInt8 = 0
        if recv(copy, &token, 1, Int32(MSG_DONTWAIT)) == 1 { s.tokenTaken.signal() }
    }
}
