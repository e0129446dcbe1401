import CShim
import Glibc
import Synchronization

/// The ptrace engine's tracer: one thread that seized the tracees and makes
/// every ptrace request (the kernel ties tracees to that thread), and the
/// hand-over of their seccomp stops to the supervisor's workers.
///
/// While no stop is with a worker, the tracer waits for its tracees in
/// wait4 alone. Otherwise it waits in poll on a signalfd for SIGCHLD (a
/// tracee stopped or ended; SIGCHLD is blocked in every thread of the
/// supervisor) and on an eventfd the workers write when they have answered. It turns each seccomp
/// stop into a `Stop` and queues it on `ready`, an EFD_SEMAPHORE eventfd
/// counting the queued stops: the receiving worker reads one unit and takes
/// a stop, exactly as it would receive a notification, and a worker waiting
/// for home polls that descriptor to see that another stop is waiting. The
/// workers handle stops concurrently; nothing waits in line behind a call
/// blocked at home, and the tracer never waits for a worker.
///
/// Once the supervisor gives it a handler (`handleInline`), the tracer runs
/// the stops of the syscalls it names itself, as a seccomp worker runs a
/// notification it received: no hand-over to a worker and back, two thread
/// wake-ups fewer per call. It runs one such handler at a time. Every wait
/// in it watches `servingFD` and calls `serve`, which does the loop's work
/// without waiting (answers workers posted, new stops queued for them), so
/// a handler blocked at home never holds up another tracee thread: the
/// writer of a FIFO that handler reads is served by a worker meanwhile.
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
        /// Handed to a worker (counted in `withWorkers` until answered).
        var queued = false
        /// What the worker asked for.
        var native = false
        var value: Int64 = 0
        var install: (source: CInt, target: CInt, closeOnExec: Bool, respond: Bool)? = nil
        /// A filter for the thread's process (`addFilter`).
        var filter: SeccompFilter? = nil
        /// The install's (or the filter's) result, and the worker waiting for it.
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
    /// Readable while the tracer has work (a tracee stopped or ended, a
    /// worker answered): what a handler the tracer runs watches as it waits.
    public let servingFD: CInt

    /// The stops the tracer handles itself: `eligible` by syscall number,
    /// `handle` run on the tracer thread with the stop as a notification
    /// (it answers through `finish`/`install`, as a worker does).
    public struct InlineHandler: Sendable {
        public var eligible: [Bool]
        public var handle: @Sendable (UnsafeMutablePointer<cshim_notif>) -> Void
        public init(eligible: [Bool], handle: @escaping @Sendable (UnsafeMutablePointer<cshim_notif>) -> Void) {
            self.eligible = eligible
            self.handle = handle
        }
    }
    private let offered = Mutex<InlineHandler?>(nil)
    // The tracer thread's own: the handler it took from `offered`, whether
    // it is running one, and the notification it hands it.
    private var inline: InlineHandler?
    private var handlingInline = false
    private let inlineNotification = UnsafeMutablePointer<cshim_notif>.allocate(capacity: 1)
    private var tracerThread = pthread_t()
    /// Stops queued for the workers and not yet answered.
    private var withWorkers = 0
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
        servingFD = cshim_epoll_of(child, answer)
        if servingFD < 0 { throw lastErrno() }
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
        tracerThread = pthread_self()
        var fds = [pollfd(fd: childFD, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: answerFD, events: Int16(POLLIN), revents: 0)]
        while true {
            if withWorkers == 0 {
                // No stop is with a worker, so no answer can come: wait for
                // the tracees alone, one wait4 per stop (no poll, no
                // signalfd read, no empty wait4 after it).
                if !takeStops(waitingForOne: true) { break }
                continue
            }
            fds[0].revents = 0
            fds[1].revents = 0
            _ = poll(&fds, 2, -1)
            // Clear the wake-ups first (only those poll saw: a read of an
            // empty eventfd is a syscall for nothing): what comes after
            // them is seen below.
            if fds[0].revents != 0 { cshim_drain(childFD) }
            if fds[1].revents != 0 { cshim_drain(answerFD) }
            applyAnswers()
            if !takeStops() { break }
        }
        // No tracee left: every receive from now on says so.
        root?.end(status: -1)   // its exit was not seen (no-op once it was)
        hungUp.store(true, ordering: .releasing)
        var many: UInt64 = 1 << 40
        _ = write(readyFD, &many, 8)
    }

    /// Handles or queues the stops that are ready (with `waitingForOne`:
    /// waits for one, and takes only that); false when no tracee is left.
    private func takeStops(waitingForOne: Bool = false) -> Bool {
        while true {
            guard let index = queues.withLock({ $0.free.popLast() }) else { return true }
            let s = stops[Int(index)]
            let rc = cshim_ptrace_next(&s.stop, waitingForOne ? 1 : 0)
            if rc <= 0 {
                queues.withLock { $0.free.append(index) }
                return rc == 0 || Glibc.errno != ECHILD
            }
            if s.stop.nr < 0 {
                if let root, s.stop.tid == root.pid { root.end(status: Int32(truncatingIfNeeded: s.stop.args.0)) }
                forget(tid: s.stop.tid)
                queues.withLock { $0.free.append(index) }
                if waitingForOne { return true }
                continue
            }
            s.atExit = 0
            s.signal = 0
            s.install = nil
            s.filter = nil
            s.gone.store(false, ordering: .relaxed)
            let g = generation.wrappingAdd(1, ordering: .relaxed).newValue
            s.id.store(g << 13 | UInt64(index), ordering: .releasing)
            if !handleInline(s, othersMayWait: !waitingForOne) {
                s.queued = true
                withWorkers += 1
                queues.withLock { $0.ready.append(index) }
                var one: UInt64 = 1
                _ = write(readyFD, &one, 8)
            }
            if waitingForOne { return true }
        }
    }

    /// Runs stop `s`'s handler here if it is one the tracer handles itself
    /// and no other runs (see the class comment); true if it did.
    /// `othersMayWait`: the SIGCHLD that told of `s` was read, and other
    /// threads it told of may not be taken yet: the handler's first wait
    /// then serves at once (an answer wake-up for it), or, should it block
    /// at home, they would wait for the next SIGCHLD, which might never
    /// come (a FIFO's writer stopped behind its reader: a hang).
    private func handleInline(_ s: Stop, othersMayWait: Bool) -> Bool {
        if handlingInline { return false }
        if inline == nil { inline = offered.withLock { $0 } }
        guard let h = inline, Int(s.stop.nr) < h.eligible.count, h.eligible[Int(s.stop.nr)] else { return false }
        if othersMayWait {
            var one: UInt64 = 1
            _ = write(answerFD, &one, 8)
        }
        handlingInline = true
        describe(s, into: inlineNotification)
        h.handle(inlineNotification)
        handlingInline = false
        return true
    }

    /// Keeps each descriptor table's placeholder channel (see
    /// `cshim_ptrace_install`) at the lowest free number from `number`.
    public func keepChannels(at number: CInt) { cshim_ptrace_channel_at(number) }

    /// Has the tracer run the stops `handler` names itself from now on.
    public func handleInline(_ handler: InlineHandler) {
        offered.withLock { $0 = handler }
    }

    /// On the tracer thread, while a handler it runs waits: does the loop's
    /// work without waiting (called when `servingFD` is readable).
    public func serve() {
        cshim_drain(childFD)
        cshim_drain(answerFD)
        applyAnswers()
        _ = takeStops()
    }

    /// True on the tracer thread, where answers apply at once.
    private var onTracerThread: Bool { pthread_equal(pthread_self(), tracerThread) != 0 }

    /// A thread exited: its stops (it was killed while stopped) are no
    /// longer valid.
    private func forget(tid: pid_t) {
        for s in stops where s.id.load(ordering: .acquiring) != 0 && s.stop.tid == tid {
            s.gone.store(true, ordering: .releasing)
        }
    }

    private func applyAnswers() {
        while let index = queues.withLock({ q -> Int32? in q.answers.isEmpty ? nil : q.answers.removeFirst() }) {
            apply(index)
        }
    }

    /// Carries out what stop `index`'s handler asked for.
    private func apply(_ index: Int32) {
        let s = stops[Int(index)]
        if let f = s.filter {
            s.result = withUnsafePointer(to: f.raw) { cshim_ptrace_add_filter(&s.stop, &s.atExit, &s.signal, $0) }
            s.filter = nil
            s.done.signal()
            return
        }
        if let i = s.install {
            var answeredByStub: Int32 = 0
            s.result = cshim_ptrace_install(&s.stop, &s.atExit, &s.signal, i.source, i.target, i.closeOnExec ? 1 : 0,
                                            i.respond ? 1 : 0, &answeredByStub)
            s.install = nil
            if i.respond && s.result >= 0 {
                // Answered (by the install stub itself, or now): the worker,
                // once woken, frees the record (so the wake-up cannot go to
                // the record's next user).
                if answeredByStub == 0 { _ = cshim_ptrace_finish(&s.stop, s.atExit, 0, s.result, s.signal) }
                answered(s)
                s.id.store(0, ordering: .releasing)
            }
            s.done.signal()
            return
        }
        _ = cshim_ptrace_finish(&s.stop, s.atExit, s.native ? 1 : 0, s.value, s.signal)
        answered(s)
        s.id.store(0, ordering: .releasing)
        queues.withLock { $0.free.append(index) }
    }

    /// Stop `s` is answered: no longer with a worker.
    private func answered(_ s: Stop) {
        if s.queued {
            s.queued = false
            withWorkers -= 1
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
        describe(stops[Int(index)], into: n)
    }

    /// Stop `s` as a seccomp notification (its pid field is the thread).
    private func describe(_ s: Stop, into n: UnsafeMutablePointer<cshim_notif>) {
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

    /// Hands stop `index`'s answer to the tracer (applies it, on the tracer).
    private func post(_ index: Int32) {
        if onTracerThread { apply(index); return }
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

    /// Adds `filter` to the stopped thread's process, all its threads
    /// (`cshim_ptrace_add_filter`); the call stays pending.
    public func addFilter(id: UInt64, _ filter: SeccompFilter) throws(Errno) {
        guard let (index, s) = pending(id) else { throw .noSuchFileOrDirectory }
        s.filter = filter
        post(index)
        s.done.wait()
        if s.result < 0 { throw Errno(rawValue: CInt(truncatingIfNeeded: -s.result)) }
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
