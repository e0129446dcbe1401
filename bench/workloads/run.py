#!/usr/bin/env python3
"""Real workloads on a tree at home: native, Tether and sshfs in one run.

`make bench-workloads` (issue 9, point 6). Builds a tree in an export root
under /tmp once (fixed seeds), starts homestub --root on TCP loopback and,
when installed, an OpenSSH server with sshfs mounted from it, then runs each
workload in every configuration, interleaved and rotated, one untimed warm-up
and --rounds timed rounds, and prints the median wall time of each with the
issue's targets: Tether (TCP) faster than sshfs and within 3x native.

The page cache is not dropped (a shared machine, and not every container may
write drop_caches): every configuration reads warm caches, which is what the
warm-up run is for. `--quick --rounds 1` is a self-check in about a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import configs  # noqa: E402
import trees  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[2]
TREE = "tether-workloads"  # the tree's folder in the export root; /tether-workloads to a tracee
MAX_NATIVE_RATIO = 3.0
WORKLOADS = ("start", "git-status", "make", "make-noop", "tar", "python", "rsync")


@dataclass
class Workload:
    """A timed shell command run in each configuration's copy of the tree
    ({d}; the shared read-only files are {s}), with untimed steps before and
    after it, and a check of what it did (an error text, or None)."""
    name: str
    title: str
    cmd: str
    pre: Optional[str] = None
    post: Optional[str] = None
    check: Optional[Callable[[pathlib.Path, str], Optional[str]]] = None
    target: bool = True


@dataclass
class Result:
    samples: dict = field(default_factory=dict)   # config key -> [ms]
    failures: dict = field(default_factory=dict)  # config key -> text


def count(path: pathlib.Path) -> tuple:
    files = size = 0
    for root, _, names in os.walk(path):
        for n in names:
            files += 1
            size += os.lstat(os.path.join(root, n)).st_size
    return files, size


def same_tree(want: tuple, sub: str) -> Callable:
    def check(d: pathlib.Path, _: str) -> Optional[str]:
        got = count(d / sub)
        return None if got == want else f"{sub}: {got[0]} files, {got[1]} bytes; expected {want[0]}, {want[1]}"
    return check


def contains(text: str) -> Callable:
    return lambda _d, out: None if text in out else f"output lacks {text!r}: {out[-500:]!r}"


def workloads(sizes: trees.Sizes, tar_info: dict, rsync_want: tuple, modules: list) -> list:
    imports = "import " + ", ".join(modules)
    return [
        Workload("start", "reference: sh -c 'cd DIR' (start-up)", "cd {d}", target=False),
        Workload("git-status", f"git status, {sizes.git_files:,} files", "cd {d}/git && git status",
                 check=contains("nothing to commit, working tree clean")),
        Workload("make", f"make -j2, {sizes.c_files} C files", "cd {d}/cproj && make -s -j2",
                 pre="cd {d}/cproj && make -s clean",
                 check=lambda d, _: None if os.access(d / "cproj" / "prog", os.X_OK) else "no cproj/prog"),
        Workload("make-noop", "no-op make", "cd {d}/cproj && make", pre="cd {d}/cproj && make -s -j2",
                 check=contains("is up to date")),
        Workload("tar", f"tar xzf {tar_info['archive_bytes'] / 2**20:.0f} MiB archive",
                 "mkdir {d}/untar && tar xzf {s}/archive.tar.gz -C {d}/untar",
                 pre="rm -rf {d}/untar", post="rm -rf {d}/untar",
                 check=same_tree((tar_info["files"], tar_info["bytes"]), "untar")),
        Workload("python", f"python3 -B importing {len(modules)} modules",
                 f"cd {{d}}/py && python3 -B -c '{imports}'"),
        Workload("rsync", f"rsync -a, {sizes.rsync_files:,} files", "cd {d} && rsync -a rsync-src/ rsync-dst/",
                 pre="rm -rf {d}/rsync-dst", post="rm -rf {d}/rsync-dst", check=same_tree(rsync_want, "rsync-dst")),
    ]


def build_tree(export: pathlib.Path, local: pathlib.Path, keys: list, sizes: trees.Sizes, only: set) -> tuple:
    """The tree once (only the parts the chosen workloads use), in the native
    copy, then `cp -a` to every other configuration's copy (a repository or
    a build is never shared between two views: sshfs reports other inode
    numbers, which would make git rehash every file each time the view
    changes). The archive is read-only and shared."""
    top = export / TREE
    first = top / keys[0]
    first.mkdir(parents=True)
    (top / "shared").mkdir()
    env = {**trees.SETUP_ENV, "HOME": str(top), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}
    want = lambda *names: not only or any(n in only for n in names)  # noqa: E731
    tar_info, rsync_want, modules = {"files": 0, "bytes": 0, "archive_bytes": 0}, (0, 0), []
    if want("git-status"):
        trees.git_repo(first / "git", sizes.git_files, env)
    if want("make", "make-noop"):
        trees.c_project(first / "cproj", sizes.c_files)
    if want("python"):
        modules = trees.py_package(first / "py", sizes.py_modules)
    if want("rsync"):
        trees.rsync_tree(first / "rsync-src", sizes.rsync_files)
        rsync_want = count(first / "rsync-src")
    if want("tar"):
        tar_info = trees.tar_archive(top / "shared" / "archive.tar.gz", local / "staging",
                                     sizes.tar_random_mib, sizes.tar_text_mib)
    for k in keys[1:]:
        subprocess.run(["cp", "-a", str(first), str(top / k)], env=trees.SETUP_ENV, check=True, timeout=600)
    return tar_info, rsync_want, modules


def run_bounded(argv: list, env: dict, timeout: float) -> tuple:
    """(status, stdout, stderr, seconds); the whole process group is killed
    on timeout (status None)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, cwd="/", env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
        status = p.returncode
    except subprocess.TimeoutExpired:
        configs.kill_group(p)
        out, err = p.communicate()
        status = None
    return status, out.decode(errors="replace"), err.decode(errors="replace"), time.perf_counter() - t0


class Runner:
    """Runs one workload step in one configuration, bounded by `timeout`."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    def script(self, c: configs.Config, text: str) -> tuple:
        d = f"{c.base}/{TREE}/{c.key}"
        return text.format(d=shlex.quote(d), s=shlex.quote(f"{c.base}/{TREE}/shared")), d

    def step(self, c: configs.Config, text: str, stderr: bool = False) -> tuple:
        """(seconds, stdout, and stderr after it when asked) or (None, what failed)."""
        script, d = self.script(c, text)
        env = {"PATH": "/usr/bin:/bin", "LANG": "C", "LC_ALL": "C", "HOME": d,
               "GIT_CONFIG_NOSYSTEM": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        argv = c.argv(script)
        status, out, err, secs = run_bounded(argv, env, self.timeout)
        if status != 0:
            why = f"timed out after {self.timeout:.0f} s" if status is None else f"exit status {status}"
            return None, f"$ {shlex.join(argv)}\n{why}\n{(err or out).strip()[-1500:]}"
        return secs, out + err if stderr else out


def measure(ws: list, cfgs: list, rounds: int, runner: Runner, export: pathlib.Path) -> dict:
    """A warm-up round, then `rounds` timed ones: each workload in every
    configuration back to back, the order rotated each round. A configuration
    that fails a workload (or does it wrong) is dropped from that workload."""
    results = {w.name: Result() for w in ws}
    for r in range(rounds + 1):
        order = cfgs[r % len(cfgs):] + cfgs[:r % len(cfgs)]
        label = "warm-up" if r == 0 else f"round {r}/{rounds}"
        print(f"{label}: {time.strftime('%H:%M:%S')}, load {os.getloadavg()[0]:.2f}", flush=True)
        for w in ws:
            res = results[w.name]
            for c in order:
                if c.key in res.failures:
                    continue
                secs = None
                for kind, text in (("pre", w.pre), ("cmd", w.cmd), ("post", w.post)):
                    if text is None:
                        continue
                    t, out = runner.step(c, text)
                    if t is None:
                        res.failures[c.key] = f"{w.name} ({kind}): {out}"
                        break
                    if kind == "cmd":
                        secs = t
                        bad = w.check(export / TREE / c.key, out) if w.check else None
                        if bad:
                            res.failures[c.key] = f"{w.name}: wrong result under {c.label}: {bad}"
                            break
                if c.key not in res.failures and r > 0:
                    res.samples.setdefault(c.key, []).append(secs * 1000)
    return results


def call_counts(ws: list, tcp: configs.Config, runner: Runner) -> list:
    """One more run of each workload under Tether TCP with --stats: the
    total calls forwarded / run locally, and the four most frequent."""
    c = configs.Config(tcp.key, tcp.label, tcp.base, (*tcp.prefix[:-1], "--stats", "--"))
    lines = ["", "intercepted calls per run under Tether TCP (--stats; forwarded / local):"]
    for w in ws:
        if w.pre:
            runner.step(c, w.pre)
        t, out = runner.step(c, w.cmd, stderr=True)
        if w.post:
            runner.step(c, w.post)
        rows = []
        for line in (out or "").split("syscalls intercepted")[-1].splitlines()[1:]:
            f = line.split()
            if len(f) == 3 and f[1].isdigit() and f[2].isdigit():
                rows.append((f[0], int(f[1]), int(f[2])))
        total = next((r for r in rows if r[0] == "total"), None)
        if t is None or total is None:
            lines.append(f"  {w.title:<38} (no counts: {'failed' if t is None else 'no --stats output'})")
            continue
        top = sorted((r for r in rows if r[0] != "total"), key=lambda r: -(r[1] + r[2]))[:4]
        lines.append(f"  {w.title:<38} {total[1]:>7,} / {total[2]:<7,} " +
                     ", ".join(f"{n} {a:,}/{b:,}" for n, a, b in top))
    return lines


def fmt(ms: Optional[float]) -> str:
    if ms is None:
        return "—"
    return f"{ms:,.0f}" if ms >= 100 else f"{ms:.1f}"


def ratio(a: Optional[float], b: Optional[float]) -> str:
    return f"{a / b:.2f}×" if a is not None and b else "—"


def report(ws: list, cfgs: list, results: dict, notes: list) -> tuple:
    keys = [c.key for c in cfgs]
    med = {w.name: {k: (statistics.median(results[w.name].samples[k]) if results[w.name].samples.get(k) else None)
                    for k in keys} for w in ws}
    lines = []
    head = f"{'workload (median ms)':<40}" + "".join(f"{c.label:>14}" for c in cfgs) + f"{'tcp/native':>12}"
    if "sshfs" in keys:
        head += f"{'tcp/sshfs':>11}"
    lines += [head, "-" * len(head)]
    for w in ws:
        m, res = med[w.name], results[w.name]
        row = f"{w.title:<40}" + "".join(f"{'FAIL' if k in res.failures else fmt(m[k]):>14}" for k in keys)
        row += f"{ratio(m.get('tcp'), m.get('native')):>12}"
        if "sshfs" in keys:
            row += f"{ratio(m.get('tcp'), m.get('sshfs')):>11}"
        lines.append(row)
    targets = []
    if any(w.target for w in ws):
        lines += ["", "targets (issue 9, point 6: Tether over TCP):"]
    for w in (w for w in ws if w.target):
        m = med[w.name]
        t, n, s = m.get("tcp"), m.get("native"), m.get("sshfs")
        if "sshfs" in keys:
            ok = t is not None and s is not None and t < s
            targets.append({"workload": w.name, "target": "faster than sshfs", "ok": ok})
            lines.append(f"  {'ok  ' if ok else 'MISS'} {w.title}: faster than sshfs: {fmt(t)} vs {fmt(s)} ms ({ratio(t, s)})")
        ok = t is not None and n is not None and t <= MAX_NATIVE_RATIO * n
        targets.append({"workload": w.name, "target": f"within {MAX_NATIVE_RATIO:g}x native", "ok": ok})
        lines.append(f"  {'ok  ' if ok else 'MISS'} {w.title}: within {MAX_NATIVE_RATIO:g}× native: {ratio(t, n)}")
    failures = [f for w in ws for f in results[w.name].failures.values()]
    if failures:
        lines += ["", "failures:"] + [f"  {f}" for f in failures]
    if notes:
        lines += ["", "notes:"] + [f"  {n}" for n in notes]
    return "\n".join(lines), med, targets


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.environ.get("TETHER_BIN", str(REPO / ".build" / "release")),
                    help="folder holding wrap-and-run and homestub (default: .build/release)")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds after the warm-up (default 3)")
    ap.add_argument("--only", default="", help="comma-separated workloads: " + ",".join(WORKLOADS))
    ap.add_argument("--quick", action="store_true", help="small trees (1,000 files, 10 C files, 9 MiB tar, ...)")
    ap.add_argument("--no-spawn", action="store_true", help="leave out wrap-and-run --home spawn")
    ap.add_argument("--no-sshfs", action="store_true", help="leave out sshfs")
    ap.add_argument("--timeout", type=float, default=600, help="seconds any one command may take (default 600)")
    ap.add_argument("--stats", action="store_true",
                    help="then run each workload once more under Tether TCP with --stats and print the call counts")
    ap.add_argument("--json", help="write the figures to this file")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = ap.parse_args()

    only = set(filter(None, args.only.split(",")))
    if only - set(WORKLOADS):
        sys.exit(f"bench-workloads: unknown workload(s) {', '.join(sorted(only - set(WORKLOADS)))}")
    bin_dir = pathlib.Path(args.bin).resolve()
    for b in ("wrap-and-run", "homestub"):
        if not os.access(bin_dir / b, os.X_OK):
            sys.exit(f"bench-workloads: {bin_dir / b} not built (make build, or --bin DIR)")
    missing = [p for p in ("git", "make", "gcc", "tar", "gzip", "python3", "rsync") if shutil.which(p, path="/usr/bin:/bin") is None]
    if missing:
        sys.exit(f"bench-workloads: needs {', '.join(missing)} in /usr/bin or /bin")

    def stop(signum, _frame):
        raise SystemExit(128 + signum)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, stop)

    scratch = pathlib.Path(tempfile.mkdtemp(prefix="tether-workloads-", dir="/tmp"))
    export, local = scratch / "export", scratch / "local"
    export.mkdir()
    local.mkdir()
    servers = configs.Servers(bin_dir, export, local)
    notes = ["page cache not dropped: each configuration runs once untimed (warm-up) before the timed rounds",
             "wall time of the whole command, wrap-and-run's start-up and session set-up included",
             f"machine: {os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.2f} (shared with other jobs?)"]
    try:
        sizes = trees.Sizes.of(args.quick)
        keys = ["native", "tcp"] + ([] if args.no_spawn else ["spawn"]) + ([] if args.no_sshfs else ["sshfs"])
        t0 = time.monotonic()
        print(f"building the tree in {export}/{TREE} ...", flush=True)
        tar_info, rsync_want, modules = build_tree(export, local, keys, sizes, only)
        print(f"  done in {time.monotonic() - t0:.0f} s: archive {tar_info['archive_bytes'] / 2**20:.1f} MiB "
              f"({tar_info['files']} files, {tar_info['bytes'] / 2**20:.0f} MiB unpacked)", flush=True)
        cfgs = [configs.Config("native", "native", str(export), ())]
        cfgs += servers.tether(spawn=not args.no_spawn)
        if not args.no_sshfs:
            s = servers.sshfs()
            if s is not None:
                cfgs.append(s)
        ws = [w for w in workloads(sizes, tar_info, rsync_want, modules) if not only or w.name in only]
        results = measure(ws, cfgs, args.rounds, Runner(args.timeout), export)
        notes.append(f"load average at end {os.getloadavg()[0]:.2f}; {args.rounds} rounds, "
                     f"{time.monotonic() - t0:.0f} s in all")
        text, med, targets = report(ws, cfgs, results, servers.notes + notes)
        print()
        print(text)
        if args.stats:
            print("\n".join(call_counts(ws, cfgs[1], Runner(args.timeout))), flush=True)
        if any(results[w.name].failures for w in ws):
            for log in ("homestub.log", "sshfs.log"):
                tail = servers.log_tail(log)
                if tail.strip():
                    print(f"\n--- {log} (tail) ---\n{tail}")
        if args.json:
            pathlib.Path(args.json).write_text(json.dumps({
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "host": platform.node(),
                "kernel": platform.release(), "cpus": os.cpu_count(), "rounds": args.rounds, "quick": args.quick,
                "configs": {c.key: c.label for c in cfgs},
                "tree": {"git_files": sizes.git_files, "c_files": sizes.c_files, "py_modules": len(modules),
                         "rsync_files": sizes.rsync_files, "tar": tar_info},
                "workloads": {w.name: {"title": w.title, "command": w.cmd if w.name != "python" else
                                       "cd {d}/py && python3 -B -c 'import pkg.m0, ...'",
                                       "samples_ms": results[w.name].samples, "median_ms": med[w.name],
                                       "failures": results[w.name].failures} for w in ws},
                "targets": targets, "notes": servers.notes + notes}, indent=2) + "\n")
        return 1 if any(results[w.name].failures for w in ws) else 0
    finally:
        servers.close()
        mnt = local / "mnt"
        if args.keep:
            print(f"kept {scratch}")
        elif mnt.exists() and os.path.ismount(mnt):
            print(f"cleanup: {mnt} is still mounted; leaving {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
