import CShim
import Glibc
import SysKit
import Wire

/// Data transfer and offsets on forwarded descriptors. Transfers larger
/// than one frame are split into `Wire.maxPayload` chunks; a short chunk
/// (end of file, a full disk) ends the call with what was done, as the
/// kernel would report it.
enum ReadWrite {
    /// Implements read(2).
    static func read(_ c: borrowing Call) throws(Failure) -> Reply {
        guard let p = try c.placeholder(fd: c.fd(0)) else { return try Datagrams.read(c) ?? .continueSyscall }
        let count = try c.transfer(buffer: 1, size: 2)
        if let n = try c.cachedRead(p, count: count) { return .value(n) }
        return .value(Int64(try c.withExactOffset(p) { () throws(Failure) in
            try receive(c, p, into: c.address(1), count: count, at: nil)
        }))
    }

    /// Implements write(2).
    static func write(_ c: borrowing Call) throws(Failure) -> Reply {
        guard let p = try c.placeholder(fd: c.fd(0)) else { return try Datagrams.write(c) ?? .continueSyscall }
        return .value(Int64(try c.withExactOffset(p, movesOffset: true) { () throws(Failure) in
            try send(c, p, from: c.address(1), count: try c.transfer(buffer: 1, size: 2), at: nil)
        }))
    }

    /// Implements pread64(2).
    static func pread64(_ c: borrowing Call) throws(Failure) -> Reply {
        guard let p = try c.placeholder(fd: c.fd(0)) else { return .continueSyscall }
        guard c.offset(3) >= 0 else { throw .errno(.invalidArgument) }
        let count = try c.transfer(buffer: 1, size: 2)
        if let n = try c.cachedPread(p, count: count, at: c.offset(3)) { return .value(n) }
        return .value(Int64(try receive(c, p, into: c.address(1), count: count, at: c.offset(3))))
    }

    /// Implements pwrite64(2).
    static func pwrite64(_ c: borrowing Call) throws(Failure) -> Reply {
        guard let p = try c.placeholder(fd: c.fd(0)) else { return .continueSyscall }
        guard c.offset(3) >= 0 else { throw .errno(.invalidArgument) }
        return .value(Int64(try send(c, p, from: c.address(1), count: try c.transfer(buffer: 1, size: 2), at: c.offset(3))))
    }

    /// Implements readv(2).
    static func readv(_ c: borrowing Call) throws(Failure) -> Reply {
        guard let p = try c.placeholder(fd: c.fd(0)) else { return try Datagrams.readv(c) ?? .continueSyscall }
        return .value(try c.withExactOffset(p) { () throws(Failure) in try vectored(c, p, reading: true, at: nil) })
    }

    /// Implements writev(2).
    static func writev(_ c: borrowing Call) throws(Failure) -> Reply {
        guard let p = try c.placeholder(fd: c.fd(0)) else { return try Datagrams.writev(c) ?? .continueSyscall }
        return .value(try c.withExactOffset(p, movesOffset: true) { () throws(Failure) in
            try vectored(c, p, reading: false, at: nil)
        })
    }

    /// Implements preadv(2).
    static func preadv(_ c: borrowing Call) throws(Failure) -> Reply {
        guard let p = try c.placeholder(fd: c.fd(0)) else { return .continueSyscall }
        guard c.offset(3) >= 0 else { throw .errno(.invalidArgument) }
        return .value(try vectored(c, p, reading: true, at: c.offset(3)))
    }

    /// Implements pwritev(2).
    static func pwritev(_ c: borrowing Call) throws(Failure) -> Reply {
        guard let p = try c.placeholder(fd: c.fd(0)) else { return .continueSyscall }
        guard c.offset(3) >= 0 else { throw .errno(.invalidArgument) }
        return .value(try vectored(c, p, reading: false, at: c.offset(3)))
    }

    /// Implements preadv2(2). Offset -1 means the file offset, as readv;
    /// the RWF_* hints are not forwarded.
    static func preadv2(_ c: borrowing Call) throws(Failure) -> Reply {
        guard let p = try c.placeholder(fd: c.fd(0)) else { return .continueSyscall }
        let offset = c.offset(3)
        if offset == -1 { return .value(try c.withExactOffset(p) { () throws(Failure) in try vectored(c, p, reading: true, at: nil) }) }
        guard offset >= 0 else { throw .errno(.invalidArgument) }
        return .value(try vectored(c, p, reading: true, at: offset))
    }

    /// Implements pwritev2(2), as preadv2.
    static func pwritev2(_ c: borrowing Call) throws(Failure) -> Reply {
        guard let p = try c.placeholder(fd: c.fd(0)) else { return .continueSyscall }
        let offset = c.offset(3)
        if offset == -1 {
            return .value(try c.withExactOffset(p, movesOffset: true) { () throws(Failure) in try vectored(c, p, reading: false, at: nil) })
        }
        guard offset >= 0 else { throw .errno(.invalidArgument) }
        return .value(try vectored(c, p, reading: false, at: offset))
    }

    /// Implements fallocate(2).
    static func fallocate(_ c: borrowing Call) throws(Failure) -> Reply {
        guard let p = try c.placeholder(fd: c.fd(0)) else { return .continueSyscall }
        return .value(try c.home(.fallocate, Scalars(p.handle, Int64(c.int(1)), c.offset(2), c.offset(3))).result)
    }

    /// Implements lseek(2).
    static func lseek(_ c: borrowing Call) throws(Failure) -> Reply {
        guard let p = try c.placeholder(fd: c.fd(0)) else { return .continueSyscall }
        if let answer = try c.cachedSeek(p, offset: c.offset(1), whence: c.int(2)) { return .value(answer) }
        return .value(try c.withExactOffset(p, movesOffset: true) { () throws(Failure) in
            try c.home(.lseek, Scalars(p.handle, c.offset(1), Int64(c.int(2)))).result
        })
    }

    /// Implements fsync(2).
    static func fsync(_ c: borrowing Call) throws(Failure) -> Reply {
        guard let p = try c.placeholder(fd: c.fd(0)) else { return .continueSyscall }
        let r = try c.home(.fsync, Scalars(p.handle, 0)).result
        if let e = try c.settleWrites(p) { throw .errno(e) }
        return .value(r)
    }

    /// Implements fdatasync(2).
    static func fdatasync(_ c: borrowing Call) throws(Failure) -> Reply {
        guard let p = try c.placeholder(fd: c.fd(0)) else { return .continueSyscall }
        let r = try c.home(.fsync, Scalars(p.handle, 1)).result
        if let e = try c.settleWrites(p) { throw .errno(e) }
        return .value(r)
    }

    /// Implements ftruncate(2).
    static func ftruncate(_ c: borrowing Call) throws(Failure) -> Reply {
        guard let p = try c.placeholder(fd: c.fd(0)) else { return .continueSyscall }
        return .value(try c.home(.ftruncate, Scalars(p.handle, c.offset(1))).result)
    }

    // MARK: shared transfer loops

    /// Reads up to `count` bytes from home into the tracee at `address`
    /// (at the shared offset when `at` is nil). Returns the bytes read; an
    /// error after some bytes arrived ends the call short instead. With
    /// `keeping`, the bytes are also appended to that filling entry of a
    /// read cache (which drops it when they pass its bound).
    static func receive(_ c: borrowing Call, _ p: Placeholder, into address: UInt64, count: Int, at offset: Int64?,
                        keeping fill: (cache: ReadCache, entry: Int, generation: UInt64)? = nil) throws(Failure) -> Int {
        var total = 0
        while total < count {
            let want = min(count - total, Wire.maxPayload)
            let r: ResponseView
            do {
                if let offset {
                    r = try c.home(.pread, Scalars(p.handle, Int64(want), offset + Int64(total)))
                } else {
                    r = try c.home(.read, Scalars(p.handle, Int64(want)))
                }
            } catch {
                if total > 0, case .errno = error { break }
                throw error
            }
            let got = min(Int(r.result), r.payload.count)
            try local { () throws(Errno) in try c.memory.write(address + UInt64(total), from: r.payload.baseAddress!, count: got) }
            if let fill { _ = fill.cache.append(fill.entry, fill.generation, UnsafeRawBufferPointer(rebasing: r.payload[0..<got])) }
            total += got
            if got < want { break }
        }
        return total
    }

    /// Writes `count` bytes from the tracee at `address` to home.
    static func send(_ c: borrowing Call, _ p: Placeholder, from address: UInt64, count: Int, at offset: Int64?) throws(Failure) -> Int {
        if let done = try c.writeBehind(p, from: address, count: count, at: offset) { return done }
        var total = 0
        let op: Op = offset == nil ? .write : .pwrite
        let payload = c.worker.slot.payload(for: op)
        while total < count {
            let want = min(count - total, Wire.maxPayload)
            do {
                try local { () throws(Errno) in
                    try c.memory.readExactly(address + UInt64(total), into: payload.baseAddress!, count: want)
                }
                let r: ResponseView
                if let offset {
                    r = try c.home(.pwrite, Scalars(p.handle, offset + Int64(total)), payloadLength: want)
                } else {
                    r = try c.home(.write, Scalars(p.handle), payloadLength: want)
                }
                total += Int(r.result)
                if Int(r.result) < want { break }
            } catch {
                if total > 0, case .errno = error { break }
                throw error
            }
        }
        return total
    }

    /// readv/writev and their positioned forms: one transfer per iovec,
    /// stopping at the first short one.
    private static func vectored(_ c: borrowing Call, _ p: Placeholder, reading: Bool, at offset: Int64?) throws(Failure) -> Int64 {
        let count = Int(c.int(2))
        guard count >= 0, count <= Int(UIO_MAXIOV) else { throw .errno(.invalidArgument) }
        let iovs = c.worker.scratch.baseAddress!
        try local { () throws(Errno) in try c.memory.readExactly(c.address(1), into: iovs, count: count * 16) }
        // As the kernel does: an iov_len that is negative as a ssize_t is
        // EINVAL before anything moves; the total is capped at MAX_RW_COUNT.
        for i in 0..<count where iovs.loadUnaligned(fromByteOffset: i * 16 + 8, as: UInt64.self) > UInt64(Int.max) {
            throw .errno(.invalidArgument)
        }
        var total = 0
        for i in 0..<count {
            let base = iovs.loadUnaligned(fromByteOffset: i * 16, as: UInt64.self)
            let len = min(Int(iovs.loadUnaligned(fromByteOffset: i * 16 + 8, as: UInt64.self)), Call.maxTransfer - total)
            if len == 0 { continue }
            let at = offset.map { $0 + Int64(total) }
            let n: Int
            do {
                n = reading ? try receive(c, p, into: base, count: len, at: at) : try send(c, p, from: base, count: len, at: at)
            } catch {
                if total > 0, case .errno = error { break }
                throw error
            }
            total += n
            if n < len { break }
        }
        return Int64(total)
    }
}
