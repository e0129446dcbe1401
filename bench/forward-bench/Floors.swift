import Foundation

/// The C floors: the polled ones every ratio is quoted against, measured
/// next to each row, and the per-round set (every notification variant, the
/// transport in both modes, the blocking forwarder as a reference row).
extension Bench {
    /// A floor line's key in `floors`: floor/transport-or-variant[/mode].
    func floorKey(_ j: [String: Any]) -> String? {
        guard let name = j["floor"] as? String else { return nil }
        let key = name + "/" + ((j["transport"] as? String) ?? (j["variant"] as? String) ?? "")
        return (j["mode"] as? String).map { key + "/" + $0 } ?? key
    }

    /// Keeps the best of the rounds: higher MB/s, or lower median.
    func keepBestFloor(_ j: [String: Any]) {
        guard let key = floorKey(j) else { return }
        if let old = floors[key] {
            if let a = num(j, "mb_s"), let b = num(old, "mb_s"), a <= b { return }
            if let a = num(j, "median_ns"), let b = num(old, "median_ns"), a >= b { return }
        }
        floors[key] = j
    }

    /// Whether a floor program's line is the figure `floor` stands for.
    private func isRowFloor(_ floor: Floor, _ j: [String: Any]) -> Bool {
        switch floor {
        case .forwarder:
            return j["floor"] as? String == floor.name && j["mode"] as? String == "polled"
        case .bulk:
            return j["floor"] as? String == floor.name   // the better of polled and blocking
        case .notify:
            return j["floor"] as? String == "notify" && j["variant"] as? String == "polled"
        case .rtt:
            return j["floor"] as? String == floor.name && j["mode"] as? String == "polled"
        case .stream:
            return j["floor"] as? String == floor.name   // the better of splice and copy
        }
    }

    /// An op's own floor, measured next to it with the op's sample count.
    func runRowFloor(_ op: Op) {
        guard let floor = op.floor else { return }
        let n = String(o.quick ? op.quickN : op.n)
        let runs: [[String]]
        switch floor {
        case .forwarder(let what):
            runs = [[bin + "/bench-floor-forwarder", "--what", what, "--file", workDir + "/data.bin", "--dir", workDir, "-n", n]]
        case .bulk:
            runs = ["50", "0"].map { [bin + "/bench-floor-transport", "--what", "bulk", "--size", String(seqSize), "--poll-us", $0] }
        case .notify:
            runs = [[bin + "/bench-floor-notify", "-n", n, "--variant", "polled"]]
        case .rtt:
            runs = [[bin + "/bench-floor-transport", "--what", "rtt", "-n", n, "--poll-us", "50"]]
        case .stream:
            runs = [[bin + "/bench-floor-transport", "--what", "stream", "--size", String(seqSize)]]
        }
        for argv in runs {
            for line in run(argv, what: "floor for \(op.name)") ?? [] {
                keepBestFloor(line)
                guard isRowFloor(floor, line) else { continue }
                // The notification floor has no transport: it is every configuration's.
                let transports = (line["transport"] as? String).map { [$0] } ?? configs
                guard let value = num(line, op.sequential ? "mb_s" : "median_ns") else { continue }
                for t in transports {
                    let key = op.name + "/" + t
                    if let old = rowFloors[key], op.sequential ? old >= value : old <= value { continue }
                    rowFloors[key] = value
                }
            }
        }
    }

    /// The per-round floors: the notification variants, the transport
    /// polled and blocking, the blocking C forwarder (the reference row) and
    /// the polled forwarder's sequential reads.
    func runFloors() {
        let n = o.quick ? 20_000 : 100_000
        let fn = o.quick ? 3_000 : 20_000
        var runs = [[bin + "/bench-floor-notify", "-n", String(n)]]
        for poll in ["50", "0"] {
            runs.append([bin + "/bench-floor-transport", "-n", String(fn), "--size", String(seqSize), "--poll-us", poll])
        }
        let forwarder = [bin + "/bench-floor-forwarder", "--file", workDir + "/data.bin", "--dir", workDir, "--size", String(seqSize)]
        runs.append(forwarder + ["-n", String(statSamples), "--poll-us", "0"])
        runs.append(forwarder + ["--what", "seq"])
        for argv in runs {
            for line in run(argv, what: URL(fileURLWithPath: argv[0]).lastPathComponent) ?? [] { keepBestFloor(line) }
        }
    }

    /// The floor figure an op's run in `config` is compared with.
    func floorValue(_ op: Op, config: String) -> Double? {
        guard let floor = op.floor else { return nil }
        if let v = rowFloors[op.name + "/" + config] { return v }
        switch floor {
        case .forwarder: return num(floors[floor.name + "/" + config + "/polled"], "median_ns")
        case .notify: return num(floors["notify/polled"], "median_ns")
        case .rtt: return num(floors[floor.name + "/" + config + "/polled"], "median_ns")
        case .stream:
            return ["splice", "copy"].compactMap { num(floors[floor.name + "/" + config + "/" + $0], "mb_s") }.max()
        case .bulk:
            return [num(floors[floor.name + "/" + config + "/polled"], "mb_s"),
                    num(floors[floor.name + "/" + config + "/blocking"], "mb_s")].compactMap { $0 }.max()
        }
    }

    /// Intercepted/floor: a time ratio (lower is better) or, for
    /// throughput, a fraction of the floor's rate (higher is better).
    func floorRatio(_ op: Op, config: String) -> Double? {
        guard let fig = figures[op.name + "/" + config], let floor = floorValue(op, config: config), floor > 0 else { return nil }
        return op.sequential ? (fig.mbS ?? 0) / floor : fig.medianNs / floor
    }
}
