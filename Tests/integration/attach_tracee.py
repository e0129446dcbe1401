"""What the --attach tests share (test_attach.py, test_attach_signals.py):
tracees started here, not under wrap-and-run, and wrap-and-run --attach
run on them.

The usual tracee is a plain python3 that reads a path every 200 ms and
prints what it read: the target's decoy before the attach, the home's file
after it (only home has that content). It exits 7 once a stop file exists
(under BASE/local, the same file here and at home), so its exit status is
known and must reach wrap-and-run. wrap-and-run runs on the engine
TETHER_ENGINE names unless a test says.
"""
import os
import queue
import subprocess
import threading
import time
from contextlib import contextmanager

from conftest import MIN_ENV, NOBODY_SETPRIV, WRAP, py

HOME = "HOME-CONTENT"
DECOY = "TARGET-DECOY"

LOOP = r"""
import os, sys, time
path, stop = sys.argv[1], sys.argv[2]
print("pid", os.getpid(), flush=True)
while True:
    with open(path) as f:
        print(f.read().strip(), flush=True)
    if os.path.exists(stop):
        sys.exit(7)
    time.sleep(0.2)
"""


class Tracee:
    """A python3 program started here, its stdout lines collected."""

    def __init__(self, argv, stdin=subprocess.DEVNULL, stderr=None):
        self.proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=stderr, env=dict(MIN_ENV),
                                     start_new_session=True)
        self.lines = queue.Queue()
        self.seen = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.decode(errors="replace").rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, pred, timeout=20.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no line matching within {timeout} s; lines so far: {self.seen[-20:]}"
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            assert line is not None, f"the tracee ended ({self.proc.poll()}); lines: {self.seen[-20:]}"
            self.seen.append(line)
            if pred(line):
                return line

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


def attach_argv(tv, pid, user=None, extra=()):
    if user is None:
        return [str(WRAP), "--home", tv.home.addr, "--key-file", str(tv.home.key), *extra, "--attach", str(pid)]
    _, wrap = tv.binaries_for(user)
    return NOBODY_SETPRIV + [str(wrap), "--home", "spawn", *extra, "--attach", str(pid)]


def attach(tv, pid, user=None, extra=()):
    """wrap-and-run --attach PID, on the engine TETHER_ENGINE names unless `extra` says."""
    return subprocess.Popen(attach_argv(tv, pid, user, extra), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=dict(MIN_ENV), start_new_session=True)


def status_of(pid) -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def link_of(path):
    """Where a /proc link points, "" once it is gone (a descriptor closed meanwhile)."""
    try:
        return os.readlink(path)
    except FileNotFoundError:
        return ""


def wait_attached(pid, w):
    """Until the filter is in place and the tracee's own listener number is closed."""
    deadline = time.monotonic() + 20
    while status_of(pid)["Seccomp"] != "2" or any(
            link_of(f"/proc/{pid}/fd/{fd}") == "anon_inode:seccomp notify" for fd in os.listdir(f"/proc/{pid}/fd")):
        assert time.monotonic() < deadline and w.poll() is None, w.stderr.read().decode() if w.poll() is not None else "slow"
        time.sleep(0.05)


def start_loop(tv, script=LOOP, stdin=subprocess.DEVNULL, prefix=()):
    """Runs `script` (after the argv `prefix`, which runs the rest)."""
    tv.both("data.txt", HOME + "\n", DECOY + "\n")
    stop = tv.local / "stop"
    t = Tracee([*prefix, *py(script, tv.p("data.txt"), str(stop))], stdin=stdin)
    pid = int(t.wait_for(lambda l: l.startswith("pid ")).split()[1])
    return t, pid, stop


def finish(t, w, stop):
    """Lets the tracee end (exit 7) and returns wrap-and-run's status and stderr."""
    stop.write_text("")
    try:
        out, err = w.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        w.kill()
        t.kill()
        raise AssertionError(f"wrap-and-run --attach did not end; tracee lines: {t.seen[-10:]}")
    assert t.proc.wait(timeout=10) == 7
    return w.returncode, err.decode(errors="replace")


@contextmanager
def attached(tv, script=LOOP, before=(), after=()):
    """Runs `script`, waits for its `before` lines, attaches, waits for its
    `after` lines and yields (tracee, pid, wrap-and-run); then lets the
    tracee end and checks that its status 7 is wrap-and-run's; wrap-and-run
    says nothing."""
    t, pid, stop = start_loop(tv, script)
    try:
        for line in before:
            t.wait_for(lambda l, line=line: l == line)
        w = attach(tv, pid)
        for line in after:
            t.wait_for(lambda l, line=line: l == line)
        yield t, pid, w
        code, err = finish(t, w, stop)
        assert code == 7, err
        assert "wrap-and-run" not in err, err
    finally:
        t.kill()
