import CShim
import Glibc
import SysKit
import Wire

/// Terminals and devices at home: the ioctls of `IoctlLayout`, on a
/// character device the session opened. A request the table does not list
/// is ENOTTY and never reaches the kernel: the wire's request number only
/// picks a row, and the row says what the argument is.
enum HomeIoctl {
    /// Implements ioctl(2): scalars [handle, request, value]; payload: the
    /// struct the request reads. Runs on a thread of its own (a drain
    /// waits for the line), and a cancel interrupts it.
    static func ioctl(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let fd = try c.handle(c.r.scalar(0))
        let request = c.r.scalar(1)
        guard request >= 0, request <= Int64(UInt32.max), let layout = IoctlLayout.of(request) else {
            throw Errno(rawValue: ENOTTY)
        }
        var st = stat()
        try sys { fstat(fd, &st) }
        guard st.st_mode & S_IFMT == S_IFCHR else { throw Errno(rawValue: ENOTTY) }
        guard c.r.payload.count == layout.input else { throw Errno.invalidArgument }
        // The largest argument is a struct termios (36 bytes).
        var argument: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
        let result = try withUnsafeMutableBytes(of: &argument) { (buf) throws(Errno) -> CInt in
            if layout.input > 0 { buf.baseAddress!.copyMemory(from: c.r.payload.baseAddress!, byteCount: layout.input) }
            let pointer = layout.byValue ? UnsafeMutableRawPointer(bitPattern: UInt(truncatingIfNeeded: c.r.scalar(2)))
                : (layout.input > 0 || layout.output > 0 ? buf.baseAddress : nil)
            let r = try c.interruptible { cshim_ioctl_ptr(fd, UInt(request), pointer) }
            if layout.output > 0 { c.out.baseAddress!.copyMemory(from: buf.baseAddress!, byteCount: layout.output) }
            return r
        }
        return (Int64(result), layout.output)
    }
}
