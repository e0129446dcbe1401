import CShim
import Glibc
import Synchronization

/// The ptrace engine's tracer: one thread that seized the tracees and makes
/// every ptrace request (the kernel ties tracees to that thread), and the
/// hand-over of their seccomp stops to the supervisor's workers.
///
/// The tracer waits in poll on a signalfd for SIGCHLD (a tracee stopped or
/// ended; SIGCHLD is blocked in every thread of the supervisor) and on an
/// eventfd the workers write when they have answered. It turns each seccomp
/// stop into a `Stop` and queues it on `ready`, an EFD_SEMAPHORE eventfd
/// counting the queued stops: the receiving worker reads one unit and takes
/// a stop, exactly as it would receive a notification, and a worker waiting
/// for home polls that descriptor to see that another stop is waiting. The
/// workers handle stops concurrently; nothing waits in line behind a call
/// blocked at home, and the tracer never waits for a worker.
///
/// A stop's id is its record's index plus a generation: `isValid` is false
/// once it is answered or its thread has exited (the tracer forgets the
/// calls of a thread it saw exit), as SECCOMP_IOCTL_NOTIF_ID_VALID says.
// @unchecked Sendable: the records' plain fields are written by a worker
// before it queues a request and by the tracer before it queues a stop
// (both queues are under `queues`' lock, which orders them); `id` and
// `done` are atomics; the descriptors never change.
public final class PtraceTracer: @unchecked Sendable {
    /// One seccomp stop, from the tracer's `next` to its answer.
    final class Stop: @unchecked Sendable {   // see the class's comment
        var stop = cshim_ptrace_stop()
        /// Its id while a worker may answer it (0 when free).
        let id = Atomic<UInt64>(0)
        /// Its thread exited: no one waits for the answer, which still
        /// comes and frees the record.
        let gone = Atomic<Bool>(false)
        var atExit: Int32 = 0
        var signal: Int32 = 0
        /// What the worker asked for.
        var native = false
        var value: Int64 = 0
        var install: (source: CInt, target: CInt, closeOnExec: Bool, respond: Bool)? = nil
        /// The install's result, and the worker waiting for it.
        var result: Int64 = 0
        let done = CountingSemaphore(value: 0)
    }

    /// The most stops held at once; past it, stops wait in the kernel.
    static let capacity = 4096
    private let stops: [Stop]
    private struct Queues {
        var free: [Int32]
        var ready: [Int32]
        var readyHead = 0
        var answers: [Int32]
    }
    private let queues: Mutex<Queues>
    /// Readable while a stop waits for a worker (see the class comment).
    public let readyFD: CInt
    private let answerFD: CInt
    private let childFD: CInt
    private let generation = Atomic<UInt64>(0)
    private let hungUp = Atomic<Bool>(false)
    /// The process taken over with --attach, whose exit the loop reports
    /// (see `takeOver`): set on the tracer thread before its loop, read
    /// only there.
    var root: AttachedProcess? = nil

    /// Blocks SIGCHLD in the calling thread (and the threads it starts):
    /// called before the supervisor starts any thread, so the tracer's
    /// signalfd sees every SIGCHLD.
    public static func blockChildSignal() {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGCHLD)
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    private init() throws(Errno) {
        stops = (0..<Self.capacity).map { _ in Stop() }
        var q = Queues(free: Array((0..<Int32(Self.capacity)).reversed()), ready: [], answers: [])
        q.ready.reserveCapacity(Self.capacity)
        q.answers.reserveCapacity(Self.capacity)
        queues = Mutex(q)
        var ready: CInt = -1, answer: CInt = -1, child: CInt = -1
        if cshim_ptrace_descriptors(&ready, &answer, &child) != 0 { throw lastErrno() }
        readyFD = ready
        answerFD = answer
        childFD = child
    }

    /// Why the traced program could not be started.
    public struct StartFailure: Error {
        public var errno: Errno
        /// 0 seizing it, else the spawn's stage (see `SpawnFailure`).
        public var stage: Int32
    }

    /// Starts the tracer thread, which seizes `pid` (spawned in ptrace mode,
    /// waiting on `stageSocket`) and runs its loop; returns once the
    /// program's execve has happened.
    public static func start(pid: pid_t, stageSocket: CInt) throws(StartFailure) -> PtraceTracer {
        try start { _ -> StartFailure? in
            var stage: Int32 = 0, err: Int32 = 0
            let rc = cshim_ptrace_start(pid, stageSocket, &stage, &err)
            if rc == 0 { return nil }
            return rc > 0 ? StartFailure(errno: Errno(rawValue: err), stage: stage) : StartFailure(errno: lastErrno(), stage: 0)
        }
    }

    /// Starts the tracer thread on threads that are already running: it
    /// seizes each of `tids` (all the threads of a process, for taking one
    /// over; its filter must use SECCOMP_RET_TRACE for anything to stop)
    /// and runs its loop. Threads they start later are traced on their own.
    public static func start(seizing tids: [pid_t]) throws(StartFailure) -> PtraceTracer {
        try start { _ -> StartFailure? in
            for tid in tids where cshim_ptrace_seize(tid) != 0 { return StartFailure(errno: lastErrno(), stage: 0) }
            return nil
        }
    }

    /// Runs `begin` on a new tracer thread (every ptrace request must come
    /// from the thread that seized), then the loop; returns once `begin` has.
    static func start(_ begin: @escaping @Sendable (PtraceTracer) -> StartFailure?) throws(StartFailure) -> PtraceTracer {
        let tracer: PtraceTracer
        do { tracer = try PtraceTracer() } catch { throw StartFailure(errno: error, stage: 0) }
        let started = CountingSemaphore(value: 0)
        let outcome = Mutex<StartFailure?>(nil)
        ThreadRunner(name: "tracer") {
            let failure = begin(tracer)
            outcome.withLock { $0 = failure }
            started.signal()
            if failure == nil { tracer.run() }
        }.start()
        started.wait()
        if let failure = outcome.withLock({ $0 }) { throw failure }
        return tracer
    }

    // MARK: the tracer thread

    private func run() {
        var fds = [pollfd(fd: childFD, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: answerFD, events: Int16(POLLIN), revents: 0)]
        while true {
            // Clear the wake-ups first (only those poll saw: a read of an
            // empty eventfd is a syscall for nothing): what comes after
            // them is seen below.
            if fds[0].revents != 0 { cshim_drain(childFD) }
            if fds[1].revents != 0 { cshim_drain(answerFD) }
            applyAnswers()
            if !takeStops() { break }
            fds[0].revents = 0
            fds[1].revents = 0
            _ = poll(&fds, 2, -1)
        }
        // No tracee left: every receive from now on says so.
        root?.end(status: -1)   // its exit was not seen (no-op once it was)
        hungUp.store(true, ordering: .releasing)
        var many: UInt64 = 1 << 40
        _ = write(readyFD, &many, 8)
    }

    /// Queues the stops that are ready; false when no tracee is left.
    private func takeStops() -> Bool {
        while true {
            guard let index = queues.withLock({ $0.free.popLast() }) else { return true }
            let s = stops[Int(index)]
            let rc = cshim_ptrace_next(&s.stop)
            if rc <= 0 {
                queues.withLock { $0.free.append(index) }
                return rc == 0 || Glibc.errno != ECHILD
            }
            if s.stop.nr < 0 {
                if let root, s.stop.tid == root.pid { root.end(status: Int32(truncatingIfNeeded: s.stop.args.0)) }
                forget(tid: s.stop.tid)
                queues.withLock { $0.free.append(index) }
                continue
            }
            s.atExit = 0
            s.signal = 0
            s.install = nil
            s.gone.store(false, ordering: .relaxed)
            let g = generation.wrappingAdd(1, ordering: .relaxed).newValue
            s.id.store(g << 13 | UInt64(index), ordering: .releasing)
            queues.withLock { $0.ready.append(index) }
            var one: UInt64 = 1
            _ = write(readyFD, &one, 8)
        }
    }

    /// A thread exited: its stops (it was killed while stopped) are no
    /// longer valid.
    private func forget(tid: pid_t) {
        for s in stops where s.id.load(ordering: .acquiring) != 0 && s.stop.tid == tid {
            s.gone.store(true, ordering: .releasing)
        }
    }

    private func applyAnswers() {
        while let index = queues.withLock({ q -> Int32? in q.answers.isEmpty ? nil : q.answers.removeFirst() }) {
            let s = stops[Int(index)]
            if let i = s.install {
                s.result = cshim_ptrace_install(&s.stop, &s.atExit, &s.signal, i.source, i.target, i.closeOnExec ? 1 : 0)
                s.install = nil
                if i.respond && s.result >= 0 {
                    // Answered: the worker, once woken, frees the record (so
                    // the wake-up cannot go to the record's next user).
                    _ = cshim_ptrace_finish(&s.stop, s.atExit, 0, s.result, s.signal)
                    s.id.store(0, ordering: .releasing)
                }
                s.done.signal()
                continue
            }
            _ = cshim_ptrace_finish(&s.stop, s.atExit, s.native ? 1 : 0, s.value, s.signal)
            s.id.store(0, ordering: .releasing)
            queues.withLock { $0.free.append(index) }
        }
    }

    // MARK: the workers' side

    /// Waits for the next stop and describes it as a seccomp notification
    /// (its pid field is the thread). ENOENT once no tracee is left.
    public func receive(into n: UnsafeMutablePointer<cshim_notif>) throws(Errno) {
        var count: UInt64 = 0
        if read(readyFD, &count, 8) != 8 { throw lastErrno() }
        guard let index = queues.withLock({ q -> Int32? in
            guard q.readyHead < q.ready.count else { return nil }
            let i = q.ready[q.readyHead]
            q.readyHead += 1
            if q.readyHead == q.ready.count { q.ready.removeAll(keepingCapacity: true); q.readyHead = 0 }
            return i
        }) else { throw .noSuchFileOrDirectory }
        let s = stops[Int(index)]
        n.pointee.id = s.id.load(ordering: .acquiring)
        n.pointee.pid = UInt32(bitPattern: s.stop.tid)
        n.pointee.data.nr = s.stop.nr
        let a = s.stop.args
        n.pointee.data.args = (a.0, a.1, a.2, a.3, a.4, a.5)
    }

    /// True once no tracee is left.
    public func hasHungUp() -> Bool { hungUp.load(ordering: .acquiring) }

    /// The record of a pending stop `id`, or nil.
    private func pending(_ id: UInt64) -> (Int32, Stop)? {
        let index = Int32(id & 0x1fff)
        guard Int(index) < stops.count else { return nil }
        let s = stops[Int(index)]
        return s.id.load(ordering: .acquiring) == id ? (index, s) : nil
    }

    /// True while stop `id` is pending.
    public func isValid(id: UInt64) -> Bool {
        guard let (_, s) = pending(id) else { return false }
        return !s.gone.load(ordering: .acquiring)
    }

    private func post(_ index: Int32) {
        queues.withLock { $0.answers.append(index) }
        var one: UInt64 = 1
        _ = write(answerFD, &one, 8)
    }

    /// Set in a record's id once its answer is posted: the stop is no
    /// longer pending, and a second answer finds nothing to answer (as
    /// under seccomp) rather than queueing the record twice.
    private static let postedBit: UInt64 = 1 << 63

    /// Answers with `value`, or lets the syscall run (`native`).
    public func finish(id: UInt64, native: Bool, value: Int64) throws(Errno) {
        let index = Int32(id & 0x1fff)
        guard Int(index) < stops.count else { throw .noSuchFileOrDirectory }
        let s = stops[Int(index)]
        guard s.id.compareExchange(expected: id, desired: id | Self.postedBit, ordering: .acquiringAndReleasing).exchanged else {
            throw .noSuchFileOrDirectory
        }
        s.native = native
        s.value = value
        post(index)
    }

    /// Installs `source` in the stopped thread at `target` (or the lowest
    /// free number, -1), answering the call with it when `respond`.
    public func install(id: UInt64, source: CInt, closeOnExec: Bool, at target: CInt, respond: Bool) throws(Errno) -> CInt {
        guard let (index, s) = pending(id) else { throw .noSuchFileOrDirectory }
        s.install = (source, target, closeOnExec, respond)
        post(index)
        s.done.wait()
        let result = s.result
        if result < 0 { throw Errno(rawValue: CInt(truncatingIfNeeded: -result)) }
        if respond { queues.withLock { $0.free.append(index) } }
        return CInt(truncatingIfNeeded: result)
    }
}
