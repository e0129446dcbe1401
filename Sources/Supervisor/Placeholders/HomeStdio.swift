import CShim
import Glibc
import SysKit
import Wire

/// `--stdio home`: the program's standard input, output and error are the
/// home's terminal (for a `homestub --stdio` home, the terminal its command
/// runs on; for the private home, this one; for an ssh:// home, whose
/// session has none, the pty of a second login, `TerminalLogin`). One
/// device placeholder (`Devices`, `DevicePump`) is the program's 0, 1 and 2
/// from its start, so its reads and writes are pumped, its ioctls (isatty,
/// termios, window size) act on that terminal, and a size change there
/// sends it SIGWINCH.
enum HomeStdio {
    /// The terminal's placeholder: the end the program inherits, and its
    /// state; the login that lent it, if one did.
    struct Terminal {
        let end: CInt
        let state: SocketState
        let login: TerminalLogin?
    }

    /// Opens the home's terminal, the session's own (op `terminal`) or one
    /// a second login hands over (`login`: its shell command, see
    /// `TerminalLogin`), and starts its pump.
    static func open(link: HomeLink, watchers: Watchers,
                     login command: ((String, String) -> String)?) throws(LaunchError) -> Terminal {
        let handle: Int64, login: TerminalLogin?
        if let command {
            (login, handle) = try TerminalLogin.start(link: link, command: command)
        } else {
            login = nil
            let slot = link.slots[HomeLink.controlSlot]
            guard let r = try? link.call(slot, .terminal, Scalars()) else {
                throw .spawn("--stdio home: the connection to home failed")
            }
            guard r.result >= 0 else {
                let e = Int32(truncatingIfNeeded: -r.result)
                throw .spawn(e == ENOTTY ? "--stdio home: the home has no terminal (homestub's standard error is not one)"
                             : "--stdio home: cannot open the home's terminal: \(String(cString: strerror(e)))")
            }
            handle = r.result
        }
        do throws(Errno) {
            let (end, state) = try watchers.makeSocketPlaceholder(handle: handle, nonBlocking: false, connected: true,
                                                                  device: DeviceLine())
            guard DevicePump.start(state, watchers: watchers) else { throw Errno(rawValue: ENOBUFS) }
            return Terminal(end: end, state: state, login: login)
        } catch {
            if let login {
                link.close()
                login.finish()
            }
            throw .spawn("--stdio home: \(String(cString: strerror(error.rawValue)))")
        }
    }

    /// Runs `spawn` with this process's 0, 1 and 2 set to `end` (so the
    /// program inherits it on all three), then puts them back and closes `end`.
    static func inheriting<T, E: Error>(_ end: CInt?, _ spawn: () throws(E) -> T) throws(E) -> T {
        guard let end else { return try spawn() }
        let saved = (0...2).map { dup($0) }
        for fd in Int32(0)...2 { dup2(end, fd) }
        defer {
            for (fd, copy) in saved.enumerated() where copy >= 0 {
                dup2(copy, Int32(fd))
                Glibc.close(copy)
            }
            Glibc.close(end)
        }
        return try spawn()
    }

    /// A thread that waits at home for the terminal's size to change (op
    /// `windowSize`) and sends SIGWINCH to the program's process group, as
    /// a terminal does to its foreground group; the program's TIOCGWINSZ
    /// then reads the new size at home.
    static func relayWindowSize(_ s: SocketState, to pid: pid_t) {
        guard let slot = s.link.takeSlot() else { return }
        ThreadRunner(name: "window-size") {
            var size = winsize()
            // -1 × -1: the first answer is the size now, and sends nothing.
            var rows: Int64 = -1, cols: Int64 = -1
            while !s.isGone {
                guard let r = try? s.link.call(slot, .windowSize, Scalars(s.handle, rows, cols)), r.result == 0 else { break }
                withUnsafeMutableBytes(of: &size) { $0.copyMemory(from: UnsafeRawBufferPointer(r.payload)) }
                let first = rows < 0
                (rows, cols) = (Int64(size.ws_row), Int64(size.ws_col))
                if first { continue }
                let group = getpgid(pid)
                if group > 0 { kill(-group, SIGWINCH) } else { kill(pid, SIGWINCH) }
            }
            s.link.returnSlot(slot)
        }.start()
    }
}
