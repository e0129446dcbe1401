import Glibc
import Logging
import SysKit
import Wire

/// homestub's listener: one thread that accepts connections and runs
/// their handshakes itself, event-driven (poll over non-blocking sockets,
/// `ServerHandshake` fed one frame at a time), so nothing is spent on a
/// client before it has proved the key: no process, no thread. Only an
/// authenticated connection is handed to a deputy process (started ahead
/// as a standby, by spawning this same binary, never by forking).
///
/// Bounds before authentication: each handshake has a deadline
/// (`handshakeTimeout`), and at most `maxHandshakes` run at once: a new
/// connection beyond that closes the oldest unauthenticated one, so a
/// flood of idle sockets can delay but not lock out a client that
/// authenticates at once. At most `maxSessions` deputies serve sessions;
/// beyond that a new connection is closed at once, and logged.
public struct Listener {
    public var endpoint: Endpoint
    /// The pre-shared key, read once at start-up.
    public var key: [UInt8]
    public var root: String
    public var log: Logger
    /// Deputies poll this long for the next request before sleeping (µs).
    public var pollMicroseconds = 50
    /// How long a connection may take to authenticate (ns).
    public var handshakeTimeout: UInt64 = 10_000_000_000
    /// Connections still authenticating, at most.
    public var maxHandshakes = 64
    /// Deputies serving sessions, at most.
    public var maxSessions = 256
    /// Deputies may open device nodes inside a confined root.
    public var allowDevices = false
    /// Deputies drop to this user before serving (nil: they keep homestub's).
    public var user: String?
    /// What each session may hold.
    public var limits = SessionLimits()
    /// A session whose target has not answered (a request or a keepalive
    /// probe) for this long ends: a silent partition is noticed (seconds).
    public var idleTimeout = 30
    /// How deputies write their log (they log at `log`'s level).
    public var logFormat = LogFormat.text

    public init(endpoint: Endpoint, key: [UInt8], root: String, log: Logger) {
        self.endpoint = endpoint
        self.key = key
        self.root = root
        self.log = log
    }

    /// The hidden first argument that makes the binary a deputy.
    public static let deputyFlag = "--tether-deputy"

    /// What `run` was stopped by.
    public enum Stop: Error, CustomStringConvertible {
        case listening(ConnectError)
        case signals(Errno)
        case privileges(Errno)
        public var description: String {
            switch self {
            case .listening(let e): return "\(e)"
            case .signals(let e): return "cannot watch signals: \(String(cString: strerror(e.rawValue)))"
            case .privileges(let e): return "cannot shed capabilities: \(String(cString: strerror(e.rawValue)))"
            }
        }
    }

    /// Serves until SIGTERM or SIGINT (then returns: the standby deputy is
    /// ended at once, sessions being served keep running, as sshd's do), or
    /// until the listening socket fails (throws).
    ///
    /// With `user` and run as root, the listener keeps only the
    /// capabilities it needs once it listens: CAP_SETUID and CAP_SETGID for
    /// the deputies it spawns to drop to the user, CAP_KILL to end a standby
    /// deputy that has already dropped. It stays uid 0 (it reads nothing
    /// after start-up: the key is read once, before), and its children get
    /// no more than it kept.
    public func run(onListening: (UInt16) -> Void = { _ in }) throws(Stop) {
        let fd: CInt
        do throws(ConnectError) { fd = try TCP.listen(endpoint) } catch { throw .listening(error) }
        defer { Glibc.close(fd) }
        if user != nil && geteuid() == 0 {
            do throws(Errno) { try Privileges.keepOnly([Privileges.setuid, Privileges.setgid, Privileges.kill]) } catch {
                throw .privileges(error)
            }
        }
        _ = try? FD.setNonBlocking(fd)
        let signals: SignalDescriptor
        do throws(Errno) { signals = try SignalDescriptor([SIGCHLD, SIGTERM, SIGINT]) } catch { throw .signals(error) }
        let port = TCP.localPort(fd)
        log.info("listening on \(Endpoint(host: endpoint.host, port: port)), export root \(root)")
        onListening(port)

        var deputies = DeputyPool(arguments: deputyArguments, log: log)
        deputies.prepareStandby()
        var pending: [PendingConnection] = []
        var session = 0
        var evicted = 0, lastEvictionLog: UInt64 = 0
        var polls: [pollfd] = []
        while true {
            polls.removeAll(keepingCapacity: true)
            polls.append(pollfd(fd: signals.fd, events: Int16(POLLIN), revents: 0))
            polls.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0))
            for p in pending { polls.append(pollfd(fd: p.fd, events: p.events, revents: 0)) }
            let now0 = monotonicNanoseconds()
            let timeout = pending.map { $0.deadline }.min().map { d in
                d <= now0 ? 0 : Int32(clamping: (d - now0 + 999_999) / 1_000_000)
            } ?? -1
            if poll(&polls, nfds_t(polls.count), timeout) < 0 && Glibc.errno != EINTR {
                log.error("poll failed: \(String(cString: strerror(Glibc.errno)))")
            }
            let now = monotonicNanoseconds()

            // Signals: deputies that ended, or the order to stop.
            while let s = signals.next() {
                if s == SIGCHLD { deputies.reap(); continue }
                deputies.endStandby()
                log.info("stopping on signal \(s): standby deputy ended, \(deputies.live.count) session(s) keep running")
                return
            }

            // Handshakes in progress.
            for (i, p) in pending.enumerated() {
                let revents = polls[2 + i].revents
                if revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 { p.receive() }
                if revents != 0 || p.phase != .handshaking { p.flush() }
            }
            pending.removeAll { p in
                if p.isSettled {
                    settle(p, deputies: &deputies, session: &session)
                    return true
                }
                if p.deadline <= now {
                    log.info("\(p.peer): no handshake within \(Double(handshakeTimeout) / 1e9) s (--handshake-timeout), closed")
                    return true
                }
                return false
            }

            // New connections.
            while true {
                let accepted: (CInt, String)?
                do throws(Errno) { accepted = try TCP.acceptNonBlocking(fd) } catch {
                    if Self.acceptCanRetry(error) { continue }
                    if Self.acceptMustWait(error) { break }
                    throw .listening(.system(error))
                }
                guard let (conn, peer) = accepted else { break }
                if deputies.live.count >= maxSessions {
                    log.warning("\(peer): refused, \(deputies.live.count) sessions are live (--max-sessions \(maxSessions))")
                    Glibc.close(conn)
                    continue
                }
                if pending.count >= maxHandshakes {
                    pending.removeFirst()   // the oldest unauthenticated connection: closed
                    evicted += 1
                }
                pending.append(PendingConnection(fd: conn, peer: peer, key: key, deadline: now + handshakeTimeout))
            }
            if evicted > 0 && now - lastEvictionLog >= 1_000_000_000 {
                log.warning("\(maxHandshakes) handshakes in progress (--max-handshakes): closed the \(evicted) oldest unauthenticated connection(s)")
                evicted = 0
                lastEvictionLog = now
            }
        }
    }

    /// A handshake that has ended: hand the connection over, or log why not.
    private func settle(_ p: PendingConnection, deputies: inout DeputyPool, session: inout Int) {
        switch p.phase {
        case .handshaking:
            return
        case .refused(let why):
            log.warning("\(p.peer): session refused: \(why)")
        case .gone(let why):
            log.info("\(p.peer): \(why)")
        case .left:
            log.debug("\(p.peer): closed the connection before authenticating")
        case .authenticated:
            guard deputies.live.count < maxSessions else {
                log.warning("\(p.peer): refused after authenticating, \(deputies.live.count) sessions are live (--max-sessions \(maxSessions))")
                return
            }
            session += 1
            if let pid = deputies.handOver(p.fd, session: session, peer: p.peer, keys: p.sessionKeys) {
                log.info("session \(session) started: peer \(p.peer), deputy pid \(pid)")
            } else {
                log.error("session \(session) from \(p.peer): no deputy could be started, connection closed")
            }
        }
    }

    /// accept failed for this connection only (it was reset, or a signal came).
    private static func acceptCanRetry(_ e: Errno) -> Bool {
        e == .connectionAbort || e == .interrupted || e == .protocolError
    }

    /// accept failed for want of descriptors or memory: retry on the next turn.
    private static func acceptMustWait(_ e: Errno) -> Bool {
        let waits: [Errno] = [.tooManyOpenFiles, .tooManyOpenFilesInSystem, .noMemory, .noBufferSpace]
        return waits.contains(e)
    }

    private var deputyArguments: [String] {
        var args = ["--root", root, "--poll-us", String(pollMicroseconds), "--max-open", String(limits.maxOpen),
                    "--max-inflight", String(limits.maxInflight), "--idle-timeout", String(idleTimeout)]
        args += ["--log-level", log.logLevel.rawValue, "--log-format", logFormat.rawValue]
        if allowDevices { args.append("--allow-devices") }
        if let user { args += ["--user", user] }
        return args
    }
}
