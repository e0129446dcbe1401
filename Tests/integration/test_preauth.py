"""Nothing is spent before authentication. homestub's listener runs every
handshake itself (one thread, poll), each with a deadline and at most
--max-handshakes at once; only an authenticated connection gets a deputy,
and at most --max-sessions deputies serve at once."""

import os
import pathlib
import re
import resource
import socket
import struct
import time

from conftest import CAT, SANITIZER, describe
from test_failure import wait_for_log
from test_protocol import HELLO, MAGIC, frame, read_frame

FLOOD = 2000


def children(pid):
    """pids of pid's children (every thread's)."""
    out = []
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:
            pass
    return out


def rss_kib(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))
    return soft, hard


def test_client_is_served_within_1s_during_a_flood_of_2000_idle_connections(views):
    views.start_home(extra_args=["--handshake-timeout", "60"])
    home = views.home
    views.both("f.txt", "home f\n", "decoy f\n")
    stub = home.ns_init_pid()
    old = raise_nofile(FLOOD + 512)
    idle = []
    try:
        for _ in range(FLOOD):
            idle.append(socket.create_connection(("127.0.0.1", home.port), timeout=10))
        time.sleep(0.3)  # let the listener take them all
        start = time.monotonic()
        r = views.run([CAT, views.p("f.txt")], timeout=30)
        elapsed = time.monotonic() - start
        assert (r.returncode, r.stdout) == (0, "home f\n"), describe(r)
        kids = children(stub)
        rss = rss_kib(stub)
        print(f"\nflood of {FLOOD}: served in {elapsed * 1000:.0f} ms; homestub RSS {rss} KiB, "
              f"{len(kids)} child process(es)")
        # A sanitized wrap-and-run starts several times slower (1.13 s seen
        # under ThreadSanitizer): the bound is for the real build.
        assert elapsed < (3.0 if SANITIZER else 1.0), f"served after {elapsed:.2f} s"
        # A standby, and maybe the session's deputy still exiting: never one per socket.
        assert len(kids) <= 3, f"homestub has {len(kids)} children during the flood"
        assert rss < 64 * 1024, f"homestub RSS {rss} KiB during the flood"
    finally:
        for s in idle:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, old)
    assert wait_for_log(home, r"--max-handshakes"), home.log()


def closed_within(s, timeout):
    """Seconds until the peer closes s (None if it does not within timeout)."""
    s.settimeout(timeout)
    start = time.monotonic()
    try:
        data = s.recv(4096)
        while data:
            data = s.recv(4096)
    except ConnectionResetError:
        pass
    except socket.timeout:
        return None
    return time.monotonic() - start


def test_an_idle_connection_is_closed_at_the_handshake_deadline(views):
    views.start_home(extra_args=["--handshake-timeout", "1"])
    with socket.create_connection(("127.0.0.1", views.home.port), timeout=10) as idle, \
         socket.create_connection(("127.0.0.1", views.home.port), timeout=10) as halfway:
        halfway.sendall(frame(HELLO, (MAGIC, 1, 0), os.urandom(32)))
        assert read_frame(halfway)[0] == 2   # challenge; then it never authenticates
        t_idle, t_half = closed_within(idle, 5), closed_within(halfway, 5)
    assert t_idle is not None and 0.5 < t_idle < 2.5, f"idle connection closed after {t_idle}"
    assert t_half is not None and t_half < 2.5, f"half-done handshake closed after {t_half}"
    assert wait_for_log(views.home, r"no handshake within 1\.0 s"), views.home.log()
    stub = views.home.ns_init_pid()
    assert len(children(stub)) <= 1, "a deputy was started for an unauthenticated connection"


def session_holder(views, name):
    """A traced program that prints a home file, then keeps its session
    open until it reads a line."""
    return views.popen(["/usr/bin/python3", "-I", "-S", "-c",
                        "import sys; print(open(sys.argv[1]).read(), end='', flush=True); sys.stdin.readline()",
                        views.p(name)])


def test_beyond_max_sessions_a_client_is_refused_and_logged(views):
    views.start_home(extra_args=["--max-sessions", "1"])
    views.both("a.txt", "home a\n", "decoy a\n")
    holder = session_holder(views, "a.txt")
    try:
        assert holder.stdout.readline() == b"home a\n"
        r = views.run([CAT, views.p("a.txt")], timeout=30)
        assert r.returncode != 0 and "home a" not in r.stdout, describe(r)
        assert wait_for_log(views.home, r"refused.*--max-sessions 1"), views.home.log()
    finally:
        holder.communicate(input=b"\n", timeout=30)
    assert holder.returncode == 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:   # the first session's deputy is reaped
        r = views.run([CAT, views.p("a.txt")], timeout=30)
        if r.returncode == 0:
            break
        time.sleep(0.1)
    assert (r.returncode, r.stdout) == (0, "home a\n"), describe(r)


def test_no_deputy_to_be_had_costs_that_connection_only(views):
    """Under a process limit homestub cannot start a deputy: the client is
    closed and the failure logged; homestub lives on and serves the next
    client once a process is free again. homestub runs as an otherwise
    unused uid with RLIMIT_NPROC 2: itself and one deputy."""
    uid = 64999
    homestub, _ = views.binaries_for("nobody")   # executable by any uid
    key = views.local / "key-64999"
    key.write_bytes(views.key.read_bytes())
    os.chmod(key, 0o600)
    os.chown(key, uid, uid)
    views.home_file("p.txt", "home p\n")
    os.chmod(views.homedata / "p.txt", 0o644)
    home = views.start_home(key=key, server_argv=[
        "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--",
        "prlimit", "--nproc=2", "--",
        str(homestub), "--listen", "127.0.0.1:{port}", "--key-file", str(key)])
    home.key = views.key   # the same key, in a file of the clients' own (root's)
    holder = session_holder(views, "p.txt")
    try:
        assert holder.stdout.readline() == b"home p\n"
        r = views.run([CAT, views.p("p.txt")], timeout=30)
        assert r.returncode != 0 and "home p" not in r.stdout, describe(r)
        assert wait_for_log(home, r"no deputy could be started"), home.log()
        assert home.proc.poll() is None, "homestub died"
    finally:
        holder.communicate(input=b"\n", timeout=30)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        r = views.run([CAT, views.p("p.txt")], timeout=30)
        if r.returncode == 0:
            break
        time.sleep(0.1)
    assert (r.returncode, r.stdout) == (0, "home p\n"), describe(r) + home.log()
