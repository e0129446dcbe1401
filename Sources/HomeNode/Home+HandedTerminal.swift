import CShim
import Glibc
import Synchronization
import SysKit
import Wire

/// The handover of a terminal from a second login at home, for `wrap-and-run
/// --stdio home` with an ssh:// home (its `homestub --stdio` runs under
/// `ssh -T`: no terminal). The session offers a rendezvous, a Unix socket in
/// a new private (0700) directory, with a one-time secret that only its
/// client learns (over the session's own stream); the client starts
/// `homestub --hand-terminal DIR` (`TerminalHelper`) in a login that has a
/// terminal (`ssh -tt`), which connects, proves itself with the secret and
/// sends its controlling terminal (SCM_RIGHTS). The first connection ends
/// the offer, whatever it brings: a wrong secret cannot be retried.
final class HandedTerminal: Sendable {
    /// The directory of the rendezvous, until its first connection or the session's end.
    private let directory = Mutex<String?>(nil)
    /// The listener's descriptor and the secret, once offered (one offer per session).
    private let offer = Mutex<(listener: CInt, secret: [UInt8])?>(nil)

    /// Makes the rendezvous; EBUSY if the session already made one.
    func make() throws(Errno) -> (listener: CInt, secret: [UInt8], directory: String) {
        let claimed = offer.withLock { o -> Bool in
            if o != nil { return false }
            o = (-1, [])
            return true
        }
        guard claimed else { throw Errno(rawValue: EBUSY) }
        let dir = try Self.privateDirectory()
        let listener: CInt
        do { listener = try UnixSocket.listen(path: dir + "/" + TerminalHandover.socketName) } catch {
            rmdir(dir)
            throw error
        }
        let secret = randomBytes(Wire.terminalSecretSize)
        offer.withLock { $0 = (listener, secret) }
        directory.withLock { $0 = dir }
        return (listener, secret, dir)
    }

    /// The secret of the rendezvous whose listener is `fd`, if it is that.
    func secret(listener fd: CInt) -> [UInt8]? {
        offer.withLock { o in o.flatMap { $0.listener == fd && !$0.secret.isEmpty ? $0.secret : nil } }
    }

    /// Removes the rendezvous's name and forgets its secret: nobody can
    /// connect, nor be accepted, from now on.
    func withdraw() {
        offer.withLock { o in if o != nil { o!.secret = [] } }
        guard let dir = directory.withLock({ d -> String? in defer { d = nil }; return d }) else { return }
        unlink(dir + "/" + TerminalHandover.socketName)
        rmdir(dir)
    }

    /// A new 0700 directory for the rendezvous: under $XDG_RUNTIME_DIR (the
    /// user's own), else $TMPDIR, else /tmp; the socket's path must fit a
    /// `sockaddr_un`.
    private static func privateDirectory() throws(Errno) -> String {
        var last = Errno(rawValue: ENOENT)
        for name in ["XDG_RUNTIME_DIR", "TMPDIR"] as [String?] + [nil] {
            let base = name.flatMap { getenv($0).map { String(cString: $0) } } ?? (name == nil ? "/tmp" : "")
            guard base.hasPrefix("/") else { continue }
            var template = Array((base + "/tether-terminal-XXXXXX").utf8CString)
            guard template.count + TerminalHandover.socketName.utf8.count + 1 <= 108 else {
                last = Errno(rawValue: ENAMETOOLONG)
                continue
            }
            if template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil {
                return String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
            }
            last = lastErrno()
        }
        throw last
    }
}

/// What `homestub --hand-terminal` and its session say to each other: the
/// helper sends the secret and whether a terminal comes with it; the
/// session answers one byte, and on `accepted` holds the connection until
/// it lets the terminal go (the helper then exits, and its login with it).
enum TerminalHandover {
    static let socketName = "terminal"
    static let withTerminal: UInt8 = 1
    static let withoutTerminal: UInt8 = 0
    static let messageSize = Wire.terminalSecretSize + 1
    static let accepted = UInt8(ascii: "A")
    static let refused = UInt8(ascii: "R")
    static let noted = UInt8(ascii: "N")
}

/// The session's side of the handover (ops `terminalOffer`, `terminalAccept`).
enum HomeHandedTerminal {
    /// Implements `terminalOffer`: the rendezvous handle; payload: the
    /// secret, then the directory's path.
    static func offer(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let (listener, secret, dir) = try c.session.handedTerminal.make()
        do { try c.session.handles.insert(listener, kind: .stream) } catch {
            c.session.handedTerminal.withdraw()
            Glibc.close(listener)
            throw error
        }
        let path = Array(dir.utf8)
        c.out.copyBytes(from: secret)
        UnsafeMutableRawBufferPointer(rebasing: c.out[secret.count...]).copyBytes(from: path)
        return (Int64(listener), secret.count + path.count)
    }

    /// Implements `terminalAccept`: scalars [rendezvous]. Takes the first
    /// connection (waits, cancellable), then withdraws the rendezvous. The
    /// peer must be this user (or root) and bring the secret and a terminal:
    /// that is the result's new handle, and the rendezvous handle holds the
    /// helper's connection from then on (closing it, or the session's end,
    /// lets the helper end).
    static func accept(_ c: HomeCall) throws(Errno) -> (Int64, Int) {
        let listener = try c.handle(c.r.scalar(0))
        let handed = c.session.handedTerminal
        guard let secret = handed.secret(listener: listener) else { throw Errno.invalidArgument }
        defer { handed.withdraw() }
        var p = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
        try c.interruptible { Glibc.poll(&p, 1, -1) }
        let conn = try sys { Glibc.accept(listener, nil, nil) }
        _ = cshim_fcntl_int(conn, F_SETFD, Int(FD_CLOEXEC))
        handed.withdraw()
        var terminal: CInt = -1
        var kept = false
        defer {
            if !kept {
                Glibc.close(conn)
                if terminal >= 0 { Glibc.close(terminal) }
            }
        }
        guard let peer = UnixSocket.peerUID(conn), peer == geteuid() || peer == 0 else {
            answer(conn, TerminalHandover.refused)
            throw Errno(rawValue: EACCES)
        }
        // The helper sends as soon as it is connected.
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        _ = setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var message = [UInt8](repeating: 0, count: TerminalHandover.messageSize)
        let n = message.withUnsafeMutableBytes { cshim_recv_fd(conn, &terminal, $0.baseAddress, $0.count) }
        if n < 0 { throw lastErrno() }
        guard n == TerminalHandover.messageSize else { throw Errno(rawValue: EPROTO) }
        var difference: UInt8 = 0
        for i in 0..<Wire.terminalSecretSize { difference |= message[i] ^ secret[i] }
        guard difference == 0 else {
            answer(conn, TerminalHandover.refused)
            throw Errno(rawValue: EACCES)
        }
        guard message[Wire.terminalSecretSize] == TerminalHandover.withTerminal, terminal >= 0, isatty(terminal) == 1 else {
            answer(conn, TerminalHandover.noted)
            throw Errno(rawValue: ENOTTY)
        }
        try c.session.handles.insert(terminal, kind: .stream)
        kept = true
        _ = dup2(conn, listener)
        _ = cshim_fcntl_int(listener, F_SETFD, Int(FD_CLOEXEC))
        Glibc.close(conn)
        answer(listener, TerminalHandover.accepted)
        return (Int64(terminal), 0)
    }

    private static func answer(_ fd: CInt, _ byte: UInt8) {
        var b = byte
        _ = send(fd, &b, 1, Int32(MSG_NOSIGNAL))
    }
}
