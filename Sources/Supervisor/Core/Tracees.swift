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

/// Whether a process's descriptors below the placeholder range (0 up to
/// the range's start) may hold a placeholder. The supervisor puts
/// placeholders at 0-2 and in the range itself; one reaches a lower number
/// only through a call the supervisor sees and marks here before it takes
/// effect (a placement at 0-2, a dup2 of a placeholder onto a low number,
/// a native recvmsg of a Unix socket, recvmmsg, pidfd_getfd), or through a
/// native dup2 between low numbers, which needs a marked process to start
/// with. Until marked, every low descriptor is the program's own and
/// naming one costs no syscall to identify. A mark is never taken back.
/// Processes sharing one descriptor table (CLONE_FILES) share the mark
/// (see `Tracees.markLowPlaceholders`); a forked child starts with its
/// parent's.
final class DescriptorRecord: Sendable {
    private let marked: Atomic<Bool>

    init(marked: Bool) { self.marked = Atomic(marked) }

    /// False only while no low descriptor can be a placeholder.
    var mayHoldLowPlaceholders: Bool { marked.load(ordering: .acquiring) }

    /// Marks the record; true if it was not marked before.
    func mark() -> Bool { !marked.exchange(true, ordering: .acquiringAndReleasing) }
}

/// A tracee process (thread group): its working directory.
final class TraceeProcess: Sendable {
    let tgid: pid_t
    let cwd: Mutex<WorkingDirectory>
    /// Where placeholders may be in its descriptor table.
    let descriptors: DescriptorRecord
    /// Its umask (for the modes of what it creates at home), or
    /// `unknownUmask` before its first thread is seen. Read from
    /// /proc/TID/status then, and kept by umask(2), which is intercepted:
    /// threads share it (CLONE_FS), as pthreads do.
    let umask = Atomic<UInt32>(TraceeProcess.unknownUmask)
    static let unknownUmask = UInt32.max
    let threadCount = Atomic<Int>(0)
    /// Where to look first for a free placeholder number (0: the range's start).
    let nextSlot = Mutex<Int32>(0)
    /// It has taken a POSIX lock at home: its closes and its exit release them.
    let usesPosixLocks = Atomic<Bool>(false)
    /// Under ptrace: its closes of placeholder numbers stop, since
    /// `Call.seeCloses` made them (under seccomp they always do, unmarked).
    let closesStop = Atomic<Bool>(false)

    init(tgid: pid_t, cwd: WorkingDirectory, descriptors: DescriptorRecord) {
        self.tgid = tgid
        self.cwd = Mutex(cwd)
        self.descriptors = descriptors
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
    /// Descriptor records left by processes for their parent, which shares
    /// their table but was not seen yet (taken under `processes`' lock).
    private let recordsForUnseenParents = Mutex<[pid_t: DescriptorRecord]>([:])
    let watchers: Watchers
    let credentials = CredentialTable()

    init(watchers: Watchers) { self.watchers = watchers }

    /// Records the first tracee before it runs.
    func addRoot(pid: pid_t, cwd: WorkingDirectory) {
        // Its descriptors are wrap-and-run's own: none is a placeholder.
        processes.withLock { $0[pid] = TraceeProcess(tgid: pid, cwd: cwd, descriptors: DescriptorRecord(marked: false)) }
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
            // A new process: fork copied its parent's working directory
            // and descriptors (or shares the parent's table). With the
            // parent unknown (gone), any descriptor may be a placeholder.
            let parent = map[status.ppid]
            let inherited = parent.map { $0.cwd.withLock { $0 } } ?? .local(path: nil)
            var record: DescriptorRecord
            if let parent, PidFD.shareDescriptorTable(parent.tgid, status.tgid) {
                record = parent.descriptors
            } else {
                record = DescriptorRecord(marked: parent?.descriptors.mayHoldLowPlaceholders ?? true)
            }
            // A CLONE_FILES child seen before this process left it its
            // record (marked: it did not know its parent); a process seen
            // earlier may share this one's table and be marked.
            if let left = recordsForUnseenParents.withLock({ $0.removeValue(forKey: status.tgid) }) {
                record = left
            } else if !record.mayHoldLowPlaceholders,
                      let sharer = map.values.first(where: { $0.descriptors.mayHoldLowPlaceholders
                                                             && PidFD.shareDescriptorTable($0.tgid, status.tgid) }) {
                record = sharer.descriptors
            }
            if parent == nil, status.ppid > 0, PidFD.shareDescriptorTable(status.ppid, status.tgid) {
                // The parent, not seen yet, shares this table: it takes this
                // record when it is seen, even after this process is gone.
                // (Left behind for a parent never seen, it costs only slow
                // checks to a later process with that number.)
                recordsForUnseenParents.withLock { $0[status.ppid] = record }
            }
            let p = TraceeProcess(tgid: status.tgid, cwd: inherited, descriptors: record)
            map[status.tgid] = p
            return p
        }
        process.threadCount.wrappingAdd(1, ordering: .relaxed)
        // Every umask(2) is seen after this first sight: from here on the
        // record follows it (unless a umask call has set it already).
        _ = process.umask.compareExchange(expected: TraceeProcess.unknownUmask, desired: status.umask, ordering: .relaxed)
        let t = TraceeThread(pidfd: pidfd, process: process,
                             identity: ThreadIdentity(id: credentials.id(for: Credentials(status))))
        threads.withLock { $0[tid] = t }
        watchers.watchThread(tid: tid, pidfd: pidfd)
        return t
    }

    /// Marks `process`'s descriptor record (see `DescriptorRecord`), before
    /// a placeholder may land below the range. On its first mark, every
    /// known process sharing its descriptor table with a record of its own
    /// is marked too; one seen later checks the marked ones (see `thread`).
    func markLowPlaceholders(_ process: TraceeProcess) {
        guard process.descriptors.mark() else { return }
        processes.withLock { map in
            for q in map.values where q !== process && !q.descriptors.mayHoldLowPlaceholders
                && PidFD.shareDescriptorTable(process.tgid, q.tgid) {
                _ = q.descriptors.mark()
            }
        }
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
