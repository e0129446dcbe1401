import ArgumentParser
import Foundation
import Glibc

/// One measured figure: an op in a configuration (best of the rounds).
struct Figure {
    var op: String
    var config: String
    var n: Int
    var medianNs: Double
    var p99Ns: Double
    var p999Ns: Double
    var mbS: Double?

    init?(_ j: [String: Any], config: String) {
        guard let op = j["op"] as? String, let med = (j["median_ns"] as? NSNumber)?.doubleValue else { return nil }
        self.op = op
        self.config = config
        n = (j["n"] as? NSNumber)?.intValue ?? 0
        medianNs = med
        p99Ns = (j["p99_ns"] as? NSNumber)?.doubleValue ?? 0
        p999Ns = (j["p999_ns"] as? NSNumber)?.doubleValue ?? 0
        mbS = (j["mb_s"] as? NSNumber)?.doubleValue
    }

    /// Better = lower median, or higher throughput for the sequential ops.
    func better(than other: Figure) -> Bool {
        if let a = mbS, let b = other.mbS { return a > b }
        return medianNs < other.medianNs
    }

    var json: [String: Any] {
        var j: [String: Any] = ["op": op, "config": config, "n": n, "median_ns": medianNs, "p99_ns": p99Ns, "p999_ns": p999Ns]
        if let mbS { j["mb_s"] = mbS }
        return j
    }
}

struct Failure {
    var what: String
    var command: [String]
    var status: Int32
    var stderr: String

    init(what: String, command: [String], status: Int32, stderr: String) {
        self.what = what
        self.command = command
        self.status = status
        // The first lines say what went wrong (a crash's message); the last, where.
        self.stderr = stderr.count <= 3000 ? stderr : String(stderr.prefix(2000)) + "\n...\n" + String(stderr.suffix(1000))
    }
    var json: [String: Any] { ["what": what, "command": command.joined(separator: " "), "status": Int(status), "stderr": stderr] }
}

/// The configurations, in table order.
let configs = ["native", "local", "unix", "tcp"]
let configHelp = [
    "native": "(a) the workload alone",
    "local": "(b) wrap-and-run --home spawn --local WORKDIR: intercepted, run locally",
    "unix": "(c) wrap-and-run --home spawn: forwarded over a Unix socketpair",
    "tcp": "(d) wrap-and-run --home 127.0.0.1:PORT: forwarded over TCP loopback to a separate homestub",
]

/// What an op's figure is compared with. Every floor that runs a C
/// forwarder or notification loop is the polled one: it waits as Tether
/// does (non-blocking checks and sched_yield for up to 50 µs, sync wake-up).
enum Floor {
    /// The polled C forwarder doing the same call over the same transport
    /// (bench-floor-forwarder --what NAME): pread, stat or write.
    case forwarder(String)
    /// The raw request/response bulk rate of the same transport, 1 MiB per
    /// message (bench-floor-transport --what bulk): "read" or "write"; the
    /// better of its polled and blocking runs.
    case bulk(String)
    /// The polled bare notification round trip answered CONTINUE
    /// (bench-floor-notify --variant polled): calls that end up local.
    case notify
    /// The raw transport's polled 64 B -> 4 KiB round trip
    /// (bench-floor-transport --what rtt): what one forwarded exchange costs at least.
    case rtt
    /// The C stream forwarder over the same transport (bench-floor-transport
    /// --what stream): the program's socketpair, a relay, the transport, a
    /// relay, a TCP connection to the sink; the better of splicing and
    /// copying relays.
    case stream

    /// The floor's name in the programs' JSON lines.
    var name: String {
        switch self {
        case .forwarder(let op): return "forwarder-" + op
        case .bulk(let dir): return "transport-bulk-" + dir
        case .notify: return "notify-polled"
        case .rtt: return "transport-rtt"
        case .stream: return "transport-stream"
        }
    }
}

/// An op of bench-workload and how many samples it takes (full, quick).
struct Op {
    var name: String
    var label: String
    var n: Int
    var quickN: Int
    var sequential = false
    /// The floor its intercepted figures are compared with (nil: none).
    var floor: Floor?
    /// Run with `--policy` making DIR/copy a copy (bind by value) tree.
    var copyPolicy = false
}

let ops: [Op] = [
    Op(name: "getppid", label: "getppid (never intercepted)", n: 100_000, quickN: 20_000),
    Op(name: "compute", label: "compute (no syscall)", n: 20_000, quickN: 5_000),
    Op(name: "fstat-local", label: "fstat, local fd", n: 50_000, quickN: 10_000),
    Op(name: "pread-local", label: "pread 4K, local file", n: 50_000, quickN: 10_000),
    Op(name: "write-local", label: "write 4K, local file", n: 50_000, quickN: 10_000),
    Op(name: "pipe-write-read", label: "pipe write+read 4K", n: 30_000, quickN: 5_000),
    // Intercepted and routed local (LOCAL_DIR is /dev/shm, local by default).
    Op(name: "stat-local", label: "stat, local path", n: 20_000, quickN: 5_000, floor: .notify),
    Op(name: "open-close-local", label: "open+close, local path", n: 20_000, quickN: 5_000, floor: .notify),
    // A file never stat'ed before on every call: a forwarded stat, whatever is cached.
    Op(name: "stat", label: "stat, new file per call", n: 10_000, quickN: 2_000, floor: .forwarder("stat")),
    // The same unchanged file again and again: what an attribute cache saves.
    Op(name: "stat-repeated", label: "stat, repeated", n: 10_000, quickN: 2_000),
    Op(name: "open-close", label: "open+close", n: 10_000, quickN: 2_000),
    Op(name: "pread-random", label: "pread 4K random", n: 10_000, quickN: 2_000, floor: .forwarder("pread")),
    // Against the floor that answers writes before home runs them, as
    // write-behind does (the waiting forwarder is a reference row).
    Op(name: "write-append", label: "write 4K append", n: 10_000, quickN: 2_000, floor: .forwarder("behind")),
    Op(name: "getdents", label: "getdents64, 1000 entries", n: 1_000, quickN: 200),
    // open + list to the end + close of the same unchanged directory, as ls does.
    Op(name: "getdents-repeated", label: "getdents64, repeated", n: 1_000, quickN: 200),
    // open + read to the end + close of the same unchanged 8 KiB file.
    Op(name: "read-small-repeated", label: "open+read 8K+close, repeated", n: 10_000, quickN: 2_000),
    // open + read + close of a file under a copy rule (issue 11): after the
    // first open fetches it, served from the local copy cache.
    Op(name: "read-small-copy", label: "open+read 8K+close, copy", n: 10_000, quickN: 2_000, copyPolicy: true),
    Op(name: "seqread", label: "seq read 1 MiB calls", n: 1, quickN: 1, sequential: true, floor: .bulk("read")),
    Op(name: "seqwrite", label: "seq write 1 MiB calls", n: 1, quickN: 1, sequential: true, floor: .bulk("write")),
    // Sockets at home, to a native server on 127.0.0.1 (sockets.c); (b) runs them with --local-net.
    Op(name: "tcp-rr", label: "TCP connect+64 B req+resp", n: 2_000, quickN: 300, floor: .rtt),
    Op(name: "tcp-stream", label: "TCP stream 1 MiB writes", n: 1, quickN: 1, sequential: true, floor: .stream),
    Op(name: "tcp-epoll", label: "1000 TCP conns at once, epoll", n: 1_000, quickN: 1_000),
]

@main
struct ForwardBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forward-bench",
        abstract: "Tether's forwarding benchmark: every op in every configuration, with the C floors.",
        discussion: """
            Configurations: (a) native; (b) under wrap-and-run with every bench path local; (c) forwarded over \
            a Unix socketpair (--home spawn); (d) forwarded over TCP loopback to a separate homestub. Floors: \
            bench-floor-notify, bench-floor-transport, bench-floor-forwarder; every ratio is against the polled \
            floor (it waits as Tether does). Each op runs in all configurations back to back, for several \
            rounds; the best median of the rounds is reported. Extra --only names: pread-threads, sealing, cpu.
            """)

    @Flag(help: "Fewer samples, 32 MiB sequential runs, one round, an 8x1000 load (make bench-quick).")
    var quick = false

    @Option(help: "Directory holding wrap-and-run, homestub and the bench programs (default: forward-bench's own, or $TETHER_BENCH_BIN).")
    var bin: String?

    @Option(help: "Also write the figures as JSON to this file.")
    var json: String?

    @Option(help: "Rounds per op (default 3, quick 1).")
    var rounds: Int?

    @Option(help: "Bytes per sequential run (default 256 MiB, quick 32 MiB).")
    var size: Int?

    @Option(help: "Run only these ops (comma-separated).")
    var only: String?

    @Option(help: "Concurrent sessions of the load test (default 64, quick 8; 0 skips it).")
    var sessions: Int?

    @Option(help: "Forwarded preads per session of the load test (default 10000, quick 1000).")
    var sessionOps: Int?

    @Option(help: "Runs of each startup measurement (default 30, quick 10; 0 skips it).")
    var startupRuns: Int?

    @Option(help: "Forwarded preads of the CPU-cost run (default 30000, quick 5000; 0 skips the CPU section).")
    var cpuCalls: Int?

    @Option(help: "Parent of the forwarded work directory (default /tmp, forwarded by default).")
    var workParent = "/tmp"

    @Option(help: "Parent of the local work directory (default /dev/shm, local by default).")
    var localParent = "/dev/shm"

    @Flag(help: "Keep the work directories.")
    var keep = false

    @Option(help: "Engines whose rows run side by side (comma-separated: seccomp, ptrace; default both).")
    var engines = "seccomp,ptrace"

    @Flag(name: .customLong("keep-cpus-awake"),
          help: "A SCHED_IDLE busy loop on every CPU for the whole run, so idle vCPUs never halt (as with guest halt-polling).")
    var keepCPUsAwake = false

    mutating func run() throws {
        if keepCPUsAwake { KeepCPUsAwake.start() }
        let bench = try Bench(options: self)
        defer { bench.cleanUp() }
        try bench.runAll()
    }
}

final class Bench {
    let o: ForwardBench
    let bin: String
    let workDir: String
    let localDir: String
    let keyFile: String
    let scratch: String
    var port = 0
    var homestub: Child?
    /// The socket rows' server (`bench-workload sock-server`) and its port.
    var sockServer: Child?
    var sockPort = 0
    let rounds: Int
    let seqSize: Int
    var figures: [String: Figure] = [:] // "op/config"
    var floors: [String: [String: Any]] = [:] // "floor/transport|variant"
    var rowFloors: [String: Double] = [:] // "op/transport": the floor measured next to that op
    var failures: [Failure] = []
    var load: [String: Any] = [:]
    var startup: [String: Any] = [:]
    var concurrency: [String: [String: Double]] = [:] // "case/config"
    var sealing: [String: Double] = [:] // "cipher/size": median ns of seal + open
    var sealedFigures: [String: Figure] = [:] // "op/stdio-plain|stdio-sealed"
    var cpu: [String: [String: Double]] = [:] // "unix|tcp|idle": CPU cost figures
    var runCounter = 0
    let began = Date()

    init(options: ForwardBench) throws {
        o = options
        if let b = options.bin ?? ProcessInfo.processInfo.environment["TETHER_BENCH_BIN"] {
            bin = b
        } else {
            bin = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().path
        }
        for p in ["wrap-and-run", "homestub", "bench-workload", "bench-floor-notify", "bench-floor-transport", "bench-floor-forwarder"]
        where access(bin + "/" + p, X_OK) != 0 {
            throw ValidationError("\(bin)/\(p) is missing: build with `swift build -c release` or pass --bin DIR")
        }
        rounds = options.rounds ?? (options.quick ? 1 : 3)
        seqSize = options.size ?? ((options.quick ? 32 : 256) << 20)
        func tempDir(_ parent: String) throws -> String {
            var template = Array((parent + "/tether-bench.XXXXXX").utf8CString)
            guard let p = mkdtemp(&template) else { throw SpawnError(description: "mkdtemp in \(parent) failed") }
            return String(cString: p)
        }
        workDir = try tempDir(options.workParent)
        localDir = try tempDir(options.localParent)
        scratch = localDir + "/out"
        keyFile = localDir + "/key"
        mkdir(scratch, 0o755)
    }

    func cleanUp() {
        for h in [homestub, sockServer].compactMap({ $0 }) {
            kill(h.pid, SIGTERM)
            _ = h.wait()
        }
        if !o.keep {
            try? FileManager.default.removeItem(atPath: workDir)
            try? FileManager.default.removeItem(atPath: localDir)
        }
    }

    // MARK: set-up

    func prepare() throws {
        warn("forward-bench: preparing \(workDir) (forwarded) and \(localDir) (local)")
        try makeFile(workDir + "/data.bin", size: (o.quick ? 16 : 64) << 20, seed: 1)
        try makeFile(workDir + "/seq.bin", size: seqSize, seed: 2)
        try makeFile(workDir + "/small.txt", size: 8192, seed: 4)
        mkdir(workDir + "/copy", 0o755)
        try makeFile(workDir + "/copy/small.txt", size: 8192, seed: 5)
        try "[[rule]]\nprefix = \"\(workDir)/copy\"\nstrategy = \"copy\"\n".write(toFile: copyPolicyFile, atomically: true, encoding: .utf8)
        setenv("XDG_CACHE_HOME", scratch + "/copy-cache", 1)
        try makeFile(localDir + "/local.bin", size: 16 << 20, seed: 3)
        mkfifo(workDir + "/fifo", 0o600)   // the concurrency section's blocked readers
        mkdir(workDir + "/statdir", 0o755)   // stat: a new file per call, for the workload and its floor
        for i in 0..<statFiles {
            let fd = open(workDir + "/statdir/" + String(format: "f-%05d", i), O_WRONLY | O_CREAT, 0o644)
            if fd >= 0 { close(fd) }
        }
        mkdir(workDir + "/dir1000", 0o755)
        for i in 0..<1000 {
            let fd = open(workDir + "/dir1000/" + String(format: "entry-%04d", i), O_WRONLY | O_CREAT, 0o644)
            if fd >= 0 { close(fd) }
        }
        // A pre-shared key for the separate homestub.
        var key = [UInt8](repeating: 0, count: 48)
        let fd = open("/dev/urandom", O_RDONLY)
        _ = read(fd, &key, key.count)
        close(fd)
        let kfd = open(keyFile, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let text = Data(key).base64EncodedString() + "\n"
        _ = text.withCString { write(kfd, $0, strlen($0)) }
        close(kfd)

        port = freePort()
        // The bench's home serves the whole file system, as root when run as root (CI).
        homestub = try Child.start([bin + "/homestub", "--listen", "127.0.0.1:\(port)", "--key-file", keyFile, "--allow-root"],
                                   stdout: scratch + "/homestub.log", stderr: scratch + "/homestub.log")
        sockPort = freePort()
        sockServer = try Child.start([bin + "/bench-workload", "sock-server", "--port", String(sockPort)],
                                     stdout: scratch + "/sock-server.log", stderr: scratch + "/sock-server.log")
        sync() // no writeback of the set-up files during the runs
        let deadline = nowNs() + 10_000_000_000
        for (p, what) in [(port, "homestub"), (sockPort, "bench-workload sock-server")] {
            while !canConnect(port: p) {
                guard nowNs() < deadline else { throw SpawnError(description: "\(what) did not listen on 127.0.0.1:\(p)") }
                usleep(20_000)
            }
        }
    }

    /// The stat op's samples: its floor, run with as many, stats as many files.
    var statSamples: Int { ops.first { $0.name == "stat" }.map { o.quick ? $0.quickN : $0.n } ?? 10_000 }
    /// Files in statdir: the samples and their warm-up (n/10, in the floor too).
    var statFiles: Int { statSamples + statSamples / 10 + 1 }

    // MARK: commands

    /// wrap-and-run's command line for `config` (empty: native); with
    /// `copyPolicy`, DIR/copy is a copy tree (the local configuration
    /// keeps it local, as everything else).
    func wrap(_ config: String, copyPolicy: Bool = false) -> [String] {
        if let base = ptraceBase(config) {
            let seccomp = wrap(base, copyPolicy: copyPolicy)
            return [seccomp[0], "--engine", "ptrace"] + seccomp.dropFirst(3)
        }
        let w = bin + "/wrap-and-run"
        let policy = copyPolicy && config != "local" ? ["--policy", copyPolicyFile] : []
        switch config {
        case "native": return []
        case "local": return [w, "--engine", "seccomp", "--home", "spawn", "--local", workDir, "--local", localDir, "--local-net", "--"]
        case "unix": return [w, "--engine", "seccomp", "--home", "spawn"] + policy + ["--"]
        default: return [w, "--engine", "seccomp", "--home", "127.0.0.1:\(port)", "--key-file", keyFile] + policy + ["--"]
        }
    }

    /// The policy file of the copy rows, and their copy cache (emptied
    /// once in `prepare`: every run after the first is served from it).
    var copyPolicyFile: String { scratch + "/copy-policy.toml" }

    func workload(_ op: Op, extra: [String] = []) -> [String] {
        [bin + "/bench-workload", op.name, "-n", String(o.quick ? op.quickN : op.n), "--dir", workDir,
         "--local-dir", localDir, "--port", String(sockPort)] + (op.sequential ? ["--size", String(seqSize)] : []) + extra
    }

    /// Runs a command; its JSON lines, or nil after recording a failure.
    func run(_ argv: [String], what: String) -> [[String: Any]]? {
        runCounter += 1
        do {
            let r = try runCaptured(argv, scratch: scratch + "/run\(runCounter)")
            let lines = jsonLines(r.out)
            if r.status != 0 || lines.isEmpty {
                failures.append(Failure(what: what, command: argv, status: r.status, stderr: r.err))
                warn("forward-bench: FAILED \(what) (status \(r.status)): \(argv.joined(separator: " "))\n\(r.err.prefix(600))")
                return nil
            }
            return lines
        } catch {
            failures.append(Failure(what: what, command: argv, status: -1, stderr: "\(error)"))
            return nil
        }
    }

    func keepBest(_ f: Figure) {
        let key = f.op + "/" + f.config
        if let old = figures[key], !f.better(than: old) { return }
        figures[key] = f
    }

    // MARK: the runs

    func runAll() throws {
        try prepare()
        let selected = o.only.map { Set($0.split(separator: ",").map(String.init)) }
        let chosen = ops.filter { selected?.contains($0.name) ?? true }
        for round in 0..<rounds {
            warn("forward-bench: round \(round + 1)/\(rounds)")
            runFloors()
            for op in chosen {
                // Interleave: every configuration of this op and its floor back to back,
                // rotated per round, so noise on this shared machine hits them alike.
                let slots = runConfigs + (op.floor == nil ? [] : ["floor"])
                for k in 0..<slots.count {
                    let slot = slots[(k + round) % slots.count]
                    if slot == "floor" {
                        runRowFloor(op)
                    } else if let lines = run(wrap(slot, copyPolicy: op.copyPolicy) + workload(op), what: "\(op.name) [\(slot)]"),
                              let f = Figure(lines[0], config: slot) {
                        keepBest(f)
                    }
                }
            }
        }
        if selected == nil || selected!.contains("pread-threads") { runConcurrency() }
        if selected == nil || selected!.contains("sealing") { runSealing() }
        let sessions = o.sessions ?? (o.quick ? 8 : 64)
        if sessions > 0 { runLoad(sessions: sessions, perSession: o.sessionOps ?? (o.quick ? 1_000 : 10_000)) }
        let startupRuns = o.startupRuns ?? (o.quick ? 10 : 30)
        if startupRuns > 0 { runStartup(runs: startupRuns) }
        let cpuCalls = o.cpuCalls ?? (o.quick ? 5_000 : 30_000)
        if cpuCalls > 0 && (selected == nil || selected!.contains("cpu")) { runCpu(calls: cpuCalls) }
        report(chosen)
    }
}
