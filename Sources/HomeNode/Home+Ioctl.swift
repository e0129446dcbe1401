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

/// The session's terminal (`wrap-and-run --stdio home`).
enum HomeTerminal {
    /// Implements the `terminal` op: a new open of homestub's standard
    /// error, if that is a terminal (ENOTTY otherwise), so the tracee's
    /// flags on it are its own.
    static func open(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        guard isatty(2) == 1 else { throw Errno(rawValue: ENOTTY) }
        let fd = try sys { cshim_openat(AT_FDCWD, "/proc/self/fd/2", O_RDWR | O_NOCTTY | O_CLOEXEC, 0) }
        guard isatty(fd) == 1 else {
            Glibc.close(fd)
            throw Errno(rawValue: ENOTTY)
        }
        try c.session.handles.insert(fd, kind: .stream)
        return (Int64(fd), 0)
    }

    /// Implements `windowSize`: scalars [handle, rows, cols]; returns the
    /// terminal's window size once it is not rows × cols (looked at every
    /// 100 ms; a cancel ends the wait with EINTR).
    static func windowSize(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let fd = try c.handle(c.r.scalar(0))
        var size = winsize()
        while true {
            if c.cancelled.load(ordering: .acquiring) { throw Errno.interrupted }
            try sys { cshim_ioctl_ptr(fd, UInt(IoctlLayout.TIOCGWINSZ), &size) }
            if Int64(size.ws_row) != c.r.scalar(1) || Int64(size.ws_col) != c.r.scalar(2) { break }
            usleep(100_000)
        }
        withUnsafeBytes(of: &size) { c.out.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: IoctlLayout.winsizeSize) }
        return (0, IoctlLayout.winsizeSize)
    }
}
