import ArgumentParser
import Glibc
import HomeNode
import Logging
import Policy
import PolicyFile
import Supervisor
import SysKit

LoggingSystem.bootstrap(StreamLogHandler.standardError)

/// Exit statuses of wrap-and-run's own failures (the program's status otherwise).
enum Status {
    static let usage: Int32 = 125
    static let cannotExecute: Int32 = 126
    static let notFound: Int32 = 127
    /// EX_UNAVAILABLE: the home node cannot be reached.
    static let unreachable: Int32 = 69
    /// EX_PROTOCOL: the home node speaks something else.
    static let protocolError: Int32 = 76
    /// EX_NOPERM: the home node refused our key.
    static let refused: Int32 = 77
    /// EX_CONFIG: the key file is unusable.
    static let config: Int32 = 78
}

func fail(_ status: Int32, _ message: String) -> Never {
    printError("wrap-and-run: \(message)\n")
    exit(status)
}

struct WrapAndRun: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wrap-and-run",
        abstract: "Run a program here with its files at a home node.",
        discussion: """
            File syscalls on forwarded paths run at the home node (homestub), which keeps the open files, \
            offsets and working directory; everything else runs locally. By default /proc /sys /dev /usr \
            /lib* /bin /sbin /etc /run are local and every other path is forwarded.
            Exit status: the program's (128+N if killed by signal N); 127 program not found; 126 cannot \
            execute it; 69 home unreachable; 77 home refused the key; 78 unusable key file; 76 protocol \
            mismatch; 125 other wrap-and-run errors.
            """ + wrapAndRunExamples,
        version: TetherVersion.description)

    @Option(help: "The home node: HOST:PORT of a homestub, ssh://[USER@]HOST[:PORT] (ssh runs homestub --stdio there; TETHER_SSH_COMMAND replaces ssh), or 'spawn' for a private home on this machine.")
    var home = "spawn"

    @Option(help: ArgumentHelp("With --home ssh://: homestub's path on the home node, when it is not on the remote PATH.",
                               valueName: "PATH"))
    var remoteHomestub = "homestub"

    @Option(help: ArgumentHelp("Start the program in DIR (at home if DIR is forwarded) instead of the current directory.",
                               valueName: "DIR"))
    var cwd: String?

    @Option(help: ArgumentHelp("A command whose stdin/stdout reaches a home node, e.g. 'ssh node homestub --stdio'.",
                               valueName: "COMMAND"))
    var homeCommand: String?

    @Option(help: ArgumentHelp("local: the program's stdin, stdout and stderr are wrap-and-run's; home: the home's terminal (homestub's stderr: with --home-command, the terminal that command runs on; with --home spawn, this one; with ssh://, the pty of a second login, ssh -tt, that hands it over), with SIGWINCH relayed.", valueName: "local|home"))
    var stdio = "local"

    @Option(help: "File holding the pre-shared key (required with HOST:PORT).")
    var keyFile: String?

    @Option(help: "Export root of the private home (--home spawn only).")
    var root = "/"

    @Option(help: ArgumentHelp("Binding rules (TOML, [[rule]] tables) on top of the defaults; --print-policy shows the form.",
                               valueName: "FILE"))
    var policy: String?

    @Option(name: .customLong("cache-max"),
            help: ArgumentHelp("Most bytes the cache of copy files keeps (K, M, G suffixes; least recently used go first).",
                               valueName: "SIZE"))
    var cacheMax: String?

    @Option(name: .customLong("forward"), help: "Forward paths under this prefix (overrides by longest prefix).")
    var forwardPrefixes: [String] = []

    @Option(name: .customLong("local"), help: "Keep paths under this prefix local (overrides by longest prefix).")
    var localPrefixes: [String] = []

    @Option(name: .customLong("poll-us"),
            help: "Most microseconds to poll for a reply from home before sleeping; polling shrinks while replies come slower (0: never poll; the private home's deputy polls as long).")
    var pollMicroseconds = 50

    @Flag(name: .customLong("no-cache"),
          help: "Ask home for every stat instead of answering from the coherent attribute cache (for debugging and comparison).")
    var noCache = false

    @Flag(name: .customLong("sync-writes"),
          help: "Wait for home to run each write before it returns (no write-behind; errors at the write itself).")
    var syncWrites = false

    @Flag(help: "Print per-syscall counts (forwarded / local), errors, bytes and latency percentiles on exit.")
    var stats = false

    @Option(help: ArgumentHelp("How calls are stopped: seccomp, ptrace (also under another seccomp listener) or auto, "
                               + "seccomp else ptrace (default: $TETHER_ENGINE, else auto).", valueName: "seccomp|ptrace|auto"))
    var engine: String?

    @Option(name: .customLong("stats-json"), help: ArgumentHelp("Write the --stats table as JSON to FILE on exit.",
                                                                valueName: "FILE"))
    var statsJSON: String?

    @Option(help: ArgumentHelp("Trace intercepted calls, one line each, as strace -f -tt -T does (with where each ran); "
                               + "--trace alone traces all, --trace=LIST those of strace classes (%file, %desc, "
                               + "%network, %process, %creds, %memory, %stat, ...) or syscalls named in LIST.",
                               valueName: "LIST"))
    var trace: String?

    @Option(name: .customLong("trace-file"), help: ArgumentHelp("Write the trace to FILE, not standard error (implies --trace).",
                                                                valueName: "FILE"))
    var traceFile: String?

    @Flag(name: .customLong("local-net"), help: "Keep every socket on this machine (by default Internet sockets are made and connected at home). With CIDR[:PORTS] after it: only those destinations.")
    var localNet = false
    @Option(name: .customLong("local-net-rule"), help: .hidden)  // --local-net CIDR, renamed by separateNetRules
    var localNets: [String] = []

    @Option(name: .customLong("forward-net"), help: ArgumentHelp("Reach these destinations from home (longest match against --local-net CIDR rules).", valueName: "CIDR[:PORTS]"))
    var forwardNets: [String] = []

    @Flag(help: "Print the effective binding policy as a policy file (defaults included) and exit.")
    var printPolicy = false

    @Option(help: "Say which rule decides this path, and exit.")
    var explain: [String] = []

    @Option(help: ArgumentHelp("Take over the running process PID (all its threads) instead of starting a program: its new opens follow the policy from then on.",
                               valueName: "PID"))
    var attach: Int32?

    @Argument(parsing: .captureForPassthrough, help: "[--] PROGRAM [ARGS...]")
    var command: [String] = []

    mutating func run() throws {
        try builtInOption()
        let forward = Launch.forwarded(forwardPrefixes, local: localPrefixes, stdio: stdio, home: home, homeCommand: homeCommand)
        let routing = Launch.routingPolicy(file: policy, forward: forward, local: localPrefixes, networkAtHome: !localNet)
        let network = Launch.networkPolicy(allLocal: localNet, forward: forwardNets, local: localNets)
        if printPolicy {
            print(PolicyFile.render(routing), terminator: "")
            for line in network.description.split(separator: "\n") { print("# network: " + line) }
            return
        }
        if !explain.isEmpty {
            for path in explain {
                if let (binding, why) = network.explain(path) {
                    print("\(path): \(binding.rawValue) by \(why)")
                    continue
                }
                let rule = routing.explain(path)
                print("\(path): \(rule.strategyText) by rule \(rule.prefix) (\(rule.origin))"
                      + (rule.reason.map { ": " + $0 } ?? ""))
            }
            return
        }
        if command.first == "--" { command.removeFirst() }
        Launch(home: home, homeCommand: homeCommand, keyFile: keyFile, root: root, policyFile: policy,
               cacheMax: cacheMax, forwardPrefixes: forwardPrefixes,
               localPrefixes: localPrefixes, pollMicroseconds: pollMicroseconds, stats: stats,
               attributeCache: !noCache, writeBehind: !syncWrites, remoteHomestub: remoteHomestub, cwd: cwd,
               localNetwork: localNet, forwardNets: forwardNets, localNets: localNets, stdio: stdio, command: command,
               attach: attach, engine: engine)
            .observing(trace: trace, traceFile: traceFile, statsJSON: statsJSON).run()
    }

    /// The passthrough argument takes everything from the first word it
    /// does not know, so `--help`, `-h`, `--version` and
    /// `--generate-completion-script` arrive here as the command: answered
    /// here. Any other option there is unknown (a program after `--` is not).
    private func builtInOption() throws {
        guard let first = command.first, first.hasPrefix("-"), first != "--" else { return }
        switch first {
        case "--help", "-h", "-help": throw CleanExit.helpRequest(Self.self)
        case "--version": throw CleanExit.message(TetherVersion.description)
        case "--generate-completion-script":
            let name = command.count > 1 ? command[1] : nil
            guard let shell = name.flatMap(CompletionShell.init(rawValue:)) ?? (name == nil ? CompletionShell.autodetected() : nil) else {
                throw ValidationError("--generate-completion-script takes bash, zsh or fish")
            }
            throw CleanExit.message(Self.completionScript(for: shell))
        default:
            if first.hasPrefix("--generate-completion-script=") {
                guard let shell = CompletionShell(rawValue: String(first.dropFirst("--generate-completion-script=".count))) else {
                    throw ValidationError("--generate-completion-script takes bash, zsh or fish")
                }
                throw CleanExit.message(Self.completionScript(for: shell))
            }
            throw ValidationError("unknown option \(first) (a program whose name starts with '-' goes after --)")
        }
    }
}

/// What to run and against which home, from the command line: the
/// settings of `WrapAndRun` once they are parsed (by ArgumentParser, or by
/// `Launch.fastParse` for the common forms).
struct Launch {
    var home = "spawn"
    var homeCommand: String?
    var keyFile: String?
    var root = "/"
    /// --policy FILE.
    var policyFile: String?
    /// --cache-max SIZE.
    var cacheMax: String?
    var forwardPrefixes: [String] = []
    var localPrefixes: [String] = []
    var pollMicroseconds = 50
    var stats = false
    /// Off with --no-cache.
    var attributeCache = true
    /// Off with --sync-writes.
    var writeBehind = true
    var remoteHomestub = "homestub"
    var cwd: String?
    /// A bare --local-net; the --forward-net and --local-net CIDR[:PORTS] rules.
    var localNetwork = false
    var forwardNets: [String] = []
    var localNets: [String] = []
    /// --stdio local|home.
    var stdio = "local"
    var command: [String] = []
    /// --attach PID: take over that process rather than run `command`.
    var attach: Int32?
    /// The --trace list ("all" for --trace alone), --trace-file, --stats-json.
    var trace: String?
    var traceFile: String?
    var statsJSON: String?
    var engine: String?  // --engine seccomp|ptrace|auto (nil: $TETHER_ENGINE, else auto)

    /// This launch with the --trace, --trace-file and --stats-json settings.
    func observing(trace: String?, traceFile: String?, statsJSON: String?) -> Launch {
        var l = self
        (l.trace, l.traceFile, l.statsJSON) = (trace, traceFile, statsJSON)
        return l
    }

    func run() -> Never {
        let forward = Self.forwarded(forwardPrefixes, local: localPrefixes, stdio: stdio, home: home, homeCommand: homeCommand)
        let policy = Self.routingPolicy(file: policyFile, forward: forward, local: localPrefixes,
                                        networkAtHome: !localNetwork)
        let environment = Spawn.environment
        if attach != nil {
            guard command.isEmpty else { fail(Status.usage, "--attach takes no program (usage: wrap-and-run [OPTIONS] --attach PID)") }
            if cwd != nil { fail(Status.usage, "--cwd does not apply to --attach (the process stays where it is)") }
            if stdio == "home" { fail(Status.usage, "--stdio home does not apply to --attach (the process keeps the descriptors it has)") }
            supervise(program: "", arguments: [], environment: environment, policy: policy)
        }
        guard let name = command.first else { fail(Status.usage, "no program given (usage: wrap-and-run [OPTIONS] [--] PROGRAM [ARGS...])") }
        let program: String
        var arguments = command
        if Self.isAtHome(name, environment: environment, policy: policy) {
            // A program at home: a local shell looks it up and runs it,
            // through the supervisor, which runs home programs (Exec).
            program = "/bin/sh"
            arguments = ["sh", "-c", "exec \"$0\" \"$@\""] + command
        } else {
            program = resolveProgram(name, environment: environment)
        }
        supervise(program: program, arguments: arguments, environment: environment, policy: policy)
    }

    /// Runs `program` (or takes over the --attach process) under the supervisor; exits with its status.
    private func supervise(program: String, arguments: [String], environment: [String], policy: RoutingPolicy) -> Never {
        let address = homeAddress()
        let options = SupervisorOptions(program: program, arguments: arguments, environment: environment,
                                        home: address, policy: policy, stats: stats, pollMicroseconds: pollMicroseconds,
                                        localDeputy: { fd in
                                            var log = Logger(label: "wrap-and-run local")
                                            log.logLevel = .warning
                                            _ = serveSession(input: fd, output: fd, root: "/", keyFile: nil,
                                                             pollMicroseconds: 0, log: log)
                                        })
        var launchOptions = options
        launchOptions.attributeCache = attributeCache
        launchOptions.writeBehind = writeBehind
        launchOptions.network = Self.networkPolicy(allLocal: localNetwork, forward: forwardNets, local: localNets)
        // Sockets are made at home unless every destination is local.
        launchOptions.localNetwork = localNetwork && forwardNets.isEmpty
        if let cacheMax {
            guard let bytes = Self.size(cacheMax) else { fail(Status.usage, "--cache-max takes a size such as 500M, not \(cacheMax)") }
            launchOptions.cacheMaxBytes = bytes
        }
        launchOptions.workingDirectory = cwd
        launchOptions.stdioAtHome = stdioAtHome
        if stdioAtHome { launchOptions.terminalLogin = terminalLogin() }
        let named = engine ?? getenv("TETHER_ENGINE").map { String(cString: $0) } ?? "auto"
        guard let engine = Engine(rawValue: named) else { fail(Status.usage, "--engine takes seccomp, ptrace or auto, not \(named)") }
        launchOptions.engine = engine
        launchOptions.statsJSON = statsJSON
        launchOptions.traceFile = traceFile
        if trace != nil || traceFile != nil {
            do { launchOptions.trace = try TraceSelection(parsing: trace ?? "all") } catch { fail(Status.usage, error.description) }
        }
        let supervisor: Supervisor
        do {
            if let attach { supervisor = try Supervisor.attach(launchOptions, pid: attach) } else {
                supervisor = try Supervisor.launch(launchOptions)
            }
        } catch {
            switch error {
            case .home(.unreachable): fail(Status.unreachable, error.description)
            case .home(.refused): fail(Status.refused, error.description)
            case .home(.protocolError): fail(Status.protocolError, error.description)
            case .workingDirectory, .output, .attach: fail(Status.usage, error.description)
            case .spawn, .terminal(.none, _): fail(Status.cannotExecute, error.description)
            case .terminal(.login, _): fail(Status.unreachable, error.description)
            case .terminal(.refused, _): fail(Status.refused, error.description)
            }
        }
        Glibc.exit(supervisor.wait())
    }

    /// The common command lines, `[OPTION VALUE | FLAG]... [--] PROGRAM
    /// [ARGS...]` (or `[OPTION VALUE | FLAG]... --attach PID`) with the options of a run (no help, --explain or
    /// --print-policy, no `--option=value` but `--trace=LIST`), parsed by hand: ArgumentParser
    /// finds its options by reflection, which in a binary this size costs
    /// milliseconds of start-up. Nil for anything else, which ArgumentParser
    /// then parses (and reports on).
    static func fastParse(_ args: ArraySlice<String>) -> Launch? {
        var l = Launch()
        var i = args.startIndex
        var seen = Set<String>()
        while i < args.endIndex {
            let a = args[i]
            if a == "--" {
                l.command = Array(args[(i + 1)...])
                return l.command.isEmpty ? nil : l
            }
            // The program (without `--`): every option before it was taken with its value.
            if !a.hasPrefix("-") {
                l.command = Array(args[i...])
                return l
            }
            if a == "--trace" || a.hasPrefix("--trace=") {
                guard l.trace == nil else { return nil }
                l.trace = a == "--trace" ? "all" : String(a.dropFirst("--trace=".count))
                i += 1
                continue
            }
            if a == "--stats" || a == "--no-cache" || a == "--sync-writes" || a == "--local-net" {
                guard seen.insert(a).inserted else { return nil }
                switch a {
                case "--stats": l.stats = true
                case "--no-cache": l.attributeCache = false
                case "--local-net": l.localNetwork = true
                default: l.writeBehind = false
                }
                i += 1
                continue
            }
            guard i + 1 < args.endIndex else { return nil }
            let v = args[i + 1]
            if v.hasPrefix("-") { return nil }
            switch a {
            case "--forward": l.forwardPrefixes.append(v)
            case "--local": l.localPrefixes.append(v)
            case "--forward-net": l.forwardNets.append(v)
            case "--local-net-rule": l.localNets.append(v)
            default:
                guard seen.insert(a).inserted else { return nil }
                switch a {
                case "--home": l.home = v
                case "--home-command": l.homeCommand = v
                case "--key-file": l.keyFile = v
                case "--root": l.root = v
                case "--policy": l.policyFile = v
                case "--cache-max": l.cacheMax = v
                case "--cwd": l.cwd = v
                case "--stdio": l.stdio = v
                case "--remote-homestub": l.remoteHomestub = v
                case "--trace-file": l.traceFile = v
                case "--stats-json": l.statsJSON = v
                case "--attach":
                    guard let pid = Int32(v) else { return nil }
                    l.attach = pid
                case "--engine": l.engine = v
                case "--poll-us":
                    guard let n = Int(v) else { return nil }
                    l.pollMicroseconds = n
                default: return nil
                }
            }
            i += 2
        }
        return l.attach != nil ? l : nil
    }

    /// The arguments with a bare `--trace` before the program written
    /// `--trace=all`: ArgumentParser has no option whose value may be left out.
    static func bareTrace(_ args: ArraySlice<String>) -> [String] {
        let end = args.firstIndex(of: "--") ?? args.endIndex
        return args[..<end].map { $0 == "--trace" ? "--trace=all" : $0 } + args[end...]
    }

    private func homeAddress() -> HomeAddress {
        var command = homeCommand
        if command == nil, let ssh = SSHHome.parse(home) {
            switch ssh {
            case .success(let target):
                command = target.command(sshCommand: getenv("TETHER_SSH_COMMAND").map { String(cString: $0) },
                                         remoteHomestub: remoteHomestub)
            case .failure(let error): fail(Status.usage, "--home \(error.message)")
            }
        }
        if let command {
            guard let keyFile else { return .command(command, key: nil) }
            do { return .command(command, key: try KeyFile.load(keyFile)) } catch {
                fail(Status.config, error.description)
            }
        }
        if home == "spawn" {
            if keyFile != nil { printError("wrap-and-run: note: --key-file is not used with --home spawn") }
            let root = self.root, poll = pollMicroseconds
            return .spawn(root: root) { fd in
                // The private home speaks up only when something is wrong.
                var log = Logger(label: "wrap-and-run home")
                log.logLevel = .warning
                _ = serveSession(input: fd, output: fd, root: root, keyFile: nil, pollMicroseconds: poll, log: log)
            }
        }
        guard let endpoint = Endpoint(parsing: home) else {
            fail(Status.usage, "--home takes HOST:PORT, ssh://[USER@]HOST[:PORT] or spawn, not \(home)")
        }
        guard let keyFile else { fail(Status.usage, "--home \(home) needs --key-file FILE (the key homestub was started with)") }
        do { return .tcp(endpoint, key: try KeyFile.load(keyFile)) } catch {
            fail(Status.config, error.description)
        }
    }
}

let arguments = Launch.separateNetRules(Array(CommandLine.arguments.dropFirst()))
if let launch = Launch.fastParse(arguments[...]) { launch.run() }
do {
    var command = try WrapAndRun.parseAsRoot(Launch.bareTrace(arguments[...]))
    try command.run()
} catch {
    let code = WrapAndRun.exitCode(for: error)
    if code == .success || code.rawValue == 0 { WrapAndRun.exit(withError: error) }
    printError(WrapAndRun.fullMessage(for: error) + "\n")
    exit(Status.usage)
}
