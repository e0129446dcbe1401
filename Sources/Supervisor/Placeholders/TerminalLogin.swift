import CShim
import Glibc
import Synchronization
import SysKit
import Wire

/// `--stdio home` with an ssh:// home, whose `homestub --stdio` runs under
/// `ssh -T` and so has no terminal: a second login with one (`ssh -tt` to
/// the same destination, with the same ssh options, so a ControlMaster the
/// first set up carries it too) runs `homestub --hand-terminal`, which
/// hands the pty sshd made for it to this session (`HomeHandedTerminal`):
/// a rendezvous in a private directory at home, and a one-time secret that
/// crossed the session's own stream. The program then has that pty as its
/// standard streams (`HomeStdio`); what the user types on this terminal
/// reaches it through the login, and ssh relays window size changes.
///
/// The program starts only after the handover: a failure ends
/// wrap-and-run with one line, the login ended first, and the program
/// never ran.
final class TerminalLogin: Sendable {
    let pid: pid_t
    private let pidfd: CInt
    /// The rendezvous handle at home: after the handover, the helper's
    /// connection (the terminal's signals come on it).
    let rendezvous: Int64

    private init(pid: pid_t, pidfd: CInt, rendezvous: Int64) {
        self.pid = pid
        self.pidfd = pidfd
        self.rendezvous = rendezvous
    }

    /// Offers a rendezvous at home, starts the login (`command` gives its
    /// shell command for the directory and the hex secret) and waits for
    /// the terminal it hands over; returns the login and the terminal's handle.
    static func start(link: HomeLink, command: (String, String) -> String) throws(LaunchError) -> (TerminalLogin, Int64) {
        let control = link.slots[HomeLink.controlSlot]
        guard let r = try? link.call(control, .terminalOffer, Scalars()) else {
            throw .spawn("--stdio home: the connection to home failed")
        }
        guard r.result >= 0 else {
            let e = Int32(truncatingIfNeeded: -r.result)
            throw .terminal(.login, e == EINVAL ? "--stdio home: the home's homestub cannot hand over a terminal (update it)"
                            : "--stdio home: cannot wait for a terminal at home: \(String(cString: strerror(e)))")
        }
        let rendezvous = r.result
        let secret = r.payload.prefix(Wire.terminalSecretSize).map { String($0, radix: 16).leftPadded(to: 2) }.joined()
        let directory = String(decoding: r.payload.dropFirst(Wire.terminalSecretSize), as: UTF8.self)
        let shell = command(directory, secret)

        // Its standard error comes here: said in our one line if it fails, copied through once it worked.
        var ends: [CInt] = [-1, -1]
        guard cshim_pipe_sized(&ends, 65536) == 0 else { throw .terminal(.login, "--stdio home: pipe: \(String(cString: strerror(errno)))") }
        let pid: pid_t
        do {
            pid = try Spawn.plain(path: "/bin/sh", argv: ["sh", "-c", "exec 2>&3 3>&-\nexec " + shell],
                                  env: Spawn.environment, keep: [ends[1]])
        } catch {
            Glibc.close(ends[0])
            Glibc.close(ends[1])
            throw .terminal(.login, "--stdio home: cannot start the terminal login: \(String(cString: strerror(error.rawValue)))")
        }
        Glibc.close(ends[1])
        let errors = ends[0]
        let login = TerminalLogin(pid: pid, pidfd: cshim_pidfd_open(pid, 0), rendezvous: rendezvous)

        // The wait at home, on a slot of its own; this thread watches the login.
        let answer = Mutex<Int64?>(nil)
        guard let slot = link.takeSlot() else { throw login.abandon(errors, "--stdio home: no link slot for the handover") }
        ThreadRunner(name: "terminal-handover") {
            let result = (try? link.call(slot, .terminalAccept, Scalars(rendezvous)))?.result ?? -Int64(EIO)
            answer.withLock { $0 = result }
        }.start()
        var ended = false
        while true {
            if let result = answer.withLock({ $0 }) {
                link.returnSlot(slot)
                if result >= 0 {
                    ThreadRunner(name: "terminal-login-errors") { copyThrough(errors) }.start()
                    return (login, result)
                }
                throw login.abandon(errors, Self.refusal(Int32(truncatingIfNeeded: -result)))
            }
            if ended {
                // The login's helper may have told home why just before it
                // ended; after that, the login itself failed.
                for _ in 0..<40 where answer.withLock({ $0 }) == nil { usleep(50_000) }
                if answer.withLock({ $0 }) != nil { continue }
                link.cancelCall(on: slot)
                let status = login.exitStatus()
                let said = lastLine(errors)
                throw login.abandon(errors, "--stdio home: the second login, for the home's terminal, ended (status \(status))"
                                    + (said.isEmpty ? " before it handed the terminal over" : ": \(said)"))
            }
            var p = pollfd(fd: login.pidfd, events: Int16(POLLIN), revents: 0)
            ended = Glibc.poll(&p, 1, 50) > 0
        }
    }

    /// A thread that waits at home for the signals the terminal sent the
    /// helper (one byte each, read from the rendezvous handle; see
    /// `TerminalHelper.relay`) and sends each to the program's foreground
    /// group as a terminal would: the processes of its tree still in its
    /// process group (wrap-and-run's, which holds the ssh logins too: they
    /// must not get them).
    func relaySignals(link: HomeLink, to program: pid_t) {
        guard let slot = link.takeSlot() else { return }
        let rendezvous = self.rendezvous
        ThreadRunner(name: "terminal-signals") {
            while let r = try? link.call(slot, .read, Scalars(rendezvous, 1)), r.result == 1 {
                let s = Int32(r.payload[0])
                guard s == SIGINT || s == SIGQUIT else { continue }
                for p in foregroundGroup(of: program) { kill(p, s) }
            }
            link.returnSlot(slot)
        }.start()
    }

    /// The line for a handover home refused.
    private static func refusal(_ e: Int32) -> LaunchError {
        switch e {
        case EACCES: return .terminal(.refused, "--stdio home: refused the terminal offered at home: it came without this session's secret, or from another user")
        case ENOTTY: return .terminal(.none, "--stdio home: the home has no terminal (sshd gave the second login no pty)")
        case EIO: return .spawn("--stdio home: the connection to home failed")
        default: return .terminal(.login, "--stdio home: the terminal handover failed: \(String(cString: strerror(e)))")
        }
    }

    /// Ends the login (it puts this terminal back as it leaves) and
    /// returns `error`, the program never having started.
    private func abandon(_ errors: CInt, _ why: String) -> LaunchError { abandon(errors, LaunchError.terminal(.login, why)) }

    private func abandon(_ errors: CInt, _ error: LaunchError) -> LaunchError {
        kill(pid, SIGTERM)
        waitForExit(milliseconds: 3000)
        Glibc.close(errors)
        return error
    }

    /// After the program, once the session is closed (home has let the
    /// terminal and its helper go): waits for the login to end, so that it
    /// has put this terminal back before wrap-and-run exits.
    func finish() {
        if !waitForExit(milliseconds: 10_000) {
            kill(pid, SIGTERM)
            waitForExit(milliseconds: 3000)
        }
    }

    @discardableResult
    private func waitForExit(milliseconds: Int32) -> Bool {
        var p = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
        while true {
            let n = Glibc.poll(&p, 1, milliseconds)
            if n < 0 && errno == EINTR { continue }
            return n > 0
        }
    }

    /// The login's exit status as a shell gives it (128+N for signal N; -1 unknown).
    private func exitStatus() -> Int32 {
        var status: Int32 = 0
        guard waitpid(pid, &status, 0) == pid else { return -1 }
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }
}

/// `root` and its descendants that are in `root`'s process group.
private func foregroundGroup(of root: pid_t) -> [pid_t] {
    let group = getpgid(root)
    guard group > 0 else { return [] }
    var found: [pid_t] = [], next = [root]
    while let p = next.popLast() {
        if getpgid(p) == group { found.append(p) }
        guard let tasks = opendir("/proc/\(p)/task") else { continue }
        while let entry = readdir(tasks) {
            let tid = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard Int32(tid) != nil, let children = try? FD.readSmallFile("/proc/\(p)/task/\(tid)/children") else { continue }
            next += String(decoding: children, as: UTF8.self).split(separator: " ").compactMap { pid_t($0) }
        }
        closedir(tasks)
    }
    return found
}

/// The last non-empty line of what the ended login wrote on its standard
/// error (what is there now, at most 64 KiB: a process it left behind may
/// hold the pipe open).
private func lastLine(_ fd: CInt) -> String {
    try? FD.setNonBlocking(fd)
    var bytes = [UInt8](), chunk = [UInt8](repeating: 0, count: 4096)
    while bytes.count < 1 << 16 {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        bytes += chunk[0..<n]
    }
    return String(decoding: bytes, as: UTF8.self).split(whereSeparator: \.isNewline).last.map { String($0) } ?? ""
}

/// Copies what the login writes on its standard error to ours, until it ends.
private func copyThrough(_ fd: CInt) {
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        _ = buffer.withUnsafeBytes { write(2, $0.baseAddress, n) }
    }
    Glibc.close(fd)
}

private extension String {
    func leftPadded(to width: Int) -> String { count >= width ? self : String(repeating: "0", count: width - count) + self }
}
