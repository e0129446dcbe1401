import CShim
import Glibc
import Logging
import SysKit
import Wire

/// Entry point of a deputy process that homestub's listener spawned:
/// `--standby FD --parent PID --root DIR --poll-us N --max-open N
/// --max-inflight N --idle-timeout SECONDS --log-level LEVEL --log-format FORMAT [--allow-devices] [--user NAME]`.
/// The standby readies itself (dies with the listener until
/// it has a session, drops to the user, opens the export root), then waits
/// on its control socket FD for an authenticated connection and the note
/// "session\npeer\n" followed by the 64-byte session keys (none when the
/// session has no key). It never runs the handshake: the listener has.
/// Returns the process exit status.
public func deputyMain(arguments: [String], log baseLog: Logger) -> Int32 {
    var root = "/", standby: CInt?, poll = 50, parent: pid_t = 0, allowDevices = false, user: String?
    var limits = SessionLimits(), idleTimeout = 30
    var level = baseLog.logLevel, format = LogFormat.text
    var i = 0
    while i < arguments.count {
        let a = arguments[i], v = i + 1 < arguments.count ? arguments[i + 1] : ""
        switch a {
        case "--standby": standby = CInt(v); i += 1
        case "--parent": parent = pid_t(v) ?? 0; i += 1
        case "--poll-us": poll = Int(v) ?? poll; i += 1
        case "--max-open": limits.maxOpen = Int(v) ?? limits.maxOpen; i += 1
        case "--max-inflight": limits.maxInflight = Int(v) ?? limits.maxInflight; i += 1
        case "--idle-timeout": idleTimeout = Int(v) ?? idleTimeout; i += 1
        case "--root": root = v; i += 1
        case "--user": user = v; i += 1
        case "--log-level": level = Logger.Level(rawValue: v) ?? level; i += 1
        case "--log-format": format = LogFormat(rawValue: v) ?? format; i += 1
        case "--allow-devices": allowDevices = true
        default: break
        }
        i += 1
    }
    var log = homeLogger(label: baseLog.label, level: level, format: format)
    guard let standby else {
        log.error("a deputy needs --standby FD")
        return 2
    }
    if let user {
        guard let account = UserAccount.named(user) else {
            log.error("no user named \(user)")
            return 1
        }
        do { try account.become() } catch {
            log.error("\(error)")
            return 1
        }
    }
    // A standby that outlived homestub would wait forever: it dies with it.
    // (After the drop: a change of effective ids clears the death signal.)
    if parent > 0 {
        do { try Privileges.dieWithParent(parent) } catch { return 0 }
    }
    guard let deputy = prepareSession(root: root, allowDevices: allowDevices, log: log) else { return 1 }
    var note = [UInt8](repeating: 0, count: 512)
    var conn: CInt = -1
    let n = note.withUnsafeMutableBytes { cshim_recv_fd(standby, &conn, $0.baseAddress, $0.count) }
    Glibc.close(standby)
    guard n > 0, conn >= 0 else { return 0 }   // homestub went away first
    // A live session keeps running when homestub stops (as sshd's do).
    Privileges.outliveParent()
    guard let (session, _, keys) = HandOverNote.parse(Array(note[0..<n])) else {
        log.error("malformed hand-over note from homestub")
        Glibc.close(conn)
        return 2
    }
    log[metadataKey: "session"] = "\(session)"
    deputy.log = log
    deputy.pollMicroseconds = poll
    deputy.limits = limits
    // A target that vanished without a FIN (a partition) ends the session.
    TCP.detectDeadPeer(conn, withinMilliseconds: UInt32(clamping: idleTimeout * 1000))
    deputy.attach(input: conn, output: conn)
    return report(deputy.serve(keys: keys), log: log)
}

/// What the listener tells a standby deputy along with the connection.
enum HandOverNote {
    /// (session, peer, keys) from "session\npeer\n" + 0 or 64 key bytes.
    static func parse(_ note: [UInt8]) -> (String, String, SessionKeys?)? {
        guard let a = note.firstIndex(of: UInt8(ascii: "\n")),
              let b = note[(a + 1)...].firstIndex(of: UInt8(ascii: "\n")) else { return nil }
        let session = String(decoding: note[..<a], as: UTF8.self)
        let peer = String(decoding: note[(a + 1)..<b], as: UTF8.self)
        let rest = Array(note[(b + 1)...])
        if rest.isEmpty { return (session, peer, nil) }
        guard let keys = SessionKeys(encoded: rest) else { return nil }
        return (session, peer, keys)
    }
}

/// Serves one session on (input, output), handshake included (`--stdio`
/// and the private homes inside wrap-and-run), and logs how it ended.
public func serveSession(input: CInt, output: CInt, root: String, keyFile: String?, pollMicroseconds: Int = 50,
                         allowDevices: Bool = false, limits: SessionLimits = SessionLimits(), log: Logger) -> Int32 {
    var key: [UInt8]?
    if let keyFile {
        do { key = try KeyFile.load(keyFile) } catch {
            log.error("\(error)")
            return 78
        }
    }
    guard let deputy = prepareSession(root: root, allowDevices: allowDevices, log: log) else { return 1 }
    deputy.pollMicroseconds = pollMicroseconds
    deputy.limits = limits
    deputy.attach(input: input, output: output)
    return report(deputy.run(key: key), log: log)
}

/// Opens the export root; nil (after logging why) if it fails.
private func prepareSession(root: String, allowDevices: Bool, log: Logger) -> Deputy? {
    let deputy: Deputy
    do { deputy = try Deputy(rootPath: root, allowDevices: allowDevices, log: log) } catch {
        log.error("cannot open export root \(root): \(String(cString: strerror(error.rawValue)))")
        return nil
    }
    _ = raiseDescriptorLimit()
    // A write to a socket whose peer is gone is EPIPE for the program, never the deputy's death.
    signal(SIGPIPE, SIG_IGN)
    return deputy
}

private func report(_ end: Deputy.End, log: Logger) -> Int32 {
    switch end {
    case .closedByPeer:
        log.info("session closed by peer")
        return 0
    default:
        log.warning("session \(end)")
        return 2
    }
}
