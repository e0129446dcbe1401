"""Self-checks of the two-view harness itself, with a stand-in home server
(python's http.server) in place of homestub: these need no Tether binaries.

If these fail, every other result in this folder is meaningless.
"""

import os
import pathlib
import urllib.request

import pytest

from conftest import MIN_ENV, NOBODY_SETPRIV, PY, alive, is_listening, run_bounded

pytestmark = pytest.mark.harness


def standin(views, user=None):
    return views.start_home(
        user=user,
        server_argv=[PY, "-I", "-m", "http.server", "--bind", "127.0.0.1", "{port}",
                     "--directory", str(views.view)])


def http_get(home, name):
    with urllib.request.urlopen(f"http://{home.addr}/{name}", timeout=5) as r:
        return r.read()


def test_harness_home_namespace_sees_home_data_and_target_sees_decoys(views):
    views.both("hello.txt", "home content\n", "decoy content\n")
    views.home_file("home-only.txt", "only at home\n")
    views.decoy("decoy-only.txt", "only on target\n")
    home = standin(views)
    # The test process (target view) sees the decoys.
    assert (views.view / "hello.txt").read_text() == "decoy content\n"
    assert not (views.view / "home-only.txt").exists()
    # The server inside the namespace serves BASE/view = homedata.
    assert http_get(home, "hello.txt") == b"home content\n"
    assert http_get(home, "home-only.txt") == b"only at home\n"
    # And a process entering the home mount namespace agrees.
    r = views.in_home_ns(["cat", str(views.view / "hello.txt")])
    assert r.stdout == "home content\n", r.stderr
    # Files created later in homedata are visible at home (live bind mount).
    views.home_file("late.txt", "late\n")
    assert http_get(home, "late.txt") == b"late\n"


def test_harness_home_runs_in_its_own_pid_namespace(views):
    home = standin(views)
    init = home.ns_init_pid()
    assert init is not None
    status = pathlib.Path(f"/proc/{init}/status").read_text()
    nspid = [l for l in status.splitlines() if l.startswith("NSpid:")][0].split()[1:]
    assert nspid[-1] == "1", f"home server is not pid 1 of its namespace: {nspid}"
    assert os.readlink(f"/proc/{init}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    assert os.readlink(f"/proc/{init}/ns/net") == os.readlink("/proc/self/ns/net")


def test_harness_kill_removes_home_and_frees_port(views):
    home = standin(views)
    init = home.ns_init_pid()
    assert is_listening(home.port)
    home.kill()
    assert home.proc.returncode is not None
    assert not is_listening(home.port)
    assert not alive(init)
    # After the namespace is gone the target view still shows decoys only.
    views.decoy("x", "decoy\n")
    assert (views.view / "x").read_text() == "decoy\n"


def test_harness_nobody_can_traverse_base_and_run_server(views):
    views.both("hello.txt", "home content\n", "decoy content\n")
    home = standin(views, user="nobody")
    init = home.ns_init_pid()
    uid_line = [l for l in pathlib.Path(f"/proc/{init}/status").read_text().splitlines()
                if l.startswith("Uid:")][0]
    assert uid_line.split()[1:] == ["65534"] * 4
    assert http_get(home, "hello.txt") == b"home content\n"
    # nobody can traverse the base dir on the target side too.
    r = run_bounded(NOBODY_SETPRIV + ["/usr/bin/cat", str(views.view / "hello.txt")], cwd="/",
                    timeout=10)
    assert (r.returncode, r.stdout) == (0, "decoy content\n"), r.stderr
    # and the key can be handed to nobody with mode 0600.
    assert os.stat(views.key).st_uid == 65534
    assert os.stat(views.key).st_mode & 0o777 == 0o600


def test_harness_run_bounded_reports_hang(views):
    with pytest.raises(pytest.fail.Exception, match="hung"):
        run_bounded(["/bin/sleep", "30"], timeout=0.5)
