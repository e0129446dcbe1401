"""wrap-and-run --attach PID: taking over a running process.

Each tracee is a plain python3 started by the test (not under wrap-and-run)
that reads a path every 200 ms and prints what it read: the target's decoy
before the attach, the home's file after it (only home has that content).
It exits 7 once a stop file exists (under BASE/local, the same file here
and at home), so its exit status is known and must reach wrap-and-run.
"""
import os
import queue
import signal
import subprocess
import threading
import time
from contextlib import contextmanager

from conftest import ENGINE, MIN_ENV, NOBODY_SETPRIV, WRAP, py

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


def attach_argv(tv, pid, user=None):
    if user is None:
        return [str(WRAP), "--home", tv.home.addr, "--key-file", str(tv.home.key), "--attach", str(pid)]
    _, wrap = tv.binaries_for(user)
    return NOBODY_SETPRIV + [str(wrap), "--home", "spawn", "--attach", str(pid)]


def attach(tv, pid, user=None):
    return subprocess.Popen(attach_argv(tv, pid, user), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=dict(MIN_ENV), start_new_session=True)


def status_of(pid) -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def wait_attached(pid, w):
    """Until the filter is in place and the tracee's own listener number is closed."""
    deadline = time.monotonic() + 20
    while status_of(pid)["Seccomp"] != "2" or any(
            os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:seccomp notify" for fd in os.listdir(f"/proc/{pid}/fd")):
        assert time.monotonic() < deadline and w.poll() is None, w.stderr.read().decode() if w.poll() is not None else "slow"
        time.sleep(0.05)


def start_loop(tv, script=LOOP, stdin=subprocess.DEVNULL):
    tv.both("data.txt", HOME + "\n", DECOY + "\n")
    stop = tv.local / "stop"
    t = Tracee(py(script, tv.p("data.txt"), str(stop)), stdin=stdin)
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


def test_attach_forwards_new_opens_and_keeps_exit_status(tv):
    with attached(tv, before=[DECOY], after=[HOME]) as (t, pid, _):
        st = status_of(pid)
        assert (st["Seccomp"], st["NoNewPrivs"]) == ("2", "0") and st["TracerPid"] != "0"
        # Every read from here on is the home's.
        for _ in range(3):
            assert t.wait_for(lambda l: True) == HOME


def test_attach_threads_before_and_after_forward(tv):
    script = r"""
import os, sys, threading, time
path, stop = sys.argv[1], sys.argv[2]
def read(tag):
    with open(path) as f:
        print(tag, f.read().strip(), flush=True)
def old():
    while True:
        read("old")
        time.sleep(0.2)
threading.Thread(target=old, daemon=True).start()
print("pid", os.getpid(), flush=True)
while not os.path.exists(stop):
    t = threading.Thread(target=read, args=("new",))
    t.start()
    t.join()
    time.sleep(0.2)
sys.exit(7)
"""
    with attached(tv, script, before=["new " + DECOY, "old " + DECOY], after=["old " + HOME, "new " + HOME]):
        pass


def test_attach_child_forked_after_forwards(tv):
    script = r"""
import os, sys, time
path, stop = sys.argv[1], sys.argv[2]
print("pid", os.getpid(), flush=True)
while not os.path.exists(stop):
    child = os.fork()
    if child == 0:
        with open(path) as f:
            print("child", f.read().strip(), flush=True)
        os._exit(0)
    os.waitpid(child, 0)
    time.sleep(0.2)
sys.exit(7)
"""
    with attached(tv, script, before=["child " + DECOY], after=["child " + HOME]):
        pass


def test_attach_signal_reaches_handler(tv):
    script = r"""
import os, signal, sys, time
path, stop = sys.argv[1], sys.argv[2]
got = []
signal.signal(signal.SIGUSR1, lambda *_: got.append(1))
# SA_RESTART: a notified call the signal catches before the supervisor has
# received it fails with EINTR otherwise (the kernel's seccomp wait), with
# or without --attach, and python does not retry close(2).
signal.siginterrupt(signal.SIGUSR1, False)
print("pid", os.getpid(), flush=True)
while not os.path.exists(stop):
    with open(path) as f:
        print(f.read().strip(), flush=True)
    if got:
        print("usr1", flush=True)
        got.clear()
    time.sleep(0.2)
sys.exit(7)
"""
    with attached(tv, script, after=[HOME]) as (t, pid, _):
        os.kill(pid, signal.SIGUSR1)
        t.wait_for(lambda l: l == "usr1")


def test_attach_to_a_read_blocked_on_a_pipe(tv):
    script = r"""
import os, sys
path = sys.argv[1]
print("pid", os.getpid(), flush=True)
data = os.read(0, 100)
print("got", data.decode().strip(), flush=True)
with open(path) as f:
    print(f.read().strip(), flush=True)
sys.exit(7)
"""
    t, pid, stop = start_loop(tv, script, stdin=subprocess.PIPE)
    try:
        w = attach(tv, pid)
        wait_attached(pid, w)
        time.sleep(0.3)
        t.proc.stdin.write(b"hello\n")
        t.proc.stdin.flush()
        assert t.wait_for(lambda l: l.startswith("got")) == "got hello"
        assert t.wait_for(lambda l: True) == HOME
        _, err = w.communicate(timeout=20)
        assert w.returncode == 7, err
    finally:
        t.kill()


def test_attach_nonexistent_pid(tv):
    p = subprocess.Popen(["true"])
    p.wait()
    r = subprocess.run(attach_argv(tv, p.pid), capture_output=True, text=True, timeout=30, env=dict(MIN_ENV))
    assert r.returncode == 125, r.stderr
    assert "no such process" in r.stderr


def test_attach_refuses_init_a_program_and_cwd(tv):
    r = subprocess.run(attach_argv(tv, 1), capture_output=True, text=True, timeout=30, env=dict(MIN_ENV))
    assert r.returncode == 125 and "init" in r.stderr, r.stderr
    r = subprocess.run(attach_argv(tv, os.getpid()) + ["--", "true"], capture_output=True, text=True, timeout=30,
                       env=dict(MIN_ENV))
    assert r.returncode == 125 and "--attach takes no program" in r.stderr, r.stderr
    r = subprocess.run(attach_argv(tv, os.getpid()) + ["--cwd", "/"], capture_output=True, text=True, timeout=30,
                       env=dict(MIN_ENV))
    assert r.returncode == 125 and "--cwd does not apply to --attach" in r.stderr, r.stderr
    r = subprocess.run(attach_argv(tv, os.getpid()) + ["--stdio", "home"], capture_output=True, text=True, timeout=30,
                       env=dict(MIN_ENV))
    assert r.returncode == 125 and "--stdio home does not apply to --attach" in r.stderr, r.stderr
    for engine in ("seccomp", "ptrace", "auto"):
        r = subprocess.run(attach_argv(tv, os.getpid()) + ["--engine", engine], capture_output=True, text=True,
                           timeout=30, env=dict(MIN_ENV))
        assert r.returncode == 125 and "wrap-and-run itself or its ancestor" in r.stderr, r.stderr


def test_attach_to_another_users_process_leaves_it_untouched(tv):
    t, pid, stop = start_loop(tv)
    try:
        t.wait_for(lambda l: l == DECOY)
        r = subprocess.run(attach_argv(tv, pid, user="nobody"), capture_output=True, text=True, timeout=30,
                           env=dict(MIN_ENV))
        assert r.returncode == 125, r.stderr
        assert "ptrace refused" in r.stderr and "Operation not permitted" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        st = status_of(pid)
        assert (st["TracerPid"], st["Seccomp"], st["NoNewPrivs"]) == ("0", "0", "0")
        t.wait_for(lambda l: l == DECOY)
        # Still attachable, as if nothing had happened.
        w = attach(tv, pid)
        t.wait_for(lambda l: l == HOME)
        code, err = finish(t, w, stop)
        assert code == 7, err
    finally:
        t.kill()


def test_attach_to_a_process_under_wrap_and_run_is_busy(tv):
    tv.both("data.txt", HOME + "\n", DECOY + "\n")
    stop = tv.local / "stop"
    first = subprocess.Popen(tv.wrap_argv(py(LOOP, tv.p("data.txt"), str(stop))), stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(MIN_ENV),
                             start_new_session=True)
    try:
        pid = int(first.stdout.readline().split()[1])
        assert first.stdout.readline().decode().strip() == HOME
        tracer = status_of(pid)["TracerPid"]
        r = subprocess.run(attach_argv(tv, pid), capture_output=True, text=True, timeout=30, env=dict(MIN_ENV))
        assert r.returncode == 125, r.stderr
        # Under the seccomp engine it holds a listener; under ptrace its
        # supervisor is its tracer, and a thread has one tracer.
        why = f"already traced by process {tracer}" if ENGINE == "ptrace" else "already has a seccomp listener"
        assert why in r.stderr, r.stderr
        assert status_of(pid)["TracerPid"] == tracer
        # Its own supervisor still serves it.
        for _ in range(3):
            assert first.stdout.readline().decode().strip() == HOME
        stop.write_text("")
        first.wait(timeout=20)
        assert first.returncode == 7, first.stderr.read()
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()


def test_attached_process_dies_with_wrap_and_run(tv):
    t, pid, _ = start_loop(tv)
    try:
        w = attach(tv, pid)
        t.wait_for(lambda l: l == HOME)
        w.kill()
        w.wait(timeout=10)
        assert t.proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        t.kill()


def test_attach_keeps_held_descriptors_local(tv):
    # One descriptor opened before the attach at a low number, one moved to
    # the first number of the placeholder range (the upper half of its
    # descriptor limit): both stay the target's file, new opens go home,
    # and the new placeholder does not take the held number.
    script = r"""
import os, resource, sys, time
path, stop = sys.argv[1], sys.argv[2]
base = max(16, resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 2)
low = os.open(path, os.O_RDONLY)
high = os.dup2(os.open(path, os.O_RDONLY), base)
print("pid", os.getpid(), flush=True)
while not os.path.exists(stop):
    fd = os.open(path, os.O_RDONLY)
    new = os.read(fd, 100).decode().strip()
    print("fds", os.pread(low, 100, 0).decode().strip(), os.pread(high, 100, 0).decode().strip(), new,
          "taken" if fd == base else "free", flush=True)
    os.close(fd)
    time.sleep(0.2)
sys.exit(7)
"""
    t, pid, stop = start_loop(tv, script)
    try:
        t.wait_for(lambda l: l == f"fds {DECOY} {DECOY} {DECOY} free")
        w = attach(tv, pid)
        t.wait_for(lambda l: l.endswith(HOME + " free"))
        assert t.wait_for(lambda l: True) == f"fds {DECOY} {DECOY} {HOME} free"
        code, err = finish(t, w, stop)
        assert code == 7, err
    finally:
        t.kill()


def test_attach_to_a_stopped_process_leaves_it_stopped(tv):
    p = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        os.kill(p.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 10
        while status_of(p.pid)["State"][0] != "T":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        r = subprocess.run(attach_argv(tv, p.pid), capture_output=True, text=True, timeout=30, env=dict(MIN_ENV))
        assert r.returncode == 125 and "SIGCONT it first" in r.stderr, r.stderr
        # The detach wakes it to re-enter its stop: R for a moment (continued, it would sleep: S).
        deadline = time.monotonic() + 5
        while status_of(p.pid)["State"][0] == "R" and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        st = status_of(p.pid)
        assert (st["State"][0], st["TracerPid"], st["Seccomp"]) == ("T", "0", "0")
        os.kill(p.pid, signal.SIGCONT)
        w = attach(tv, p.pid)
        wait_attached(p.pid, w)
        os.kill(p.pid, signal.SIGTERM)
        w.communicate(timeout=20)
        assert w.returncode == 128 + signal.SIGTERM
    finally:
        p.kill()
        p.wait()


def test_attached_process_stops_and_continues(tv):
    t, pid, stop = start_loop(tv)
    try:
        w = attach(tv, pid)
        t.wait_for(lambda l: l == HOME)
        os.kill(pid, signal.SIGSTOP)
        deadline = time.monotonic() + 10
        while status_of(pid)["State"][0] not in "Tt":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.3)
        while not t.lines.empty():   # what it printed before the stop
            t.lines.get()
        time.sleep(0.6)
        assert t.lines.empty() and status_of(pid)["State"][0] in "Tt" and w.poll() is None
        os.kill(pid, signal.SIGCONT)
        t.wait_for(lambda l: l == HOME)
        code, err = finish(t, w, stop)
        assert code == 7, err
    finally:
        t.kill()


def test_attach_to_an_unprivileged_process_sets_no_new_privs(tv):
    # Without CAP_SYS_ADMIN the kernel wants no_new_privs before the filter:
    # it is set then (and only then: the root tracees above keep theirs 0).
    tv.both("data.txt", HOME + "\n", DECOY + "\n")
    stop = tv.local / "stop"
    t = Tracee(NOBODY_SETPRIV + py(LOOP, tv.p("data.txt"), str(stop)))
    try:
        pid = int(t.wait_for(lambda l: l.startswith("pid ")).split()[1])
        t.wait_for(lambda l: l == DECOY)
        assert status_of(pid)["NoNewPrivs"] == "0"
        w = attach(tv, pid)
        t.wait_for(lambda l: l == HOME)
        assert status_of(pid)["NoNewPrivs"] == "1"
        code, err = finish(t, w, stop)
        assert code == 7, err
    finally:
        t.kill()


# -- signals sent while calls are injected into the tracee ----------------------
#
# The attach runs its calls in a stopped thread of the tracee, and the ptrace
# engine installs every placeholder (each forwarded open) the same way: a
# signal that comes meanwhile must reach the program once the thread goes
# on, no more and no fewer times. Standard signals coalesce while pending,
# so a count of them proves nothing by itself: SIGUSR1 goes one at a time,
# the next only once the handler has acknowledged the last (a lost one
# stalls the exchange); SIGRTMIN is queued by the kernel, never coalesced,
# so its handler must run exactly as often as it was sent, in a burst.
SIGNALLED_OPENS_C = r'''
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static volatile sig_atomic_t rt, usr1;
static void on_rt(int s) { (void)s; rt++; }
static void on_usr1(int s)
{
    (void)s;
    usr1++;
    char ack = 1;
    (void)write(2, &ack, 1);
}
int main(int argc, char **argv)
{
    const char *path = argv[1], *stop = argv[2];
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_flags = SA_RESTART;
    sa.sa_handler = on_rt;
    sigaction(SIGRTMIN, &sa, NULL);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    printf("pid %d\n", getpid());
    fflush(stdout);
    long opens = 0, home = 0, last = 0;
    char buf[64];
    while (access(stop, F_OK) != 0) {
        int fd = open(path, O_RDONLY);
        if (fd < 0) {
            printf("open: %s\n", strerror(errno));
            return 1;
        }
        ssize_t n = read(fd, buf, sizeof buf - 1);
        buf[n > 0 ? n : 0] = 0;
        last = strncmp(buf, "HOME-CONTENT", 12) == 0;
        home += last;
        close(fd);
        if (++opens == 20) {
            printf("looping\n");
            fflush(stdout);
        }
    }
    printf("opens %ld home %ld last %ld rt %d usr1 %d\n", opens, home, last, (int)rt, (int)usr1);
    return 7;
}
'''


def compile_c(tv, name, source):
    src = tv.local / f"{name}.c"
    src.write_text(source)
    exe = tv.local / name
    r = subprocess.run(["gcc", "-O2", "-Wall", "-o", str(exe), str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return exe


class Signaller:
    """Sends SIGRTMIN in a burst and SIGUSR1 one at a time (each after the
    tracee's acknowledgement, byte 1 on the pipe `acks`) to `pid` until
    stopped; counts what was sent."""

    def __init__(self, pid, acks):
        self.pid, self.acks = pid, acks
        self.done = threading.Event()
        self.rt = self.usr1 = 0
        self.lost = None
        self.threads = [threading.Thread(target=self._rt), threading.Thread(target=self._usr1)]
        for t in self.threads:
            t.start()

    def _rt(self):
        while not self.done.is_set():
            for _ in range(4):
                os.kill(self.pid, signal.SIGRTMIN)
                self.rt += 1
            time.sleep(0.001)

    def _usr1(self):
        import select
        while not self.done.is_set():
            os.kill(self.pid, signal.SIGUSR1)
            self.usr1 += 1
            deadline = time.monotonic() + 10
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.acks], [], [], left)[0]:
                    self.lost = f"SIGUSR1 number {self.usr1} was never handled"
                    return
                got = os.read(self.acks, 1)
                if got == b"\x01":
                    break
                assert got, "the tracee's stderr closed"

    def stop(self):
        self.done.set()
        for t in self.threads:
            t.join(timeout=30)
        assert self.lost is None, self.lost


def signalled_opens_report(t, sender, stop):
    """Stops the signals, lets the tracee end and returns its counts."""
    sender.stop()
    stop.write_text("")
    words = t.wait_for(lambda l: l.startswith("opens ") or l.startswith("open:")).split()
    assert words[0] == "opens", words
    report = dict(zip(words[::2], map(int, words[1::2])))
    assert report["opens"] > 50 and report["last"] == 1, report
    assert (report["rt"], report["usr1"]) == (sender.rt, sender.usr1), report
    return report


def test_signals_during_placeholder_installs_are_all_delivered(tv):
    # Every open is forwarded: a placeholder installed in the thread (under
    # ptrace, by injected calls) while the signals come.
    exe = compile_c(tv, "signalled", SIGNALLED_OPENS_C)
    tv.both("data.txt", HOME + "\n", DECOY + "\n")
    stop = tv.local / "stop"
    r, w = os.pipe()
    t = Tracee(tv.wrap_argv([str(exe), tv.p("data.txt"), str(stop)]), stderr=w)
    os.close(w)
    try:
        pid = int(t.wait_for(lambda l: l.startswith("pid ")).split()[1])
        t.wait_for(lambda l: l == "looping")
        sender = Signaller(pid, r)
        time.sleep(1.5)
        report = signalled_opens_report(t, sender, stop)
        assert report["home"] == report["opens"], report
        assert t.proc.wait(timeout=20) == 7
    finally:
        t.kill()
        os.close(r)


def test_signals_during_the_attach_injection_are_all_delivered(tv):
    exe = compile_c(tv, "signalled", SIGNALLED_OPENS_C)
    tv.both("data.txt", HOME + "\n", DECOY + "\n")
    stop = tv.local / "stop"
    r, w = os.pipe()
    t = Tracee([str(exe), tv.p("data.txt"), str(stop)], stderr=w)
    os.close(w)
    try:
        pid = int(t.wait_for(lambda l: l.startswith("pid ")).split()[1])
        t.wait_for(lambda l: l == "looping")
        sender = Signaller(pid, r)
        time.sleep(0.3)
        w = attach(tv, pid)
        wait_attached(pid, w)
        time.sleep(1.0)
        report = signalled_opens_report(t, sender, stop)
        assert 0 < report["home"] < report["opens"], report
        _, err = w.communicate(timeout=20)
        assert w.returncode == 7, err
    finally:
        t.kill()
        os.close(r)
