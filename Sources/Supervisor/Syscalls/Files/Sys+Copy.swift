import CShim
import Glibc
import SysKit
import Wire

/// In-kernel copies (copy_file_range, sendfile, splice) with a forwarded
/// side. Between two forwarded files the copy runs at home; between a
/// forwarded and a local file the supervisor copies, one chunk per call
/// (these calls may return short counts, and callers loop).
enum Copy {
    /// Implements copy_file_range(2).
    static func copyFileRange(_ c: borrowing Call) throws(Failure) -> Reply {
        let source = try side(c, fd: c.fd(0)), target = try side(c, fd: c.fd(2))
        if case .local = source, case .local = target { return .continueSyscall }
        let inOffset = try readOffset(c, c.address(1)), outOffset = try readOffset(c, c.address(3))
        let length = c.size(4)
        let n: Int
        if case .remote(let i) = source, case .remote(let o) = target {
            n = Int(try c.home(.copyFileRange, Scalars(i.handle, inOffset ?? -1, o.handle, outOffset ?? -1,
                                                       Int64(min(length, Int(Int32.max))), Int64(c.int(5)))).result)
        } else {
            guard c.int(5) == 0 else { throw .errno(.invalidArgument) }
            n = try bounce(c, from: source, fd: c.fd(0), at: inOffset, to: target, fd: c.fd(2), at: outOffset, length: length)
        }
        try writeOffset(c, c.address(1), inOffset, plus: n)
        try writeOffset(c, c.address(3), outOffset, plus: n)
        return .value(Int64(n))
    }

    /// Implements sendfile(2).
    static func sendfile(_ c: borrowing Call) throws(Failure) -> Reply {
        let target = try side(c, fd: c.fd(0)), source = try side(c, fd: c.fd(1))
        if case .local = source, case .local = target { return .continueSyscall }
        let inOffset = try readOffset(c, c.address(2))
        if case .remote(let file) = source, let (_, s, _) = try Sockets.socket(c, fd: c.fd(0)), !s.datagram,
           s.current == .connected {
            let n = try sendfileAtHome(c, file: file, socket: s, at: inOffset, length: c.size(3))
            try writeOffset(c, c.address(2), inOffset, plus: n)
            return .value(Int64(n))
        }
        let n = try bounce(c, from: source, fd: c.fd(1), at: inOffset, to: target, fd: c.fd(0), at: nil, length: c.size(3))
        try writeOffset(c, c.address(2), inOffset, plus: n)
        return .value(Int64(n))
    }

    /// Implements splice(2): a forwarded side is not a pipe and cannot be
    /// spliced; EINVAL, which callers answer with read and write.
    static func splice(_ c: borrowing Call) throws(Failure) -> Reply {
        if try c.placeholder(fd: c.fd(0)) != nil { throw .errno(.invalidArgument) }
        if try c.placeholder(fd: c.fd(2)) != nil { throw .errno(.invalidArgument) }
        return .continueSyscall
    }

    /// sendfile(2) from a forwarded file to a connected socket at home:
    /// home sends the bytes itself (one `sendfile` op; nothing crosses the
    /// wire). What the tracee wrote to the socket before must reach home
    /// first: the up pump's queue is let drain, and its turn held meanwhile.
    private static func sendfileAtHome(_ c: borrowing Call, file: Placeholder, socket s: SocketState,
                                       at offset: Int64?, length: Int) throws(Failure) -> Int {
        while true {
            s.upTurn.wait()
            var queued: CInt = 0
            if cshim_ioctl_ptr(s.end, UInt(FIONREAD), &queued) != 0 || queued == 0 { break }
            s.upTurn.signal()
            guard c.sup.listener.isValid(id: c.id) else { throw .errno(.interrupted) }
            usleep(200)
        }
        defer { s.upTurn.signal() }
        let r = try c.home(.sendfile, Scalars(s.handle, file.handle, offset ?? -1, Int64(min(length, Int(Int32.max)))))
        return Int(r.result)
    }

    // MARK: shared

    /// One end of a copy: the tracee's own descriptor (a copy of it, same
    /// open file description) or a forwarded one.
    enum Side {
        case local
        case remote(Placeholder)
    }

    private static func side(_ c: borrowing Call, fd: Int32) throws(Failure) -> Side {
        guard let p = try c.placeholder(fd: fd) else { return .local }
        try c.settleReadCache(p)
        return .remote(p)
    }

    private static func readOffset(_ c: borrowing Call, _ address: UInt64) throws(Failure) -> Int64? {
        if address == 0 { return nil }
        var v: Int64 = 0
        try local { () throws(Errno) in try c.memory.readExactly(address, into: &v, count: 8) }
        guard v >= 0 else { throw .errno(.invalidArgument) }
        return v
    }

    private static func writeOffset(_ c: borrowing Call, _ address: UInt64, _ offset: Int64?, plus n: Int) throws(Failure) {
        guard var v = offset, n > 0 else { return }
        v += Int64(n)
        try local { () throws(Errno) in try c.memory.write(address, from: &v, count: 8) }
    }

    /// Copies one chunk (at most `Wire.maxPayload`) through the supervisor.
    private static func bounce(_ c: borrowing Call, from source: Side, fd inFD: Int32, at inOffset: Int64?,
                               to target: Side, fd outFD: Int32, at outOffset: Int64?, length: Int) throws(Failure) -> Int {
        let want = min(length, Wire.maxPayload)
        if want == 0 { return 0 }
        let op: Op = outOffset == nil ? .write : .pwrite
        let buffer = c.worker.slot.payload(for: op)
        let t = try c.thread()
        // Read into the request payload of the write that follows.
        let got: Int
        switch source {
        case .remote(let p):
            let reply: ResponseView
            if let off = inOffset {
                reply = try c.home(.pread, Scalars(p.handle, Int64(want), off))
            } else {
                reply = try c.home(.read, Scalars(p.handle, Int64(want)))
            }
            got = min(Int(reply.result), reply.payload.count)
            buffer.baseAddress!.copyMemory(from: reply.payload.baseAddress!, byteCount: got)
        default:
            let fd = try local { () throws(Errno) in try PidFD.getFD(t.pidfd, inFD) }
            defer { Glibc.close(fd) }
            got = try local { () throws(Errno) in
                try sys { inOffset.map { Glibc.pread(fd, buffer.baseAddress, want, off_t($0)) } ?? Glibc.read(fd, buffer.baseAddress, want) }
            }
        }
        if got == 0 { return 0 }
        switch target {
        case .remote(let p):
            let r = try c.home(op, outOffset.map { Scalars(p.handle, $0) } ?? Scalars(p.handle), payloadLength: got)
            return Int(r.result)
        default:
            let fd = try local { () throws(Errno) in try PidFD.getFD(t.pidfd, outFD) }
            defer { Glibc.close(fd) }
            return try local { () throws(Errno) in
                try sys { outOffset.map { Glibc.pwrite(fd, buffer.baseAddress, got, off_t($0)) } ?? Glibc.write(fd, buffer.baseAddress, got) }
            }
        }
    }
}
