import CShim
import Glibc

/// A `HOST:PORT` endpoint ("127.0.0.1:7455", "[::1]:7455", "node7:7455").
public struct Endpoint: Sendable, CustomStringConvertible {
    public var host: String
    public var port: UInt16

    public init(host: String, port: UInt16) { self.host = host; self.port = port }

    /// Parses HOST:PORT; nil when malformed.
    public init?(parsing text: String) {
        guard let colon = text.lastIndex(of: ":") else { return nil }
        var host = String(text[..<colon])
        guard let port = UInt16(text[text.index(after: colon)...]), !host.isEmpty else { return nil }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        self.init(host: host, port: port)
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// Why a connection could not be made: name resolution (its gai error text)
/// or the socket call's errno.
public enum ConnectError: Error, CustomStringConvertible {
    case resolve(String)
    case system(Errno)
    public var description: String {
        switch self {
        case .resolve(let why): return why
        case .system(let e): return String(cString: strerror(e.rawValue))
        }
    }
}

public enum TCP {
    /// One resolved address, copied out of getaddrinfo's list.
    private struct Address {
        var family: CInt, socktype: CInt, proto: CInt
        var bytes: [UInt8]
        func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
            bytes.withUnsafeBytes { body($0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count)) }
        }
    }

    private static func resolve(_ ep: Endpoint, passive: Bool) throws(ConnectError) -> [Address] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        if passive { hints.ai_flags = AI_PASSIVE }
        var res: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(ep.host, String(ep.port), &hints, &res)
        guard rc == 0 else { throw .resolve(String(cString: gai_strerror(rc))) }
        defer { freeaddrinfo(res) }
        var out: [Address] = []
        var p = res
        while let a = p {
            let raw = UnsafeRawBufferPointer(start: a.pointee.ai_addr, count: Int(a.pointee.ai_addrlen))
            out.append(Address(family: a.pointee.ai_family, socktype: a.pointee.ai_socktype,
                               proto: a.pointee.ai_protocol, bytes: Array(raw)))
            p = a.pointee.ai_next
        }
        return out
    }

    /// Tunes a connected stream for request/response traffic: no Nagle
    /// delay, and a vanished peer noticed within 30 s (see `detectDeadPeer`).
    public static func tune(_ fd: CInt) {
        FD.setBulkBuffers(fd)
        var one: CInt = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<CInt>.size))
        detectDeadPeer(fd, withinMilliseconds: 30_000)
    }

    /// A peer that stops answering (host gone, link down, partition: no FIN
    /// ever comes) fails the stream within about `ms`: keepalive probes go
    /// out after 1 s of silence, every second, and TCP_USER_TIMEOUT aborts
    /// the connection once nothing sent (data or probe) has been
    /// acknowledged for `ms`. Reads and writes then fail with ETIMEDOUT. A
    /// call that is merely slow at home is not affected: its peer's kernel
    /// still answers the probes.
    public static func detectDeadPeer(_ fd: CInt, withinMilliseconds ms: UInt32) {
        var one: CInt = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, socklen_t(MemoryLayout<CInt>.size))
        var idle: CInt = 1, intvl: CInt = 1, cnt: CInt = CInt(clamping: max(1, ms / 1000))
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_KEEPIDLE, &idle, socklen_t(MemoryLayout<CInt>.size))
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_KEEPINTVL, &intvl, socklen_t(MemoryLayout<CInt>.size))
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_KEEPCNT, &cnt, socklen_t(MemoryLayout<CInt>.size))
        var userTimeout = CUnsignedInt(ms)
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_USER_TIMEOUT, &userTimeout, socklen_t(MemoryLayout<CUnsignedInt>.size))
    }

    /// Connects to the first address of `ep` that answers within `timeoutMs`.
    public static func connect(_ ep: Endpoint, timeoutMs: Int32 = 5000) throws(ConnectError) -> CInt {
        let addrs = try resolve(ep, passive: false)
        var lastError = Errno(rawValue: EHOSTUNREACH)
        for a in addrs {
            let fd = socket(a.family, a.socktype | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), a.proto)
            if fd < 0 { lastError = lastErrno(); continue }
            if a.withSockaddr({ Glibc.connect(fd, $0, $1) }) == 0 || Glibc.errno == EINPROGRESS {
                var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                let n = poll(&pfd, 1, timeoutMs)
                var soerr: CInt = 0
                var len = socklen_t(MemoryLayout<CInt>.size)
                if n == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr == 0 {
                    let flags = cshim_fcntl_int(fd, F_GETFL, 0)
                    _ = cshim_fcntl_int(fd, F_SETFL, Int(flags & ~O_NONBLOCK))
                    tune(fd)
                    return fd
                }
                lastError = n == 0 ? .timedOut : Errno(rawValue: soerr != 0 ? soerr : Glibc.errno)
            } else {
                lastError = lastErrno()
            }
            Glibc.close(fd)
        }
        throw .system(lastError)
    }

    /// A listening socket on `ep` (SO_REUSEADDR, backlog 128).
    public static func listen(_ ep: Endpoint) throws(ConnectError) -> CInt {
        let addrs = try resolve(ep, passive: true)
        var lastError = Errno.addressNotAvailable
        for a in addrs {
            let fd = socket(a.family, a.socktype | Int32(SOCK_CLOEXEC.rawValue), a.proto)
            if fd < 0 { lastError = lastErrno(); continue }
            var one: CInt = 1
            _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<CInt>.size))
            if a.withSockaddr({ bind(fd, $0, $1) }) == 0 && Glibc.listen(fd, 128) == 0 { return fd }
            lastError = lastErrno()
            Glibc.close(fd)
        }
        throw .system(lastError)
    }

    /// Accepts one connection; returns the descriptor and the peer as text.
    public static func accept(_ listener: CInt) throws(Errno) -> (CInt, String) {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let fd = try withUnsafeMutablePointer(to: &storage) { (p) throws(Errno) in
            try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { (sa) throws(Errno) in
                try sys { Glibc.accept(listener, sa, &len) }
            }
        }
        _ = cshim_fcntl_int(fd, F_SETFD, Int(FD_CLOEXEC))
        tune(fd)
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        var serv = [CChar](repeating: 0, count: Int(NI_MAXSERV))
        let rc = withUnsafePointer(to: &storage) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                getnameinfo(sa, len, &host, socklen_t(host.count), &serv, socklen_t(serv.count), NI_NUMERICHOST | NI_NUMERICSERV)
            }
        }
        let text = { (b: [CChar]) in String(decoding: b.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
        let peer = rc == 0 ? "\(text(host)):\(text(serv))" : "unknown peer"
        return (fd, peer)
    }

    /// The port a listening socket is bound to.
    public static func localPort(_ fd: CInt) -> UInt16 {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return withUnsafePointer(to: &storage) { p in
            p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) }
        }
    }
}

