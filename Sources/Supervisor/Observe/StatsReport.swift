import Glibc
import Histogram
import SysKit

/// The `--stats` report: the per-syscall counts (forwarded / run locally),
/// the caches' lines, then a row per syscall and venue with calls, errors,
/// bytes and latency percentiles; `--stats-json` gets the same rows as JSON.
extension StatsBook {
    /// Prints the text report (with `summaries`, the caches' lines) when
    /// `--stats` asked for it, and writes the JSON when `--stats-json` did.
    func report(table: SyscallTable, summaries: [String]) {
        let cells = merged()
        if text { printError(textReport(table: table, cells: cells, summaries: summaries)) }
        if jsonFD >= 0 {
            var json = jsonReport(table: table, cells: cells)
            json.withUTF8 { raw in try? FD.writeFully(jsonFD, raw.baseAddress!, raw.count) }
        }
    }

    /// The (venue, row) cells that saw calls, in table order, home first.
    private func used(_ table: SyscallTable, _ cells: [Cell]) -> [(SyscallRow, Venue, Cell)] {
        var out: [(SyscallRow, Venue, Cell)] = []
        for row in table.rows {
            for venue in Venue.allCases {
                let c = cells[venue.rawValue * rows + row.index]
                if c.calls > 0 { out.append((row, venue, c)) }
            }
        }
        return out
    }

    /// Each venue's cells merged over the syscalls.
    private func totals(_ cells: [Cell]) -> [(Venue, Cell)] {
        Venue.allCases.compactMap { venue in
            var total = Cell()
            for row in 0..<rows {
                let c = cells[venue.rawValue * rows + row]
                if c.calls == 0 { continue }
                total.calls += c.calls; total.errors += c.errors; total.bytes += c.bytes; total.unseen += c.unseen
                total.latency.add(c.latency)
            }
            return total.calls > 0 ? (venue, total) : nil
        }
    }

    private func textReport(table: SyscallTable, cells: [Cell], summaries: [String]) -> String {
        // The counts as before the venues: forwarded is every call the
        // supervisor answered, local every call the kernel ran.
        var lines = ["wrap-and-run: syscalls intercepted (forwarded to home / run locally):"]
        var total = (UInt64(0), UInt64(0))
        for row in table.rows {
            var f = UInt64(0), l = UInt64(0)
            for venue in Venue.allCases {
                let c = cells[venue.rawValue * rows + row.index]
                f += c.calls - c.unseen
                l += c.unseen
            }
            if f + l == 0 { continue }
            total.0 += f; total.1 += l
            lines.append("  \(pad("\(row.name)", 17)) \(pad(String(f), 9, left: true)) \(pad(String(l), 9, left: true))")
        }
        lines.append("  \(pad("total", 17)) \(pad(String(total.0), 9, left: true)) \(pad(String(total.1), 9, left: true))")
        lines += summaries.map { "  " + $0 }
        lines.append("wrap-and-run: calls by where they ran, latency from receipt to answer in µs "
                     + "(errors and bytes of the results seen: the kernel's own are not):")
        let header = ["syscall", "where", "calls", "errors", "bytes", "p50", "p90", "p99", "max"]
        lines.append("  " + row(header))
        func cellLine(_ name: String, _ venue: Venue, _ c: Cell) -> String {
            let seen = c.calls - c.unseen
            let p = percentiles(c)
            return "  " + row([name, "\(venue.name)", String(c.calls), seen > 0 ? String(c.errors) : "-",
                               seen > 0 ? String(c.bytes) : "-"] + p.map(micro))
        }
        for (r, venue, c) in used(table, cells) { lines.append(cellLine("\(r.name)", venue, c)) }
        for (venue, c) in totals(cells) { lines.append(cellLine("total", venue, c)) }
        return lines.joined(separator: "\n") + "\n"
    }

    /// p50, p90, p99 and max in nanoseconds.
    private func percentiles(_ c: Cell) -> [UInt64] {
        [c.latency.valueAtPercentile(50), c.latency.valueAtPercentile(90), c.latency.valueAtPercentile(99),
         c.latency.maxRecorded]
    }

    private func micro(_ ns: UInt64) -> String {
        let tenths = (ns + 50) / 100
        return "\(tenths / 10).\(tenths % 10)"
    }

    /// The columns of a table row: the first two left-aligned.
    private func row(_ cols: [String]) -> String {
        let widths = [17, 10, 9, 7, 12, 9, 9, 9, 9]
        return cols.enumerated().map { i, c in pad(c, widths[i], left: i >= 2) }.joined(separator: " ")
    }

    private func pad(_ s: String, _ n: Int, left: Bool = false) -> String {
        if s.count >= n { return s }
        let fill = String(repeating: " ", count: n - s.count)
        return left ? fill + s : s + fill
    }

    private func jsonReport(table: SyscallTable, cells: [Cell]) -> String {
        func object(_ name: String?, _ venue: Venue, _ c: Cell) -> String {
            let p = percentiles(c)
            let syscall = name.map { "\"syscall\": \"\($0)\", " } ?? ""
            return "{\(syscall)\"where\": \"\(venue.name)\", \"calls\": \(c.calls), \"errors\": \(c.errors), "
                + "\"bytes\": \(c.bytes), \"unseen\": \(c.unseen), \"latency_ns\": {\"p50\": \(p[0]), "
                + "\"p90\": \(p[1]), \"p99\": \(p[2]), \"max\": \(p[3])}}"
        }
        let rows = used(table, cells).map { object("\($0.0.name)", $0.1, $0.2) }
        let totals = totals(cells).map { object(nil, $0.0, $0.1) }
        return "{\"syscalls\": [\n  " + rows.joined(separator: ",\n  ") + "\n], \"totals\": [\n  "
            + totals.joined(separator: ",\n  ") + "\n]}\n"
    }
}
