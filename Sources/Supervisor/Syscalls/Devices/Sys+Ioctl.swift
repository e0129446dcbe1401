import CShim
import Glibc
import SysKit
import Wire

/// Terminals and devices at home. A forwarded open that reaches a
/// character device (the open's reply says so) gets a placeholder whose
/// data is pumped (`DevicePump`), so the tracee's plain read, write, poll,
/// select and epoll run natively on it, at the lowest free number as
/// open(2) gives; its ioctls go home from `IoctlLayout`, the one table of
/// argument layouts both sides share. The filter sends only terminal-type
/// ('T') and socket-type (0x89) requests: every other type on a
/// placeholder already gets the kernel's ENOTTY from its socket.
enum Devices {
    /// The ioctl types the filter sends to the supervisor.
    static let interceptedTypes: [UInt8] = [0x54, 0x89]

    /// Installs a placeholder for home `handle`, a character device opened
    /// with `flags`, and answers the open with its number.
    static func open(_ c: borrowing Call, handle: Int64, flags: Int32) throws(Failure) -> Reply {
        let end: CInt, state: SocketState
        do {
            (end, state) = try c.sup.watchers.makeSocketPlaceholder(handle: handle, nonBlocking: flags & O_NONBLOCK != 0,
                                                                     connected: true, device: DeviceLine())
        } catch {
            c.sup.link.release(handle: handle)
            throw .errno(error)
        }
        defer { Glibc.close(end) }
        guard DevicePump.start(state, watchers: c.sup.watchers) else { throw .errno(Errno(rawValue: ENOBUFS)) }
        let fd = try local { () throws(Errno) in
            try c.sup.listener.installAndRespond(id: c.id, source: end, closeOnExec: flags & O_CLOEXEC != 0)
        }
        return .answered(Int64(fd))
    }

    /// Implements ioctl(2). On a device at home: FIONBIO, FIOCLEX and
    /// FIONCLEX act on the tracee's own descriptor (natively); a request of
    /// `IoctlLayout` goes home after every byte written before it, its
    /// argument read and written by the table's layout (EFAULT for a bad
    /// pointer); any other is ENOTTY. Anything else runs natively.
    static func ioctl(_ c: borrowing Call) throws(Failure) -> Reply {
        let fd = c.fd(0)
        guard fd >= 0, c.sup.watchers.hadDevices.load(ordering: .acquiring) else { return .continueSyscall }
        let t = try c.thread()
        let copy: CInt
        do { copy = try PidFD.getFD(t.pidfd, fd) } catch {
            if error == .badFileDescriptor { return .continueSyscall }
            throw .errno(.badFileDescriptor)
        }
        defer { Glibc.close(copy) }
        guard let info = try? FD.inode(copy), info.isSocket, let p = c.sup.watchers.lookup(inode: info.ino),
              let s = p.socket, let line = s.device else { return .continueSyscall }
        let request = UInt32(truncatingIfNeeded: c.raw(1))
        switch request {
        case IoctlLayout.FIONBIO, IoctlLayout.FIOCLEX, IoctlLayout.FIONCLEX: return .continueSyscall
        default: break
        }
        guard let layout = IoctlLayout.of(Int64(request)) else { throw .errno(Errno(rawValue: ENOTTY)) }
        var argument: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0)
        if layout.input > 0 {
            try local { () throws(Errno) in try c.memory.readExactly(c.address(2), into: &argument, count: layout.input) }
        }
        let value = layout.byValue ? Int64(Int32(truncatingIfNeeded: c.raw(2))) : 0
        let scalars = Scalars(p.handle, Int64(request), value)
        // TCXONC goes at once: it may restart output that a pump's write waits on.
        let r = request == IoctlLayout.TCXONC ? try ask(c, scalars, layout, &argument)
            : try line.afterWrites(c, s) { () throws(Failure) in try ask(c, scalars, layout, &argument) }
        if request == IoctlLayout.FIONREAD {
            // What the pump has brought over and the tracee not read yet counts too.
            var home = r.payload.loadUnaligned(as: Int32.self), queued: Int32 = 0
            if cshim_ioctl_ptr(copy, UInt(IoctlLayout.FIONREAD), &queued) == 0 { home &+= queued }
            try local { () throws(Errno) in try c.memory.write(c.address(2), from: &home, count: 4) }
        } else if layout.output > 0 {
            try local { () throws(Errno) in try c.memory.write(c.address(2), from: r.payload.baseAddress!, count: layout.output) }
        }
        if flushesInput(request, c.raw(2)) { discardQueued(copy) }
        return .value(r.result)
    }

    /// Sends the ioctl home, its argument copied into the slot's payload
    /// only now (a drain before it uses the same buffer).
    private static func ask(_ c: borrowing Call, _ scalars: Scalars, _ layout: IoctlLayout,
                            _ argument: inout (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64)) throws(Failure) -> ResponseView {
        let payload = c.worker.slot.payload(for: .ioctl)
        withUnsafeBytes(of: &argument) { payload.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: layout.input) }
        return try c.home(.ioctl, scalars, payloadLength: layout.input)
    }

    /// TCSETSF, and TCFLSH of the input queue: the input already pumped
    /// over goes too.
    private static func flushesInput(_ request: UInt32, _ argument: UInt64) -> Bool {
        if request == IoctlLayout.TCSETSF { return true }
        return request == IoctlLayout.TCFLSH && (argument & 0xffff_ffff == UInt64(TCIFLUSH) || argument & 0xffff_ffff == UInt64(TCIOFLUSH))
    }

    /// Reads away what waits on the tracee's end (`copy`, its descriptor).
    private static func discardQueued(_ copy: CInt) {
        var buf: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &buf) { b in
            while recv(copy, b.baseAddress, b.count, Int32(MSG_DONTWAIT)) > 0 {}
        }
    }
}

extension Call {
    /// `known` (a placeholder already found) if it is not nil, else the
    /// placeholder of a device at home behind the tracee's `fd` (any
    /// number), or nil: for the calls that describe the object (fstat, and
    /// names relative to it such as /proc/self/fd/N), which `placeholder`
    /// leaves to the pumped end as it does a socket's. Nothing to look up
    /// until the session has had a device.
    func devicePlaceholder(fd: Int32, unless known: Placeholder?) throws(Failure) -> Placeholder? {
        if let known { return known }
        guard fd >= 0, sup.watchers.hadDevices.load(ordering: .acquiring) else { return nil }
        let t = try thread()
        let copy: CInt
        do { copy = try PidFD.getFD(t.pidfd, fd) } catch {
            if error == .badFileDescriptor { return nil }
            throw .errno(.badFileDescriptor)
        }
        defer { Glibc.close(copy) }
        guard let info = try? FD.inode(copy), info.isSocket, let p = sup.watchers.lookup(inode: info.ino),
              p.socket?.device != nil else { return nil }
        return p
    }
}
