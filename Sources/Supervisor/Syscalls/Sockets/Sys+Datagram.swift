import CShim
import Glibc
import SysKit
import Wire

/// Datagram sockets at home. Message boundaries and addresses cannot go
/// through a stream pair, so a UDP or Unix datagram socket's placeholder
/// lives in the placeholder range, where the filter sends its `sendto`,
/// `recvfrom`, `sendmsg` and `recvmsg` to the supervisor: each datagram is
/// one request (`sendto`/`sendtoPath`/`recvfrom` ops) with its address.
/// Readiness comes from the same pump as a listening socket's: a byte on
/// the tracee's end while home has a datagram waiting, taken by each
/// receive (`SocketListen`). The sending side is in Sys+DatagramSend.swift.
enum Datagrams {
    /// Most bytes of one datagram (the payload also carries an address).
    static let maxDatagram = Wire.maxPayload - Wire.maxSockaddr

    /// Implements recvfrom(2).
    static func recvfrom(_ c: borrowing Call) throws(Failure) -> Reply {
        guard let (p, s, nonBlocking) = try Sockets.socket(c, fd: c.fd(0)), s.datagram else { return .continueSyscall }
        let size = min(try c.transfer(buffer: 1, size: 2), maxDatagram)
        let addressAt = c.address(4), lengthAt = c.address(5)
        let room = addressAt == 0 ? 0 : try Sockets.readLength(c, at: lengthAt)
        let flags = c.int(3)
        let (r, n) = try receive(c, p, s, flags: flags, nonBlocking: nonBlocking, size: size)
        try local { () throws(Errno) in
            if n > 0 { try c.memory.write(c.address(1), from: r.payload.baseAddress!, count: n) }
            if addressAt != 0 {
                var full = Int32(r.payload.count - n)
                let copy = min(Int(room), Int(full))
                if copy > 0 { try c.memory.write(addressAt, from: r.payload.baseAddress! + n, count: copy) }
                try c.memory.write(lengthAt, from: &full, count: 4)
            }
        }
        return .value(flags & Int32(MSG_TRUNC) != 0 ? r.result : Int64(n))
    }

    /// read(2) on a datagram socket at home (recv without flags); nil for
    /// any other descriptor. Only numbers in the placeholder range are
    /// looked at: a datagram placeholder is never placed lower.
    static func read(_ c: borrowing Call) throws(Failure) -> Reply? {
        guard c.fd(0) >= c.sup.placeholderBase, let (p, s, nonBlocking) = try Sockets.socket(c, fd: c.fd(0)),
              s.datagram else { return nil }
        let size = min(try c.transfer(buffer: 1, size: 2), maxDatagram)
        let (r, n) = try receive(c, p, s, flags: 0, nonBlocking: nonBlocking, size: size)
        if n > 0 {
            try local { () throws(Errno) in try c.memory.write(c.address(1), from: r.payload.baseAddress!, count: n) }
        }
        return .value(Int64(n))
    }

    /// readv(2) on a datagram socket at home (one datagram scattered over
    /// the vectors); nil for any other descriptor.
    static func readv(_ c: borrowing Call) throws(Failure) -> Reply? {
        guard c.fd(0) >= c.sup.placeholderBase, let (p, s, nonBlocking) = try Sockets.socket(c, fd: c.fd(0)),
              s.datagram else { return nil }
        let m = try vectors(c)
        return .value(try receiveOne(c, p, s, m, flags: 0, nonBlocking: nonBlocking))
    }

    /// readv/writev's vectors (arguments 1 and 2) as a message without a
    /// name: EINVAL for a count below 0 or above UIO_MAXIOV, as the kernel.
    static func vectors(_ c: borrowing Call) throws(Failure) -> msghdr {
        let count = c.int(2)
        guard count >= 0, count <= 1024 else { throw .errno(.invalidArgument) }
        var m = msghdr()
        m.msg_iov = UnsafeMutablePointer(bitPattern: UInt(c.address(1)))
        m.msg_iovlen = Int(count)
        return m
    }

    /// recvmsg(2) on a datagram socket at home; nil for any other descriptor.
    static func recvmsg(_ c: borrowing Call) throws(Failure) -> Reply? {
        guard let (p, s, nonBlocking) = try Sockets.socket(c, fd: c.fd(0)), s.datagram else { return nil }
        let m = try message(c, at: c.address(1))
        return .value(try receiveOne(c, p, s, m, flags: c.int(2), nonBlocking: nonBlocking, header: c.address(1)))
    }

    /// recvmmsg(2) on a datagram socket at home: the first message waits as
    /// recvmsg does (unless non-blocking), the rest are taken while home has
    /// one waiting (MSG_DONTWAIT), each `msg_len` set; MSG_WAITFORONE is
    /// what this always does. The timeout is not applied.
    static func recvmmsg(_ c: borrowing Call) throws(Failure) -> Reply? {
        guard c.fd(0) >= c.sup.placeholderBase, let (p, s, nonBlocking) = try Sockets.socket(c, fd: c.fd(0)), s.datagram else { return nil }
        let count = min(Int(UInt32(truncatingIfNeeded: c.raw(2))), 1024)
        let flags = c.int(3) & ~Int32(0x10000)   // MSG_WAITFORONE
        var got = 0
        while got < count {
            let header = c.address(1) + UInt64(64 * got)
            do {
                let m = try message(c, at: header)
                var n = UInt32(truncatingIfNeeded: try receiveOne(c, p, s, m, flags: flags | (got > 0 ? Int32(MSG_DONTWAIT) : 0),
                                                                  nonBlocking: nonBlocking, header: header))
                try local { () throws(Errno) in try c.memory.write(header + 56, from: &n, count: 4) }   // msg_len
            } catch {
                if got > 0 { break }
                throw error
            }
            got += 1
        }
        return .value(Int64(got))
    }

    /// The `struct msghdr` at `header` in the tracee.
    static func message(_ c: borrowing Call, at header: UInt64) throws(Failure) -> msghdr {
        var m = msghdr()
        try local { () throws(Errno) in try c.memory.readExactly(header, into: &m, count: MemoryLayout<msghdr>.size) }
        return m
    }

    /// Receives one datagram into message `m`'s vectors; with `header` (its
    /// address in the tracee), also writes its name, length and flags back
    /// (MSG_TRUNC when the datagram did not fit). Returns what the call
    /// returns: the bytes received, or with MSG_TRUNC the datagram's length.
    private static func receiveOne(_ c: borrowing Call, _ p: Placeholder, _ s: SocketState, _ m: msghdr, flags: Int32,
                                   nonBlocking: Bool, header: UInt64 = 0) throws(Failure) -> Int64 {
        var size = 0
        try eachVector(c, m) { (_, length) throws(Failure) in size = min(size + length, maxDatagram) }
        let (r, got) = try receive(c, p, s, flags: flags, nonBlocking: nonBlocking, size: size)
        var left = got, at = 0
        try eachVector(c, m) { (base, length) throws(Failure) in
            let n = min(left, length)
            if n > 0 { try local { () throws(Errno) in try c.memory.write(base, from: r.payload.baseAddress! + at, count: n) } }
            left -= n
            at += n
        }
        let result = flags & Int32(MSG_TRUNC) != 0 ? r.result : Int64(got)
        guard header != 0 else { return result }
        let alen = r.payload.count - got
        let name = UInt64(UInt(bitPattern: m.msg_name))
        var full = UInt32(alen), none = 0, outFlags: Int32 = r.result > Int64(got) ? Int32(MSG_TRUNC) : 0
        try local { () throws(Errno) in
            if name != 0 {
                let copy = min(Int(m.msg_namelen), alen)
                if copy > 0 { try c.memory.write(name, from: r.payload.baseAddress! + got, count: copy) }
                try c.memory.write(header + 8, from: &full, count: 4)          // msg_namelen
            }
            try c.memory.write(header + 40, from: &none, count: 8)             // msg_controllen
            try c.memory.write(header + 48, from: &outFlags, count: 4)         // msg_flags
        }
        return result
    }

    /// One datagram from home (waiting unless non-blocking; a signal
    /// interrupts), taking the readiness byte unless it only peeked; and
    /// how many of its bytes came (at most `size`). Home is always asked
    /// with MSG_TRUNC, so the result is the datagram's full length.
    private static func receive(_ c: borrowing Call, _ p: Placeholder, _ s: SocketState, flags: Int32, nonBlocking: Bool,
                                size: Int) throws(Failure) -> (ResponseView, Int) {
        let wire = flags | Int32(MSG_TRUNC) | (nonBlocking ? Int32(MSG_DONTWAIT) : 0)
        let r = try c.home(.recvfrom, Scalars(p.handle, Int64(wire), Int64(size)))
        if flags & Int32(MSG_PEEK) == 0 { SocketListen.takeToken(c, s) }
        return (r, min(Int(r.result), size))
    }

    /// Calls `body` with each (base, length) of the message's iovecs (at
    /// most UIO_MAXIOV: EMSGSIZE beyond, as the kernel).
    static func eachVector(_ c: borrowing Call, _ m: msghdr,
                           _ body: (UInt64, Int) throws(Failure) -> Void) throws(Failure) {
        let count = Int(m.msg_iovlen)
        guard count <= 1024 else { throw .errno(Errno(rawValue: EMSGSIZE)) }
        let vectors = UInt64(UInt(bitPattern: m.msg_iov))
        for i in 0..<count {
            var v = (UInt64(0), UInt64(0))
            try local { () throws(Errno) in try c.memory.readExactly(vectors + UInt64(16 * i), into: &v, count: 16) }
            guard v.1 <= UInt64(Int.max) else { throw .errno(.invalidArgument) }
            if v.1 > 0 { try body(v.0, Int(min(v.1, UInt64(maxDatagram)))) }
        }
    }
}
