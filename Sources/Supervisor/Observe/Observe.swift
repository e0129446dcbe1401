import CShim
import Glibc
import SysKit

/// `--trace` and `--stats`: what is done with each call besides handling
/// it. The supervisor has one only when either is on, so without them a
/// call costs one branch on a nil reference more, and nothing else.
final class Observer: Sendable {
    let tracer: Tracer?
    let book: StatsBook?

    init(tracer: Tracer?, book: StatsBook?) {
        self.tracer = tracer
        self.book = book
    }
}

/// A worker's own part of the observer: its trace line buffer and its
/// `WorkerStats` (given back to the book when the worker exits).
final class Observation: @unchecked Sendable {
    // Touched only by its worker's thread (made in the worker's init,
    // before the thread starts).
    let line: UnsafeMutableRawBufferPointer?
    /// Paths and structs read from the tracee for the trace.
    let scratch: UnsafeMutableRawBufferPointer?
    let stats: WorkerStats?

    init(_ observer: Observer) {
        let tracing = observer.tracer != nil
        line = tracing ? .allocate(byteCount: Tracer.lineCapacity, alignment: 8) : nil
        scratch = tracing ? .allocate(byteCount: Int(PATH_MAX) + 1, alignment: 8) : nil
        stats = observer.book?.take()
    }

    deinit {
        line?.deallocate()
        scratch?.deallocate()
    }

    /// The worker exits: its counters go on in the next worker's hands.
    func leave(_ observer: Observer?) {
        if let stats, let book = observer?.book { book.give(stats) }
    }
}

extension Worker {
    /// `handle`, traced and counted: the call's arguments are read while
    /// the tracee waits, the clock runs from then to the answer sent, and
    /// the venue is told by the requests the worker's slots sent meanwhile.
    func observe(_ observer: Observer) {
        let sup = supervisor
        // Counted until the line and the statistics are in: the answer may
        // let the program exit first (`Supervisor.wait` waits for these).
        sup.callsInFlight.wrappingAdd(1, ordering: .relaxed)
        defer { sup.callsInFlight.wrappingSubtract(1, ordering: .releasing) }
        let row = sup.table.row(for: notification.pointee.data.nr)
        var line: TraceLine? = nil
        if let tracer = observer.tracer, let row, tracer.selection.rows[row.index], let buffer = observation?.line {
            var l = TraceLine(buffer)
            Self.stamp(&l, tid: pid_t(bitPattern: notification.pointee.pid))
            TraceFormat.call(&l, row: row, notification, scratch: observation!.scratch!)
            line = l
        }
        let homeRequests = slot.sequence, localRequests = localSlot.sequence
        decided = nil
        let start = monotonicNanoseconds()
        let result = handle()
        let elapsed = monotonicNanoseconds() &- start
        guard let row else { return }
        let venue: Venue = decided ?? (slot.sequence != homeRequests ? .home
            : result == nil || localSlot.sequence != localRequests ? .local : .supervisor)
        if let stats = observation?.stats, let book = observer.book {
            stats.record(row: row.index, rows: book.rows, venue: venue, result: result,
                         bytes: book.countsBytes[row.index], nanoseconds: elapsed)
        }
        if var l = line, let tracer = observer.tracer {
            TraceFormat.result(&l, row: row, result)
            l.text(" <")
            l.text(venue.name)
            l.byte(UInt8(ascii: " "))
            l.unsigned(elapsed / 1000)
            l.text("us>")
            l.finish()
            tracer.write(l)
        }
    }

    /// The line's start, as `strace -f -tt`: the thread id and the time of
    /// day to the microsecond.
    private static func stamp(_ line: inout TraceLine, tid: pid_t) {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var t = tm()
        localtime_r(&seconds, &t)
        line.unsigned(UInt64(tid))
        line.text("  ")
        line.unsigned(UInt64(t.tm_hour), width: 2)
        line.byte(UInt8(ascii: ":"))
        line.unsigned(UInt64(t.tm_min), width: 2)
        line.byte(UInt8(ascii: ":"))
        line.unsigned(UInt64(t.tm_sec), width: 2)
        line.byte(UInt8(ascii: "."))
        line.unsigned(UInt64(now.tv_nsec / 1000), width: 6)
        line.byte(UInt8(ascii: " "))
    }
}

extension Supervisor {
    /// The observer for `--trace` and `--stats`, with their files opened
    /// (before the program starts, so a bad path stops the run at once);
    /// nil when neither is on.
    static func makeObserver(_ options: SupervisorOptions) throws(LaunchError) -> Observer? {
        func open(_ path: String, _ what: String) throws(LaunchError) -> CInt {
            let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0o644)
            if fd < 0 { throw .output("cannot open the \(what) file \(path): \(String(cString: strerror(errno)))") }
            return fd
        }
        var tracer: Tracer? = nil
        if let selection = options.trace {
            var fd: CInt = 2
            if let path = options.traceFile { fd = try open(path, "trace") }
            tracer = Tracer(selection: selection, fd: fd)
        }
        var book: StatsBook? = nil
        if options.stats || options.statsJSON != nil {
            var json: CInt = -1
            if let path = options.statsJSON { json = try open(path, "statistics") }
            book = StatsBook(table: SyscallTable.x86_64, text: options.stats, jsonFD: json)
        }
        return tracer == nil && book == nil ? nil : Observer(tracer: tracer, book: book)
    }
}
