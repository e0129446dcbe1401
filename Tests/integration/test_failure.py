"""Authentication, bad key files, unreachable or dying home, exit statuses."""

import os
import pathlib
import re
import selectors
import signal
import socket
import struct
import subprocess
import tempfile
import time

import pytest

from conftest import (HOMESTUB, MIN_ENV, PY_ERRNAME, SH, WRAP, describe, free_port, py,
                      require_binaries, run_bounded, write_key)


def assert_wrap_message(r, pattern):
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert lines, "wrap-and-run printed nothing on stderr" + describe(r)
    assert any(l.startswith("wrap-and-run: ") and re.search(pattern, l, re.I) for l in lines), \
        f"no 'wrap-and-run: ' line matching /{pattern}/" + describe(r)


def wait_for_log(home, pattern, since=0, timeout=3.0):
    """True once the home's log, from offset `since`, matches pattern."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(pattern, home.log()[since:], re.I | re.M):
            return True
        time.sleep(0.05)
    return False


def touch_marker(marker):
    return [SH, "-c", f"touch {marker}"]


# -- sessions -----------------------------------------------------------------------

def test_homestub_logs_session_started_and_ended_for_each_run(tv):
    tv.both("s.txt", "home s\n", "decoy s\n")
    for _ in range(2):
        r = tv.run(["/usr/bin/cat", tv.p("s.txt")])
        assert (r.returncode, r.stdout) == (0, "home s\n"), describe(r)
    assert wait_for_log(tv.home, r"session \d+ ended(.|\n)*session \d+ ended", timeout=3.0), \
        f"expected two 'session N ended' lines within 3 s of the runs:\n{tv.home.log()}"
    assert len(re.findall(r"session \d+ started", tv.home.log())) == 2, tv.home.log()


# -- 10. keys ---------------------------------------------------------------

def test_wrong_key_exits_77_and_program_never_runs(tv, shm_marker):
    other = write_key(tv.local / "other-key")
    since = len(tv.home.log())
    r = tv.run(touch_marker(shm_marker), key=other, timeout=30)
    assert r.returncode == 77, describe(r)
    assert_wrap_message(r, r"key")
    assert not shm_marker.exists(), "the program ran although authentication failed"
    assert wait_for_log(tv.home, r"refus|reject|denied|auth|wrong key|bad key|fail", since), \
        f"homestub logged no refusal:\n{tv.home.log()}"


def test_home_keeps_serving_after_a_wrong_key_attempt(tv):
    other = write_key(tv.local / "other-key")
    r = tv.run(["/usr/bin/true"], key=other, timeout=30)
    assert r.returncode == 77, describe(r)
    tv.both("after.txt", "home after\n", "decoy after\n")
    r = tv.run(["/usr/bin/cat", tv.p("after.txt")])
    assert (r.returncode, r.stdout) == (0, "home after\n"), describe(r)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604], ids=["0644", "0640", "0604"])
def test_homestub_refuses_key_file_readable_by_group_or_other(bins, scratch, mode):
    key = write_key(scratch / "key", mode=mode)
    r = run_bounded([HOMESTUB, "--listen", f"127.0.0.1:{free_port()}", "--key-file", key], timeout=10)
    assert r.returncode == 78, describe(r)  # EX_CONFIG, as wrap-and-run
    assert re.search(r"permission|mode", r.stderr, re.I), describe(r)


def test_homestub_refuses_key_shorter_than_32_bytes(bins, scratch):
    key = scratch / "key"
    key.write_bytes(b"k" * 31 + b"\n")
    os.chmod(key, 0o600)
    r = run_bounded([HOMESTUB, "--listen", f"127.0.0.1:{free_port()}", "--key-file", key], timeout=10)
    assert r.returncode == 78, describe(r)  # EX_CONFIG, as wrap-and-run
    assert re.search(r"32|short|length|bytes", r.stderr, re.I), describe(r)


def test_homestub_accepts_32_byte_key_with_trailing_newline(views):
    require_binaries()
    key = views.local / "key32"
    key.write_bytes(b"0123456789abcdef0123456789abcdef\n")
    os.chmod(key, 0o600)
    home = views.start_home(key=key)  # fails the test unless it listens
    views.both("k.txt", "home k\n", "decoy k\n")
    # The newline is not part of the key: a key file without it authenticates too.
    nonl = views.local / "key32-nonl"
    nonl.write_bytes(b"0123456789abcdef0123456789abcdef")
    os.chmod(nonl, 0o600)
    r = views.run(["/usr/bin/cat", views.p("k.txt")], key=nonl)
    assert (r.returncode, r.stdout) == (0, "home k\n"), describe(r)


def test_wrap_and_run_refuses_key_file_readable_by_others(tv, shm_marker):
    loose = write_key(tv.local / "loose-key", mode=0o644)
    loose.write_bytes(tv.key.read_bytes())  # right key, wrong mode
    os.chmod(loose, 0o644)
    r = tv.run(touch_marker(shm_marker), key=loose, timeout=30)
    assert r.returncode == 78, describe(r)  # EX_CONFIG: an unusable key file (README: exit statuses)
    assert_wrap_message(r, r"permission|mode")
    assert not shm_marker.exists(), "the program ran with an unsafe key file"


def test_unreachable_home_exits_69(views, shm_marker):
    require_binaries()
    with socket.socket() as s:  # bound but not listening: connections are refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        r = run_bounded([WRAP, "--home", f"127.0.0.1:{port}", "--key-file", views.key, "--",
                         *touch_marker(shm_marker)], cwd=views.view, timeout=30)
    assert r.returncode == 69, describe(r)
    assert_wrap_message(r, r"unreachable")
    assert not shm_marker.exists()


# -- 11. home dies mid-run -----------------------------------------------------------

DIES_MID_RUN = PY_ERRNAME + r'''
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
print("first", os.read(fd, 6).decode().strip(), flush=True)
print("ready", flush=True)
sys.stdin.readline()  # a local pipe: the test writes after killing the home
try:
    os.read(fd, 6); print("read OK", flush=True)
except OSError as e:
    print("read", ename(e), flush=True)
try:
    os.open(sys.argv[2], os.O_RDONLY); print("open OK", flush=True)
except OSError as e:
    print("open", ename(e), flush=True)
try:
    os.stat(sys.argv[2]); print("stat OK", flush=True)
except OSError as e:
    print("stat", ename(e), flush=True)
'''


def read_line(proc, deadline):
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    buf = b""
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not sel.select(left):
            return None
        chunk = os.read(proc.stdout.fileno(), 1)
        if not chunk:
            break
        buf += chunk
    return buf.decode()


def test_home_killed_mid_run_gives_eio_and_lost_connection_message(tv):
    tv.both("first.txt", "line1\nline2\n", "decoy1\ndecoy2\n")
    tv.both("second.txt", "home second\n", "decoy second\n")
    proc = tv.popen(py(DIES_MID_RUN, tv.p("first.txt"), tv.p("second.txt")))
    try:
        deadline = time.monotonic() + 30
        got = [read_line(proc, deadline), read_line(proc, deadline)]
        if got != ["first line1\n", "ready\n"]:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"tracee did not get ready: {got!r}\n{out.decode()}\n{err.decode()}")
        tv.home.kill()  # the whole namespace: homestub and every deputy
        try:
            out, err = proc.communicate(input=b"go\n", timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail(f"hung after the home died\n{out.decode()}\n{err.decode()}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    out, err = out.decode(), err.decode()
    ctx = f"\nexit status {proc.returncode}\n--- stdout ---\n{out}\n--- stderr ---\n{err}"
    assert out == "read EIO\nopen EIO\nstat EIO\n", ctx
    assert "lost connection to home" in err, ctx
    assert any(l.startswith("wrap-and-run: ") and "lost connection to home" in l
               for l in err.splitlines()), ctx


def test_home_killed_before_any_request_does_not_hang(tv):
    tv.home_file("x.txt", "x\n")
    proc = tv.popen([SH, "-c", "read line; /usr/bin/cat x.txt; echo status=$?"])
    try:
        time.sleep(0.5)
        tv.home.kill()
        try:
            out, err = proc.communicate(input=b"go\n", timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail(f"hung after the home died\n{out.decode()}\n{err.decode()}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    out, err = out.decode(), err.decode()
    ctx = f"\nexit status {proc.returncode}\n--- stdout ---\n{out}\n--- stderr ---\n{err}"
    assert "x\n" not in out.split("status=")[0], ctx
    assert out.endswith("status=1\n"), ctx
    assert "lost connection to home" in err, ctx


# -- 12. exit statuses -------------------------------------------------------------------

def test_exit_status_of_program_is_passed_through(tv):
    r = tv.run([SH, "-c", "exit 3"])
    assert r.returncode == 3, describe(r)
    r = tv.run([SH, "-c", "exit 0"])
    assert r.returncode == 0, describe(r)


def test_program_killed_by_sigterm_exits_143(tv):
    r = tv.run([SH, "-c", "kill -TERM $$"])
    assert r.returncode == 143, describe(r)


def test_program_killed_by_sigkill_exits_137(tv):
    r = tv.run([SH, "-c", "kill -KILL $$"])
    assert r.returncode == 137, describe(r)


def test_unknown_program_exits_127_not_found(tv):
    r = tv.run(["/usr/bin/tether-no-such-program"])
    assert r.returncode == 127, describe(r)
    assert_wrap_message(r, r"not found")


def test_unknown_program_name_on_path_exits_127_not_found(tv):
    r = tv.run(["tether-no-such-program"])
    assert r.returncode == 127, describe(r)
    assert_wrap_message(r, r"not found")


def elf_header(elf_class, machine):
    if elf_class == 1:
        ident = b"\x7fELF" + bytes([1, 1, 1, 0]) + bytes(8)
        return ident + struct.pack("<HHIIIIIHHHHHH", 2, machine, 1, 0x08048000, 52, 0, 0,
                                   52, 32, 0, 40, 0, 0)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    return ident + struct.pack("<HHIQQQIHHHHHH", 2, machine, 1, 0x400000, 64, 0, 0,
                               64, 56, 0, 64, 0, 0)


@pytest.fixture
def shm_dir():
    d = pathlib.Path(tempfile.mkdtemp(prefix="tether-it-", dir="/dev/shm"))
    yield d
    for p in d.iterdir():
        p.unlink()
    d.rmdir()


def test_32_bit_elf_is_refused_with_126(tv, shm_dir):
    prog = shm_dir / "elf32"
    prog.write_bytes(elf_header(1, 3))  # ELFCLASS32, EM_386
    os.chmod(prog, 0o755)
    r = tv.run([prog])
    assert r.returncode == 126, describe(r)
    assert_wrap_message(r, r"32-bit|i386|80386|x86(?!_64)|EM_386")


def test_aarch64_elf_is_refused_with_126(tv, shm_dir):
    prog = shm_dir / "elf-aarch64"
    prog.write_bytes(elf_header(2, 183))  # ELFCLASS64, EM_AARCH64
    os.chmod(prog, 0o755)
    r = tv.run([prog])
    assert r.returncode == 126, describe(r)
    assert_wrap_message(r, r"aarch64|arm64|arm|machine|architecture|183")
