"""wrap-and-run --home spawn: a private home on this machine (no key).

The spawned home shares the target's mount namespace, so to tell home from
target these tests use --root HOMEROOT: the tracee path P means HOMEROOT/P.
With S = the scratch dir and s = S without the leading "/":

    target: S/view/...            decoys (the tracee's cwd is S/view)
    home:   S/homeroot/s/view/... the real files
"""

import os
import pathlib

import pytest

from conftest import CAT, SH, describe, py, run_bounded, wrap_spawn_argv
from test_files import FORK_READ


class Spawned:
    def __init__(self, scratch):
        self.s = scratch
        self.view = scratch / "view"
        self.root = scratch / "homeroot"
        self.home = self.root / str(self.view).lstrip("/")  # HOMEROOT/s/view
        self.view.mkdir()
        self.home.mkdir(parents=True)

    def both(self, rel, home, decoy):
        for base, data in ((self.home, home), (self.view, decoy)):
            (base / rel).parent.mkdir(parents=True, exist_ok=True)
            (base / rel).write_text(data)
        return str(self.view / rel)

    def run(self, args, cwd=None, **kw):
        return run_bounded(wrap_spawn_argv(args, root=self.root), cwd=cwd or self.view, **kw)


@pytest.fixture
def sp(bins, scratch):
    return Spawned(scratch)


def test_spawn_cat_reads_file_without_root(bins, scratch):
    (scratch / "f.txt").write_text("spawned home\n")
    r = run_bounded(wrap_spawn_argv([CAT, scratch / "f.txt"]), cwd=scratch)
    assert (r.returncode, r.stdout) == (0, "spawned home\n"), describe(r)


def test_spawn_with_root_cat_prints_home_copy_not_decoy(sp):
    path = sp.both("f.txt", "home f\n", "decoy f\n")
    r = sp.run([CAT, path])
    assert (r.returncode, r.stdout) == (0, "home f\n"), describe(r)


def test_spawn_relative_cd_then_cat_and_pwd(sp):
    sp.both("sub/f", "home sub f\n", "decoy sub f\n")
    r = sp.run([SH, "-c", "cd sub && cat f && pwd"])
    assert r.returncode == 0, describe(r)
    assert r.stdout == f"home sub f\n{sp.view}/sub\n", describe(r)


def test_spawn_getcwd_after_forwarded_chdir_reports_tracee_path(sp):
    sp.both("sub/f", "home\n", "decoy\n")
    r = sp.run(py("import os\nos.chdir('sub')\nprint(os.getcwd())\nprint(open('f').read(), end='')"))
    assert r.returncode == 0, describe(r)
    assert r.stdout == f"{sp.view}/sub\nhome\n", describe(r)


def test_spawn_fork_child_read_advances_parent_offset(sp):
    path = sp.both("abc.txt", "ABCDEFGHIJKLMNOPQRSTUVWXYZ\n", "abcdefghijklmnopqrstuvwxyz\n")
    r = sp.run(py(FORK_READ, path))
    assert (r.returncode, r.stdout) == (0, "FGHIJ 0\n10\n"), describe(r)


def test_spawn_created_file_lands_in_home_root_only(sp):
    r = sp.run([SH, "-c", "echo made > made.txt"])
    assert r.returncode == 0, describe(r)
    assert (sp.home / "made.txt").read_text() == "made\n", describe(r)
    assert not (sp.view / "made.txt").exists()


# Writes left in flight (write-behind) by a program that exits without a
# close: the private home runs in wrap-and-run's own process, so it must
# have run them before wrap-and-run exits.
WRITE_AND_EXIT = """
import os, sys
for i in range(int(sys.argv[2])):
    fd = os.open(f"{sys.argv[1]}/out-{i}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for k in range(16):
        os.write(fd, bytes([65 + k]) * 8192)
os._exit(0)
"""


def test_spawn_writes_in_flight_at_exit_reach_home(sp):
    files = 8
    for round in range(10):
        r = sp.run(py(WRITE_AND_EXIT, str(sp.view), str(files)))
        assert r.returncode == 0, describe(r)
        for i in range(files):
            data = (sp.home / f"out-{i}").read_bytes()
            assert data == b"".join(bytes([65 + k]) * 8192 for k in range(16)), (round, i, len(data))
    assert not (sp.view / "out-0").exists()


def test_spawn_exit_status_passthrough(sp):
    r = sp.run([SH, "-c", "exit 5"])
    assert r.returncode == 5, describe(r)
