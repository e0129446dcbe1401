"""homestub --stdio: one session on stdin/stdout, reached with
wrap-and-run --home-command (how `ssh node homestub --stdio` is used).

The command here runs homestub locally with --root HOMEROOT, so the tracee
path P is HOMEROOT/P (as in test_spawn.py): a decoy at P on the target and
the real file under the root prove the calls went through the stdio home.
"""

import shlex

from conftest import CAT, HOMESTUB, SH, WRAP, describe, run_bounded, write_key
from test_spawn import Spawned


def stdio_argv(sp, args, home_args=(), wrap_args=()):
    command = " ".join(shlex.quote(str(a)) for a in [HOMESTUB, "--stdio", "--root", sp.root, *home_args])
    return [str(WRAP), "--home-command", command, *map(str, wrap_args), "--", *map(str, args)]


def test_stdio_home_serves_reads_and_writes(bins, scratch):
    sp = Spawned(scratch)
    path = sp.both("f.txt", "home over stdio\n", "decoy\n")
    r = run_bounded(stdio_argv(sp, [SH, "-c", f"cat {path}; echo made > made.txt"]), cwd=sp.view)
    assert (r.returncode, r.stdout) == (0, "home over stdio\n"), describe(r)
    assert (sp.home / "made.txt").read_text() == "made\n"
    assert not (sp.view / "made.txt").exists()


def test_stdio_home_with_key_authenticates(bins, scratch):
    sp = Spawned(scratch)
    key = write_key(scratch / "key")
    path = sp.both("f.txt", "keyed\n", "decoy\n")
    r = run_bounded(stdio_argv(sp, [CAT, path], home_args=["--key-file", key], wrap_args=["--key-file", key]),
                    cwd=sp.view)
    assert (r.returncode, r.stdout) == (0, "keyed\n"), describe(r)


def test_stdio_home_requiring_key_refuses_client_without_it(bins, scratch):
    sp = Spawned(scratch)
    key = write_key(scratch / "key")
    marker = sp.view / "ran"
    r = run_bounded(stdio_argv(sp, ["/usr/bin/touch", marker], home_args=["--key-file", key]), cwd=sp.view)
    assert r.returncode == 77, describe(r)
    assert "refused the key" in r.stderr, describe(r)
    assert not marker.exists() and not (sp.home / "ran").exists()


def test_home_command_that_exits_is_unreachable(bins, scratch):
    r = run_bounded([str(WRAP), "--home-command", "exit 3", "--", CAT, "/etc/hostname"], cwd=scratch)
    assert r.returncode == 69, describe(r)
    assert r.stderr.startswith("wrap-and-run: "), describe(r)
