import Foundation

/// The concurrency section (issue 7): forwarded pread 4K latency with 1, 4
/// and 16 tracee threads in one process, and with one thread while 16 more
/// are blocked at home reading a FIFO. Each run is one traced process, so
/// every thread shares one supervisor and one home session.
extension Bench {
    static let concurrencyCases: [(name: String, threads: Int, blocked: Int)] = [
        ("1 thread", 1, 0), ("4 threads", 4, 0), ("16 threads", 16, 0), ("1 thread, 16 blocked at home", 1, 16),
    ]

    func runConcurrency() {
        let n = o.quick ? 2_000 : 10_000
        warn("forward-bench: concurrency: pread 4K with 1/4/16 threads, and with 16 calls blocked at home")
        for _ in 0..<rounds {
            for config in ["unix", "tcp"] {
                for c in Self.concurrencyCases {
                    let argv = wrap(config) + [bin + "/bench-workload", "pread-threads", "-n", String(n), "--dir", workDir,
                                               "--threads", String(c.threads), "--blocked", String(c.blocked)]
                    guard let j = run(argv, what: "concurrency \(c.name) [\(config)]")?.first,
                          let median = (j["median_ns"] as? NSNumber)?.doubleValue else { continue }
                    let key = "\(c.name)/\(config)"
                    if let old = concurrency[key]?["median_ns"], old <= median { continue }
                    concurrency[key] = ["median_ns": median, "p99_ns": (j["p99_ns"] as? NSNumber)?.doubleValue ?? 0]
                }
            }
        }
    }

    /// The section's lines of the report.
    func concurrencyLines() -> [String] {
        guard !concurrency.isEmpty else { return [] }
        var lines = ["concurrency: forwarded pread 4K, median µs (p99) and the ratio to one thread alone"]
        for config in ["unix", "tcp"] {
            let alone = concurrency["1 thread/\(config)"]?["median_ns"]
            for c in Self.concurrencyCases {
                guard let f = concurrency["\(c.name)/\(config)"], let m = f["median_ns"] else { continue }
                let ratio = alone.map { String(format: "%.2f×", m / $0) } ?? "—"
                lines.append("  \(config.padding(toLength: 5, withPad: " ", startingAt: 0))"
                             + "\(c.name.padding(toLength: 32, withPad: " ", startingAt: 0))"
                             + String(format: "%8.2f (%.2f)  %@", m / 1000, (f["p99_ns"] ?? 0) / 1000, ratio))
            }
        }
        return lines
    }

    /// The section's target: a regular-file call while 16 others wait at
    /// home stays within 1.2× of the same call alone.
    func concurrencyRatio(config: String) -> Double? {
        guard let alone = concurrency["1 thread/\(config)"]?["median_ns"],
              let loaded = concurrency["1 thread, 16 blocked at home/\(config)"]?["median_ns"] else { return nil }
        return loaded / alone
    }
}
