import CShim
import Glibc
import Logging
import Synchronization
import SysKit

/// homestub's accept loop: one deputy process per connection, started by
/// spawning this same binary (never by forking a threaded Swift process).
public struct Listener {
    public var endpoint: Endpoint
    public var keyFile: String
    public var root: String
    public var log: Logger
    /// Deputies poll this long for the next request before sleeping (µs).
    public var pollMicroseconds = 50

    public init(endpoint: Endpoint, keyFile: String, root: String, log: Logger) {
        self.endpoint = endpoint
        self.keyFile = keyFile
        self.root = root
        self.log = log
    }

    /// The hidden first argument that makes the binary a deputy.
    public static let deputyFlag = "--tether-deputy"

    /// Accepts forever. Returns only if the listening socket fails.
    ///
    /// A deputy is started ahead of each connection (a standby: key read,
    /// export root open), so a new session waits for a descriptor hand-over,
    /// not for a process to start.
    public func run(onListening: (UInt16) -> Void = { _ in }) throws(ConnectError) {
        let fd = try TCP.listen(endpoint)
        let port = TCP.localPort(fd)
        log.info("listening on \(Endpoint(host: endpoint.host, port: port)), export root \(root)")
        onListening(port)
        var session = 0
        var standby = startStandby()
        while true {
            let conn: CInt, peer: String
            do { (conn, peer) = try TCP.accept(fd) } catch {
                if error == .connectionAbort || error == .tooManyOpenFiles { continue }
                throw .system(error)
            }
            session += 1
            var deputy: DeputyProcess? = nil
            if let s = standby, s.handOver(conn, session: session, peer: peer) {
                deputy = s
            } else {
                deputy = startDeputy(connection: conn, session: session)
            }
            Glibc.close(conn)
            if let deputy {
                log.info("session \(session) started: peer \(peer), deputy pid \(deputy.pid)")
                deputy.session.withLock { $0 = session }
            } else {
                log.error("session \(session) from \(peer): cannot start a deputy")
            }
            standby = startStandby()
        }
    }

    /// A deputy process and the session it serves (nil while on standby).
    final class DeputyProcess: Sendable {
        let pid: pid_t
        /// Our end of the standby's control socket (-1 once used).
        let control: CInt
        let session = Mutex<Int?>(nil)

        init(pid: pid_t, control: CInt) {
            self.pid = pid
            self.control = control
        }

        /// Passes the connection to the waiting deputy; false if it is gone.
        func handOver(_ conn: CInt, session: Int, peer: String) -> Bool {
            let note = Array("\(session)\n\(peer)".utf8)
            let ok = note.withUnsafeBytes { cshim_send_fd(control, conn, $0.baseAddress, $0.count) } == 0
            Glibc.close(control)
            return ok
        }
    }

    private func startStandby() -> DeputyProcess? {
        guard let (ours, theirs) = try? FD.socketPair(type: Int32(SOCK_SEQPACKET.rawValue)) else { return nil }
        defer { Glibc.close(theirs) }
        return spawn(["--standby", "3"], keep: theirs, control: ours)
    }

    private func startDeputy(connection: CInt, session: Int) -> DeputyProcess? {
        spawn(["--fd", "3", "--session", String(session)], keep: connection, control: -1)
    }

    private func spawn(_ extra: [String], keep: CInt, control: CInt) -> DeputyProcess? {
        let args = ["homestub", Self.deputyFlag] + extra + ["--root", root, "--key-file", keyFile,
                                                            "--poll-us", String(pollMicroseconds)]
        guard let pid = try? Spawn.plain(path: "/proc/self/exe", argv: args, env: Spawn.environment, keep: [keep]) else {
            if control >= 0 { Glibc.close(control) }
            return nil
        }
        let deputy = DeputyProcess(pid: pid, control: control)
        let log = self.log
        ThreadRunner(name: "deputy-\(pid)") {
            let status = ExitStatus.wait(pid: pid)
            if let id = deputy.session.withLock({ $0 }) {
                log.info("session \(id) ended: deputy exited with status \(status)")
            } else if status != 0 {
                log.warning("standby deputy \(pid) exited with status \(status) before a connection")
            }
        }.start()
        return deputy
    }
}

/// Entry point of a deputy process: `--fd N --session N --root DIR [--key-file F]`
/// (or `--stdio`). Returns the process exit status.
public func deputyMain(arguments: [String], log baseLog: Logger) -> Int32 {
    var fd: CInt = 0, out: CInt = 1, session = "stdio", root = "/", keyFile: String?, standby: CInt?, poll = 50
    var i = 0
    while i < arguments.count {
        let a = arguments[i], v = i + 1 < arguments.count ? arguments[i + 1] : ""
        switch a {
        case "--fd": fd = CInt(v) ?? -1; out = fd; i += 1
        case "--standby": standby = CInt(v); i += 1
        case "--poll-us": poll = Int(v) ?? poll; i += 1
        case "--session": session = v; i += 1
        case "--root": root = v; i += 1
        case "--key-file": keyFile = v.isEmpty ? nil : v; i += 1
        default: break
        }
        i += 1
    }
    var log = baseLog
    guard let standby else {
        log[metadataKey: "session"] = "\(session)"
        return serveSession(input: fd, output: out, root: root, keyFile: keyFile, pollMicroseconds: poll, log: log)
    }
    // Standby: ready everything before the connection arrives.
    guard let (deputy, key) = prepareSession(root: root, keyFile: keyFile, log: log) else { return 1 }
    var note = [UInt8](repeating: 0, count: 512)
    var conn: CInt = -1
    let n = note.withUnsafeMutableBytes { cshim_recv_fd(standby, &conn, $0.baseAddress, $0.count) }
    Glibc.close(standby)
    guard n > 0, conn >= 0 else { return 0 }   // homestub went away first
    let lines = note[0..<n].split(separator: UInt8(ascii: "\n")).map { String(decoding: $0, as: UTF8.self) }
    log[metadataKey: "session"] = "\(lines.first ?? "?")"
    deputy.log = log
    deputy.pollMicroseconds = poll
    deputy.attach(input: conn, output: conn)
    return finishSession(deputy, key: key, log: log)
}

/// Serves one session on (input, output) and logs how it ended.
public func serveSession(input: CInt, output: CInt, root: String, keyFile: String?, pollMicroseconds: Int = 50,
                         log: Logger) -> Int32 {
    guard let (deputy, key) = prepareSession(root: root, keyFile: keyFile, log: log) else { return 1 }
    deputy.pollMicroseconds = pollMicroseconds
    deputy.attach(input: input, output: output)
    return finishSession(deputy, key: key, log: log)
}

/// Reads the key and opens the export root; nil (after logging why) if either fails.
private func prepareSession(root: String, keyFile: String?, log: Logger) -> (Deputy, [UInt8]?)? {
    var key: [UInt8]?
    if let keyFile {
        do { key = try KeyFile.load(keyFile) } catch {
            log.error("\(error)")
            return nil
        }
    }
    let deputy: Deputy
    do { deputy = try Deputy(rootPath: root, log: log) } catch {
        log.error("cannot open export root \(root): \(String(cString: strerror(error.rawValue)))")
        return nil
    }
    _ = raiseDescriptorLimit()
    return (deputy, key)
}

private func finishSession(_ deputy: Deputy, key: [UInt8]?, log: Logger) -> Int32 {
    let end = deputy.run(key: key)
    switch end {
    case .closedByPeer:
        log.info("session closed by peer")
        return 0
    default:
        log.warning("session \(end)")
        return 2
    }
}
