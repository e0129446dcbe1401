import CShim
import Glibc
import SysKit
import Wire

/// The up pump's way past its own memory: when at least `threshold` bytes
/// wait on our end of the pair, they are spliced into a pipe and from it
/// onto the home stream after the write request's header, so the
/// supervisor never copies them (the home splices them on in the same way,
/// `InboundPayload`). Smaller chunks are copied as before: two syscalls
/// more would cost more than the copy they save.
///
/// Only on an unsealed link (a sealed payload must pass through the
/// cipher), and only when our end refuses descriptors (`SO_PASSRIGHTS`
/// off, `refuseDescriptors`): splice(2) drops a message's SCM_RIGHTS
/// unseen, where the copying `receive` sees them and resets the
/// connection. The pipe is made on the first large chunk.
struct UpSplice: ~Copyable {
    private let allowed: Bool
    private var pipe: (read: CInt, write: CInt)?
    private var unavailable = false

    static let threshold = 64 << 10
    /// Below home's smallest sensible `--max-inflight`.
    static let fewCallsAtHome = 32

    init(_ s: SocketState, _ fd: CInt) {
        allowed = s.link.splicesPayloads && Self.refusesDescriptors(fd)
    }

    deinit {
        if let pipe {
            Glibc.close(pipe.read)
            Glibc.close(pipe.write)
        }
    }

    /// Turns `SO_PASSRIGHTS` off on `fd` (Linux 6.16+): a tracee's sendmsg
    /// with SCM_RIGHTS to the placeholder then fails with EPERM, as no
    /// descriptor can reach home. Quietly nothing on older kernels.
    static func refuseDescriptors(_ fd: CInt) {
        var off: CInt = 0
        _ = setsockopt(fd, SOL_SOCKET, soPassRights, &off, 4)
    }

    /// Whether `fd` refuses descriptors (see `refuseDescriptors`).
    private static func refusesDescriptors(_ fd: CInt) -> Bool {
        var value: CInt = 1
        var length = socklen_t(4)
        return getsockopt(fd, SOL_SOCKET, soPassRights, &value, &length) == 0 && value == 0
    }

    /// SO_PASSRIGHTS (asm-generic/socket.h; newer than this libc's headers).
    static let soPassRights: Int32 = 83

    /// Sends home, spliced, what waits on `fd` if it is a large chunk: the
    /// byte count sent (written whole at home), 0 when nothing was (the
    /// caller copies instead), nil when it failed (the link, or home's
    /// socket: the chunk's bytes are gone, so the stream cannot go on).
    mutating func send(_ s: SocketState, _ fd: CInt, _ slot: HomeLink.Slot) -> Int? {
        // A spliced chunk home refuses for want of room (EAGAIN, see
        // `BusyHome`) is gone; a copied one is sent again. So chunks are
        // spliced only while few calls are at home.
        guard allowed, s.link.callsAtHome < Self.fewCallsAtHome, cshim_socket_queued(fd) >= Self.threshold,
              let pipe = takePipe() else { return 0 }
        let n = cshim_splice(fd, nil, pipe.write, Wire.maxPayload, 1)
        if n <= 0 { return 0 }
        guard let r = try? s.link.call(slot, .streamWrite, Scalars(s.handle), payloadLength: n, payloadPipe: pipe.read),
              r.result == Int64(n) else { return nil }
        return n
    }

    private mutating func takePipe() -> (read: CInt, write: CInt)? {
        if let pipe { return pipe }
        if unavailable { return nil }
        var fds: (CInt, CInt) = (-1, -1)
        let rc = withUnsafeMutableBytes(of: &fds) {
            cshim_pipe_sized($0.baseAddress!.assumingMemoryBound(to: CInt.self), CInt(Wire.maxPayload))
        }
        guard rc == 0 else {
            unavailable = true
            return nil
        }
        pipe = fds
        return fds
    }
}
