import CShim
import Glibc
import SysKit
import Wire

/// Data on open handles, at home. On a stream (FIFO, socket, device) these
/// run on a thread of their own and end early when cancelled, with the
/// partial count if some bytes had moved.
enum HomeReadWrite {
    /// Implements read(2): scalars [handle, count].
    static func read(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let fd = try c.handle(c.r.scalar(0)), want = try c.count(c.r.scalar(1)), out = c.out
        if let n = try c.spliceRead(fd, want, at: nil) { return (Int64(n), n) }
        let n = try c.interruptible { Glibc.read(fd, out.baseAddress, want) }
        return (Int64(n), n)
    }

    /// Implements write(2): scalars [handle]; payload: the data.
    static func write(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let fd = try c.handle(c.r.scalar(0)), data = c.r.payload
        if let n = try c.writeInbound(fd) { return (Int64(n), 0) }
        let n = try c.interruptible { Glibc.write(fd, data.baseAddress, data.count) }
        return (Int64(n), 0)
    }

    /// A pumped stream's write (`Op.streamWrite`): in its turn, answered
    /// before it writes; then all of the payload, however many calls that
    /// takes. An error after the answer is the next one's answer.
    static func streamWrite(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let handle = c.r.scalar(0), fd = try c.handle(handle), count = c.r.payload.count
        return c.session.streamTurn(handle).error.withLock { failed -> (Int64, Int) in
            if failed != 0 { return (-Int64(failed), 0) }
            if count == 0 { return (0, 0) }
            c.session.replyNow(c, result: Int64(count))
            do throws(Errno) {
                var done = try c.writeInbound(fd) ?? 0
                // Bytes still in the pipe cannot be written from the request.
                if done > 0 && done < count { throw .ioError }
                let data = c.r.payload
                while done < count {
                    let n = try c.interruptible { Glibc.write(fd, data.baseAddress! + done, count - done) }
                    if n <= 0 { throw .ioError }
                    done += n
                }
            } catch {
                failed = error.rawValue
            }
            return (Int64(count), 0)
        }
    }

    /// Implements pread64(2): scalars [handle, count, offset].
    static func pread(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let fd = try c.handle(c.r.scalar(0)), want = try c.count(c.r.scalar(1)), out = c.out, offset = off_t(c.r.scalar(2))
        if offset >= 0, let n = try c.spliceRead(fd, want, at: Int64(offset)) { return (Int64(n), n) }
        let n = try c.interruptible { Glibc.pread(fd, out.baseAddress, want, offset) }
        return (Int64(n), n)
    }

    /// Implements pwrite64(2): scalars [handle, offset]; payload: the data.
    static func pwrite(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let fd = try c.handle(c.r.scalar(0)), data = c.r.payload, offset = off_t(c.r.scalar(1))
        let n = try c.interruptible { Glibc.pwrite(fd, data.baseAddress, data.count, offset) }
        return (Int64(n), 0)
    }

    /// Implements lseek(2): scalars [handle, offset, whence].
    static func lseek(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let fd = try c.handle(c.r.scalar(0))
        let off = try sys { Glibc.lseek(fd, off_t(c.r.scalar(1)), c.int(2)) }
        return (Int64(off), 0)
    }

    /// Implements fsync(2) and fdatasync(2): scalars [handle, datasync].
    static func fsync(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let fd = try c.handle(c.r.scalar(0))
        if c.r.scalar(1) != 0 { try sys { fdatasync(fd) } } else { try sys { Glibc.fsync(fd) } }
        return (0, 0)
    }

    /// Implements ftruncate(2): scalars [handle, length].
    static func ftruncate(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let fd = try c.handle(c.r.scalar(0))
        try sys { Glibc.ftruncate(fd, off_t(c.r.scalar(1))) }
        return (0, 0)
    }

    /// Implements getdents64(2): scalars [handle, count].
    static func getdents64(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let fd = try c.handle(c.r.scalar(0)), want = try c.count(c.r.scalar(1)), out = c.out
        let n = try sys { cshim_getdents64(fd, out.baseAddress, want) }
        return (Int64(n), n)
    }

    /// Implements fallocate(2): scalars [handle, mode, offset, length].
    static func fallocate(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let fd = try c.handle(c.r.scalar(0))
        try sys { cshim_fallocate(fd, c.int(1), c.r.scalar(2), c.r.scalar(3)) }
        return (0, 0)
    }

    /// Implements copy_file_range(2) between two handles: scalars [in,
    /// inOffset (-1: the file offset), out, outOffset (-1), length, flags].
    static func copyFileRange(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let input = try c.handle(c.r.scalar(0)), output = try c.handle(c.r.scalar(2))
        var inOff = c.r.scalar(1), outOff = c.r.scalar(3)
        let useIn = inOff >= 0, useOut = outOff >= 0
        let len = Int(min(max(c.r.scalar(4), 0), Int64(Int.max)))
        let flags = UInt32(truncatingIfNeeded: c.r.scalar(5))
        let n = try withUnsafeMutablePointer(to: &inOff) { (ip) throws(Errno) -> Int in
            try withUnsafeMutablePointer(to: &outOff) { (op) throws(Errno) -> Int in
                try sys { cshim_copy_file_range(input, useIn ? ip : nil, output, useOut ? op : nil, len, flags) }
            }
        }
        return (Int64(n), 0)
    }
}
