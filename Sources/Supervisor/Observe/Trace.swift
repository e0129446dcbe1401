import Glibc
import Synchronization
import SysKit

/// Which syscalls `--trace=LIST` shows: LIST is comma-separated strace
/// classes (`%file`, `%desc`, `%network`, `%process`, `%creds`,
/// `%memory`, `%stat`, `%%stat`, …; `file` without `%` too where no
/// syscall has that name), syscalls of the table by name, or `all`. Every
/// name comes from the one syscall table (`SyscallRow.classes`).
public struct TraceSelection: Sendable {
    /// Traced or not, by table row.
    let rows: [Bool]

    /// Parses LIST; the error names the first word that is neither a class
    /// nor a syscall of the table, and says what is.
    public init(parsing list: String) throws(TraceSelectionError) {
        let table = SyscallTable.x86_64
        var rows = [Bool](repeating: false, count: table.rows.count)
        for word in list.split(separator: ",", omittingEmptySubsequences: false).map(String.init) {
            if word == "all" || word == "%all" {
                rows = [Bool](repeating: true, count: rows.count)
                continue
            }
            // As strace: "%name" is always a class; a bare name is a
            // syscall when one has it (stat, fstat, …), else a class.
            let syscall = word.hasPrefix("%") ? nil : table.rows.first { "\($0.name)" == word }
            if let syscall {
                rows[syscall.index] = true
                continue
            }
            let key = word.hasPrefix("%") ? String(word.dropFirst()) : word
            guard let (_, cls) = TraceClass.names.first(where: { $0.0 == key }) else { throw TraceSelectionError(word: word) }
            for row in table.rows where row.classes.contains(cls) { rows[row.index] = true }
        }
        self.rows = rows
    }
}

/// A `--trace=` word that names neither a class nor an intercepted syscall.
public struct TraceSelectionError: Error, CustomStringConvertible {
    public let word: String
    public var description: String {
        let classes = TraceClass.names.map { "%" + $0.0 }.joined(separator: ", ")
        return "--trace: '\(word)' is not a class (\(classes), all) nor an intercepted syscall "
            + "(to write the trace to a file: --trace-file FILE)"
    }
}

/// `--trace`: formats one line per traced call into the worker's buffer
/// and writes it whole, under a lock, so lines of concurrent workers never
/// interleave (a line longer than the pipe buffer is written in pieces,
/// still under the lock).
final class Tracer: Sendable {
    let selection: TraceSelection
    /// Standard error, or the `--trace-file` (owned, never closed: it
    /// lives as long as the process).
    let fd: CInt
    private let writing = Mutex<Void>(())

    init(selection: TraceSelection, fd: CInt) {
        self.selection = selection
        self.fd = fd
    }

    /// Line buffer size: two paths fully escaped, the other arguments and
    /// the result (a longer line is cut, and still ends with its newline).
    static let lineCapacity = 24 * 1024

    /// Writes the finished line.
    func write(_ line: TraceLine) {
        let bytes = UnsafeRawBufferPointer(rebasing: line.buffer[0..<line.count])
        writing.withLock { _ in try? FD.writeFully(fd, bytes.baseAddress!, bytes.count) }
    }
}

/// A trace line being built in a worker's preallocated buffer: appends
/// past its end are dropped, except the final newline, which `finish`
/// always writes.
struct TraceLine {
    let buffer: UnsafeMutableRawBufferPointer
    private(set) var count = 0

    init(_ buffer: UnsafeMutableRawBufferPointer) { self.buffer = buffer }

    @inline(__always)
    mutating func byte(_ b: UInt8) {
        // The last byte is kept for the newline.
        if count < buffer.count - 1 { buffer[count] = b; count += 1 }
    }

    mutating func text(_ s: StaticString) { s.withUTF8Buffer { for b in $0 { byte(b) } } }

    mutating func cString(_ p: UnsafePointer<CChar>) {
        var q = p
        while q.pointee != 0 { byte(UInt8(bitPattern: q.pointee)); q += 1 }
    }

    /// `v` in `base`, zero-padded to `width` digits; dropped if it does not fit.
    mutating func unsigned(_ v: UInt64, base: UInt64 = 10, width: Int = 1) {
        var n = 1, probe = v
        while probe >= base { probe /= base; n += 1 }
        for _ in n..<max(n, width) { byte(UInt8(ascii: "0")) }
        guard count + n < buffer.count else { return }
        var rest = v
        for i in stride(from: count + n - 1, through: count, by: -1) {
            let x = UInt8(rest % base)
            buffer[i] = x < 10 ? UInt8(ascii: "0") + x : UInt8(ascii: "a") + x - 10
            rest /= base
        }
        count += n
    }

    mutating func decimal(_ v: Int64) {
        if v < 0 { byte(UInt8(ascii: "-")) }
        unsigned(v.magnitude)
    }

    mutating func hex(_ v: UInt64) {
        if v == 0 { byte(UInt8(ascii: "0")); return }
        text("0x")
        unsigned(v, base: 16)
    }

    /// A mode as strace shows one: 0644, 000.
    mutating func octal(_ v: UInt64) {
        byte(UInt8(ascii: "0"))
        unsigned(v, base: 8, width: 3)
    }

    /// `bytes` in double quotes, escaped as strace does (C escapes, octal
    /// for other unprintable bytes); "..." after `limit` bytes.
    mutating func quoted(_ bytes: UnsafeRawBufferPointer, limit: Int = 4096) {
        byte(UInt8(ascii: "\""))
        for b in bytes.prefix(limit) {
            switch b {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): byte(UInt8(ascii: "\\")); byte(b)
            case 10: text("\\n")
            case 9: text("\\t")
            case 13: text("\\r")
            case 11: text("\\v")
            case 12: text("\\f")
            case 32..<127: byte(b)
            default: byte(UInt8(ascii: "\\")); unsigned(UInt64(b), base: 8)
            }
        }
        byte(UInt8(ascii: "\""))
        if bytes.count > limit { text("...") }
    }

    /// Names the set bits of `v` from `names` (several bits to a name are
    /// named only when all are set; earlier entries first), the rest in hex;
    /// `zero` (or 0) when none is set.
    mutating func flags(_ v: UInt64, _ names: [(UInt64, StaticString)], zero: StaticString = "0") {
        if v == 0 { text(zero); return }
        var rest = v, first = true
        for (bits, name) in names where rest & bits == bits && bits != 0 {
            if !first { byte(UInt8(ascii: "|")) }
            text(name)
            rest &= ~bits
            first = false
        }
        if rest != 0 {
            if !first { byte(UInt8(ascii: "|")) }
            hex(rest)
        }
    }

    /// The name of `v` in `names`, else `v` in decimal.
    mutating func named(_ v: Int64, _ names: [(Int64, StaticString)]) {
        if let (_, name) = names.first(where: { $0.0 == v }) { text(name) } else { decimal(v) }
    }

    /// Ends the line with a newline (the byte kept for it).
    mutating func finish() {
        buffer[count] = UInt8(ascii: "\n")
        count += 1
    }
}
