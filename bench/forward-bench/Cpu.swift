import Foundation
import Glibc

/// The CPU section (issue 9): CPU time per forwarded pread 4K, summed over
/// the tracee, the supervisor (wrap-and-run) and the deputy, and the CPU an
/// idle session burns.
///
/// Per call: pread-random runs twice under wrap-and-run, with `calls` and
/// with 100 preads (no warm-up either time); the difference of the CPU
/// times over the difference of the calls is the cost of one call, with
/// start-up and teardown cancelled out. wrap-and-run's rusage from wait4
/// (its reaped children's time is the tracee's, with the small process
/// wrap-and-run starts it through) gives
/// supervisor + tracee to the microsecond; /proc/PID/stat of the zombie,
/// read before reaping it, splits the two (in clock ticks). Over TCP the
/// deputy is homestub's child: its time is the growth of homestub's
/// cutime + cstime once it has been reaped. With --home spawn the private
/// home is a thread of wrap-and-run, so "supervisor" includes it. Each
/// figure is the median of the rounds.
///
/// Idle: `wrap-and-run --home spawn -- /bin/sleep 1`; the CPU of every
/// thread of wrap-and-run and of the processes under it (supervisor,
/// private home, the sleeping tracee) from their /proc/PID/task/TID/schedstat
/// (nanoseconds), sampled 0.2 s and 0.9 s after the start, while the tracee
/// sleeps, scaled to one second.
extension Bench {
    func runCpu(calls: Int) {
        warn("forward-bench: cpu: \(calls) forwarded preads against 100, and an idle traced sleep 1")
        let small = 100
        // The median of the rounds, not the best: a busy machine takes the
        // CPU a polling thread would have burnt, so the lowest is flattering.
        for config in ["unix", "tcp"] {
            var runs: [[String: Double]] = []
            for _ in 0..<rounds {
                guard let big = cpuRun(config, calls: calls), let base = cpuRun(config, calls: small) else { continue }
                let k = Double(calls - small)
                var f: [String: Double] = [:]
                for key in ["total", "tracee", "supervisor", "deputy"] {
                    f[key + "_us"] = ((big[key] ?? 0) - (base[key] ?? 0)) / k * 1e6
                }
                f["wall_us"] = (big["mean_ns"] ?? 0) / 1000
                f["cpu_per_wall"] = f["wall_us"]! > 0 ? f["total_us"]! / f["wall_us"]! : 0
                runs.append(f)
            }
            runs.sort { $0["total_us"]! < $1["total_us"]! }
            if !runs.isEmpty { cpu[config] = runs[runs.count / 2] }
        }
        let idle = (0..<rounds).compactMap { _ in idleRun() }.sorted()
        if !idle.isEmpty { cpu["idle"] = ["cpu_ms_per_s": idle[idle.count / 2]] }
    }

    /// One pread-random run: seconds of CPU of each part, and the workload's mean wall time per call.
    private func cpuRun(_ config: String, calls: Int) -> [String: Double]? {
        let argv = wrap(config) + [bin + "/bench-workload", "pread-random", "-n", String(calls), "--warmup", "0", "--dir", workDir]
        let hs = config == "tcp" ? homestub?.pid : nil
        let before = hs.map { childTicks($0) }
        let standbys = hs.map { childPids($0) } ?? []
        runCounter += 1
        let out = scratch + "/cpu\(runCounter)"
        guard let child = try? Child.start(argv, stdout: out + ".out", stderr: out + ".err") else { return nil }
        // The zombie's own and reaped children's ticks, then wait4's precise rusage.
        var info = siginfo_t()
        while waitid(P_PID, id_t(child.pid), &info, WEXITED | WNOWAIT) < 0 && errno == EINTR {}
        let ticks = procTicks(child.pid)
        var status: Int32 = 0
        var usage = rusage()
        while wait4(child.pid, &status, 0, &usage) < 0 && errno == EINTR {}
        let lines = jsonLines(child.output)
        guard status == 0, let mean = lines.first.flatMap({ num($0, "mean_ns") }), let ticks else {
            failures.append(Failure(what: "cpu \(config)", command: argv, status: status, stderr: child.errors))
            return nil
        }
        func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        let hz = Double(sysconf(Int32(_SC_CLK_TCK)))
        let total = seconds(usage.ru_utime) + seconds(usage.ru_stime)
        let traceeShare = ticks.own + ticks.children > 0 ? ticks.children / (ticks.own + ticks.children) : 0
        var r: [String: Double] = ["tracee": total * traceeShare, "supervisor": total * (1 - traceeShare), "mean_ns": mean]
        if let hs, let before {
            // The session's deputy was the standby (or a new child): wait until it is reaped.
            let deadline = nowNs() + 3_000_000_000
            while nowNs() < deadline && !childPids(hs).isDisjoint(with: standbys) { usleep(5_000) }
            usleep(20_000)
            r["deputy"] = (childTicks(hs) - before) / hz
        }
        r["total"] = (r["tracee"] ?? 0) + (r["supervisor"] ?? 0) + (r["deputy"] ?? 0)
        return r
    }

    /// CPU ms per second of wrap-and-run and its descendants while its tracee sleeps.
    private func idleRun() -> Double? {
        let argv = wrap("unix") + ["/bin/sleep", "1"]
        guard let child = try? Child.start(argv, stdout: nil, stderr: scratch + "/idle.err") else { return nil }
        usleep(200_000)
        let (t0, c0) = (nowNs(), treeThreadNs(child.pid))
        usleep(700_000)
        let (t1, c1) = (nowNs(), treeThreadNs(child.pid))
        let (status, _) = child.wait()
        guard status == 0 else {
            failures.append(Failure(what: "idle sleep 1", command: argv, status: status, stderr: child.errors))
            return nil
        }
        // Threads present at both samples; one that ended between them is left out (it was not idle).
        var ns: UInt64 = 0
        for (tid, end) in c1 { ns += end - (c0[tid] ?? 0) }
        return Double(ns) / 1e6 / (Double(t1 - t0) / 1e9)
    }
}

/// utime + stime and cutime + cstime of a process (or zombie), in clock ticks.
func procTicks(_ pid: pid_t) -> (own: Double, children: Double)? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = text.lastIndex(of: ")") else { return nil }
    // Fields after "(comm)": state is field 3, utime 14, stime 15, cutime 16, cstime 17.
    let f = text[text.index(after: close)...].split(separator: " ")
    guard f.count > 14, let u = Double(f[11]), let s = Double(f[12]), let cu = Double(f[13]), let cs = Double(f[14]) else { return nil }
    return (u + s, cu + cs)
}

/// cutime + cstime of a process: its reaped children's CPU, in clock ticks.
func childTicks(_ pid: pid_t) -> Double { procTicks(pid)?.children ?? 0 }

/// The children of every thread of a process.
func childPids(_ pid: pid_t) -> Set<pid_t> {
    var out = Set<pid_t>()
    for tid in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? [] {
        let text = (try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/children", encoding: .utf8)) ?? ""
        for p in text.split(separator: " ") { if let v = pid_t(p.trimmingCharacters(in: .whitespacesAndNewlines)) { out.insert(v) } }
    }
    return out
}

/// Nanoseconds of CPU of each live thread of a process and of every
/// process under it (schedstat's first field), by thread id.
func treeThreadNs(_ pid: pid_t) -> [String: UInt64] {
    var out: [String: UInt64] = [:]
    var pending = [pid]
    while let p = pending.popLast() {
        for tid in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(p)/task")) ?? [] {
            guard let text = try? String(contentsOfFile: "/proc/\(p)/task/\(tid)/schedstat", encoding: .utf8),
                  let first = text.split(separator: " ").first, let ns = UInt64(first) else { continue }
            out[tid] = ns
        }
        pending += childPids(p)
    }
    return out
}
