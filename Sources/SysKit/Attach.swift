import CShim
import Glibc
import Synchronization

/// Why a running process could not be taken over. At stage
/// CSHIM_ATTACH_GETFD its filter was already in place, and it was killed
/// (nothing could serve its calls); otherwise it runs on as before.
public struct AttachFailure: Error, CustomStringConvertible {
    public let pid: pid_t
    public let errno: Errno
    /// A CSHIM_ATTACH_* step, 0 for PTRACE_SEIZE.
    public let stage: Int32

    /// One line saying what failed and, where the cause is known, why.
    public var description: String {
        let what = String(cString: strerror(errno.rawValue))
        switch (stage, errno.rawValue) {
        case (0, ESRCH): return "--attach \(pid): no such process"
        case (0, EPERM):
            let tracer = cshim_tracer_of(pid)
            if tracer > 0 { return "--attach \(pid): it is already traced by process \(tracer) (\(what))" }
            return "--attach \(pid): ptrace refused (\(what)): another user's process, or kernel.yama.ptrace_scope forbids it"
        case (0, _): return "--attach \(pid): cannot seize its threads: \(what)"
        case (Int32(CSHIM_ATTACH_STOP), _): return "--attach \(pid): no thread of it could be stopped to take it over (it is stopped: SIGCONT it first; or exiting): \(what)"
        case (Int32(CSHIM_ATTACH_INJECT), ENOEXEC):
            return "--attach \(pid): no syscall instruction to run calls with (no vdso, and not stopped in a call)"
        case (Int32(CSHIM_ATTACH_INJECT), _): return "--attach \(pid): cannot run calls in it: \(what)"
        case (Int32(CSHIM_ATTACH_NO_NEW_PRIVS), _): return "--attach \(pid): prctl(PR_SET_NO_NEW_PRIVS) failed in it: \(what)"
        case (Int32(CSHIM_ATTACH_SECCOMP), EBUSY):
            return "--attach \(pid): it already has a seccomp listener (it runs under wrap-and-run or another supervisor): \(what)"
        case (Int32(CSHIM_ATTACH_SECCOMP), ESRCH): return "--attach \(pid): a thread of it cannot take the filter (TSYNC): \(what)"
        case (Int32(CSHIM_ATTACH_SECCOMP), EINVAL):
            return "--attach \(pid): this kernel cannot give a listener to every thread (SECCOMP_FILTER_FLAG_TSYNC_ESRCH, Linux 5.7): \(what)"
        case (Int32(CSHIM_ATTACH_SECCOMP), _): return "--attach \(pid): installing the seccomp filter failed: \(what)"
        default: return "--attach \(pid): taking over failed after its filter was installed: \(what); the process was killed (nothing could serve its calls)"
        }
    }
}

/// A running process taken over (see cshim_attach.c): every thread is
/// ptraced by one tracer thread of this process, which installed the
/// filter and now only keeps the process going (signals passed on,
/// group-stops kept, new threads and children let run) and collects its
/// exit. The tracer thread never ends before the process, so EXITKILL
/// kills the process with wrap-and-run and never earlier. Under the
/// ptrace engine that thread is the engine's tracer (see
/// `PtraceTracer.takeOver`), whose loop reports the exit.
public final class AttachedProcess: Sendable {
    public let pid: pid_t
    private let ended = CountingSemaphore(value: 0)
    private let status = Atomic<Int32>(-1)
    private let reported = Atomic<Bool>(false)
    /// The install's outcome (listener or -1, errno, stage), set by the
    /// tracer thread before it signals `installed`.
    private let installed = CountingSemaphore(value: 0)
    private let result = Mutex<(CInt, Int32, Int32)>((-1, 0, 0))

    init(pid: pid_t) { self.pid = pid }

    /// Records the process's wait status (-1: it could not be learnt) and
    /// wakes `exitCode`; only the first report counts.
    func end(status s: Int32) {
        if reported.exchange(true, ordering: .acquiringAndReleasing) { return }
        status.store(s, ordering: .releasing)
        ended.signal()
    }

    /// Seizes `pid`, installs `filter` in it and returns the listener copy;
    /// the call returns once the filter is in place (or it failed, and the
    /// process was left as it was). The tracer thread then closes the
    /// tracee's own listener number (which a supervisor must be serving
    /// `listener` for by then, as close may be notified) and lets the
    /// stopped thread run on.
    public static func takeOver(pid: pid_t, filter: SeccompFilter) throws(AttachFailure) -> (AttachedProcess, SeccompListener) {
        let process = AttachedProcess(pid: pid)
        ThreadRunner(name: "tracer") { [filter] in
            guard let a = cshim_attach_seize(pid) else {
                process.result.withLock { $0 = (-1, Glibc.errno, 0) }
                process.installed.signal()
                return
            }
            var stage: CInt = 0
            let fd = withUnsafePointer(to: filter.raw) { cshim_attach_install(a, $0, &stage) }
            let err = Glibc.errno
            if fd < 0 {
                if stage == CInt(CSHIM_ATTACH_GETFD) { kill(pid, SIGKILL) }
                cshim_attach_abandon(a)
            }
            process.result.withLock { $0 = (fd, err, stage) }
            process.installed.signal()
            guard fd >= 0 else { return }
            if cshim_attach_finish(a) != 0 && Glibc.errno != ESRCH {
                printError("wrap-and-run: --attach \(pid): restoring the stopped thread failed: \(String(cString: strerror(Glibc.errno))); the process was killed\n")
                kill(pid, SIGKILL)
            }
            process.end(status: cshim_attach_trace(pid))
        }.start()
        process.installed.wait()
        let (fd, err, stage) = process.result.withLock { $0 }
        if fd < 0 { throw AttachFailure(pid: pid, errno: Errno(rawValue: err), stage: stage) }
        return (process, SeccompListener(fd: fd))
    }

    /// Waits for the process to end; its exit code, or 128+N for signal N
    /// (125 if it could not be waited for).
    public func exitCode() -> Int32 {
        ended.wait()
        ended.signal()
        let s = status.load(ordering: .acquiring)
        return s < 0 ? 125 : ExitStatus.code(s)
    }

    /// The soft RLIMIT_NOFILE of process `pid`, from /proc/PID/limits
    /// (readable by anyone, unlike prlimit of another user's process: the
    /// seize then says why it cannot be had); nil if it cannot be read.
    public static func descriptorLimit(of pid: pid_t) -> Int64? {
        guard let text = try? FD.readSmallFile("/proc/\(pid)/limits") else { return nil }
        for line in text.split(separator: UInt8(ascii: "\n")) where line.starts(with: "Max open files".utf8) {
            let fields = line.dropFirst("Max open files".count).split(separator: UInt8(ascii: " "))
            guard let soft = fields.first else { return nil }
            let word = String(decoding: soft, as: UTF8.self)
            return word == "unlimited" ? Int64(Int32.max) : Int64(word)
        }
        return nil
    }
}
