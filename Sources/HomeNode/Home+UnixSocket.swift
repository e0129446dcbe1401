import CShim
import Glibc
import SysKit
import Wire

/// Unix sockets at forwarded paths (bind, connect, and a datagram's
/// destination), and sendfile between two home handles.
/// The path resolves beneath the export root as `mkdirat`'s does (its
/// parent opened inside the root when confined); the socket is then bound
/// or connected through `/proc/self/fd/DIR/NAME`, so neither the root's
/// prefix nor the parent's depth counts against `sun_path`'s 108 bytes.
enum HomeUnixSocket {
    /// Implements bind(2) to a path: scalars [handle, dir]; payload: the path.
    static func bindPath(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let fd = try c.handle(c.r.scalar(0))
        try withAddress(c, path: try c.path()) { (a, n) throws(Errno) in try sys { Glibc.bind(fd, a, n) } }
        return (0, 0)
    }

    /// Implements connect(2) to a path: scalars [handle, dir]; payload: the
    /// path. Waits for the outcome as `HomeSocket.connect` does.
    static func connectPath(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let fd = try c.handle(c.r.scalar(0))
        try withAddress(c, path: try c.path()) { (a, n) throws(Errno) in try HomeSocket.connect(c, fd, a, n) }
        return (0, 0)
    }

    /// Implements sendto(2) of a datagram to a path: scalars [handle, flags,
    /// dir, pathLength]; payload: the path (pathLength bytes with its NUL),
    /// then the datagram.
    static func sendtoPath(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let fd = try c.handle(c.r.scalar(0)), payload = c.r.payload
        let (path, end) = try c.string(at: 0)
        guard Int64(end) == c.r.scalar(3) else { throw Errno.invalidArgument }
        let data = payload.baseAddress! + end, count = payload.count - end
        let flags = c.int(1) | Int32(MSG_NOSIGNAL)
        var n = 0
        try withAddress(c, path: path.baseAddress!.assumingMemoryBound(to: CChar.self)) { (a, length) throws(Errno) in
            n = try c.interruptible { Glibc.sendto(fd, data, count, flags, a, length) }
        }
        return (Int64(n), 0)
    }

    /// Implements sendfile(2) from a file handle to a socket handle:
    /// scalars [socket, file, offset (-1: the file's position), count].
    static func sendfile(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let sock = try c.handle(c.r.scalar(0)), file = try c.handle(c.r.scalar(1))
        guard c.r.scalar(3) >= 0 else { throw Errno.invalidArgument }
        let count = Int(min(c.r.scalar(3), Int64(Int32.max)))
        var offset = off_t(c.r.scalar(2))
        let n = try c.interruptible { () -> Int in
            offset < 0 ? Glibc.sendfile(sock, file, nil, count) : Glibc.sendfile(sock, file, &offset, count)
        }
        return (Int64(n), 0)
    }

    /// Calls `body` with the `sockaddr_un` of `path`, relative to the
    /// request's directory (scalar 1 of bindPath and connectPath, 2 of sendtoPath).
    private static func withAddress(_ c: HomeCall, path: UnsafePointer<CChar>,
                                    _ body: (UnsafePointer<Glibc.sockaddr>, socklen_t) throws(Errno) -> Void) throws(Errno) {
        let dir = try c.dir(c.r.scalar(c.r.op == .sendtoPath ? 2 : 1))
        try c.withEntry(dir: dir, path) { (d, name) throws(Errno) in
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            let length = try withUnsafeMutableBytes(of: &address.sun_path) { (out) throws(Errno) -> Int in
                var at = 0
                func put(_ byte: UInt8) throws(Errno) {
                    // One byte stays for the NUL.
                    guard at < out.count - 1 else { throw Errno.fileNameTooLong }
                    out[at] = byte
                    at += 1
                }
                if d != AT_FDCWD {
                    for b in "/proc/self/fd/".utf8 { try put(b) }
                    let v = Int(d)
                    var place = 1
                    while v / place >= 10 { place *= 10 }
                    while place > 0 {
                        try put(UInt8(ascii: "0") + UInt8(v / place % 10))
                        place /= 10
                    }
                    try put(UInt8(ascii: "/"))
                }
                var p = name
                while p.pointee != 0 {
                    try put(UInt8(bitPattern: p.pointee))
                    p += 1
                }
                out[at] = 0
                return at
            }
            try withUnsafePointer(to: &address) { p throws(Errno) in
                try body(UnsafeRawPointer(p).assumingMemoryBound(to: Glibc.sockaddr.self), socklen_t(2 + length + 1))
            }
        }
    }
}
