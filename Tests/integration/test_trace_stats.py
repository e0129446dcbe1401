"""--trace and --stats: what a user sees of the calls a program made.

A small C program makes a known set of calls: it opens a home-only file
(the decoy of the same name has other contents) OPENS times and reads it
once each, fails to open a missing path MISSES times, and opens a local file
once. The trace must show each forwarded open marked `home` with its path,
flags and descriptor, each failure with its errno name, the local open marked
`local`; --stats must count exactly those calls, with their errors, bytes and
latency percentiles in order, as text and as JSON.
"""

import json
import re
import subprocess

from conftest import PY, describe, py
from test_files import ok

OPENS, MISSES = 5, 3
HOME_TEXT = "home-only contents\n"

PROGRAM = r'''
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* argv: a home-only file, a missing path, a local file, a file to create. */
int main(int argc, char **argv) {
    char buf[4096];
    long total = 0;
    for (int i = 0; i < %(opens)d; i++) {
        int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
        if (fd < 0) { perror("open"); return 1; }
        long n = read(fd, buf, sizeof buf);
        if (n < 0) { perror("read"); return 1; }
        total += n;
        if (i == 0) printf("fd %%d\n", fd);
        close(fd);
    }
    for (int i = 0; i < %(misses)d; i++)
        if (open(argv[2], O_RDONLY) >= 0) return 2;
    int local = open(argv[3], O_RDONLY);
    if (local < 0) { perror("open local"); return 3; }
    close(local);
    int made = open(argv[4], O_WRONLY | O_CREAT | O_TRUNC, 0640);
    if (made < 0) { perror("creat"); return 4; }
    close(made);
    printf("read %%ld\n", total);
    return 0;
}
''' % {"opens": OPENS, "misses": MISSES}

# `strace -f -tt` then where the call ran and its latency.
LINE = re.compile(r"^(\d+)  (\d\d):(\d\d):(\d\d)\.(\d{6}) (\w+)\((.*)\) = (.+) <(home|local|supervisor|copy|denied) (\d+)us>$")


def build(tv):
    src = tv.local / "calls.c"
    src.write_text(PROGRAM)
    exe = tv.local / "calls"
    r = subprocess.run(["gcc", "-O2", "-Wall", "-o", str(exe), str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return exe


def run_calls(tv, *wrap_args):
    """Runs the program; returns (completed process, its argv paths)."""
    exe = build(tv)
    tv.both("h.txt", HOME_TEXT, "decoy, a different length\n")
    paths = (tv.p("h.txt"), tv.p("missing.txt"), "/etc/hostname", tv.p("made.txt"))
    r = ok(tv.run([exe, *paths], extra_wrap_args=list(wrap_args)))
    assert r.stdout.splitlines()[1] == f"read {OPENS * len(HOME_TEXT)}", describe(r)
    return r, paths


def trace_lines(text):
    """The parsed trace lines; every line of `text` must be one."""
    lines = []
    for line in text.splitlines():
        m = LINE.match(line)
        assert m, f"not a trace line: {line!r}"
        lines.append(m)
    return lines


def calls(lines, name, path=None):
    return [m for m in lines if m.group(6) == name and (path is None or f'"{path}"' in m.group(7))]


# -- --trace --------------------------------------------------------------------

def test_trace_shows_forwarded_failed_and_local_calls_with_where_they_ran(tv):
    r, (home, missing, local, made) = run_calls(tv, "--trace")
    lines = trace_lines(r.stderr)
    fd = int(r.stdout.split()[1])
    opens = calls(lines, "openat", home)
    assert len(opens) == OPENS, describe(r)
    first = opens[0]
    assert first.group(7) == f'AT_FDCWD, "{home}", O_RDONLY|O_CLOEXEC', first.group(0)
    assert first.group(8) == str(fd) and first.group(9) == "home", first.group(0)
    assert all(m.group(8).isdigit() for m in opens)
    # The first miss asks home; later ones may be answered from what the supervisor knows.
    misses = calls(lines, "openat", missing)
    assert len(misses) == MISSES
    assert all(m.group(8) == "-1 ENOENT (No such file or directory)" for m in misses), describe(r)
    assert misses[0].group(9) == "home"
    # The kernel runs a local open in the tracee: its result is not seen.
    [loc] = calls(lines, "openat", local)
    assert (loc.group(8), loc.group(9)) == ("?", "local"), loc.group(0)
    # A creating open shows its mode; the reads show descriptor, buffer and size.
    [creat] = calls(lines, "openat", made)
    assert creat.group(7).endswith("O_WRONLY|O_CREAT|O_TRUNC, 0640") and creat.group(9) == "home", creat.group(0)
    reads = [m for m in calls(lines, "read") if m.group(7).startswith(f"{fd}, 0x")]
    assert reads and all(m.group(7).endswith(", 4096") for m in reads), describe(r)
    assert reads[0].group(8) == str(len(HOME_TEXT))
    # One thread made them all.
    assert len({m.group(1) for m in lines}) == 1


def test_trace_classes_select_calls_as_strace_does(tv):
    r, (home, *_) = run_calls(tv, "--trace=%file")
    names = {m.group(6) for m in trace_lines(r.stderr)}
    assert "openat" in names and "read" not in names and "close" not in names, describe(r)

    r, _ = run_calls(tv, "--trace=desc")
    names = {m.group(6) for m in trace_lines(r.stderr)}
    assert {"openat", "read"} <= names, describe(r)

    # Syscall names and classes mix; a bare name that is a syscall is that syscall.
    r, _ = run_calls(tv, "--trace=read,%creds")
    names = {m.group(6) for m in trace_lines(r.stderr)}
    assert names == {"read"}, describe(r)


def test_trace_of_an_unknown_class_is_a_usage_error(tv):
    r = tv.run(["/bin/true"], extra_wrap_args=["--trace=%files"])
    assert r.returncode == 125, describe(r)
    assert "'%files' is not a class" in r.stderr and "%network" in r.stderr, describe(r)


def test_trace_file_takes_the_lines_and_leaves_stderr_alone(tv):
    out = tv.local / "trace.txt"
    r, (home, *_) = run_calls(tv, "--trace-file", str(out))
    assert r.stderr == "", describe(r)
    lines = trace_lines(out.read_text())
    assert len(calls(lines, "openat", home)) == OPENS


def test_trace_through_the_full_parser(tv):
    # `--poll-us=50` is a form only ArgumentParser takes: bare --trace must still work.
    r, (home, *_) = run_calls(tv, "--poll-us=50", "--trace")
    assert len(calls(trace_lines(r.stderr), "openat", home)) == OPENS, describe(r)


THREADS = r'''
import os, sys, threading
def work():
    for _ in range(200):
        os.stat(sys.argv[1])
ts = [threading.Thread(target=work) for _ in range(4)]
for t in ts: t.start()
for t in ts: t.join()
print("done")
'''


def test_lines_of_concurrent_calls_never_interleave(tv):
    tv.both("s.txt", "x\n")
    out = tv.local / "threads.txt"
    r = ok(tv.run(py(THREADS, tv.p("s.txt")), extra_wrap_args=["--trace=%stat,%%stat", "--trace-file", str(out)]))
    assert r.stdout == "done\n", describe(r)
    lines = trace_lines(out.read_text())
    stats = [m for m in lines if f'"{tv.p("s.txt")}"' in m.group(7)]
    assert len(stats) == 800, len(stats)
    assert len({m.group(1) for m in stats}) == 4


# -- --stats --------------------------------------------------------------------

def stats_rows(stderr):
    """{(syscall, where): [calls, errors, bytes, p50, p90, p99, max]} from the latency table."""
    rows, on = {}, False
    for line in stderr.splitlines():
        if line.startswith("wrap-and-run: calls by where they ran"):
            on = True
            continue
        cols = line.split()
        if on and len(cols) == 9 and cols[0] != "syscall":
            rows[(cols[0], cols[1])] = [None if c == "-" else float(c) for c in cols[2:]]
    return rows


def assert_consistent(p50, p90, p99, mx):
    assert 0 <= p50 <= p90 <= p99 <= mx and mx > 0, (p50, p90, p99, mx)


def test_stats_count_calls_errors_bytes_and_latency_by_where_they_ran(tv):
    out = tv.local / "stats.json"
    r, _ = run_calls(tv, "--stats", "--stats-json", str(out))
    rows = stats_rows(r.stderr)
    # Every open of a forwarded path, hit or miss, is answered without the kernel.
    forwarded = [rows[k] for k in rows if k[0] == "openat" and k[1] != "local"]
    assert sum(v[0] for v in forwarded) == OPENS + MISSES + 1, describe(r)
    assert sum(v[1] for v in forwarded) == MISSES, describe(r)
    assert rows[("openat", "home")][0] >= OPENS + 1
    local = rows[("openat", "local")]
    assert local[0] >= 1 and local[1] is None, describe(r)   # the kernel's results are not seen
    reads = [rows[k] for k in rows if k[0] == "read" and k[1] != "local"]
    assert sum(v[0] for v in reads) == OPENS and sum(v[2] for v in reads) == OPENS * len(HOME_TEXT), describe(r)
    for v in rows.values():
        assert_consistent(*v[3:])
    # The counts table of before stays, with the same totals.
    assert "syscalls intercepted (forwarded to home / run locally)" in r.stderr

    doc = json.loads(out.read_text())
    by = {(s["syscall"], s["where"]): s for s in doc["syscalls"]}
    assert set(by) == {k for k in rows if k[0] != "total"}
    for k, s in by.items():
        assert [s["calls"], s["errors"] if rows[k][1] is not None else None] == rows[k][:2]
        lat = s["latency_ns"]
        assert_consistent(lat["p50"], lat["p90"], lat["p99"], lat["max"])
        assert abs(lat["max"] / 1000 - rows[k][6]) <= 0.05 + 1e-9   # the table rounds to 0.1 µs (a half-way value came out 0.05000000000006)
    assert by[("openat", "home")]["errors"] + by.get(("openat", "supervisor"), {"errors": 0})["errors"] == MISSES
    assert sum(s["bytes"] for s in doc["syscalls"] if s["syscall"] == "read") == OPENS * len(HOME_TEXT)
    totals = {k[1]: v for k, v in rows.items() if k[0] == "total"}
    assert {t["where"] for t in doc["totals"]} == set(totals)
    for t in doc["totals"]:
        assert t["calls"] == totals[t["where"]][0] == sum(s["calls"] for s in doc["syscalls"] if s["where"] == t["where"])


def test_stats_json_alone_prints_nothing(tv):
    out = tv.local / "only.json"
    r, _ = run_calls(tv, "--stats-json", str(out))
    assert r.stderr == "", describe(r)
    assert any(s["syscall"] == "openat" for s in json.loads(out.read_text())["syscalls"])


def test_stats_json_to_a_path_that_cannot_be_written_stops_the_run(tv):
    r = tv.run(["/bin/true"], extra_wrap_args=["--stats-json", "/proc/nonexistent/x.json"])
    assert r.returncode == 125 and "cannot open the statistics file" in r.stderr, describe(r)


def test_copy_and_deny_rules_show_as_copy_and_denied(tv):
    """An open under a copy rule is served from the copy cache (`copy`);
    one under a deny rule gets the rule's errno (`denied`)."""
    tv.both("lib/c.txt", "copied at home\n", "decoy\n")
    tv.both("secret/s.txt", "secret\n", "decoy\n")
    policy = tv.local / "rules.toml"
    policy.write_text(f'[[rule]]\nprefix = "{tv.p("lib")}"\nstrategy = "copy"\n'
                      f'[[rule]]\nprefix = "{tv.p("secret")}"\nstrategy = "deny"\nerrno = "EPERM"\n')
    script = ("import os, sys\n"
              "print(open(sys.argv[1]).read(), end='')\n"
              "try: open(sys.argv[2])\n"
              "except PermissionError as e: print('refused', e.errno)\n")
    r = ok(tv.run([PY, "-c", script, tv.p("lib/c.txt"), tv.p("secret/s.txt")],
                  extra_wrap_args=["--policy", str(policy), "--trace=openat", "--stats"]))
    assert r.stdout == "copied at home\nrefused 1\n", describe(r)
    lines = [m.groups() for m in map(LINE.match, r.stderr.splitlines()) if m]
    copy = [l for l in lines if tv.p("lib/c.txt") in l[6]]
    denied = [l for l in lines if tv.p("secret/s.txt") in l[6]]
    assert len(copy) == 1 and copy[0][8] == "copy" and re.fullmatch(r"\d+", copy[0][7]), describe(r)
    assert len(denied) == 1 and denied[0][8] == "denied" and denied[0][7].startswith("-1 EPERM"), describe(r)
    assert re.search(r"^ *openat +copy +1 ", r.stderr, re.M) and re.search(r"^ *openat +denied +1 +1 ", r.stderr, re.M), describe(r)
