import CShim
import Glibc
import Policy
import Synchronization
import SysKit
import Wire

/// What to run and how.
public struct SupervisorOptions: Sendable {
    /// The program's resolved path, its argv (argv[0] as given) and environment.
    public var program: String
    public var arguments: [String]
    public var environment: [String]
    public var home: HomeAddress
    public var policy: RoutingPolicy
    /// Print per-syscall counts and latencies on exit.
    public var stats: Bool
    /// Write them as JSON to this file on exit (`--stats-json`).
    public var statsJSON: String? = nil
    /// Trace these syscalls (`--trace`), one line per call.
    public var trace: TraceSelection? = nil
    /// To this file rather than standard error (`--trace-file`).
    public var traceFile: String? = nil
    /// Supervisor threads receiving notifications at start; more are
    /// started while all are busy (calls blocked at home), up to `maxWorkers`.
    public var workers: Int
    /// How long to poll for a reply from home before sleeping (µs).
    public var pollMicroseconds: Int
    /// Serves a deputy session with export root "/" on the given
    /// descriptor: the supervisor's local deputy, which executes the calls
    /// on target files that the kernel cannot resolve for the tracee (see
    /// `PathRoute.emulated`).
    public var localDeputy: @Sendable (CInt) -> Void
    /// Cache attributes of home paths, kept coherent by the home's
    /// invalidations (`AttrCache`); off with `--no-cache`.
    public var attributeCache = true
    /// Acknowledge writes to regular files at home before home has run
    /// them (`WriteBehind`); off with `--sync-writes`.
    public var writeBehind = true
    /// Keep every socket on the target (`--local-net` without
    /// `--forward-net` rules); by default Internet sockets are made and
    /// connected at home (`Sockets`).
    public var localNetwork = false
    /// Which destinations stay on the target: a home socket whose connect,
    /// bind or first send names one becomes a local socket (`Sockets.goLocal`).
    public var network = NetworkPolicy()
    /// Most bytes the cache of `copy` files keeps (0: no bound; `--cache-max`).
    public var cacheMaxBytes: Int64 = 0
    /// Where the program starts (`--cwd`); nil: where wrap-and-run runs
    /// (see `startDirectory`).
    public var workingDirectory: String?
    /// `--stdio home`: the program's standard input, output and error are
    /// the home's terminal (`HomeStdio`).
    public var stdioAtHome = false
    /// With `stdioAtHome`: the shell command of a second login at home that
    /// has a terminal and hands it over (`TerminalLogin`), given the
    /// rendezvous directory and the hex secret; for ssh:// homes, whose
    /// session has none. Nil: the session's own terminal (op `terminal`).
    public var terminalLogin: (@Sendable (_ directory: String, _ secret: String) -> String)? = nil
    /// Which engine stops the program's syscalls (`--engine`).
    public var engine: Engine = .auto

    public init(program: String, arguments: [String], environment: [String], home: HomeAddress,
                policy: RoutingPolicy, stats: Bool, workers: Int = 4, pollMicroseconds: Int = 50,
                localDeputy: @escaping @Sendable (CInt) -> Void) {
        self.pollMicroseconds = pollMicroseconds
        self.localDeputy = localDeputy
        self.program = program
        self.arguments = arguments
        self.environment = environment
        self.home = home
        self.policy = policy
        self.stats = stats
        self.workers = workers
    }
}

/// Why the program could not be started; each has its own exit status.
public enum LaunchError: Error, CustomStringConvertible {
    case home(HomeConnectError)
    case workingDirectory(String)
    case spawn(String)
    /// `--attach` failed (the process runs on as before, unless it says so).
    case attach(String)
    /// The trace or statistics file cannot be opened.
    case output(String)
    /// `--stdio home` found no terminal at home, or its handover failed (`TerminalLogin`).
    case terminal(TerminalFailure, String)

    public var description: String {
        switch self {
        case .home(let e): return e.description
        case .workingDirectory(let s), .spawn(let s), .attach(let s), .output(let s), .terminal(_, let s): return s
        }
    }
}

/// Why `--stdio home` has no terminal at home; each has its own exit status.
public enum TerminalFailure: Sendable {
    /// The second login that hands a terminal over failed, or the handover did.
    case login
    /// Home was offered a terminal without the session's secret (or by another user).
    case refused
    /// The home has no terminal to give.
    case none
}

/// The target side: runs one program under seccomp user notification and
/// forwards what the policy binds to home.
public final class Supervisor: Sendable {
    let table = SyscallTable.x86_64
    let policy: RoutingPolicy
    /// The cache of `copy` files and of programs run from home (its
    /// directories are made on first use).
    let valueCache: ValueCache
    /// Whether the note on set-id programs from home was printed.
    let setIdNoted = Atomic<Bool>(false)
    /// An exec refused for a name too short to replace, said once.
    let shortNameNoted = Atomic<Bool>(false)
    /// The ptrace engine's close filter (see `Call.seeCloses`): nil under
    /// seccomp, whose filter has the close row.
    let closeFilter: SeccompFilter?
    /// A process whose closes could not be made to stop, said once.
    let closeFilterNoted = Atomic<Bool>(false)
    let link: HomeLink
    /// The local deputy (emulated calls on the target's own files).
    let localLink: HomeLink
    let watchers: Watchers
    let tracees: Tracees
    /// With `--trace` or `--stats`, else nil (see `Worker.run`).
    let observer: Observer?
    /// The engine (see `Interceptor` for the name).
    let listener: Interceptor
    let child: pid_t
    /// How the program's end is learnt: its keeper (the program's process
    /// tree ends with this process), or the tracer of an attached process.
    let end: ProgramEnd
    let options: SupervisorOptions
    /// Placeholders live at this descriptor number and above (and on 0–2).
    let placeholderBase: Int32
    /// The tracee's RLIMIT_NOFILE soft limit, as it started.
    let descriptorLimit: Int32
    /// Notifications being handled right now (for exact `--stats`).
    let callsInFlight = Atomic<Int>(0)
    /// The receiver token: the one worker waiting on the listener holds it
    /// (see `Worker`); idle workers wait here for it.
    let receiver = CountingSemaphore(value: 1)
    /// Workers waiting for the receiver token, and workers in all.
    let idleWorkers = Atomic<Int>(0)
    let workerCount = Atomic<Int>(0)
    /// The second login that lent the program a terminal at home, if any: it
    /// ends after the session (see `wait`).
    let terminalLogin = Mutex<TerminalLogin?>(nil)

    /// The most calls handled at once: one worker each, so a call blocked
    /// at home never keeps another from being received. Beyond this,
    /// notifications wait in the kernel's queue.
    static let maxWorkers = 1024
    /// Link slots for the pumps of sockets at home besides the workers'
    /// (two per connected stream, one per listening or datagram socket): a
    /// slot's buffers are touched only as far as its messages reach.
    static let maxPumpSlots = 2048
    /// Idle workers kept (besides the receiving one); one more idle worker exits.
    static let maxIdleWorkers = 4

    private init(options: SupervisorOptions, link: HomeLink, localLink: HomeLink, watchers: Watchers, tracees: Tracees,
                 listener: Interceptor, child: pid_t, end: ProgramEnd, placeholderBase: Int32, descriptorLimit: Int32,
                 observer: Observer?) {
        self.options = options
        self.localLink = localLink
        self.placeholderBase = placeholderBase
        self.descriptorLimit = descriptorLimit
        policy = options.policy
        valueCache = ValueCache(environment: options.environment, maxBytes: options.cacheMaxBytes)
        self.link = link
        self.watchers = watchers
        self.tracees = tracees
        self.listener = listener
        closeFilter = listener.engine == .ptrace ? Self.makeCloseFilter(placeholderBase: placeholderBase) : nil
        self.child = child
        self.end = end
        self.observer = observer
    }

    /// Connects to home, starts the program under the filter, and starts the
    /// supervisor threads. The program runs once this returns.
    public static func launch(_ options: SupervisorOptions) throws(LaunchError) -> Supervisor {
        let parts = try Parts(options)
        let cwd = try startDirectory(link: parts.link, options: options)

        // The tracee keeps its own descriptor limit; placeholders take the upper half of it.
        let nofile = raiseDescriptorLimit()
        let limit = Int32(clamping: nofile > 0 ? nofile : 1024)
        let base = max(16, limit / 2)
        let terminal = options.stdioAtHome ? try HomeStdio.open(link: parts.link, watchers: parts.watchers,
                                                                login: options.terminalLogin) : nil
        let (pid, listener, keeper) = try HomeStdio.inheriting(terminal?.end) { () throws(LaunchError) in
            do throws(LaunchError) { return try spawn(options, placeholderBase: base, nofile: nofile) } catch {
                // No program: the login that lent the terminal ends first, putting this terminal back.
                if let login = terminal?.login {
                    parts.link.close()
                    login.finish()
                }
                throw error
            }
        }
        parts.tracees.addRoot(pid: pid, cwd: cwd)
        if let terminal {
            HomeStdio.relayWindowSize(terminal.state, to: pid)
            terminal.login?.relaySignals(link: parts.link, to: pid)
        }
        let supervisor = try start(parts, listener: listener, child: pid, end: .keeper(keeper), placeholderBase: base,
                                   descriptorLimit: limit)
        supervisor.terminalLogin.withLock { $0 = terminal?.login }
        return supervisor
    }

    /// What a supervisor needs before its program runs: the home and local
    /// deputy links, the watchers and the tracee records, the observer;
    /// signals set up as the program's (see `start`).
    struct Parts {
        let options: SupervisorOptions
        let observer: Observer?
        let link: HomeLink
        let localLink: HomeLink
        let watchers: Watchers
        let tracees: Tracees
        /// SIGTERM and SIGHUP, blocked here and relayed to the program.
        let relayed: sigset_t

        init(_ options: SupervisorOptions) throws(LaunchError) {
            self.options = options
            // Signals for the program are the program's: the supervisor ignores
            // the terminal's and relays termination requests (see `start`).
            signal(SIGINT, SIG_IGN)
            signal(SIGQUIT, SIG_IGN)
            signal(SIGPIPE, SIG_IGN)
            var relayed = sigset_t()
            sigemptyset(&relayed)
            for s in [SIGTERM, SIGHUP] { sigaddset(&relayed, s) }
            pthread_sigmask(SIG_BLOCK, &relayed, nil)
            self.relayed = relayed
            // Before any thread starts: the ptrace engine's tracer takes SIGCHLD
            // from a signalfd (see PtraceTracer).
            PtraceTracer.blockChildSignal()

            observer = try makeObserver(options)
            let stream: HomeConnection.Stream
            do { stream = try HomeConnection.open(options.home) } catch { throw .home(error) }
            let home = options.home.description
            link = HomeLink(fd: stream.fd, keys: stream.keys, calls: maxWorkers + maxPumpSlots, pollMicroseconds: options.pollMicroseconds,
                            cacheSlots: stream.watches && options.attributeCache ? AttrCache.defaultSlots : 0,
                            writeBehind: options.writeBehind) { why in
                let text = "wrap-and-run: lost connection to home node \(home): \(why); forwarded calls now fail with EIO\n"
                printError(text)
            }
            let localStream: HomeConnection.Stream
            do { localStream = try HomeConnection.open(.spawn(root: "/", serve: options.localDeputy)) } catch {
                throw .spawn("cannot start the local deputy: \(error)")
            }
            localLink = HomeLink(fd: localStream.fd, keys: nil, calls: maxWorkers, pollMicroseconds: 0) { why in
                printError("wrap-and-run: the local deputy failed: \(why)")
            }
            do { watchers = try Watchers(link: link, pumpSlot: link.slots[HomeLink.pumpSlot]) } catch {
                throw .spawn("epoll: \(error)")
            }
            tracees = Tracees(watchers: watchers)
        }
    }

    /// The filter of the syscall table, with placeholders from `placeholderBase`.
    /// For the ptrace engine (`tracing`) its action is TRACE, and the
    /// program's own ptrace stops too (refused with EPERM: a thread has one
    /// tracer), and so do the fences (`cshim_ptrace_is_fence`: the tracer
    /// resumes them as they are); close does not (see `Call.seeCloses`).
    static func makeFilter(placeholderBase base: Int32, tracing: Bool = false) throws(LaunchError) -> SeccompFilter {
        let rules = SyscallTable.x86_64.filterRules(placeholderBase: base)
        do throws(Errno) {
            guard tracing else { return try SeccompFilter(rules: rules) }
            let fences = (Int32(0)..<512).filter { cshim_ptrace_is_fence($0) != 0 }.map { ($0, NotifyWhen.always) }
            // close runs, until a process's closes must be seen (`Call.seeCloses`).
            return try SeccompFilter(rules: rules.filter { $0.nr != closeSyscall } + [(ptraceSyscall, .always)] + fences,
                                     trace: true)
        } catch {
            throw .spawn("cannot build the seccomp filter: \(String(cString: strerror(error.rawValue)))")
        }
    }

    /// Starts the supervisor threads on `listener`, whose program `child`
    /// runs (or is about to) under the filter.
    static func start(_ parts: Parts, listener: Interceptor, child pid: pid_t, end: ProgramEnd, placeholderBase base: Int32,
                      descriptorLimit limit: Int32) throws(LaunchError) -> Supervisor {
        let watchers = parts.watchers, tracees = parts.tracees
        let sup = Supervisor(options: parts.options, link: parts.link, localLink: parts.localLink, watchers: watchers,
                             tracees: tracees, listener: listener, child: pid, end: end, placeholderBase: base,
                             descriptorLimit: limit, observer: parts.observer)
        ThreadRunner(name: "watchers") { [watchers, tracees] in
            watchers.run { tid in tracees.threadExited(tid) }
        }.start()
        for _ in 0..<max(1, parts.options.workers) where !sup.addWorker() {
            throw .spawn("cannot start a supervisor thread")
        }
        if case .ptrace(let tracer) = listener { sup.runStopsOnTracer(tracer) }
        ThreadRunner(name: "signals") { [relayed = parts.relayed] in
            var set = relayed
            while true {
                var sig: Int32 = 0
                if sigwait(&set, &sig) == 0 { kill(pid, sig) }
            }
        }.start()
        return sup
    }

    /// Waits for the program; returns its exit status (128+N for signal N).
    /// Processes the program left running are killed: nothing could serve
    /// their calls once wrap-and-run is gone.
    public func wait() -> Int32 {
        let status: Int32
        switch end {
        case .keeper(let keeper):
            if let code = keeper.programExit() {
                status = code
            } else {
                printError("wrap-and-run: the program's keeper process died; ending the program\n")
                kill(child, SIGKILL)
                status = 128 + SIGKILL
            }
            keeper.release()
        case .attached(let process):
            status = process.exitCode()
        }
        watchers.flushStreams(slot: link.slots[HomeLink.controlSlot])
        link.settle(link.slots[HomeLink.controlSlot])
        if let login = terminalLogin.withLock({ $0 }) {
            // The session's end lets home's terminal and its helper go; the
            // login then ends, and puts this terminal back before anything
            // more is said on it.
            link.close()
            login.finish()
        }
        if let observer {
            // Let calls answered just before the exit finish their trace
            // lines and counting (bounded).
            for _ in 0..<1000 where callsInFlight.load(ordering: .acquiring) > 0 { usleep(100) }
            var summaries = ["engine: \(listener.engine.rawValue)"]
            if link.attributes.enabled {
                summaries += [link.attributes.summary, "listing cache: " + link.attributes.listings.summary,
                             "small-read cache: " + link.attributes.contents.summary]
            }
            if valueCache.used { summaries.append(valueCache.summary) }
            observer.book?.report(table: table, summaries: summaries)
        }
        return status
    }

    private let answerFailureSaid = Atomic<Bool>(false)

    /// A notification could not be answered (not because its thread is
    /// gone): a bug or a kernel that disagrees; said once.
    func reportAnswerFailure(_ error: Errno) {
        if answerFailureSaid.exchange(true, ordering: .relaxed) { return }
        printError("wrap-and-run: answering an intercepted syscall failed: \(String(cString: strerror(error.rawValue))); such calls fail with EIO\n")
    }

    /// Starts one more worker; false if no slot or thread can be had.
    @discardableResult
    func addWorker() -> Bool {
        guard workerCount.wrappingAdd(1, ordering: .relaxed).newValue <= Self.maxWorkers,
              let slot = link.takeSlot() else {
            workerCount.wrappingSubtract(1, ordering: .relaxed)
            return false
        }
        guard let localSlot = localLink.takeSlot() else {
            link.returnSlot(slot)
            workerCount.wrappingSubtract(1, ordering: .relaxed)
            return false
        }
        let worker = Worker(supervisor: self, slot: slot, localSlot: localSlot)
        if ThreadRunner(name: "worker", body: { worker.run() }).tryStart() != nil { return true }
        link.returnSlot(slot)
        localLink.returnSlot(localSlot)
        workerCount.wrappingSubtract(1, ordering: .relaxed)
        return false
    }

}
