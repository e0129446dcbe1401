import CShim
import Glibc
import Logging
import SysKit

/// homestub's accept loop: one deputy process per connection, started by
/// spawning this same binary (never by forking a threaded Swift process).
public struct Listener {
    public var endpoint: Endpoint
    public var keyFile: String
    public var root: String
    public var log: Logger

    public init(endpoint: Endpoint, keyFile: String, root: String, log: Logger) {
        self.endpoint = endpoint
        self.keyFile = keyFile
        self.root = root
        self.log = log
    }

    /// The hidden first argument that makes the binary a deputy.
    public static let deputyFlag = "--tether-deputy"

    /// Accepts forever. Returns only if the listening socket fails.
    public func run(onListening: (UInt16) -> Void = { _ in }) throws(ConnectError) {
        let fd = try TCP.listen(endpoint)
        let port = TCP.localPort(fd)
        log.info("listening on \(Endpoint(host: endpoint.host, port: port)), export root \(root)")
        onListening(port)
        var session = 0
        while true {
            let conn: CInt, peer: String
            do { (conn, peer) = try TCP.accept(fd) } catch {
                if error == .connectionAbort || error == .tooManyOpenFiles { continue }
                throw .system(error)
            }
            session += 1
            let args = ["homestub", Self.deputyFlag, "--fd", "3", "--session", String(session),
                        "--root", root, "--key-file", keyFile]
            do {
                let pid = try Spawn.plain(path: "/proc/self/exe", argv: args, env: Spawn.environment, keep: [conn])
                log.info("session \(session) started: peer \(peer), deputy pid \(pid)")
                let id = session, log = self.log
                ThreadRunner(name: "session-\(id)") {
                    let status = ExitStatus.wait(pid: pid)
                    log.info("session \(id) ended: deputy exited with status \(status)")
                }.start()
            } catch {
                log.error("session \(session) from \(peer): cannot start a deputy: \(error)")
            }
            Glibc.close(conn)
        }
    }
}

/// Entry point of a deputy process: `--fd N --session N --root DIR [--key-file F]`
/// (or `--stdio`). Returns the process exit status.
public func deputyMain(arguments: [String], log baseLog: Logger) -> Int32 {
    var fd: CInt = 0, out: CInt = 1, session = "stdio", root = "/", keyFile: String?
    var i = 0
    while i < arguments.count {
        let a = arguments[i], v = i + 1 < arguments.count ? arguments[i + 1] : ""
        switch a {
        case "--fd": fd = CInt(v) ?? -1; out = fd; i += 1
        case "--session": session = v; i += 1
        case "--root": root = v; i += 1
        case "--key-file": keyFile = v.isEmpty ? nil : v; i += 1
        default: break
        }
        i += 1
    }
    var log = baseLog
    log[metadataKey: "session"] = "\(session)"
    return serveSession(input: fd, output: out, root: root, keyFile: keyFile, log: log)
}

/// Serves one session on (input, output) and logs how it ended.
public func serveSession(input: CInt, output: CInt, root: String, keyFile: String?, log: Logger) -> Int32 {
    var key: [UInt8]?
    if let keyFile {
        do { key = try KeyFile.load(keyFile) } catch {
            log.error("\(error)")
            return 1
        }
    }
    let deputy: Deputy
    do { deputy = try Deputy(input: input, output: output, rootPath: root, log: log) } catch {
        log.error("cannot open export root \(root): \(String(cString: strerror(error.rawValue)))")
        return 1
    }
    _ = raiseDescriptorLimit()
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
