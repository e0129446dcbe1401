import Foundation
import Glibc

/// Whole sessions: many at once against one homestub, and start-up.
extension Bench {
    /// N concurrent traced processes, each doing M forwarded preads against the one homestub.
    func runLoad(sessions: Int, perSession: Int) {
        warn("forward-bench: load: \(sessions) sessions x \(perSession) forwarded preads over TCP")
        var children: [Child] = []
        var errors = 0
        let t0 = nowNs()
        for i in 0..<sessions {
            let argv = wrap("tcp") + [bin + "/bench-workload", "pread-random", "-n", String(perSession), "--warmup", "0",
                                      "--dir", workDir, "--seed", String(i + 1)]
            do {
                children.append(try Child.start(argv, stdout: scratch + "/load\(i).out", stderr: scratch + "/load\(i).err"))
            } catch {
                errors += 1
                failures.append(Failure(what: "load session \(i)", command: argv, status: -1, stderr: "\(error)"))
            }
        }
        var medians: [Double] = []
        var p99s: [Double] = []
        for (i, c) in children.enumerated() {
            let (status, _) = c.wait()
            let lines = jsonLines(c.output)
            if status != 0 || lines.isEmpty {
                errors += 1
                failures.append(Failure(what: "load session \(i)", command: c.argv, status: status, stderr: c.errors))
                continue
            }
            if let m = (lines[0]["median_ns"] as? NSNumber)?.doubleValue { medians.append(m) }
            if let p = (lines[0]["p99_ns"] as? NSNumber)?.doubleValue { p99s.append(p) }
        }
        let wall = Double(nowNs() - t0) / 1e9
        let done = Double((sessions - errors) * perSession)
        medians.sort()
        p99s.sort()
        load = ["sessions": sessions, "preads_per_session": perSession, "errors": errors, "wall_s": wall,
                "aggregate_ops_s": done / wall,
                "session_median_ns_median": medians.isEmpty ? 0 : medians[medians.count / 2],
                "session_p99_ns_max": p99s.last ?? 0]
    }

    /// `wrap-and-run ... -- /bin/true` against `/bin/true`, interleaved, median wall time.
    func runStartup(runs: Int) {
        warn("forward-bench: startup: \(runs) runs each")
        let variants: [(String, [String])] = [("native", []), ("spawn", wrap("unix")), ("tcp", wrap("tcp"))]
        var times: [String: [Double]] = [:]
        for _ in 0..<runs {
            for (name, prefix) in variants {
                let argv = prefix + ["/bin/true"]
                do {
                    let c = try Child.start(argv, stdout: nil, stderr: scratch + "/startup.err")
                    let (status, wall) = c.wait()
                    if status != 0 {
                        failures.append(Failure(what: "startup \(name)", command: argv, status: status, stderr: c.errors))
                        continue
                    }
                    times[name, default: []].append(Double(wall) / 1e6)
                } catch {
                    failures.append(Failure(what: "startup \(name)", command: argv, status: -1, stderr: "\(error)"))
                }
            }
        }
        runHomeProgram(runs: runs, into: &times)
        for (name, t) in times {
            let s = t.sorted()
            startup[name + "_median_ms"] = s[s.count / 2]
        }
        startup["runs"] = runs
    }

    /// A program that lives at home (issue 11): a copy of /bin/true in the
    /// forwarded work directory, run by `wrap-and-run --home spawn` with an
    /// empty copy cache ("home_cold": fetched) and again ("home_cached").
    private func runHomeProgram(runs: Int, into times: inout [String: [Double]]) {
        let program = workDir + "/true", cache = localDir + "/copy-cache"
        guard (try? FileManager.default.copyItem(atPath: "/bin/true", toPath: program)) != nil else {
            failures.append(Failure(what: "startup home program", command: ["cp", "/bin/true", program], status: -1, stderr: ""))
            return
        }
        setenv("XDG_CACHE_HOME", cache, 1)
        defer { unsetenv("XDG_CACHE_HOME") }
        for _ in 0..<runs {
            try? FileManager.default.removeItem(atPath: cache)
            for name in ["home_cold", "home_cached"] {
                let argv = wrap("unix") + [program]
                guard let c = try? Child.start(argv, stdout: nil, stderr: scratch + "/startup.err") else { continue }
                let (status, wall) = c.wait()
                if status != 0 {
                    failures.append(Failure(what: "startup \(name)", command: argv, status: status, stderr: c.errors))
                    continue
                }
                times[name, default: []].append(Double(wall) / 1e6)
            }
        }
    }
}
