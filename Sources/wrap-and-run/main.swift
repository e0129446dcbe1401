import ArgumentParser
import Glibc
import HomeNode
import Logging
import Policy
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
            """)

    @Option(help: "The home node: HOST:PORT of a homestub, or 'spawn' for a private home on this machine.")
    var home = "spawn"

    @Option(help: ArgumentHelp("A command whose stdin/stdout reaches a home node, e.g. 'ssh node homestub --stdio'.",
                               valueName: "COMMAND"))
    var homeCommand: String?

    @Option(help: "File holding the pre-shared key (required with HOST:PORT).")
    var keyFile: String?

    @Option(help: "Export root of the private home (--home spawn only).")
    var root = "/"

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

    @Flag(help: "Print per-syscall counts (forwarded / local) on exit.")
    var stats = false

    @Flag(name: .customLong("local-net"), help: "Keep every socket on this machine (by default Internet sockets are made and connected at home). With CIDR[:PORTS] after it: only those destinations.")
    var localNet = false

    @Option(name: .customLong("local-net-rule"), help: .hidden)
    var localNets: [String] = []

    @Option(name: .customLong("forward-net"), help: ArgumentHelp("Reach these destinations from home (longest match against --local-net CIDR rules).", valueName: "CIDR[:PORTS]"))
    var forwardNets: [String] = []

    @Flag(help: "Print the binding policy and exit.")
    var printPolicy = false

    @Option(help: "Say which rule decides this path, and exit.")
    var explain: [String] = []

    @Argument(parsing: .captureForPassthrough, help: "-- PROGRAM [ARGS...]")
    var command: [String] = []

    mutating func run() throws {
        for p in forwardPrefixes + localPrefixes where !p.hasPrefix("/") {
            fail(Status.usage, "--forward/--local take absolute prefixes, not \(p)")
        }
        let policy = RoutingPolicy(forward: forwardPrefixes, local: localPrefixes, networkAtHome: !localNet)
        let network = Launch.networkPolicy(allLocal: localNet, forward: forwardNets, local: localNets)
        if printPolicy {
            print(policy)
            print(network)
            return
        }
        if !explain.isEmpty {
            for path in explain {
                if let (binding, why) = network.explain(path) {
                    print("\(path): \(binding.rawValue) by \(why)")
                    continue
                }
                let rule = policy.explain(path)
                print("\(path): \(rule.binding.rawValue) by rule \(rule.prefix) (\(rule.origin))")
            }
            return
        }
        if command.first == "--" { command.removeFirst() }
        Launch(home: home, homeCommand: homeCommand, keyFile: keyFile, root: root, forwardPrefixes: forwardPrefixes,
               localPrefixes: localPrefixes, pollMicroseconds: pollMicroseconds, stats: stats,
               attributeCache: !noCache, writeBehind: !syncWrites, localNetwork: localNet, forwardNets: forwardNets,
               localNets: localNets, command: command).run()
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
    var forwardPrefixes: [String] = []
    var localPrefixes: [String] = []
    var pollMicroseconds = 50
    var stats = false
    /// Off with --no-cache.
    var attributeCache = true
    /// Off with --sync-writes.
    var writeBehind = true
    /// On with a bare --local-net.
    var localNetwork = false
    /// --forward-net and --local-net CIDR[:PORTS] rules.
    var forwardNets: [String] = []
    var localNets: [String] = []
    var command: [String] = []

    /// The network rules, or a usage error naming the one that is no CIDR[:PORTS].
    static func networkPolicy(allLocal: Bool, forward: [String], local: [String]) -> NetworkPolicy {
        var rules: [NetRule] = []
        for (list, binding, origin) in [(forward, Binding.forward, "--forward-net"), (local, .local, "--local-net")] {
            for text in list {
                guard let r = NetRule(text, binding: binding, origin: origin) else {
                    fail(Status.usage, "\(origin) takes CIDR[:PORTS] (10.0.0.0/8, 192.0.2.1:443, [fd00::]/8:8000-8100), not \(text)")
                }
                rules.append(r)
            }
        }
        return NetworkPolicy(defaultBinding: allLocal ? .local : .forward, rules: rules)
    }

    /// `--local-net CIDR` becomes `--local-net-rule CIDR` (a bare
    /// `--local-net`, before another option or "--", is the flag), so both
    /// parsers see one meaning per name.
    static func separateNetRules(_ args: [String]) -> [String] {
        var out: [String] = []
        var i = 0
        while i < args.count {
            if args[i] == "--" { return out + args[i...] }
            if args[i] == "--local-net", i + 1 < args.count, !args[i + 1].hasPrefix("-") {
                // The program comes after "--": a word here is a rule (checked with the others).
                out += ["--local-net-rule", args[i + 1]]
                i += 2
                continue
            }
            out.append(args[i])
            i += 1
        }
        return out
    }

    func run() -> Never {
        for p in forwardPrefixes + localPrefixes where !p.hasPrefix("/") {
            fail(Status.usage, "--forward/--local take absolute prefixes, not \(p)")
        }
        let policy = RoutingPolicy(forward: forwardPrefixes, local: localPrefixes, networkAtHome: !localNetwork)
        guard let name = command.first else { fail(Status.usage, "no program given (usage: wrap-and-run [OPTIONS] -- PROGRAM [ARGS...])") }

        let environment = Spawn.environment
        let program = resolveProgram(name, environment: environment)
        let address = homeAddress()
        let options = SupervisorOptions(program: program, arguments: command, environment: environment,
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
        let supervisor: Supervisor
        do { supervisor = try Supervisor.launch(launchOptions) } catch {
            switch error {
            case .home(.unreachable): fail(Status.unreachable, error.description)
            case .home(.refused): fail(Status.refused, error.description)
            case .home(.protocolError): fail(Status.protocolError, error.description)
            case .workingDirectory: fail(Status.usage, error.description)
            case .spawn: fail(Status.cannotExecute, error.description)
            }
        }
        Glibc.exit(supervisor.wait())
    }

    /// The common command lines, `[OPTION VALUE | FLAG]... -- PROGRAM
    /// [ARGS...]` with the options of a run (no help, --explain or
    /// --print-policy, no `--option=value`), parsed by hand: ArgumentParser
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
                case "--poll-us":
                    guard let n = Int(v) else { return nil }
                    l.pollMicroseconds = n
                default: return nil
                }
            }
            i += 2
        }
        return nil
    }

    /// PATH search as execvp does it; checks the ELF class and machine.
    private func resolveProgram(_ name: String, environment: [String]) -> String {
        var candidates: [String]
        if name.contains("/") {
            candidates = [name]
        } else {
            let path = environment.first { $0.hasPrefix("PATH=") }.map { String($0.dropFirst(5)) } ?? "/usr/local/bin:/usr/bin:/bin"
            candidates = path.split(separator: ":", omittingEmptySubsequences: false).map { ($0.isEmpty ? "." : String($0)) + "/" + name }
        }
        var sawNoPermission = false
        for candidate in candidates {
            var st = stat()
            guard stat(candidate, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { continue }
            guard access(candidate, X_OK) == 0 else { sawNoPermission = true; continue }
            checkBinary(candidate)
            return candidate
        }
        if sawNoPermission { fail(Status.cannotExecute, "\(name): permission denied") }
        fail(Status.notFound, "\(name): command not found")
    }

    private func checkBinary(_ path: String) {
        let check: ProgramCheck
        do { check = try ProgramCheck.check(path: path) } catch {
            fail(Status.cannotExecute, "\(path): cannot read: \(String(cString: strerror(error.rawValue)))")
        }
        switch check {
        case .ok, .script: return
        case .wrongClass: fail(Status.cannotExecute, "\(path): 32-bit ELF executables are not supported (x86_64 64-bit only)")
        case .wrongMachine(let m): fail(Status.cannotExecute, "\(path): ELF for machine \(machineName(m)), not x86_64")
        case .notELF: fail(Status.cannotExecute, "\(path): not an ELF executable or #! script")
        }
    }

    private func machineName(_ m: Int32) -> String {
        switch m {
        case 3: return "i386 (EM_386)"
        case 40: return "ARM (EM_ARM)"
        case 183: return "aarch64 (EM_AARCH64)"
        case 243: return "RISC-V (EM_RISCV)"
        default: return "EM \(m)"
        }
    }

    private func homeAddress() -> HomeAddress {
        if let homeCommand {
            guard let keyFile else { return .command(homeCommand, key: nil) }
            do { return .command(homeCommand, key: try KeyFile.load(keyFile)) } catch {
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
        guard let endpoint = Endpoint(parsing: home) else { fail(Status.usage, "--home takes HOST:PORT or spawn, not \(home)") }
        guard let keyFile else { fail(Status.usage, "--home \(home) needs --key-file FILE (the key homestub was started with)") }
        do { return .tcp(endpoint, key: try KeyFile.load(keyFile)) } catch {
            fail(Status.config, error.description)
        }
    }
}

let arguments = Launch.separateNetRules(Array(CommandLine.arguments.dropFirst()))
if let launch = Launch.fastParse(arguments[...]) { launch.run() }
do {
    var command = try WrapAndRun.parseAsRoot(arguments)
    try command.run()
} catch {
    let code = WrapAndRun.exitCode(for: error)
    if code == .success || code.rawValue == 0 { WrapAndRun.exit(withError: error) }
    printError(WrapAndRun.fullMessage(for: error) + "\n")
    exit(Status.usage)
}
