import ArgumentParser
import Glibc
import HomeNode
import Logging
import SysKit

LoggingSystem.bootstrap(StreamLogHandler.standardError)

// Each session's deputy is this same binary, spawned with a hidden flag.
if CommandLine.arguments.count > 1 && CommandLine.arguments[1] == Listener.deputyFlag {
    exit(deputyMain(arguments: Array(CommandLine.arguments.dropFirst(2)), log: Logger(label: "homestub")))
}
// The second login of `wrap-and-run --stdio home` with an ssh:// home: hands its terminal over.
if CommandLine.arguments.count > 1 && CommandLine.arguments[1] == TerminalHelper.flag {
    exit(TerminalHelper.main(arguments: Array(CommandLine.arguments.dropFirst(2))))
}

/// sysexits' EX_CONFIG: an unusable key file (as wrap-and-run says it).
let exitKeyFile: Int32 = 78

struct Homestub: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "homestub",
        abstract: "Serve a home node: execute forwarded syscalls inside an export root.",
        discussion: """
            Connections authenticate in the listener; each session then gets its own deputy process holding \
            that session's files, offsets and working directories. Exit status: 0 after SIGTERM or SIGINT, \
            78 unusable key file, 1 other start-up errors.
            Logging goes to stderr: sessions at info when listening; with --stdio only warnings and errors \
            (under ssh, stderr is the user's terminal) unless --log-level says otherwise.
            """ + homestubExamples,
        version: TetherVersion.description)

    @Option(help: "Address to listen on (HOST:PORT).")
    var listen = "127.0.0.1:7455"

    @Option(help: "File holding the pre-shared key: a regular file of at least 32 bytes, owned by this user, not accessible by group or others.")
    var keyFile: String?

    @Option(help: "Export root: every tracee path P is DIR/P, with no escape; device nodes and set-id bits are refused inside it.")
    var root = "/"

    @Flag(help: "Serve one session on stdin/stdout (e.g. under ssh) instead of listening.")
    var stdio = false

    @Option(name: .customLong("poll-us"),
            help: "Microseconds a deputy polls for the next request before sleeping (0: never poll). Waking a halted vCPU costs tens of µs.")
    var pollMicroseconds = 50

    @Option(help: "Seconds a connection may take to authenticate before it is closed.")
    var handshakeTimeout = 10.0

    @Option(help: "Connections still authenticating, at most; a new one beyond it closes the oldest.")
    var maxHandshakes = 64

    @Option(help: "Sessions served at once, at most; a connection beyond it is closed.")
    var maxSessions = 256

    @Option(help: "Each deputy drops to this user and its groups before serving.")
    var user: String?

    @Flag(help: "With --root: let sessions open device nodes inside the root.")
    var allowDevices = false

    @Flag(help: "Serve the network as root without --root or --user (a key holder can then do what root can).")
    var allowRoot = false

    @Option(help: "Handles one session may have open; one more open is EMFILE (at most half the deputy's descriptor limit).")
    var maxOpen = SessionLimits.defaultMaxOpen

    @Option(help: "Calls one session may have running at once off the reader (those that may block); one more is EAGAIN.")
    var maxInflight = SessionLimits.defaultMaxInflight

    @Option(help: "Seconds without an answer from a target (a request or a keepalive probe) before its session ends.")
    var idleTimeout = 30

    @Option(help: "Log this level and above (trace, debug, info, notice, warning, error, critical); default info when listening, warning with --stdio.")
    var logLevel: Logger.Level?

    @Option(help: "text, or json: one object per line with time, level, label, message and metadata (for log shippers).")
    var logFormat = LogFormat.text

    func validate() throws {
        guard handshakeTimeout > 0, handshakeTimeout <= 3600 else { throw ValidationError("--handshake-timeout takes 0 < SECONDS <= 3600") }
        guard maxHandshakes >= 1 else { throw ValidationError("--max-handshakes must be at least 1") }
        guard maxSessions >= 1 else { throw ValidationError("--max-sessions must be at least 1") }
        guard maxOpen >= 1, maxInflight >= 1 else { throw ValidationError("--max-open and --max-inflight must be at least 1") }
        guard idleTimeout >= 1, idleTimeout <= 86_400 else { throw ValidationError("--idle-timeout takes 1 to 86400 seconds") }
    }

    func run() throws {
        let log = homeLogger(label: "homestub", level: logLevel ?? (stdio ? .warning : .info), format: logFormat)
        var st = stat()
        guard stat(root, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else {
            printError("homestub: export root \(root) is not a directory\n")
            throw ExitCode(1)
        }
        var key: [UInt8]?
        if let keyFile {
            do { key = try KeyFile.load(keyFile) } catch {
                printError("homestub: \(error)\n")
                throw ExitCode(exitKeyFile)
            }
        }
        let account = try checkUser()
        if stdio {
            if let account {
                do { try account.become() } catch {
                    printError("homestub: \(error)\n")
                    throw ExitCode(1)
                }
            }
            throw ExitCode(serveSession(input: 0, output: 1, root: root, keyFile: keyFile,
                                        pollMicroseconds: pollMicroseconds, allowDevices: allowDevices,
                                        limits: SessionLimits(maxOpen: maxOpen, maxInflight: maxInflight), log: log))
        }
        guard let key else {
            printError("homestub: --key-file FILE is required when listening on the network\n")
            throw ExitCode(1)
        }
        guard let endpoint = Endpoint(parsing: listen) else {
            printError("homestub: --listen takes HOST:PORT, not \(listen)\n")
            throw ExitCode(1)
        }
        if geteuid() == 0 && account == nil && !allowRoot && isWholeFileSystem {
            printError("""
                homestub: refusing to serve the network as root without --root: a key holder could do \
                anything root can on this machine. Confine it with --root DIR, drop the deputies to a user \
                with --user NAME, or pass --allow-root if that is what you want.

                """)
            throw ExitCode(1)
        }
        var listener = Listener(endpoint: endpoint, key: key, root: root, log: log)
        listener.pollMicroseconds = pollMicroseconds
        listener.handshakeTimeout = UInt64(handshakeTimeout * 1e9)
        listener.maxHandshakes = maxHandshakes
        listener.maxSessions = maxSessions
        listener.allowDevices = allowDevices
        listener.user = account?.name
        listener.limits = SessionLimits(maxOpen: maxOpen, maxInflight: maxInflight)
        listener.idleTimeout = idleTimeout
        listener.logFormat = logFormat
        do { try listener.run() } catch {
            printError("homestub: cannot serve on \(endpoint): \(error)\n")
            throw ExitCode(1)
        }
    }

    /// The export root is the whole file system (no confinement).
    private var isWholeFileSystem: Bool {
        guard let real = realpath(root, nil) else { return true }
        defer { free(real) }
        return String(cString: real) == "/"
    }

    /// The --user account; nil without --user, or when it is the user we already are.
    private func checkUser() throws -> UserAccount? {
        guard let user else { return nil }
        guard let account = UserAccount.named(user) else {
            printError("homestub: --user \(user): no such user\n")
            throw ExitCode(1)
        }
        if account.uid == geteuid() { return nil }
        guard geteuid() == 0 else {
            printError("homestub: --user \(user) needs homestub to run as root\n")
            throw ExitCode(1)
        }
        return account
    }
}

Homestub.main()
