import CShim
import Glibc
import SysKit
import Wire

/// `homestub --hand-terminal DIR`, run by `wrap-and-run --stdio home` in a
/// second login with a terminal (`ssh -tt`) while its first login carries
/// the session: hands that terminal (the pty sshd made) to the session
/// waiting at DIR (`HomeHandedTerminal`), proving itself with the secret in
/// $TETHER_TERMINAL_SECRET, then waits until the session lets it go,
/// passing on the ^C and ^\ typed there (the pty's foreground group is
/// this process's, not the program's). It speaks only when the session
/// cannot (it is gone); otherwise wrap-and-run says what happened, and this
/// exit status tells it too.
public enum TerminalHelper {
    public static let flag = "--hand-terminal"
    /// The secret's variable: hex, 2 × `Wire.terminalSecretSize` digits.
    public static let secretVariable = "TETHER_TERMINAL_SECRET"

    /// Exit statuses: the session ended (0), a bad command line (64), the
    /// session refused the secret (77), there was no terminal to hand
    /// (66), no session waits at DIR (69).
    public static let usage: Int32 = 64, noTerminal: Int32 = 66, gone: Int32 = 69, refused: Int32 = 77

    /// Runs the helper with the arguments after the flag; returns its exit status.
    public static func main(arguments: [String]) -> Int32 {
        guard arguments.count == 1, let dir = arguments.first, dir.hasPrefix("/"),
              let hex = getenv(secretVariable).map({ String(cString: $0) }), let secret = bytes(hex: hex),
              secret.count == Wire.terminalSecretSize else {
            printError("homestub: usage: \(secretVariable)=HEX homestub \(flag) DIR (run by wrap-and-run --stdio home)")
            return usage
        }
        unsetenv(secretVariable)
        // The terminal's signals come here (its foreground group is this
        // process's): ^C and ^\ are for the program (relayed once the
        // terminal is handed over), the stops for no one.
        for s in [SIGTSTP, SIGTTIN, SIGTTOU] { signal(s, SIG_IGN) }
        let relayed = [SIGINT, SIGQUIT]
        let signals = relayed.withUnsafeBufferPointer { cshim_signalfd_for($0.baseAddress, $0.count) }
        guard signals >= 0 else {
            printError("homestub: signalfd: \(String(cString: strerror(errno)))")
            return usage
        }
        // Only this user's private directory, and a session of this user (or root), may get the terminal.
        var st = stat()
        guard lstat(dir, &st) == 0 else {
            printError("homestub: no session waits for a terminal at \(dir) (it ended): \(String(cString: strerror(errno)))")
            return gone
        }
        guard st.st_mode & S_IFMT == S_IFDIR, st.st_uid == getuid(), st.st_mode & 0o077 == 0 else {
            printError("homestub: no session waits for a terminal at \(dir) (not a private directory of this user)")
            return gone
        }
        let conn: CInt
        do { conn = try UnixSocket.connect(path: dir + "/" + TerminalHandover.socketName) } catch {
            printError("homestub: no session waits for a terminal at \(dir) (it ended): \(String(cString: strerror(error.rawValue)))")
            return gone
        }
        defer { Glibc.close(conn) }
        guard let peer = UnixSocket.peerUID(conn), peer == getuid() || peer == 0 else {
            printError("homestub: the session waiting at \(dir) is another user's")
            return gone
        }
        let terminal = controllingTerminal()
        var message = secret + [terminal >= 0 ? TerminalHandover.withTerminal : TerminalHandover.withoutTerminal]
        let sent = message.withUnsafeMutableBytes { m in
            terminal >= 0 ? cshim_send_fd(conn, terminal, m.baseAddress, m.count) == 0
                : send(conn, m.baseAddress, m.count, Int32(MSG_NOSIGNAL)) == m.count
        }
        if terminal >= 0 { Glibc.close(terminal) }
        var answer: UInt8 = 0
        guard sent, (try? sys({ read(conn, &answer, 1) })) == 1 else {
            printError("homestub: the session waiting at \(dir) ended before it took the terminal")
            return gone
        }
        switch answer {
        case TerminalHandover.accepted:
            relay(signals, to: conn)
            return 0
        case TerminalHandover.noted: return noTerminal
        default: return refused
        }
    }

    /// Until the session lets the terminal go (or ends): each SIGINT or
    /// SIGQUIT the terminal sends here goes to the session as one byte, its
    /// number, for the program (`TerminalLogin.relaySignals`).
    static func relay(_ signals: CInt, to conn: CInt) {
        var fds = [pollfd(fd: conn, events: Int16(POLLIN), revents: 0), pollfd(fd: signals, events: Int16(POLLIN), revents: 0)]
        while true {
            if Glibc.poll(&fds, 2, -1) < 0 {
                if errno == EINTR { continue }
                return
            }
            if fds[0].revents != 0 {
                var byte: UInt8 = 0
                if (try? sys({ read(conn, &byte, 1) })) ?? 0 <= 0 { return }
            }
            while case let s = cshim_signalfd_next(signals), s > 0 {
                var byte = UInt8(truncatingIfNeeded: s)
                if send(conn, &byte, 1, Int32(MSG_NOSIGNAL)) != 1 { return }
            }
        }
    }

    /// A new open of this process's controlling terminal by its own name
    /// (/dev/pts/N, which the program's ttyname then gives), found on the
    /// standard stream that is it; -1 if there is none.
    static func controllingTerminal() -> CInt {
        let session = getsid(0)
        for fd in Int32(0)...2 where isatty(fd) == 1 && tcgetsid(fd) == session {
            guard let name = ttyname(fd) else { continue }
            let t = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC)
            if t >= 0 { return t }
        }
        return -1
    }

    /// The bytes of an even-length hex string; nil if it is not one.
    static func bytes(hex: String) -> [UInt8]? {
        let digits = Array(hex.utf8)
        guard digits.count % 2 == 0 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(digits.count / 2)
        for i in stride(from: 0, to: digits.count, by: 2) {
            guard let high = hexValue(digits[i]), let low = hexValue(digits[i + 1]) else { return nil }
            out.append(high << 4 | low)
        }
        return out
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
