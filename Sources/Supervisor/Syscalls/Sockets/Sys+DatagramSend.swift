import CShim
import Glibc
import SysKit
import Wire

/// The sending side of datagram sockets at home (see `Datagrams`), and
/// their shutdown. A destination the network rules keep local (an Internet
/// address, an abstract name) or a Unix path the policy keeps local turns
/// the socket into a local one first (`Sockets.goLocal`); a Unix datagram
/// socket of the target sending to an address at home moves home first
/// (`UnixSockets.moveHomeToSend`).
extension Datagrams {
    /// Implements sendto(2).
    static func sendto(_ c: borrowing Call) throws(Failure) -> Reply {
        guard let (p, s, nonBlocking) = try Sockets.socket(c, fd: c.fd(0)) else {
            if try UnixSockets.moveHomeToSend(c, name: c.address(4), length: c.raw(5)) { return try sendto(c) }
            return .continueSyscall
        }
        guard s.datagram else { return .continueSyscall }
        let alen = c.address(4) == 0 ? 0 : try Sockets.addressLength(c.raw(5))
        let flags = c.int(3) | (nonBlocking ? Int32(MSG_DONTWAIT) : 0)
        let sent = try send(c, p, s, name: c.address(4), length: alen, flags: flags) { (to) throws(Failure) -> Int in
            let count = try c.transfer(buffer: 1, size: 2)
            guard count <= maxDatagram else { throw .errno(Errno(rawValue: EMSGSIZE)) }
            try local { () throws(Errno) in try c.memory.readExactly(c.address(1), into: to, count: count) }
            return count
        }
        guard let sent else { return try Sockets.goLocal(c, s, nonBlocking: nonBlocking) }
        return .value(sent)
    }

    /// Implements sendmsg(2) on a datagram socket at home (ancillary data is
    /// not carried: EOPNOTSUPP). A pumped stream's runs natively (see
    /// `SocketPump.pumpUp` for its ancillary data).
    static func sendmsg(_ c: borrowing Call) throws(Failure) -> Reply {
        guard let (p, s, nonBlocking) = try Sockets.socket(c, fd: c.fd(0)) else {
            let m = try message(c, at: c.address(1))
            if try UnixSockets.moveHomeToSend(c, name: UInt64(UInt(bitPattern: m.msg_name)), length: UInt64(m.msg_namelen)) {
                return try sendmsg(c)
            }
            return .continueSyscall
        }
        guard s.datagram else { return .continueSyscall }
        let m = try message(c, at: c.address(1))
        guard let sent = try sendOne(c, p, s, m, flags: c.int(2) | (nonBlocking ? Int32(MSG_DONTWAIT) : 0)) else {
            return try Sockets.goLocal(c, s, nonBlocking: nonBlocking)
        }
        return .value(sent)
    }

    /// Implements sendmmsg(2) on a datagram socket at home: the messages one
    /// by one, each `msg_len` set; an error after the first ends the call
    /// with the count sent, as the kernel does. The first message's
    /// destination decides where the socket is (as sendto's does); a later
    /// one kept local ends the call there.
    static func sendmmsg(_ c: borrowing Call) throws(Failure) -> Reply {
        let count = min(Int(UInt32(truncatingIfNeeded: c.raw(2))), 1024)
        guard let (p, s, nonBlocking) = try Sockets.socket(c, fd: c.fd(0)) else {
            guard count > 0 else { return .continueSyscall }
            let m = try message(c, at: c.address(1))
            if try UnixSockets.moveHomeToSend(c, name: UInt64(UInt(bitPattern: m.msg_name)), length: UInt64(m.msg_namelen)) {
                return try sendmmsg(c)
            }
            return .continueSyscall
        }
        guard s.datagram else { return .continueSyscall }
        let flags = c.int(3) | (nonBlocking ? Int32(MSG_DONTWAIT) : 0)
        var sent = 0
        while sent < count {
            let header = c.address(1) + UInt64(64 * sent)
            do {
                guard let n = try sendOne(c, p, s, try message(c, at: header), flags: flags) else {
                    if sent == 0 { return try Sockets.goLocal(c, s, nonBlocking: nonBlocking) }
                    break
                }
                var length = UInt32(truncatingIfNeeded: n)
                try local { () throws(Errno) in try c.memory.write(header + 56, from: &length, count: 4) }   // msg_len
            } catch {
                if sent > 0 { break }
                throw error
            }
            sent += 1
        }
        return .value(Int64(sent))
    }

    /// write(2) on a datagram socket at home (a send to its peer); nil for
    /// any other descriptor.
    static func write(_ c: borrowing Call) throws(Failure) -> Reply? {
        guard c.fd(0) >= c.sup.placeholderBase, let (p, s, nonBlocking) = try Sockets.socket(c, fd: c.fd(0)),
              s.datagram else { return nil }
        let count = try c.transfer(buffer: 1, size: 2)
        guard count <= maxDatagram else { throw .errno(Errno(rawValue: EMSGSIZE)) }
        let payload = c.worker.slot.payload(for: .sendto)
        try local { () throws(Errno) in try c.memory.readExactly(c.address(1), into: payload.baseAddress!, count: count) }
        let flags = nonBlocking ? Int32(MSG_DONTWAIT) : 0
        return .value(try c.home(.sendto, Scalars(p.handle, Int64(flags), 0), payloadLength: count).result)
    }

    /// writev(2) on a datagram socket at home (the vectors as one datagram
    /// to its peer); nil for any other descriptor.
    static func writev(_ c: borrowing Call) throws(Failure) -> Reply? {
        guard c.fd(0) >= c.sup.placeholderBase, let (p, s, nonBlocking) = try Sockets.socket(c, fd: c.fd(0)),
              s.datagram else { return nil }
        let m = try vectors(c)
        return .value(try sendOne(c, p, s, m, flags: nonBlocking ? Int32(MSG_DONTWAIT) : 0) ?? 0)
    }

    /// Implements shutdown(2): a datagram socket's runs at home, where its
    /// sends and receives run; a pumped stream's runs on its end of the
    /// pair (the pump carries the half-close home), any other natively.
    static func shutdown(_ c: borrowing Call) throws(Failure) -> Reply {
        guard let (p, s, _) = try Sockets.socket(c, fd: c.fd(0)), s.datagram else { return .continueSyscall }
        _ = try c.home(.shutdown, Scalars(p.handle, Int64(c.int(1))))
        return .value(0)
    }

    /// Sends message `m` as one datagram; nil if its destination is local.
    private static func sendOne(_ c: borrowing Call, _ p: Placeholder, _ s: SocketState, _ m: msghdr,
                                flags: Int32) throws(Failure) -> Int64? {
        guard m.msg_controllen == 0 else { throw .errno(Errno(rawValue: EOPNOTSUPP)) }
        let name = UInt64(UInt(bitPattern: m.msg_name))
        let alen = name == 0 ? 0 : try Sockets.addressLength(UInt64(m.msg_namelen))
        return try send(c, p, s, name: name, length: alen, flags: flags) { (to) throws(Failure) -> Int in
            var total = 0
            try eachVector(c, m) { (base, length) throws(Failure) in
                guard total + length <= maxDatagram else { throw .errno(Errno(rawValue: EMSGSIZE)) }
                try local { () throws(Errno) in try c.memory.readExactly(base, into: to + total, count: length) }
                total += length
            }
            return total
        }
    }

    /// Sends one datagram to the tracee's address at `name` (`length` bytes;
    /// 0: the socket's peer), its bytes put in place by `fill` (which
    /// returns their count); nil, with nothing sent, if the destination is
    /// local. A Unix path at home goes as `sendtoPath` (resolved there),
    /// any other address as `sendto`.
    private static func send(_ c: borrowing Call, _ p: Placeholder, _ s: SocketState, name: UInt64, length: Int, flags: Int32,
                             fill: (UnsafeMutableRawPointer) throws(Failure) -> Int) throws(Failure) -> Int64? {
        var op = Op.sendto, prefix = 0, scalars = Scalars(p.handle, Int64(flags), 0)
        var keep: AnyObject?
        if length > 0 && s.kind.domain == AF_UNIX {
            guard length >= 2, length <= UnixSockets.maxAddress else { throw .errno(.invalidArgument) }
            let address = try UnixSockets.readAddress(c, length, at: name)
            // Another family is home's kernel's to refuse (EINVAL).
            let where_ = address.load(as: UInt16.self) == UInt16(AF_UNIX) ? try UnixSockets.target(c, address) : .abstract
            switch where_ {
            case .local: return nil
            case .abstract:
                c.worker.slot.payload(for: .sendto).baseAddress!.copyMemory(from: address.baseAddress!, byteCount: length)
                prefix = length
                scalars[2] = Int64(length)
            case .path(let dir, let kept, let pathLength):
                keep = kept
                op = .sendtoPath
                c.worker.slot.payload(for: .sendtoPath).baseAddress!.copyMemory(
                    from: c.worker.scratch.baseAddress! + UnixSockets.pathScratch, byteCount: pathLength)
                prefix = pathLength
                scalars = Scalars(p.handle, Int64(flags), dir, Int64(pathLength))
            }
        } else if length > 0 {
            let payload = c.worker.slot.payload(for: .sendto)
            try Sockets.readAddress(c, length, at: name, into: payload)
            if c.sup.options.network.decide(sockaddr: UnsafeRawBufferPointer(rebasing: payload[0..<length])) == .local { return nil }
            prefix = length
            scalars[2] = Int64(length)
        }
        defer { withExtendedLifetime(keep) {} }
        let count = try fill(c.worker.slot.payload(for: op).baseAddress! + prefix)
        return try c.home(op, scalars, payloadLength: prefix + count).result
    }
}
