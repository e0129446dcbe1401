import Foundation

/// The engines side by side (README, Engines): the intercepted
/// configurations (b), (c), (d) run again with `--engine ptrace`, as
/// "local-ptrace", "unix-ptrace", "tcp-ptrace", interleaved with the
/// others; every other configuration runs with `--engine seccomp`.
extension Bench {
    /// The engines asked for with --engines.
    var engineNames: [String] { o.engines.split(separator: ",").map(String.init) }

    /// The configurations run: the seccomp ones unless left out, then their
    /// ptrace twins when asked for.
    var runConfigs: [String] {
        let seccomp = engineNames.contains("seccomp") ? configs : ["native"]
        return seccomp + (engineNames.contains("ptrace") ? ["local", "unix", "tcp"].map { $0 + "-ptrace" } : [])
    }

    /// The seccomp configuration a ptrace one repeats, or nil.
    func ptraceBase(_ config: String) -> String? {
        config.hasSuffix("-ptrace") ? String(config.dropLast("-ptrace".count)) : nil
    }

    /// The table of the ptrace engine's figures next to seccomp's: median
    /// µs per call (sequential rows: MB/s) and ptrace / seccomp (time per
    /// call; for sequential rows, seccomp's rate over ptrace's).
    func engineLines(_ chosen: [Op]) -> [String] {
        guard engineNames.contains("ptrace") else { return [] }
        var out = ["", "engines: the same rows with --engine ptrace (pt) next to --engine seccomp (sc); pt/sc: time per call ratio "
                   + "(sequential: sc MB/s over pt MB/s); target for forwarded rows: pt/sc <= 1.5"]
        let w = [28, 8, 8, 6, 8, 8, 6, 8, 8, 6]
        let head = ["operation", "(b) sc", "(b) pt", "pt/sc", "(c) sc", "(c) pt", "pt/sc", "(d) sc", "(d) pt", "pt/sc"]
        out.append(zip(head, w).enumerated().map { pad($1.0, $1.1, left: $0 == 0) }.joined(separator: " "))
        out.append(String(repeating: "-", count: w.reduce(0, +) + w.count - 1))
        for op in chosen {
            var cols = [op.label]
            for c in ["local", "unix", "tcp"] {
                cols.append(cell(op, c))
                cols.append(cell(op, c + "-ptrace"))
                cols.append(ratio(engineRatio(op, c)))
            }
            out.append(zip(cols, w).enumerated().map { pad($1.0, $1.1, left: $0 == 0) }.joined(separator: " "))
        }
        return out
    }

    /// ptrace's figure over seccomp's for `op` in `config`.
    func engineRatio(_ op: Op, _ config: String) -> Double? {
        guard let sc = figures[op.name + "/" + config], let pt = figures[op.name + "/" + config + "-ptrace"] else { return nil }
        if op.sequential, let a = sc.mbS, let b = pt.mbS, b > 0 { return a / b }
        return sc.medianNs > 0 ? pt.medianNs / sc.medianNs : nil
    }
}
