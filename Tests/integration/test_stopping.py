"""Stopping homestub. SIGTERM or SIGINT ends the standby deputy at once, and
a standby dies with homestub even after kill -9 (PR_SET_PDEATHSIG). Sessions
being served keep running, as sshd's do (README: Security).

homestub runs here outside the harness's pid namespace (whose end would
kill every deputy anyway and prove nothing)."""

import os
import pathlib
import signal
import subprocess
import time

import pytest

from conftest import HOMESTUB, MIN_ENV, WRAP, alive, free_port, is_listening, write_key


def children(pid):
    out = []
    try:
        for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
            out += [int(c) for c in (task / "children").read_text().split()]
    except FileNotFoundError:
        pass
    return out


def wait_until(cond, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


@pytest.fixture(params=[[], ["--user", "nobody"]], ids=["as-root", "user-nobody"])
def stub(bins, scratch, request):
    """A homestub (--root scratch/root) with its standby deputy up; its
    deputies stay root or drop to nobody (which must not cost the death
    signal: a change of ids clears it)."""
    if request.param and os.geteuid() != 0:
        pytest.skip("--user needs root")
    (scratch / "root").mkdir()
    key = write_key(scratch / "key")
    port = free_port()
    log = open(scratch / "homestub.log", "wb")
    proc = subprocess.Popen([HOMESTUB, "--listen", f"127.0.0.1:{port}", "--key-file", key,
                             "--root", scratch / "root", *request.param],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            env=dict(MIN_ENV), start_new_session=True)
    try:
        assert wait_until(lambda: is_listening(port) and children(proc.pid), 10), \
            (scratch / "homestub.log").read_text()
        yield proc, port, key, scratch
    finally:
        for pid in children(proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        log.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=["TERM", "INT", "KILL"])
def test_no_deputy_remains_within_1s_after_homestub_stops(stub, sig):
    proc, _, _, scratch = stub
    deputies = children(proc.pid)
    assert deputies and all(alive(d) for d in deputies)
    start = time.monotonic()
    proc.send_signal(sig)
    proc.wait(timeout=5)
    assert wait_until(lambda: not any(alive(d) for d in deputies), 1.0), \
        f"deputies {[d for d in deputies if alive(d)]} still run 1 s after {sig.name}"
    if sig != signal.SIGKILL:
        assert proc.returncode == 0, (scratch / "homestub.log").read_text()
        assert "stopping on signal" in (scratch / "homestub.log").read_text()
    print(f"\n{sig.name}: deputies gone after {(time.monotonic() - start) * 1000:.0f} ms")


def test_a_live_session_keeps_running_after_sigterm(stub):
    proc, port, key, scratch = stub
    home = scratch / "root" / str(scratch).lstrip("/")
    home.mkdir(parents=True)
    (home / "f.txt").write_text("home f\n")
    script = ("import sys\n"
              "print(open(sys.argv[1]).read(), end='', flush=True)\n"
              "sys.stdin.readline()\n"
              "print(open(sys.argv[1]).read(), end='', flush=True)\n")
    tracee = subprocess.Popen([WRAP, "--home", f"127.0.0.1:{port}", "--key-file", key, "--",
                               "/usr/bin/python3", "-I", "-S", "-c", script, str(scratch / "f.txt")],
                              cwd=str(scratch), env=dict(MIN_ENV), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, start_new_session=True)
    try:
        assert tracee.stdout.readline() == b"home f\n"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=5)
        out, err = tracee.communicate(input=b"go\n", timeout=30)
    finally:
        if tracee.poll() is None:
            os.killpg(tracee.pid, signal.SIGKILL)
            tracee.wait()
    assert (tracee.returncode, out) == (0, b"home f\n"), err.decode()
    assert "1 session(s) keep running" in (scratch / "homestub.log").read_text()
