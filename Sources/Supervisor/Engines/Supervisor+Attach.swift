import CShim
import Glibc
import SysKit

/// How a supervisor learns that its program ended.
enum ProgramEnd: Sendable {
    /// The keeper it was spawned below (see `Keeper`).
    case keeper(Keeper)
    /// The tracer of a process taken over with `--attach`.
    case attached(AttachedProcess)
}

extension Supervisor {
    /// Takes over the running process `pid` (`wrap-and-run --attach`): the
    /// links to home and to the local deputy come first (a home that cannot
    /// be reached leaves the process alone), then the filter the spawn
    /// uses is installed in every thread of it (see `AttachedProcess`) and
    /// the supervisor threads serve its listener. From then on it is
    /// supervised as a spawned program is, except for what it did before:
    /// its working directory is where the kernel has it (local, resolved by
    /// path like any), and every descriptor it holds stays its own, served
    /// by the kernel; placeholders go to the free numbers of the upper half
    /// of its own descriptor limit (`place` skips numbers it holds there).
    /// Its end is its exit status, learnt by the tracer; it cannot outlive
    /// wrap-and-run (PTRACE_O_EXITKILL). The engine is chosen as for a
    /// started program: `auto` takes seccomp, and ptrace when the injected
    /// seccomp(NEW_LISTENER) is refused with EBUSY (the process already
    /// has a listener), EINVAL or ENOSYS (a kernel without it).
    public static func attach(_ options: SupervisorOptions, pid: pid_t) throws(LaunchError) -> Supervisor {
        try refuseAttach(pid)
        let parts = try Parts(options)
        // This process's copies of placeholders need room; the tracee keeps its own limit.
        _ = raiseDescriptorLimit()
        guard let nofile = AttachedProcess.descriptorLimit(of: pid) else {
            throw .attach("--attach \(pid): cannot read its descriptor limit (/proc/\(pid)/limits)")
        }
        let limit = Int32(clamping: nofile)
        let base = max(16, limit / 2)
        // Recorded before the filter is in place: its first call may come at once.
        parts.tracees.addRoot(pid: pid, cwd: .local(path: nil))
        cshim_ptrace_set_poll(Int32(clamping: options.pollMicroseconds))   // before a tracer thread exists
        let (engine, process) = try takeOver(pid, engine: options.engine, placeholderBase: base)
        return try start(parts, listener: engine, child: pid, end: .attached(process), placeholderBase: base,
                         descriptorLimit: limit)
    }

    /// Installs the filter of `engine` in every thread of `pid` (see
    /// `attach`) and returns the engine serving it.
    private static func takeOver(_ pid: pid_t, engine: Engine, placeholderBase base: Int32) throws(LaunchError)
        -> (Interceptor, AttachedProcess) {
        if engine != .ptrace {
            let filter = try makeFilter(placeholderBase: base)
            do {
                let (process, listener) = try AttachedProcess.takeOver(pid: pid, filter: filter)
                listener.preferSynchronousWakeUp()
                return (.seccomp(listener), process)
            } catch {
                let noListener = error.stage == Int32(CSHIM_ATTACH_SECCOMP) && [EBUSY, EINVAL, ENOSYS].contains(error.errno.rawValue)
                if engine == .seccomp || !noListener { throw .attach(error.description) }
            }
        }
        let filter = try makeFilter(placeholderBase: base, tracing: true)
        do {
            let (tracer, process) = try PtraceTracer.takeOver(pid: pid, filter: filter)
            return (.ptrace(tracer), process)
        } catch {
            throw .attach(error.description)
        }
    }

    /// Processes wrap-and-run will not take over: none (no such process,
    /// a thread rather than a process), init (it would die with
    /// wrap-and-run), wrap-and-run itself and its ancestors (each would
    /// wait for the other to end).
    private static func refuseAttach(_ pid: pid_t) throws(LaunchError) {
        guard pid > 0, let status = TaskStatus.read(tid: pid) else { throw .attach("--attach \(pid): no such process") }
        if status.tgid != pid { throw .attach("--attach \(pid): a thread of process \(status.tgid); give the process") }
        if pid == 1 { throw .attach("--attach 1: refusing to take over init, which would die with wrap-and-run") }
        var ancestor = getpid()
        while ancestor > 1 {
            if ancestor == pid { throw .attach("--attach \(pid): it is wrap-and-run itself or its ancestor, which waits for it") }
            guard let up = TaskStatus.read(tid: ancestor)?.ppid else { break }
            ancestor = up
        }
    }
}
