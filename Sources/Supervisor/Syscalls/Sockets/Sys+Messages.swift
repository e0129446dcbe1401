import CShim
import Glibc
import SysKit
import Wire

/// Descriptors passed over local Unix sockets (SCM_RIGHTS). The kernel puts
/// a received descriptor at the lowest free number, where the filter does
/// not watch data calls: a placeholder landing there would be read as a
/// bare socket. So when the message at the head of a Unix socket carries a
/// placeholder, the supervisor receives it itself and installs each
/// descriptor in the tracee where it belongs; other messages are received
/// by the kernel as usual.
enum Messages {
    static let SCM_RIGHTS: Int32 = 1, MSG_CMSG_CLOEXEC: Int32 = 0x4000_0000

    /// Implements recvmsg(2).
    static func recvmsg(_ c: borrowing Call) throws(Failure) -> Reply {
        if let r = try Datagrams.recvmsg(c) { return r }
        // It may wait for a message to peek at.
        c.worker.handOffReceiving()
        let t = try c.thread()
        guard let sock = try? PidFD.getFD(t.pidfd, c.fd(0)) else { return .continueSyscall }
        defer { Glibc.close(sock) }
        var domain: CInt = 0
        var len = socklen_t(MemoryLayout<CInt>.size)
        guard getsockopt(sock, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0, domain == AF_UNIX else { return .continueSyscall }
        let flags = c.int(2)
        guard try headCarriesPlaceholder(c, sock, wait: flags & Int32(MSG_DONTWAIT) == 0) else {
            // The head may change before the kernel receives it (another
            // reader): what it receives may be a placeholder, at a low number.
            c.sup.tracees.markLowPlaceholders(t.process)
            return .continueSyscall
        }
        return .value(Int64(try receive(c, sock, flags: flags)))
    }

    /// Implements recvmmsg(2): a datagram socket's at home, or the kernel's
    /// (which may receive placeholders at low numbers).
    static func recvmmsg(_ c: borrowing Call) throws(Failure) -> Reply {
        if let r = try Datagrams.recvmmsg(c) { return r }
        return try Descriptors.mayReceivePlaceholder(c)
    }

    /// Peeks at the head message's descriptors (waiting for one to arrive,
    /// in short polls that notice a signal, unless the call would not block).
    private static func headCarriesPlaceholder(_ c: borrowing Call, _ sock: CInt, wait: Bool) throws(Failure) -> Bool {
        var byte: UInt8 = 0
        var control = [UInt64](repeating: 0, count: 512)   // 4 KiB, aligned for cmsghdr
        while true {
            let n: Int = withUnsafeMutablePointer(to: &byte) { bp in
                control.withUnsafeMutableBytes { cb in
                    var iov = iovec(iov_base: bp, iov_len: 1)
                    return withUnsafeMutablePointer(to: &iov) { ip in
                        var m = msghdr()
                        m.msg_iov = ip
                        m.msg_iovlen = 1
                        m.msg_control = cb.baseAddress
                        m.msg_controllen = cb.count
                        return Glibc.recvmsg(sock, &m, Int32(MSG_PEEK | MSG_DONTWAIT) | MSG_CMSG_CLOEXEC)
                    }
                }
            }
            if n >= 0 {
                var found = false
                control.withUnsafeBytes { cb in
                    forEachDescriptor(cb) { fd in
                        if let info = try? FD.inode(fd), info.isSocket, c.sup.watchers.lookup(inode: info.ino) != nil { found = true }
                        Glibc.close(fd)   // the peek received copies
                    }
                }
                return found
            }
            guard Glibc.errno == EAGAIN, wait else { return false }
            var p = pollfd(fd: sock, events: Int16(POLLIN), revents: 0)
            _ = poll(&p, 1, 50)
            guard c.sup.listener.isValid(id: c.id) else { throw .errno(.interrupted) }
        }
    }

    /// Receives the message as the tracee asked, into its buffers, with
    /// each passed descriptor installed in the tracee.
    private static func receive(_ c: borrowing Call, _ sock: CInt, flags: Int32) throws(Failure) -> Int {
        // struct msghdr (x86_64): name 0, namelen 8, iov 16, iovlen 24, control 32, controllen 40, flags 48.
        var h = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        try local { () throws(Errno) in try c.memory.readExactly(c.address(1), into: &h, count: 56) }
        let (nameAddr, nameLen, iovAddr, iovCount, controlAddr, controlLen) = (h.0, Int(UInt32(truncatingIfNeeded: h.1)), h.2, Int(h.3), h.4, Int(h.5))
        guard iovCount >= 0, iovCount <= Int(UIO_MAXIOV) else { throw .errno(.invalidArgument) }
        let iovs = c.worker.scratch.baseAddress!
        try local { () throws(Errno) in try c.memory.readExactly(iovAddr, into: iovs, count: iovCount * 16) }
        var want = 0
        for i in 0..<iovCount { want += Int(iovs.loadUnaligned(fromByteOffset: i * 16 + 8, as: UInt64.self)) }
        let data = c.worker.slot.payload(for: .write)
        want = min(want, data.count, Wire.maxPayload)
        var control = [UInt64](repeating: 0, count: (min(controlLen, 4096) + 7) / 8)
        var name = [UInt8](repeating: 0, count: 128)
        var got = 0, outControlLen = 0, outNameLen: socklen_t = 0, outFlags: Int32 = 0
        let n: Int = control.withUnsafeMutableBytes { cb in
            name.withUnsafeMutableBytes { nb in
                var iov = iovec(iov_base: data.baseAddress, iov_len: want)
                return withUnsafeMutablePointer(to: &iov) { ip in
                    var m = msghdr()
                    m.msg_iov = ip
                    m.msg_iovlen = 1
                    m.msg_control = cb.count > 0 ? cb.baseAddress : nil
                    m.msg_controllen = cb.count
                    if nameAddr != 0 { m.msg_name = nb.baseAddress; m.msg_namelen = socklen_t(min(nameLen, nb.count)) }
                    let r = Glibc.recvmsg(sock, &m, (flags & ~Int32(MSG_PEEK)) | Int32(MSG_DONTWAIT) | MSG_CMSG_CLOEXEC)
                    outControlLen = m.msg_controllen
                    outNameLen = m.msg_namelen
                    outFlags = m.msg_flags
                    return r
                }
            }
        }
        if n < 0 { throw .errno(lastErrno()) }
        got = n
        // Install the descriptors and rewrite their numbers.
        var failure: Failure?
        control.withUnsafeMutableBytes { cb in
            let region = UnsafeMutableRawBufferPointer(rebasing: cb[0..<min(outControlLen, cb.count)])
            forEachDescriptorSlot(region) { offset in
                let fd = region.loadUnaligned(fromByteOffset: offset, as: CInt.self)
                defer { Glibc.close(fd) }
                do throws(Failure) {
                    let closeOnExec = flags & MSG_CMSG_CLOEXEC != 0
                    let isPlaceholder = (try? FD.inode(fd)).map { $0.isSocket && c.sup.watchers.lookup(inode: $0.ino) != nil } ?? false
                    let number: CInt = isPlaceholder
                        ? try c.place(fd, closeOnExec: closeOnExec, minimum: 0, answer: false)
                        : try local { () throws(Errno) in try c.sup.listener.install(id: c.id, source: fd, closeOnExec: closeOnExec, at: nil) }
                    region.storeBytes(of: number, toByteOffset: offset, as: CInt.self)
                } catch {
                    if failure == nil { failure = error }
                }
            }
        }
        if let failure { throw failure }
        // Scatter the data into the tracee's iovecs.
        var done = 0
        for i in 0..<iovCount where done < got {
            let base = iovs.loadUnaligned(fromByteOffset: i * 16, as: UInt64.self)
            let size = min(Int(iovs.loadUnaligned(fromByteOffset: i * 16 + 8, as: UInt64.self)), got - done)
            try local { () throws(Errno) in try c.memory.write(base, from: data.baseAddress! + done, count: size) }
            done += size
        }
        let count = min(outControlLen, controlLen)
        if count > 0 {
            let bytes = control.withUnsafeBytes { Array($0.prefix(count)) }
            try local { () throws(Errno) in try c.memory.write(controlAddr, from: bytes, count: count) }
        }
        if nameAddr != 0 {
            let bytes = Array(name.prefix(min(Int(outNameLen), nameLen)))
            try local { () throws(Errno) in try c.memory.write(nameAddr, from: bytes, count: bytes.count) }
        }
        var nameLenOut = UInt32(outNameLen)
        try local { () throws(Errno) in try c.memory.write(c.address(1) + 8, from: &nameLenOut, count: 4) }
        var controlOut = UInt64(min(outControlLen, controlLen))
        try local { () throws(Errno) in try c.memory.write(c.address(1) + 40, from: &controlOut, count: 8) }
        var flagsOut = outFlags
        try local { () throws(Errno) in try c.memory.write(c.address(1) + 48, from: &flagsOut, count: 4) }
        return got
    }

    /// Calls `body` with each descriptor in the SCM_RIGHTS messages of a control buffer.
    private static func forEachDescriptor(_ control: UnsafeRawBufferPointer, _ body: (CInt) -> Void) {
        forEachRightsRange(control) { start, count in
            for k in 0..<count { body(control.loadUnaligned(fromByteOffset: start + 4 * k, as: CInt.self)) }
        }
    }

    /// Calls `body` with the byte offset of each descriptor slot.
    private static func forEachDescriptorSlot(_ control: UnsafeMutableRawBufferPointer, _ body: (Int) -> Void) {
        forEachRightsRange(UnsafeRawBufferPointer(control)) { start, count in
            for k in 0..<count { body(start + 4 * k) }
        }
    }

    /// Walks cmsghdrs (len u64, level i32, type i32, data; 8-byte aligned).
    private static func forEachRightsRange(_ control: UnsafeRawBufferPointer, _ body: (Int, Int) -> Void) {
        var offset = 0
        while offset + 16 <= control.count {
            let length = Int(control.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
            let level = control.loadUnaligned(fromByteOffset: offset + 8, as: Int32.self)
            let type = control.loadUnaligned(fromByteOffset: offset + 12, as: Int32.self)
            guard length >= 16, offset + length <= control.count else { return }
            if level == SOL_SOCKET && type == SCM_RIGHTS { body(offset + 16, (length - 16) / 4) }
            offset += (length + 7) & ~7
        }
    }
}
