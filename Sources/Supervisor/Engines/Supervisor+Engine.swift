import CShim
import Glibc
import SysKit

extension Supervisor {
    /// The syscall number of ptrace (x86_64): in the ptrace engine's filter
    /// only, refused with EPERM by the tracer (a thread has one tracer).
    static let ptraceSyscall: Int32 = 101

    /// Starts the program under the engine `options.engine` names. `auto`
    /// tries seccomp first and takes ptrace when the kernel refuses a
    /// listener: EBUSY (a filter above already has one: nesting, container
    /// runtimes), EINVAL or ENOSYS (a kernel without user notification).
    static func spawn(_ options: SupervisorOptions, placeholderBase base: Int32,
                      nofile: Int64) throws(LaunchError) -> (pid_t, Interceptor, Keeper) {
        if options.engine != .ptrace {
            let filter = try makeFilter(placeholderBase: base)
            do {
                let (pid, listener, keeper) = try Spawn.traced(path: options.program, argv: options.arguments,
                                                               env: options.environment, filter: filter, nofileSoft: nofile)
                listener.preferSynchronousWakeUp()
                return (pid, .seccomp(listener), keeper)
            } catch {
                let noListener = error.stage == 2 && [EBUSY, EINVAL, ENOSYS].contains(error.errno.rawValue)
                if options.engine == .seccomp || !noListener { throw spawnFailure(options, error.stage, error.errno) }
            }
        }
        let filter = try makeFilter(placeholderBase: base, tracing: true)
        cshim_ptrace_set_poll(Int32(clamping: options.pollMicroseconds))   // before the tracer thread exists
        let pid: pid_t, stage: CInt, keeper: Keeper
        do {
            (pid, stage, keeper) = try Spawn.forPtrace(path: options.program, argv: options.arguments,
                                                      env: options.environment, filter: filter, nofileSoft: nofile)
        } catch {
            throw spawnFailure(options, error.stage, error.errno)
        }
        do {
            return (pid, .ptrace(try PtraceTracer.start(pid: pid, stageSocket: stage)), keeper)
        } catch {
            kill(pid, SIGKILL)
            keeper.release()
            if error.stage == 0 {
                throw .spawn("\(options.program): cannot trace it (ptrace engine): \(String(cString: strerror(error.errno.rawValue)))")
            }
            throw spawnFailure(options, error.stage, error.errno)
        }
    }

    private static func spawnFailure(_ options: SupervisorOptions, _ stage: Int32, _ errno: Errno) -> LaunchError {
        let step = ["", "setting no_new_privs", "installing the seccomp filter", "passing the listener", "execve", "fork"]
        let what = Int(stage) < step.count && stage > 0 ? step[Int(stage)] : "spawning"
        return .spawn("\(options.program): \(what) failed: \(String(cString: strerror(errno.rawValue)))")
    }
}
