import CShim
import Glibc
import Policy
import Synchronization
import SysKit

/// Where a tracee process's working directory is.
enum WorkingDirectory: Sendable {
    /// On the target, where the kernel keeps it; `path` once known.
    case local(path: [UInt8]?)
    /// At home.
    case remote(RemoteDir)
    /// On the target, at `path`, but not where the kernel thinks: the
    /// process moved there from a directory at home, and the supervisor
    /// cannot move the kernel's working directory. Relative names are
    /// resolved from `path` by the supervisor.
    case detached([UInt8])
}

/// A tracee process (thread group): its working directory.
final class TraceeProcess: Sendable {
    let tgid: pid_t
    let cwd: Mutex<WorkingDirectory>
    let threadCount = Atomic<Int>(0)
    /// Where to look first for a free placeholder number (0: the range's start).
    let nextSlot = Mutex<Int32>(0)
    /// It has taken a POSIX lock at home: its closes and its exit release them.
    let usesPosixLocks = Atomic<Bool>(false)

    init(tgid: pid_t, cwd: WorkingDirectory) {
        self.tgid = tgid
        self.cwd = Mutex(cwd)
    }
}

/// A tracee thread as the supervisor knows it: its pidfd (for pidfd_getfd
/// and to learn of its exit) and its process.
struct TraceeThread: Sendable {
    let pidfd: CInt
    let process: TraceeProcess
    let identity: ThreadIdentity
}

/// Every tracee thread and process seen so far. A new thread is recorded
/// on its first intercepted call; a new process starts with its parent's
/// working directory, as fork gives it.
final class Tracees: Sendable {
    let threads = Mutex<[pid_t: TraceeThread]>([:])
    let processes = Mutex<[pid_t: TraceeProcess]>([:])
    let watchers: Watchers
    let credentials = CredentialTable()

    init(watchers: Watchers) { self.watchers = watchers }

    /// Records the first tracee before it runs.
    func addRoot(pid: pid_t, cwd: WorkingDirectory) {
        processes.withLock { $0[pid] = TraceeProcess(tgid: pid, cwd: cwd) }
    }

    /// The thread `tid`, recorded on first sight. `isCurrent` re-checks the
    /// notification after opening the pidfd, so a recycled tid is caught.
    func thread(_ tid: pid_t, isCurrent: () -> Bool) throws(Errno) -> TraceeThread {
        if let t = threads.withLock({ $0[tid] }) { return t }
        let pidfd = try PidFD.open(tid: tid)
        guard isCurrent(), let status = TaskStatus.read(tid: tid) else {
            Glibc.close(pidfd)
            throw Errno.noSuchProcess
        }
        let process = processes.withLock { map -> TraceeProcess in
            if let p = map[status.tgid] { return p }
            // A new process: fork copied its parent's working directory.
            let inherited = map[status.ppid].map { $0.cwd.withLock { $0 } } ?? .local(path: nil)
            let p = TraceeProcess(tgid: status.tgid, cwd: inherited)
            map[status.tgid] = p
            return p
        }
        process.threadCount.wrappingAdd(1, ordering: .relaxed)
        let t = TraceeThread(pidfd: pidfd, process: process,
                             identity: ThreadIdentity(id: credentials.id(for: Credentials(status))))
        threads.withLock { $0[tid] = t }
        watchers.watchThread(tid: tid, pidfd: pidfd)
        return t
    }

    /// Forgets an exited thread, and its process with its last thread.
    func threadExited(_ tid: pid_t) {
        guard let t = threads.withLock({ $0.removeValue(forKey: tid) }) else { return }
        Glibc.close(t.pidfd)
        if t.process.threadCount.wrappingSubtract(1, ordering: .relaxed).newValue == 0 {
            processes.withLock { map in
                if map[t.process.tgid] === t.process { map.removeValue(forKey: t.process.tgid) }
            }
            if t.process.usesPosixLocks.load(ordering: .relaxed) { watchers.link.releaseLockOwner(t.process.tgid) }
        }
    }
}
