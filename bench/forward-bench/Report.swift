import Foundation
import Glibc

extension Bench {
    func num(_ j: [String: Any]?, _ key: String) -> Double? { (j?[key] as? NSNumber)?.doubleValue }

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
        if o.keepCPUsAwake { line("--keep-cpus-awake: a SCHED_IDLE busy loop on every CPU, so idle vCPUs never halt (as with guest halt-polling)") }
        line("(a) native  (b) wrap-and-run, all bench paths local  (c) forwarded, Unix socketpair (--home spawn)  (d) forwarded, TCP loopback homestub")
        line("every ratio is against the POLLED floor (it waits as Tether does: non-blocking checks and sched_yield for up to 50 µs, sync wake-up),")
        line("measured next to the row: stat, pread, write: the polled C forwarder doing the same call over the same transport; local-path rows:")
        line("the polled bare notification round trip (answered CONTINUE), for (b) too; sequential rows: the raw request/response bulk MB/s of the transport")
        line("(1 MiB messages, the better of polled and blocking; ratio = % of it); the TCP stream row: the C stream forwarder (program -> socketpair")
        line("-> relay -> transport -> relay -> TCP -> sink, the better of splice and copy relays). The C floors do not seal; Tether over TCP does.")
        line()
        let w = [28, 8, 8, 6, 7, 8, 8, 7, 8, 8, 7]
        let head = ["operation", "(a)", "(b)", "b/a", "b/floor", "(c) unix", "floor", "c/floor", "(d) tcp", "floor", "d/floor"]
        line(zip(head, w).enumerated().map { pad($1.0, $1.1, left: $0 == 0) }.joined(separator: " "))
        line(String(repeating: "-", count: w.reduce(0, +) + w.count - 1))
        for op in chosen {
            var cols = [op.label, cell(op, "native"), cell(op, "local"), ratio(localRatio(op))]
            // Only a call routed locally has a floor for (b): the notification round trip.
            if case .notify = op.floor { cols.append(ratio(floorRatio(op, config: "local"))) } else { cols.append("—") }
            for t in ["unix", "tcp"] {
                let fv = floorValue(op, config: t)
                cols.append(cell(op, t))
                cols.append(fv.map { op.sequential ? String(format: "%.0f", $0) : us($0) } ?? "—")
                cols.append(ratio(floorRatio(op, config: t), percent: op.sequential))
            }
            line(zip(cols, w).enumerated().map { pad($1.0, $1.1, left: $0 == 0) }.joined(separator: " "))
        }
        engineLines(chosen).forEach { line($0) }
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
        floorLines().forEach { line($0) }
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
            if let cold = num(startup, "home_cold_median_ms"), let cached = num(startup, "home_cached_median_ms") {
                line(String(format: "startup of a program at home (a copy of /bin/true in a forwarded directory, --home spawn): "
                            + "first run (fetched) %.2f ms, next run (from the copy cache) %.2f ms", cold, cached))
            }
        }
        let cpuReport = cpuLines()
        if !cpuReport.isEmpty {
            line()
            cpuReport.forEach { line($0) }
        }
        let targets = checkTargets(chosen)
        for (group, heading) in [("9", "targets (issue 9), from this run; ratios against the polled floors:"),
                                 ("10", "sockets at home (issue 10), from this run:"),
                                 ("earlier", "targets kept from issues 3, 7 and 8:")] {
            let these = targets.filter { $0["group"] as? String == group }
            guard !these.isEmpty else { continue }
            line()
            line(heading)
            for t in these {
                let mark = (t["pass"] as? Bool).map { $0 ? "ok  " : "MISS" } ?? "info"
                line("  \(mark) \(t["target"] as? String ?? ""): \(t["measured"] as? String ?? "")")
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
                var compared = ["unix", "tcp"]
                if case .notify = op.floor { compared.insert("local", at: 0) }
                for t in compared {
                    if let r = floorRatio(op, config: t), let f = op.floor {
                        ratios.append(["op": op.name, "config": t, "to": f.name + "/" + t, "ratio": r])
                    }
                }
            }
            let doc: [String: Any] = [
                "date": ISO8601DateFormatter().string(from: began), "machine": machine, "quick": o.quick,
                "rounds": rounds, "seq_bytes": seqSize, "configs": configHelp,
                "results": chosen.flatMap { op in runConfigs.compactMap { figures[op.name + "/" + $0]?.json } },
                "floors": floors.keys.sorted().compactMap { floors[$0] },
                "ratios": ratios, "row_floors": rowFloors, "load": load, "concurrency": concurrency,
                "sealing": sealing, "sealed_forwarded": sealedFigures.mapValues(\.json), "startup": startup, "cpu": cpu,
                "targets": targets,
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
