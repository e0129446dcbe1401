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

/// sysexits' EX_CONFIG: an unusable key file (as wrap-and-run says it).
let exitKeyFile: Int32 = 78

struct Homestub: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "homestub",
        abstract: "Serve a home node: execute forwarded syscalls inside an export root.",
        discussion: "Each connection gets its own deputy process holding that session's files, offsets and working directories.")

    @Option(help: "Address to listen on (HOST:PORT).")
    var listen = "127.0.0.1:7455"

    @Option(help: "File holding the pre-shared key: at least 32 bytes, not readable by group or others.")
    var keyFile: String?

    @Option(help: "Export root: every tracee path P is DIR/P, with no escape.")
    var root = "/"

    @Flag(help: "Serve one session on stdin/stdout (e.g. under ssh) instead of listening.")
    var stdio = false

    @Option(name: .customLong("poll-us"),
            help: "Microseconds a deputy polls for the next request before sleeping (0: never poll). Waking a halted vCPU costs tens of µs.")
    var pollMicroseconds = 50

    func run() throws {
        let log = Logger(label: "homestub")
        var st = stat()
        guard stat(root, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else {
            printError("homestub: export root \(root) is not a directory\n")
            throw ExitCode(1)
        }
        if let keyFile {
            do { _ = try KeyFile.load(keyFile) } catch {
                printError("homestub: \(error)\n")
                throw ExitCode(exitKeyFile)
            }
        }
        if stdio {
            throw ExitCode(serveSession(input: 0, output: 1, root: root, keyFile: keyFile,
                                        pollMicroseconds: pollMicroseconds, log: log))
        }
        guard let keyFile else {
            printError("homestub: --key-file FILE is required when listening on the network\n")
            throw ExitCode(1)
        }
        guard let endpoint = Endpoint(parsing: listen) else {
            printError("homestub: --listen takes HOST:PORT, not \(listen)\n")
            throw ExitCode(1)
        }
        do {
            var listener = Listener(endpoint: endpoint, keyFile: keyFile, root: root, log: log)
            listener.pollMicroseconds = pollMicroseconds
            try listener.run()
        } catch {
            printError("homestub: cannot listen on \(endpoint): \(error)\n")
            throw ExitCode(1)
        }
    }
}

Homestub.main()
