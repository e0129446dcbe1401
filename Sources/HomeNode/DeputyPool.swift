import CShim
import Glibc
import Logging
import SysKit
import Wire

/// homestub's deputy processes: one on standby (started ahead of the next
/// session: export root open, user dropped to, waiting on its control
/// socket) and those serving sessions. Owned by the listener's one thread,
/// which reaps them when SIGCHLD says so: no thread per deputy.
struct DeputyPool {
    /// The arguments every deputy gets after the hidden flag (root, poll, user…).
    let arguments: [String]
    let log: Logger
    private var standby: (pid: pid_t, control: CInt)?
    /// Deputies serving a session: pid → session number.
    private(set) var live: [pid_t: Int] = [:]

    init(arguments: [String], log: Logger) {
        self.arguments = arguments
        self.log = log
    }

    /// Starts the standby if there is none; false if it cannot be started
    /// (no process to be had): the next hand-over tries again.
    @discardableResult
    mutating func prepareStandby() -> Bool {
        if standby != nil { return true }
        guard let (ours, theirs) = try? FD.socketPair(type: Int32(SOCK_SEQPACKET.rawValue)) else { return false }
        defer { Glibc.close(theirs) }
        let argv = ["homestub", Listener.deputyFlag, "--standby", "3", "--parent", String(getpid())] + arguments
        do {
            let pid = try Spawn.plain(path: "/proc/self/exe", argv: argv, env: Spawn.environment, keep: [theirs])
            standby = (pid, ours)
            return true
        } catch {
            Glibc.close(ours)
            log.error("cannot start a deputy: \(String(cString: strerror(error.rawValue)))")
            return false
        }
    }

    /// Passes an authenticated connection, its session number, peer and
    /// session keys to the standby deputy, which serves it from the next
    /// frame on; then starts the next standby. Returns the deputy's pid, or
    /// nil if no deputy could take it (the caller closes the connection).
    mutating func handOver(_ conn: CInt, session: Int, peer: String, keys: SessionKeys?) -> pid_t? {
        // The deputy reads the session with blocking calls (and its own poll).
        guard (try? FD.setBlocking(conn)) != nil else { return nil }
        var note = Array("\(session)\n\(peer)\n".utf8)
        if let keys { note += keys.encoded }
        // A standby that died since it started refuses the descriptor: one more try with a fresh one.
        for _ in 0..<2 {
            guard prepareStandby(), let s = standby else { return nil }
            standby = nil
            let sent = note.withUnsafeBytes { cshim_send_fd(s.control, conn, $0.baseAddress, $0.count) } == 0
            Glibc.close(s.control)
            if sent {
                live[s.pid] = session
                prepareStandby()
                return s.pid
            }
        }
        return nil
    }

    /// Collects every deputy that has exited and logs how each session ended.
    mutating func reap() {
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, WNOHANG)
            if pid <= 0 { return }
            let code = status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
            if let session = live.removeValue(forKey: pid) {
                log.info("session \(session) ended: deputy exited with status \(code)")
            } else {
                if standby?.pid == pid {
                    Glibc.close(standby!.control)
                    standby = nil
                }
                if code != 0 { log.warning("standby deputy \(pid) exited with status \(code) before a connection") }
            }
        }
    }

    /// Ends the standby deputy at once (its control socket closes and it is
    /// killed); sessions being served are left to run.
    mutating func endStandby() {
        guard let s = standby else { return }
        Glibc.close(s.control)
        kill(s.pid, SIGKILL)
        var status: Int32 = 0
        _ = waitpid(s.pid, &status, 0)
        standby = nil
    }
}
