import CShim
import Dispatch
import Glibc
import Synchronization
import SysKit
import Wire

/// POSIX record locks with the kernel's per-process rules, for tracee
/// processes that all share one deputy.
///
/// The kernel keys a POSIX lock by the descriptor table it was taken from.
/// So each tracee process that locks gets a lock owner at home: a thread
/// with a descriptor table of its own (`close_range(CLOSE_RANGE_UNSHARE)`),
/// and the threads it starts for lock waits, which share that table. It
/// takes its locks on its own copies of the session's handles
/// (`pidfd_getfd`), so two opens of a file in one tracee process share a
/// lock owner, a forked child does not inherit its parent's locks, a
/// lock wait between processes is detected as a deadlock (EDEADLK) by the
/// home kernel, and the owner closing its copies of a file (the tracee closed
/// any descriptor of it) releases all its locks on that file, as close(2)
/// does.
final class LockOwners: Sendable {
    private let owners = Mutex<[Int32: LockOwner]>([:])

    init() {}

    /// The owner for tracee process `tgid`, started on first use; nil if
    /// no thread can be had.
    func owner(_ tgid: Int32, session: Session) -> LockOwner? {
        if let o = existing(tgid) { return o }
        guard let o = LockOwner.start(tgid: tgid, session: session) else { return nil }
        return owners.withLock { map in
            if let other = map[tgid] {
                o.post(.exit)
                return other
            }
            map[tgid] = o
            return o
        }
    }

    func existing(_ tgid: Int32) -> LockOwner? { owners.withLock { $0[tgid] } }

    /// The tracee process is gone: its owner releases everything and stops.
    func exit(_ tgid: Int32) {
        owners.withLock { $0.removeValue(forKey: tgid) }?.post(.exit)
    }

    /// The session is over.
    func exitAll() {
        for o in owners.withLock({ map -> [LockOwner] in defer { map.removeAll() }; return Array(map.values) }) {
            o.post(.exit)
        }
    }

    /// The tracee process, other than `asking`, whose recorded lock is the
    /// conflicting lock F_GETLK found (the kernel reports only the deputy's
    /// own pid for all of them).
    func holder(of conflict: Glibc.flock, on file: FileKey, excluding asking: LockOwner) -> Int32? {
        let candidates = owners.withLock { Array($0.values) }
        for o in candidates where o !== asking {
            if o.holds(conflict, on: file) { return o.tgid }
        }
        return nil
    }
}

/// A file, as POSIX locks see it.
struct FileKey: Hashable, Sendable {
    let dev: UInt64
    let ino: UInt64

    init(_ fd: CInt) throws(Errno) {
        var st = stat()
        try sys { fstat(fd, &st) }
        dev = UInt64(st.st_dev)
        ino = UInt64(st.st_ino)
    }
}

/// One tracee process's POSIX lock owner (see `LockOwners`).
final class LockOwner: Sendable {
    enum Job: Sendable {
        /// Run a `posixLock` call (F_SETLKW on a thread of its own).
        case call(HomeCall)
        /// Close every copy of this file: the tracee closed a descriptor of it.
        case release(FileKey, DispatchSemaphore)
        /// The tracee process is gone, or the session.
        case exit
    }

    /// What the owner's threads share; touched only by them.
    struct Copies {
        /// The deputy's handle number → (our copy, its file).
        var byHandle: [CInt: (fd: CInt, file: FileKey)] = [:]
        /// The locks this owner holds, as granted (for F_GETLK's pid).
        var held: [FileKey: LockRanges] = [:]
        /// The deputy process, and our copy of the session's stream (the
        /// replies of calls run here go through it).
        var pidfd: CInt = -1
        var output: CInt = -1
    }

    let tgid: Int32
    unowned let session: Session
    private let jobs = Mutex<[Job]>([])
    private let wake = DispatchSemaphore(value: 0)
    private let copies = Mutex(Copies())

    private init(tgid: Int32, session: Session) {
        self.tgid = tgid
        self.session = session
    }

    /// Starts the owner's first thread; nil if it cannot be had or cannot
    /// get a descriptor table of its own.
    static func start(tgid: Int32, session: Session) -> LockOwner? {
        let owner = LockOwner(tgid: tgid, session: session)
        let ready = DispatchSemaphore(value: 0)
        let ok = Atomic<Bool>(false)
        let started = ThreadRunner(name: "lock-owner") {
            _ = cshim_interrupt_prepare_thread()
            let pidfd = cshim_unshare_files_empty() == 0 ? cshim_pidfd_open(getpid(), 0) : -1
            let output = pidfd >= 0 ? cshim_pidfd_getfd(pidfd, session.output) : -1
            ok.store(output >= 0, ordering: .releasing)
            owner.copies.withLock { $0.pidfd = pidfd; $0.output = output }
            ready.signal()
            if output >= 0 { owner.serve(replyThrough: output) }
        }.tryStart() != nil
        guard started else { return nil }
        ready.wait()
        return ok.load(ordering: .acquiring) ? owner : nil
    }

    func post(_ job: Job) {
        jobs.withLock { $0.append(job) }
        wake.signal()
    }

    /// The owner's first thread: runs quick lock calls itself, starts a
    /// thread (sharing its table) for each wait, and does the releases.
    private func serve(replyThrough output: CInt) {
        var applied = AppliedCredentials()
        while true {
            wake.wait()
            guard let job = jobs.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) else { continue }
            switch job {
            case .call(let c):
                if c.int(1) == F_SETLKW {
                    let s = session
                    let waiter = ThreadRunner(name: "lock-wait") {
                        _ = cshim_interrupt_prepare_thread()
                        var applied = AppliedCredentials()
                        s.runHandedOver(c, applied: &applied, replyThrough: output)
                    }
                    if waiter.tryStart() == nil { session.refuse(c, EAGAIN, replyThrough: output) }
                } else {
                    session.runHandedOver(c, applied: &applied, replyThrough: output)
                }
            case .release(let file, let done):
                release(file)
                done.signal()
            case .exit:
                copies.withLock { c in
                    for (_, copy) in c.byHandle { Glibc.close(copy.fd) }
                    c.byHandle.removeAll()
                    c.held.removeAll()
                    if c.pidfd >= 0 { Glibc.close(c.pidfd) }
                    if c.output >= 0 { Glibc.close(c.output) }
                }
                return
            }
        }
    }

    /// Closes our copies of `file`: the kernel releases our locks on it.
    private func release(_ file: FileKey) {
        copies.withLock { c in
            for (handle, copy) in c.byHandle where copy.file == file {
                Glibc.close(copy.fd)
                c.byHandle.removeValue(forKey: handle)
            }
            c.held.removeValue(forKey: file)
        }
    }

    /// Our copy of the deputy's descriptor `handleFD` (on one of our
    /// threads: the copy lands in our table). A cached copy whose number
    /// the deputy has since given to another file is replaced.
    func copy(of handleFD: CInt) throws(Errno) -> (fd: CInt, file: FileKey) {
        try copies.withLock { (c) throws(Errno) -> (fd: CInt, file: FileKey) in
            if let cached = c.byHandle[handleFD] {
                if cshim_kcmp_file(cshim_gettid(), getpid(), cached.fd, handleFD) == 0 { return cached }
                Glibc.close(cached.fd)
                c.byHandle.removeValue(forKey: handleFD)
            }
            let fd = try sys { cshim_pidfd_getfd(c.pidfd, handleFD) }
            let entry = (fd: fd, file: try FileKey(fd))
            c.byHandle[handleFD] = entry
            return entry
        }
    }

    /// Records a granted F_SETLK/F_SETLKW (whence SEEK_SET, length ≥ 0).
    func record(_ lock: Glibc.flock, on file: FileKey) {
        copies.withLock { $0.held[file, default: LockRanges()].apply(lock) }
    }

    /// Whether this owner holds `conflict` (a lock F_GETLK reported).
    func holds(_ conflict: Glibc.flock, on file: FileKey) -> Bool {
        copies.withLock { $0.held[file]?.overlaps(conflict) ?? false }
    }
}

/// One owner's locks on one file: disjoint byte ranges with their type,
/// kept as the kernel keeps them (a new lock replaces what it covers).
struct LockRanges: Sendable {
    /// (start, end exclusive, F_RDLCK or F_WRLCK), sorted by start.
    private var ranges: [(start: Int64, end: Int64, type: Int16)] = []

    static func bounds(_ l: Glibc.flock) -> (Int64, Int64) {
        let start = Int64(l.l_start)
        return (start, l.l_len == 0 ? Int64.max : start &+ Int64(l.l_len))
    }

    mutating func apply(_ l: Glibc.flock) {
        let (s, e) = Self.bounds(l)
        var out: [(start: Int64, end: Int64, type: Int16)] = []
        for r in ranges {
            if r.end <= s || r.start >= e { out.append(r); continue }
            if r.start < s { out.append((r.start, s, r.type)) }
            if r.end > e { out.append((e, r.end, r.type)) }
        }
        if l.l_type != Int16(F_UNLCK) { out.append((s, e, l.l_type)) }
        out.sort { $0.start < $1.start }
        ranges = []
        for r in out {
            if let last = ranges.last, last.end == r.start, last.type == r.type {
                ranges[ranges.count - 1].end = r.end
            } else {
                ranges.append(r)
            }
        }
    }

    func overlaps(_ l: Glibc.flock) -> Bool {
        let (s, e) = Self.bounds(l)
        return ranges.contains { $0.start < e && s < $0.end && $0.type == l.l_type }
    }
}
