import Foundation
import Glibc

extension Bench {
    func num(_ j: [String: Any]?, _ key: String) -> Double? { (j?[key] as? NSNumber)?.doubleValue }

    /// The floor figure an op's forwarded run over `transport` is compared with.
    func floorValue(_ op: Op, transport: String) -> Double? {
        guard let name = op.floor else { return nil }
        if let v = rowFloors[op.name + "/" + transport] { return v }
        let f = floors[name + "/" + transport]
        return op.sequential ? num(f, "mb_s") : num(f, "median_ns")
    }

    /// Forwarded/floor: a time ratio (lower is better) or, for throughput, a fraction (higher is better).
    func floorRatio(_ op: Op, config: String) -> Double? {
        guard let fig = figures[op.name + "/" + config], let floor = floorValue(op, transport: config), floor > 0 else { return nil }
        return op.sequential ? (fig.mbS ?? 0) / floor : fig.medianNs / floor
    }

    func localRatio(_ op: Op) -> Double? {
        guard let a = figures[op.name + "/native"], let b = figures[op.name + "/local"] else { return nil }
        if op.sequential, let x = a.mbS, let y = b.mbS, y > 0 { return x / y } // slowdown, like the time ratios
        return a.medianNs > 0 ? b.medianNs / a.medianNs : nil
    }

    func cell(_ op: Op, _ config: String) -> String {
        guard let f = figures[op.name + "/" + config] else { return "fail" }
        if op.sequential { return String(format: "%.0f", f.mbS ?? 0) }
        return us(f.medianNs)
    }

    func us(_ ns: Double) -> String {
        let u = ns / 1000
        return u < 1 ? String(format: "%.3f", u) : u < 100 ? String(format: "%.2f", u) : String(format: "%.0f", u)
    }

    func ratio(_ r: Double?, percent: Bool = false) -> String {
        guard let r else { return "—" }
        return percent ? String(format: "%.0f%%", r * 100) : String(format: "%.2f×", r)
    }

    func pad(_ s: String, _ w: Int, left: Bool = false) -> String {
        let n = s.count
        if n >= w { return s }
        let fill = String(repeating: " ", count: w - n)
        return left ? s + fill : fill + s
    }

    func report(_ chosen: [Op]) {
        var out = ""
        func line(_ s: String = "") { out += s + "\n" }
        let machine = machineDescription()
        line()
        line("Tether forward-bench, \(ISO8601DateFormatter().string(from: began)), \(machine)\(o.quick ? ", quick" : "")")
        line("median µs per call (sequential rows: MB/s); best median of \(rounds) round(s), configurations interleaved")
        line("(a) native  (b) wrap-and-run, all bench paths local  (c) forwarded, Unix socketpair (--home spawn)  (d) forwarded, TCP loopback homestub")
        line("floor: bench-floor-forwarder pread 4K over the same transport, measured next to the row; sequential rows: raw transport bulk MB/s (ratio = % of it)")
        line()
        let w = [28, 8, 8, 6, 8, 8, 7, 8, 8, 7]
        let head = ["operation", "(a)", "(b)", "b/a", "(c) unix", "floor", "c/floor", "(d) tcp", "floor", "d/floor"]
        line(zip(head, w).enumerated().map { pad($1.0, $1.1, left: $0 == 0) }.joined(separator: " "))
        line(String(repeating: "-", count: w.reduce(0, +) + w.count - 1))
        for op in chosen {
            var cols = [op.label, cell(op, "native"), cell(op, "local"), ratio(localRatio(op))]
            for t in ["unix", "tcp"] {
                let fv = floorValue(op, transport: t)
                cols.append(cell(op, t))
                cols.append(fv.map { op.sequential ? String(format: "%.0f", $0) : us($0) } ?? "—")
                cols.append(ratio(floorRatio(op, config: t), percent: op.sequential))
            }
            line(zip(cols, w).enumerated().map { pad($1.0, $1.1, left: $0 == 0) }.joined(separator: " "))
        }
        line()
        line("tails, µs: p99 / p99.9")
        line(pad("operation", 28, left: true) + configs.map { pad("(\($0))", 18) }.joined())
        for op in chosen where !op.sequential {
            let cols = configs.map { c -> String in
                guard let f = figures[op.name + "/" + c] else { return pad("fail", 18) }
                return pad(us(f.p99Ns) + " / " + us(f.p999Ns), 18)
            }
            line(pad(op.label, 28, left: true) + cols.joined())
        }
        line()
        line("floors (C programs in bench/):")
        for v in ["unpinned", "pinned", "sync-wakeup"] {
            if let f = floors["notify/" + v] {
                line("  seccomp notification round trip, \(pad(v, 11, left: true))  median \(us(num(f, "median_ns") ?? 0)) µs  p99 \(us(num(f, "p99_ns") ?? 0))  p99.9 \(us(num(f, "p999_ns") ?? 0))")
            }
        }
        for t in ["unix", "tcp"] {
            if let f = floors["transport-rtt/" + t] {
                line("  transport \(pad(t, 4, left: true)) 64 B -> 4 KiB round trip  median \(us(num(f, "median_ns") ?? 0)) µs  p99 \(us(num(f, "p99_ns") ?? 0))  p99.9 \(us(num(f, "p999_ns") ?? 0))")
            }
            let br = num(floors["transport-bulk-read/" + t], "mb_s").map { String(format: "%.0f", $0) } ?? "—"
            let bw = num(floors["transport-bulk-write/" + t], "mb_s").map { String(format: "%.0f", $0) } ?? "—"
            line("  transport \(pad(t, 4, left: true)) bulk, 1 MiB messages      read \(br) MB/s, write \(bw) MB/s")
            if let f = floors["forwarder-pread/" + t] {
                line("  C forwarder \(pad(t, 4, left: true)) pread 4K              median \(us(num(f, "median_ns") ?? 0)) µs  p99 \(us(num(f, "p99_ns") ?? 0))  p99.9 \(us(num(f, "p999_ns") ?? 0))")
            }
            if let s = num(floors["forwarder-seqread/" + t], "mb_s") {
                line("  C forwarder \(pad(t, 4, left: true)) sequential 1 MiB preads  \(String(format: "%.0f", s)) MB/s")
            }
        }
        if !load.isEmpty {
            line()
            line(String(format: "load: %d sessions x %d forwarded pread 4K (TCP, one homestub): %d errors, %.1f s wall, %.0f preads/s aggregate; median session median %@ µs, worst session p99 %@ µs",
                        load["sessions"] as? Int ?? 0, load["preads_per_session"] as? Int ?? 0, load["errors"] as? Int ?? 0,
                        num(load, "wall_s") ?? 0, num(load, "aggregate_ops_s") ?? 0,
                        us(num(load, "session_median_ns_median") ?? 0), us(num(load, "session_p99_ns_max") ?? 0)))
        }
        let concurrencyReport = concurrencyLines()
        if !concurrencyReport.isEmpty {
            line()
            concurrencyReport.forEach { line($0) }
        }
        let sealingReport = sealingLines()
        if !sealingReport.isEmpty {
            line()
            sealingReport.forEach { line($0) }
        }
        if let base = num(startup, "native_median_ms") {
            line()
            var s = String(format: "startup (median of %d): /bin/true %.2f ms", startup["runs"] as? Int ?? 0, base)
            for v in ["spawn", "tcp"] {
                if let t = num(startup, v + "_median_ms") {
                    s += String(format: "; wrap-and-run --home %@ %.2f ms (+%.2f)", v == "spawn" ? "spawn" : "HOST:PORT", t, t - base)
                }
            }
            line(s)
        }
        let targets = checkTargets(chosen)
        if !targets.isEmpty {
            line()
            line("targets (issue 3):")
            for t in targets {
                line("  \(t["pass"] as? Bool == true ? "ok  " : "MISS") \(t["target"] as? String ?? ""): \(t["measured"] as? String ?? "")")
            }
        }
        if !failures.isEmpty {
            line()
            line("FAILURES (\(failures.count)):")
            for f in failures.prefix(20) {
                line("  \(f.what): status \(f.status): \(f.command.joined(separator: " "))")
                for l in f.stderr.split(separator: "\n").prefix(3) { line("    \(l)") }
            }
        }
        FileHandle.standardOutput.write(Data(out.utf8))

        if let path = o.json {
            var ratios: [[String: Any]] = []
            for op in chosen {
                if let r = localRatio(op) { ratios.append(["op": op.name, "config": "local", "to": "native", "ratio": r]) }
                for t in ["unix", "tcp"] {
                    if let r = floorRatio(op, config: t), let f = op.floor {
                        ratios.append(["op": op.name, "config": t, "to": f + "/" + t, "ratio": r])
                    }
                }
            }
            let doc: [String: Any] = [
                "date": ISO8601DateFormatter().string(from: began), "machine": machine, "quick": o.quick,
                "rounds": rounds, "seq_bytes": seqSize, "configs": configHelp,
                "results": chosen.flatMap { op in configs.compactMap { figures[op.name + "/" + $0]?.json } },
                "floors": floors.keys.sorted().compactMap { floors[$0] },
                "ratios": ratios, "row_floors": rowFloors, "load": load, "concurrency": concurrency,
                "sealing": sealing, "sealed_forwarded": sealedFigures.mapValues(\.json), "startup": startup, "targets": targets,
                "failures": failures.map(\.json),
            ]
            do {
                let data = try JSONSerialization.data(withJSONObject: doc, options: [.prettyPrinted, .sortedKeys])
                try data.write(to: URL(fileURLWithPath: path))
            } catch {
                warn("forward-bench: cannot write \(path): \(error)")
            }
        }
    }

    func checkTargets(_ chosen: [Op]) -> [[String: Any]] {
        var t: [[String: Any]] = []
        func add(_ target: String, _ value: Double?, _ pass: (Double) -> Bool, _ fmt: (Double) -> String) {
            guard let value else { return }
            t.append(["target": target, "value": value, "pass": pass(value), "measured": fmt(value)])
        }
        let x = { (v: Double) in String(format: "%.2f×", v) }
        let pc = { (v: Double) in String(format: "%.0f%%", v * 100) }
        let byName = Dictionary(uniqueKeysWithValues: chosen.map { ($0.name, $0) })
        if let op = byName["getppid"] { add("never-intercepted getppid (b)/(a) ≤ 1.02×", localRatio(op), { $0 <= 1.02 }, x) }
        for name in ["fstat-local", "pread-local", "write-local", "pipe-write-read"] {
            if let op = byName[name] { add("hot local \(name) (b)/(a) ≤ 1.10×", localRatio(op), { $0 <= 1.10 }, x) }
        }
        for name in ["pread-random", "stat", "open-close", "write-append"] {
            guard let op = byName[name] else { continue }
            for c in ["unix", "tcp"] {
                add("forwarded \(name) over \(c) ≤ 1.25× C forwarder", floorRatio(op, config: c), { $0 <= 1.25 }, x)
            }
        }
        for name in ["seqread", "seqwrite"] {
            guard let op = byName[name] else { continue }
            for c in ["unix", "tcp"] {
                add("forwarded \(name) over \(c) ≥ 70% of transport bulk", floorRatio(op, config: c), { $0 >= 0.70 }, pc)
            }
        }
        for c in ["unix", "tcp"] {
            add("pread 4K over \(c) with 16 calls blocked at home ≤ 1.2× alone", concurrencyRatio(config: c), { $0 <= 1.2 }, x)
        }
        sealingTargets(add)
        if let e = load["errors"] as? Int {
            t.append(["target": "\(load["sessions"] ?? 0)-session load: no errors", "value": e, "pass": e == 0,
                      "measured": String(format: "%d errors, %.0f preads/s", e, num(load, "aggregate_ops_s") ?? 0)])
        }
        if let base = num(startup, "native_median_ms") {
            for v in ["spawn", "tcp"] {
                add("startup --home \(v == "spawn" ? "spawn" : "HOST:PORT") ≤ /bin/true + 10 ms",
                    num(startup, v + "_median_ms").map { $0 - base }, { $0 <= 10 }, { String(format: "+%.2f ms", $0) })
            }
        }
        return t
    }

    func machineDescription() -> String {
        var u = utsname()
        uname(&u)
        let release = withUnsafeBytes(of: &u.release) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }
            .map { $0.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "" } ?? "?"
        return "\(sysconf(Int32(_SC_NPROCESSORS_ONLN))) vCPU \(model), Linux \(release)"
    }
}
