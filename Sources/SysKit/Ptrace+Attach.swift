import CShim
import Glibc
import Synchronization

extension PtraceTracer {
    /// Takes over the running process `pid` under the ptrace engine
    /// (`wrap-and-run --attach PID --engine ptrace`, or `auto` where the
    /// process already has a seccomp listener): the engine's tracer thread
    /// seizes every thread of it and installs `filter` (action TRACE) by
    /// calls injected into one of them, as the seccomp engine's attach does
    /// (see cshim_attach_ptrace.c), then lets it go on and runs the
    /// engine's loop, which reports the process's exit to the returned
    /// `AttachedProcess`. Returns once the filter is in place; on a failure
    /// before that the process runs on as it was (see `AttachFailure`).
    public static func takeOver(pid: pid_t, filter: SeccompFilter) throws(AttachFailure) -> (PtraceTracer, AttachedProcess) {
        let process = AttachedProcess(pid: pid)
        do {
            let tracer = try start { [filter] tracer -> StartFailure? in
                guard let a = cshim_attach_seize_tracing(pid) else { return StartFailure(errno: lastErrno(), stage: 0) }
                var stage: CInt = 0
                if withUnsafePointer(to: filter.raw, { cshim_attach_install(a, $0, &stage) }) < 0 {
                    let failure = StartFailure(errno: lastErrno(), stage: stage)
                    if stage == CInt(CSHIM_ATTACH_GETFD) { kill(pid, SIGKILL) }
                    cshim_attach_abandon(a)
                    return failure
                }
                // Before the loop: the process may end as soon as it runs.
                tracer.root = process
                if cshim_attach_release(a) != 0 && Glibc.errno != ESRCH {
                    let failure = StartFailure(errno: lastErrno(), stage: CInt(CSHIM_ATTACH_GETFD))
                    kill(pid, SIGKILL)
                    return failure
                }
                return nil
            }
            return (tracer, process)
        } catch {
            throw AttachFailure(pid: pid, errno: error.errno, stage: error.stage)
        }
    }
}
