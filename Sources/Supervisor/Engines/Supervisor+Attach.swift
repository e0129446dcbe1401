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
    /// wrap-and-run (PTRACE_O_EXITKILL).
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
        let filter = try makeFilter(placeholderBase: base)
        // Recorded before the filter is in place: its first call may come at once.
        parts.tracees.addRoot(pid: pid, cwd: .local(path: nil))
        let process: AttachedProcess, listener: SeccompListener
        do { (process, listener) = try AttachedProcess.takeOver(pid: pid, filter: filter) } catch {
            throw .attach(error.description)
        }
        listener.preferSynchronousWakeUp()
        return try start(parts, listener: .seccomp(listener), child: pid, end: .attached(process), placeholderBase: base,
                         descriptorLimit: limit)
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
