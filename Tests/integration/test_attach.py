"""wrap-and-run --attach PID: taking over a running process, on the engine
TETHER_ENGINE names (seccomp, ptrace, or auto: seccomp, ptrace where the
process already has a listener) unless a test says; tracees and helpers in
attach_tracee.py.
"""
import os
import signal
import subprocess
import time

import pytest

from attach_tracee import (DECOY, HOME, LOOP, Tracee, attach, attach_argv, attached, finish, start_loop,
                           status_of, wait_attached)
from conftest import ENGINE, MIN_ENV, NOBODY_SETPRIV, py
from test_engines import FOREIGN_LISTENER


def test_attach_forwards_new_opens_and_keeps_exit_status(tv):
    with attached(tv, before=[DECOY], after=[HOME]) as (t, pid, _):
        st = status_of(pid)
        assert (st["Seccomp"], st["NoNewPrivs"]) == ("2", "0") and st["TracerPid"] != "0"
        # Every read from here on is the home's.
        for _ in range(3):
            assert t.wait_for(lambda l: True) == HOME


@pytest.mark.parametrize("engine", ["seccomp", "ptrace"])
def test_attach_with_each_engine_forwards_and_keeps_exit_status(tv, engine):
    # The loop of the issue, whatever TETHER_ENGINE says; --stats names the engine.
    t, pid, stop = start_loop(tv)
    try:
        t.wait_for(lambda l: l == DECOY)
        w = attach(tv, pid, extra=["--engine", engine, "--stats"])
        t.wait_for(lambda l: l == HOME)
        assert t.wait_for(lambda l: True) == HOME
        st = status_of(pid)
        assert (st["Seccomp"], st["NoNewPrivs"]) == ("2", "0") and st["TracerPid"] in os.listdir(f"/proc/{w.pid}/task")
        code, err = finish(t, w, stop)
        assert code == 7, err
        assert f"  engine: {engine}\n" in err, err
    finally:
        t.kill()


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


def test_seccomp_attach_to_a_process_under_wrap_and_run_is_busy(tv):
    tv.both("data.txt", HOME + "\n", DECOY + "\n")
    stop = tv.local / "stop"
    first = subprocess.Popen(tv.wrap_argv(py(LOOP, tv.p("data.txt"), str(stop))), stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(MIN_ENV),
                             start_new_session=True)
    try:
        pid = int(first.stdout.readline().split()[1])
        assert first.stdout.readline().decode().strip() == HOME
        tracer = status_of(pid)["TracerPid"]
        r = subprocess.run(attach_argv(tv, pid, extra=["--engine", "seccomp"]), capture_output=True, text=True,
                           timeout=30, env=dict(MIN_ENV))
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


# Prints what it read and what ptrace(PTRACE_PEEKDATA, 1) said: ESRCH where
# no one stops that call (init is not its tracee), EPERM once the ptrace
# engine does (the only call its filter stops that wrap-and-run's seccomp
# filter does not).
PROBING_LOOP = r"""
import ctypes, errno, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
path, stop = sys.argv[1], sys.argv[2]
print("pid", os.getpid(), flush=True)
while True:
    with open(path) as f:
        data = f.read().strip()
    libc.ptrace(2, 1, 0, 0)
    print(data, errno.errorcode[ctypes.get_errno()], flush=True)
    if os.path.exists(stop):
        sys.exit(7)
    time.sleep(0.2)
"""


def test_auto_attach_takes_over_a_process_under_wrap_and_run_with_ptrace(tv):
    # Its listener makes seccomp's attach fail with EBUSY: auto takes ptrace.
    # Its supervisor still gets the calls both filters stop (USER_NOTIF
    # ranks before TRACE), and forwards them; the new one gets the rest.
    tv.both("data.txt", HOME + "\n", DECOY + "\n")
    stop = tv.local / "stop"
    first = Tracee(tv.wrap_argv(py(PROBING_LOOP, tv.p("data.txt"), str(stop)), extra_wrap_args=["--engine", "seccomp"]),
                   stderr=subprocess.PIPE)
    try:
        pid = int(first.wait_for(lambda l: l.startswith("pid ")).split()[1])
        first.wait_for(lambda l: l == HOME + " ESRCH")
        assert status_of(pid)["TracerPid"] == "0"
        w = attach(tv, pid, extra=["--engine", "auto"])
        first.wait_for(lambda l: l == HOME + " EPERM")
        st = status_of(pid)
        assert st["TracerPid"] in os.listdir(f"/proc/{w.pid}/task"), st
        assert (st["Seccomp"], st["Seccomp_filters"]) == ("2", "2"), st
        code, err = finish(first, w, stop)
        assert code == 7, err
        assert err.count("ptrace calls fail with EPERM under the ptrace engine") == 1, err
        assert first.proc.wait(timeout=10) == 7, first.proc.stderr.read()
    finally:
        first.kill()


def test_auto_attach_takes_over_a_process_under_a_foreign_listener_with_ptrace(tv):
    # A container runtime's listener, notifying only acct(2): every other
    # call is the ptrace engine's, forwarded from the attach on.
    t, pid, stop = start_loop(tv, prefix=py(FOREIGN_LISTENER))
    try:
        t.wait_for(lambda l: l == DECOY)
        r = subprocess.run(attach_argv(tv, pid, extra=["--engine", "seccomp"]), capture_output=True, text=True,
                           timeout=30, env=dict(MIN_ENV))
        assert r.returncode == 125 and "already has a seccomp listener" in r.stderr, r.stderr
        assert status_of(pid)["TracerPid"] == "0"
        t.wait_for(lambda l: l == DECOY)
        w = attach(tv, pid, extra=["--engine", "auto"])
        t.wait_for(lambda l: l == HOME)
        assert status_of(pid)["TracerPid"] in os.listdir(f"/proc/{w.pid}/task")
        code, err = finish(t, w, stop)
        assert code == 7, err
    finally:
        t.kill()


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
