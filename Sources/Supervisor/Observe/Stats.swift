import Glibc
import Histogram
import Synchronization

/// Where an intercepted call ran, for `--trace` and `--stats`.
enum Venue: Int, CaseIterable, Sendable {
    /// A request went home while the call was handled.
    case home
    /// The kernel ran it in the tracee (its result is not seen), or the
    /// supervisor's local deputy did.
    case local
    /// The supervisor answered it itself, without a round trip: from its
    /// attribute or listing cache, from data read ahead, or with
    /// descriptor work done for the tracee.
    case supervisor
    /// Answered from the local copy cache (a `copy` rule: an open served
    /// from it, a program at home run from it), fetched first if need be.
    case copy
    /// Refused by a `deny` rule, with its errno.
    case denied

    var name: StaticString {
        switch self {
        case .home: return "home"
        case .local: return "local"
        case .supervisor: return "supervisor"
        case .copy: return "copy"
        case .denied: return "denied"
        }
    }
}

/// Counters of one (syscall, venue) cell.
private enum Counter: Int, CaseIterable {
    case calls, errors, bytes
    /// Calls the kernel ran in the tracee: their result is not seen.
    case unseen
}

/// One worker's `--stats`: counters preallocated for every (syscall,
/// venue) cell, and a latency histogram (nanoseconds, HdrHistogram) per
/// cell, made on the cell's first call, never per call. Recorded by its
/// worker alone, under a lock that only the merge at exit contends.
final class WorkerStats: Sendable {
    struct Tally: Sendable {
        var counters: [UInt64]
        var latency: [Histogram<UInt64>?]
    }
    let tally: Mutex<Tally>

    init(cells: Int) {
        tally = Mutex(Tally(counters: [UInt64](repeating: 0, count: cells * Counter.allCases.count),
                            latency: [Histogram<UInt64>?](repeating: nil, count: cells)))
    }

    /// The histograms' range: 1 ns to an hour (longer calls count as an
    /// hour), two significant digits (1%).
    static func histogram() -> Histogram<UInt64> {
        Histogram(lowestDiscernibleValue: 1, highestTrackableValue: longest, numberOfSignificantValueDigits: .two)
    }
    static let longest: UInt64 = 3_600_000_000_000

    /// Records one call of table row `row` (`rows` rows in all): `result`
    /// nil when the kernel ran it; its positive result added to the bytes
    /// when `bytes`.
    func record(row: Int, rows: Int, venue: Venue, result: Int64?, bytes: Bool, nanoseconds: UInt64) {
        let cell = venue.rawValue * rows + row
        let base = cell * Counter.allCases.count
        tally.withLock { t in
            t.counters[base + Counter.calls.rawValue] &+= 1
            if let result {
                if result < 0 { t.counters[base + Counter.errors.rawValue] &+= 1 }
                else if bytes { t.counters[base + Counter.bytes.rawValue] &+= UInt64(result) }
            } else {
                t.counters[base + Counter.unseen.rawValue] &+= 1
            }
            if t.latency[cell] == nil { t.latency[cell] = Self.histogram() }
            t.latency[cell]!.record(min(nanoseconds, Self.longest))
        }
    }
}

/// `--stats`: hands each worker its `WorkerStats` (a worker that exits
/// leaves its own to the next one started), and at exit merges them all
/// and prints the table (text on standard error; JSON to `--stats-json`).
final class StatsBook: Sendable {
    let rows: Int
    /// Rows whose result is a byte count (result letter `b`).
    let countsBytes: [Bool]
    let text: Bool
    /// The `--stats-json` file, or -1.
    let jsonFD: CInt
    private let pool = Mutex<(free: [WorkerStats], all: [WorkerStats])>(([], []))

    init(table: SyscallTable, text: Bool, jsonFD: CInt) {
        rows = table.rows.count
        countsBytes = table.rows.map { TraceFormat.resultLetter($0) == UInt8(ascii: "b") }
        self.text = text
        self.jsonFD = jsonFD
    }

    /// A `WorkerStats` for a new worker: a departed worker's, or a new one.
    func take() -> WorkerStats {
        let cells = rows * Venue.allCases.count
        return pool.withLock { p in
            if let s = p.free.popLast() { return s }
            let s = WorkerStats(cells: cells)
            p.all.append(s)
            return s
        }
    }

    /// Gives back the stats of a worker that exits.
    func give(_ s: WorkerStats) { pool.withLock { $0.free.append(s) } }

    /// One merged (syscall, venue) cell.
    struct Cell {
        var calls: UInt64 = 0, errors: UInt64 = 0, bytes: UInt64 = 0, unseen: UInt64 = 0
        var latency = WorkerStats.histogram()

        mutating func add(_ counters: ArraySlice<UInt64>, _ h: Histogram<UInt64>?) {
            let at = counters.startIndex
            calls += counters[at + Counter.calls.rawValue]
            errors += counters[at + Counter.errors.rawValue]
            bytes += counters[at + Counter.bytes.rawValue]
            unseen += counters[at + Counter.unseen.rawValue]
            if let h { latency.add(h) }
        }
    }

    /// Every cell, merged over the workers: [venue * rows + row].
    func merged() -> [Cell] {
        var cells = [Cell](repeating: Cell(), count: rows * Venue.allCases.count)
        let n = Counter.allCases.count
        for s in pool.withLock({ $0.all }) {
            s.tally.withLock { t in
                for i in cells.indices where t.counters[i * n] > 0 {
                    cells[i].add(t.counters[(i * n)..<(i * n + n)], t.latency[i])
                }
            }
        }
        return cells
    }
}
