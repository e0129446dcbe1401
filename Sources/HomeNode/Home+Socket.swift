import CShim
import Glibc
import SysKit
import Wire

/// Sockets at home: the session's network identity is the home's. A socket
/// handle is a stream handle, so its reads, writes and `connect` run on a
/// thread of their own; the client pumps its data with the plain `read`
/// and `write` ops.
enum HomeSocket {
    /// Implements socket(2): scalars [domain, type, protocol]. Internet and
    /// Unix families only: netlink and packet sockets stay on the target.
    /// (Whether a handle is a datagram socket the client knows: its data
    /// goes through `sendto`/`recvfrom`, a stream's through `read`/`write`.)
    static func socket(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let domain = c.int(0), type = c.int(1), proto = c.int(2)
        guard domain == AF_INET || domain == AF_INET6 || domain == AF_UNIX else { throw Errno(rawValue: EAFNOSUPPORT) }
        // The client keeps non-blocking and close-on-exec on its placeholder.
        let flags = Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        guard type & flags == 0 else { throw Errno.invalidArgument }
        let fd = try sys { Glibc.socket(domain, type | Int32(SOCK_CLOEXEC.rawValue), proto) }
        try c.session.handles.insert(fd, kind: .stream)
        return (Int64(fd), 0)
    }

    /// Implements connect(2): scalars [handle]; payload: the address. Waits
    /// for the outcome; a connect interrupted by a signal goes on in the
    /// kernel, so it is waited for again unless the call was cancelled.
    static func connect(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let fd = try c.handle(c.r.scalar(0))
        let address = try socketAddress(c.r.payload)
        try connect(c, fd, address.baseAddress!.assumingMemoryBound(to: Glibc.sockaddr.self), socklen_t(address.count))
        return (0, 0)
    }

    /// Connects `fd` to `address` and waits for the outcome (see `connect`).
    static func connect(_ c: HomeCall, _ fd: CInt, _ address: UnsafePointer<Glibc.sockaddr>, _ length: socklen_t) throws(Errno) {
        if Glibc.connect(fd, address, length) == 0 { return }
        var e = Glibc.errno
        while e == EINTR || e == EINPROGRESS || e == EALREADY {
            if c.cancelled.load(ordering: .acquiring) { throw Errno.interrupted }
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            if Glibc.poll(&p, 1, -1) < 0 {
                e = Glibc.errno
                continue
            }
            var error: Int32 = 0
            var length = socklen_t(4)
            try sys { Glibc.getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) }
            if error == 0 { return }
            e = error
        }
        throw Errno(rawValue: e)
    }

    /// Implements shutdown(2): scalars [handle, how].
    static func shutdown(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let fd = try c.handle(c.r.scalar(0))
        try sys { Glibc.shutdown(fd, c.int(1)) }
        return (0, 0)
    }

    /// Implements getsockopt(2): scalars [handle, level, name, size].
    static func getsockopt(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let fd = try c.handle(c.r.scalar(0))
        guard c.r.scalar(3) >= 0 else { throw Errno.invalidArgument }
        var length = socklen_t(min(c.r.scalar(3), Int64(Wire.maxSockopt)))
        try sys { Glibc.getsockopt(fd, c.int(1), c.int(2), c.out.baseAddress, &length) }
        return (Int64(length), Int(length))
    }

    /// Implements setsockopt(2): scalars [handle, level, name]; payload: the value.
    static func setsockopt(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let fd = try c.handle(c.r.scalar(0)), value = c.r.payload
        guard value.count <= Wire.maxSockopt else { throw Errno.invalidArgument }
        try sys { Glibc.setsockopt(fd, c.int(1), c.int(2), value.baseAddress, socklen_t(value.count)) }
        return (0, 0)
    }

    /// Implements getsockname(2) and getpeername(2): scalars [handle, peer, size].
    static func sockname(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let fd = try c.handle(c.r.scalar(0))
        guard c.r.scalar(2) >= 0 else { throw Errno.invalidArgument }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        try withUnsafeMutablePointer(to: &storage) { p throws(Errno) in
            let a = UnsafeMutableRawPointer(p).assumingMemoryBound(to: Glibc.sockaddr.self)
            if c.r.scalar(1) != 0 { try sys { Glibc.getpeername(fd, a, &length) } } else { try sys { Glibc.getsockname(fd, a, &length) } }
        }
        let full = min(Int(length), Wire.maxSockaddr)
        let n = min(full, Int(min(c.r.scalar(2), Int64(Wire.maxSockaddr))))
        withUnsafeBytes(of: &storage) { c.out.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: n) }
        return (Int64(full), n)
    }

    /// Implements bind(2): scalars [handle]; payload: the address.
    static func bind(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let fd = try c.handle(c.r.scalar(0))
        let address = try socketAddress(c.r.payload)
        try sys { Glibc.bind(fd, address.baseAddress!.assumingMemoryBound(to: Glibc.sockaddr.self), socklen_t(address.count)) }
        return (0, 0)
    }

    /// Implements listen(2): scalars [handle, backlog].
    static func listen(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let fd = try c.handle(c.r.scalar(0))
        try sys { Glibc.listen(fd, c.int(1)) }
        return (0, 0)
    }

    /// Implements accept4(2): scalars [handle, nonBlocking]. The new
    /// connection is a handle of the session; its peer's address is the payload.
    static func accept(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let fd = try c.handle(c.r.scalar(0))
        if c.r.scalar(1) != 0 {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard try sys({ Glibc.poll(&p, 1, 0) }) > 0 else { throw Errno.resourceTemporarilyUnavailable }
        }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let conn = try withUnsafeMutablePointer(to: &storage) { p throws(Errno) -> CInt in
            let a = UnsafeMutableRawPointer(p).assumingMemoryBound(to: Glibc.sockaddr.self)
            return try c.interruptible { Glibc.accept(fd, a, &length) }
        }
        _ = cshim_fcntl_int(conn, F_SETFD, Int(FD_CLOEXEC))
        try c.session.handles.insert(conn, kind: .stream)
        let n = min(Int(length), Wire.maxSockaddr)
        withUnsafeBytes(of: &storage) { c.out.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: n) }
        return (Int64(conn), n)
    }

    /// Implements poll(2) on one handle: scalars [handle, events]; waits
    /// until one is ready (a closed handle's socket reports POLLHUP).
    static func poll(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let fd = try c.handle(c.r.scalar(0))
        var p = pollfd(fd: fd, events: Int16(truncatingIfNeeded: c.r.scalar(1)), revents: 0)
        try c.interruptible { Glibc.poll(&p, 1, -1) }
        return (Int64(UInt16(bitPattern: p.revents)), 0)
    }

    /// Implements sendto(2): scalars [handle, flags, addressLength];
    /// payload: the address, then the datagram.
    static func sendto(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let fd = try c.handle(c.r.scalar(0)), payload = c.r.payload
        let alen = Int(c.r.scalar(2))
        guard alen >= 0, alen <= min(Wire.maxSockaddr, payload.count), alen == 0 || alen >= 2 else { throw Errno.invalidArgument }
        let flags = c.int(1) | Int32(MSG_NOSIGNAL)
        let data = payload.baseAddress! + alen, count = payload.count - alen
        let n = try c.interruptible { () -> Int in
            alen == 0 ? Glibc.sendto(fd, data, count, flags, nil, 0)
                : Glibc.sendto(fd, data, count, flags, payload.baseAddress!.assumingMemoryBound(to: Glibc.sockaddr.self),
                               socklen_t(alen))
        }
        return (Int64(n), 0)
    }

    /// Implements recvfrom(2): scalars [handle, flags, size]; the payload is
    /// the datagram's bytes (at most size), then the sender's address. With
    /// MSG_TRUNC the result is the datagram's full length, as the kernel's.
    static func recvfrom(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let fd = try c.handle(c.r.scalar(0)), want = min(try c.count(c.r.scalar(2)), Wire.maxPayload - Wire.maxSockaddr)
        let out = c.out, flags = c.int(1)
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let n = try withUnsafeMutablePointer(to: &storage) { p throws(Errno) -> Int in
            let a = UnsafeMutableRawPointer(p).assumingMemoryBound(to: Glibc.sockaddr.self)
            return try c.interruptible { Glibc.recvfrom(fd, out.baseAddress, want, flags, a, &length) }
        }
        let got = min(n, want), alen = min(Int(length), Wire.maxSockaddr)
        withUnsafeBytes(of: &storage) { (out.baseAddress! + got).copyMemory(from: $0.baseAddress!, byteCount: alen) }
        return (Int64(n), got + alen)
    }

    /// A socket address from a payload: at least its family, at most a
    /// `sockaddr_storage` (the kernel's EINVAL otherwise).
    static func socketAddress(_ payload: UnsafeRawBufferPointer) throws(Errno) -> UnsafeRawBufferPointer {
        guard payload.count >= 2, payload.count <= Wire.maxSockaddr else { throw Errno.invalidArgument }
        return payload
    }
}
