"""Basics: real programs reading, writing and listing home files.

Every home file has a DECOY of the same name in the target's view, so each
assertion below fails if the call ran locally instead of at home.  Files a
tracee creates must appear in BASE/homedata and not in BASE/view.
"""

import hashlib
import io
import os
import subprocess
import tarfile

import pytest

from conftest import CAT, PY, PY_ERRNAME, SH, describe, py, run_bounded


def ok(r):
    assert r.returncode == 0, describe(r)
    return r


# -- 1. cat / sha256sum -----------------------------------------------------

def test_cat_absolute_path_prints_home_content_not_decoy(tv):
    path = tv.both("data.txt", "the home copy\nline 2\n", "target decoy\n")
    r = ok(tv.run([CAT, path]))
    assert r.stdout == "the home copy\nline 2\n", describe(r)


def test_cat_relative_path_resolves_against_home_cwd(tv):
    tv.both("rel.txt", "home relative\n", "decoy relative\n")
    r = ok(tv.run([CAT, "rel.txt"], cwd=tv.view))
    assert r.stdout == "home relative\n", describe(r)


def test_cat_home_only_file_absent_on_target(tv):
    tv.home_file("home-only.txt", "exists only at home\n")
    assert not (tv.view / "home-only.txt").exists()
    r = ok(tv.run([CAT, tv.p("home-only.txt")]))
    assert r.stdout == "exists only at home\n", describe(r)


def test_sha256sum_of_large_home_file_matches_home_hash(tv):
    home = os.urandom(300_000)  # several forwarded reads
    tv.both("blob.bin", home, os.urandom(300_000))
    r = ok(tv.run(["/usr/bin/sha256sum", tv.p("blob.bin")]))
    assert r.stdout == f"{hashlib.sha256(home).hexdigest()}  {tv.p('blob.bin')}\n", describe(r)


# -- 2. cp ------------------------------------------------------------------

def test_cp_home_file_to_local_prefix_lands_on_target_only(tv):
    # --local BASE/view/localdir: a prefix inside the forwarded tree that stays
    # on the target. Both views have localdir/, so a wrongly forwarded copy
    # would succeed at home and be caught by the homedata assertion.
    (tv.view / "localdir").mkdir()
    (tv.homedata / "localdir").mkdir()
    home = os.urandom(70_000)
    tv.both("src.bin", home, b"decoy source\n")
    r = ok(tv.run(["/usr/bin/cp", tv.p("src.bin"), tv.p("localdir/dst.bin")],
                  extra_wrap_args=["--local", tv.p("localdir")]))
    assert (tv.view / "localdir/dst.bin").read_bytes() == home, describe(r)
    assert not (tv.homedata / "localdir/dst.bin").exists(), "local destination was written at home"


def test_cp_local_file_to_home_lands_at_home_only(tv):
    (tv.view / "localdir").mkdir()
    (tv.homedata / "localdir").mkdir()
    tv.decoy("localdir/local-src.txt", "bytes that exist only on the target\n" * 100)
    r = ok(tv.run(["/usr/bin/cp", tv.p("localdir/local-src.txt"), tv.p("copied.txt")],
                  extra_wrap_args=["--local", tv.p("localdir")]))
    assert (tv.homedata / "copied.txt").read_text() == "bytes that exist only on the target\n" * 100, describe(r)
    assert not (tv.view / "copied.txt").exists(), "forwarded destination appeared on the target"


def test_cp_default_local_system_file_to_home(tv):
    # /etc is local by default: the source is read on the target.
    r = ok(tv.run(["/usr/bin/cp", "/etc/os-release", tv.p("os-release.copy")]))
    with open("/etc/os-release", "rb") as f:
        assert (tv.homedata / "os-release.copy").read_bytes() == f.read(), describe(r)
    assert not (tv.view / "os-release.copy").exists()


# -- 3. ls -l ---------------------------------------------------------------

def test_ls_l_lists_home_names_sizes_and_mtimes(tv):
    tv.both("alpha.txt", "0123456789", "abc")
    tv.both("beta.bin", b"b" * 4103, b"x")
    (tv.homedata / "gamma").mkdir()
    tv.decoy("decoy-only.txt", "target only\n")
    os.utime(tv.homedata / "alpha.txt", (1_000_000_000, 1_000_000_000))
    os.utime(tv.view / "alpha.txt", (1_500_000_000, 1_500_000_000))
    r = ok(tv.run(["/usr/bin/ls", "-ln", "--time-style=+%s", tv.p()]))
    rows = {}
    for line in r.stdout.splitlines():
        if line.startswith("total "):
            continue
        mode, _links, _uid, _gid, size, mtime, name = line.split(maxsplit=6)
        rows[name] = (mode[0], int(size), int(mtime))
    assert set(rows) == {"alpha.txt", "beta.bin", "gamma"}, describe(r)
    assert rows["alpha.txt"] == ("-", 10, 1_000_000_000), describe(r)
    assert rows["beta.bin"][:2] == ("-", 4103), describe(r)
    assert rows["gamma"][0] == "d", describe(r)


# -- 4. shell redirections with a home cwd -------------------------------------

def test_shell_redirections_create_and_append_at_home(tv):
    tv.both("g", "prior\n", "decoy g\n")
    r = ok(tv.run([SH, "-c", "echo x > f; cat < f >> g"], cwd=tv.view))
    assert (tv.homedata / "f").read_text() == "x\n", describe(r)
    assert (tv.homedata / "g").read_text() == "prior\nx\n", describe(r)
    assert not (tv.view / "f").exists(), "redirection target was created on the target"
    assert (tv.view / "g").read_text() == "decoy g\n", "target decoy was modified"


# -- 5. python: seek, append, read back ------------------------------------------

SEEK_APPEND = r'''
import os, sys
p = sys.argv[1]
fd = os.open(p, os.O_RDWR)
os.lseek(fd, 6, os.SEEK_SET)
print(os.read(fd, 5).decode())
print(os.lseek(fd, 0, os.SEEK_END))
os.write(fd, b"tail1\n")
os.lseek(fd, 0, os.SEEK_SET)
print(repr(os.read(fd, 1000).decode()))
os.close(fd)
with open(p, "a") as f:
    f.write("tail2\n")
with open(p) as f:
    print(repr(f.read()))
print(os.stat(p).st_size)
'''


def test_python_seek_write_append_read_back_at_home(tv):
    home = "012345HELLO world\n"
    tv.both("rw.txt", home, "decoy-decoy-decoy-decoy-decoy\n")
    r = ok(tv.run(py(SEEK_APPEND, tv.p("rw.txt"))))
    assert r.stdout.splitlines() == [
        "HELLO",
        str(len(home)),
        repr(home + "tail1\n"),
        repr(home + "tail1\ntail2\n"),
        str(len(home) + 12),
    ], describe(r)
    assert (tv.homedata / "rw.txt").read_text() == home + "tail1\ntail2\n"
    assert (tv.view / "rw.txt").read_text() == "decoy-decoy-decoy-decoy-decoy\n"


# -- 6. fork shares one offset (kept at home) ------------------------------------

FORK_READ = r'''
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
pid = os.fork()
if pid == 0:
    os.read(fd, 5)
    os._exit(0)
_, st = os.waitpid(pid, 0)
print(os.read(fd, 5).decode(), st)
print(os.lseek(fd, 0, os.SEEK_CUR))
'''


def test_fork_child_read_advances_parent_offset(tv):
    tv.both("abc.txt", "ABCDEFGHIJKLMNOPQRSTUVWXYZ\n", "abcdefghijklmnopqrstuvwxyz\n")
    r = ok(tv.run(py(FORK_READ, tv.p("abc.txt"))))
    assert r.stdout == "FGHIJ 0\n10\n", describe(r)


FORK_WRITE = r'''
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
p2c_r, p2c_w = os.pipe()
c2p_r, c2p_w = os.pipe()
N = 5
pid = os.fork()
if pid == 0:
    for i in range(N):
        os.read(p2c_r, 1)
        os.write(fd, b"child%d\n" % i)
        os.write(c2p_w, b"k")
    os._exit(0)
for i in range(N):
    os.write(fd, b"parent%d\n" % i)
    os.write(p2c_w, b"k")
    os.read(c2p_r, 1)
os.waitpid(pid, 0)
os.write(fd, b"end\n")
print(os.lseek(fd, 0, os.SEEK_CUR))
'''


def test_fork_parent_and_child_alternating_writes_never_overwrite(tv):
    tv.both("shared-out.txt", "old home content that O_TRUNC removes\n", "decoy shared-out\n")
    r = ok(tv.run(py(FORK_WRITE, tv.p("shared-out.txt"))))
    expected = "".join(f"parent{i}\nchild{i}\n" for i in range(5)) + "end\n"
    assert r.stdout == f"{len(expected)}\n", describe(r)
    assert (tv.homedata / "shared-out.txt").read_text() == expected, describe(r)
    assert (tv.view / "shared-out.txt").read_text() == "decoy shared-out\n"


DUP_OFFSET = r'''
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
fd2 = os.dup(fd)
os.read(fd2, 3)
fd3 = os.dup2(fd, 50)
os.read(fd3, 3)
print(os.read(fd, 3).decode())
os.close(fd); os.close(fd2)
print(os.read(fd3, 3).decode())
'''


def test_dup_and_dup2_share_offset_and_survive_closing_the_original(tv):
    tv.both("dup.txt", "111222333444\n", "aaabbbcccddd\n")
    r = ok(tv.run(py(DUP_OFFSET, tv.p("dup.txt"))))
    assert r.stdout == "333\n444\n", describe(r)


# -- 7. mkdir, mv, rm, rmdir --------------------------------------------------

def test_mkdir_creates_directory_at_home_only(tv):
    r = ok(tv.run(["/usr/bin/mkdir", "-p", "newdir/a/b"], cwd=tv.view))
    assert (tv.homedata / "newdir/a/b").is_dir(), describe(r)
    assert not (tv.view / "newdir").exists()


def test_mv_renames_at_home_and_leaves_target_decoy(tv):
    tv.both("old.txt", "home old\n", "decoy old\n")
    r = ok(tv.run(["/usr/bin/mv", "old.txt", "new.txt"], cwd=tv.view))
    assert (tv.homedata / "new.txt").read_text() == "home old\n", describe(r)
    assert not (tv.homedata / "old.txt").exists()
    assert (tv.view / "old.txt").read_text() == "decoy old\n"
    assert not (tv.view / "new.txt").exists()


def test_rm_unlinks_at_home_and_leaves_target_decoy(tv):
    tv.both("victim.txt", "home victim\n", "decoy victim\n")
    r = ok(tv.run(["/usr/bin/rm", "victim.txt"], cwd=tv.view))
    assert not (tv.homedata / "victim.txt").exists(), describe(r)
    assert (tv.view / "victim.txt").read_text() == "decoy victim\n"


def test_rmdir_removes_empty_home_dir_while_target_dir_is_not_empty(tv):
    (tv.homedata / "emptydir").mkdir()
    tv.decoy("emptydir/keep", "a local rmdir would fail with ENOTEMPTY\n")
    r = ok(tv.run(["/usr/bin/rmdir", "emptydir"], cwd=tv.view))
    assert not (tv.homedata / "emptydir").exists(), describe(r)
    assert (tv.view / "emptydir/keep").exists()


# -- 14. dup2 and shell redirections -------------------------------------------

def test_shell_exec_fd3_redirection_writes_both_lines_at_home(tv):
    tv.decoy("out", "decoy out\n")
    r = ok(tv.run([SH, "-c", "exec 3>out; echo a >&3; echo b 1>&3; exec 3>&-"], cwd=tv.view))
    assert (tv.homedata / "out").read_text() == "a\nb\n", describe(r)
    assert (tv.view / "out").read_text() == "decoy out\n"


def test_shell_cat_stdin_and_stdout_redirected_to_home_files(tv):
    content = "".join(f"line {i}\n" for i in range(2000))
    tv.both("in", content, "decoy in\n")
    r = ok(tv.run([SH, "-c", "cat < in > out2"], cwd=tv.view))
    assert (tv.homedata / "out2").read_text() == content, describe(r)
    assert not (tv.view / "out2").exists()


def test_dup2_onto_stdout_is_inherited_by_exec_child(tv):
    # exec >out3 dup2s a home file onto fd 1; /usr/bin/echo (a new program)
    # then writes through the inherited fd 1 at the shared offset.
    r = ok(tv.run([SH, "-c", "exec >out3; echo hello; /usr/bin/echo world; /usr/bin/printf '%s\\n' end"],
                  cwd=tv.view))
    assert r.stdout == "", describe(r)
    assert (tv.homedata / "out3").read_text() == "hello\nworld\nend\n", describe(r)
    assert not (tv.view / "out3").exists()


# -- 15. getdents on a large directory ------------------------------------------

def _many(tv, n=2000):
    (tv.homedata / "many").mkdir()
    names = [f"f{i:04d}" for i in range(n)]
    for name in names:
        (tv.homedata / "many" / name).touch()
    for i in range(3):
        tv.decoy(f"many/decoy-{i}", "")
    return names


def test_listdir_of_home_dir_with_2000_entries(tv):
    names = _many(tv)
    r = ok(tv.run(py("import os, sys\nl = os.listdir(sys.argv[1])\nprint(len(l))\nprint(','.join(sorted(l)))",
                     tv.p("many"))))
    count, listing = r.stdout.splitlines()
    assert count == "2000", describe(r)
    assert listing.split(",") == names


def test_ls_pipe_wc_counts_2000_home_entries(tv):
    _many(tv)
    r = ok(tv.run([SH, "-c", "ls | wc -l"], cwd=tv.view / "many"))
    assert r.stdout == "2000\n", describe(r)


# -- 16. tar and find over a home tree ----------------------------------------------

def _tree(tv):
    files = {"a.txt": b"top level\n"}
    for d in ("sub", "sub/deeper", "other"):
        for i in range(7):
            files[f"{d}/file{i}.dat"] = f"{d} {i}\n".encode() * (i * 300 + 1)
    for rel, data in files.items():
        tv.home_file(f"tree/{rel}", data)
    tv.decoy("tree/a.txt", "decoy a\n")
    tv.decoy("tree/decoy-only.txt", "decoy only\n")
    return files


def test_tar_of_home_dir_lists_and_extracts_home_tree(tv):
    files = _tree(tv)
    r = tv.run(["/usr/bin/tar", "-cf", "-", "."], cwd=tv.view / "tree", binary=True)
    assert r.returncode == 0, describe(r)
    listing = run_bounded(["/usr/bin/tar", "-tf", "-"], input=r.stdout, timeout=30)
    assert listing.returncode == 0, describe(listing)
    names = {n.rstrip("/") for n in listing.stdout.splitlines()} - {"."}
    dirs = {"./sub", "./sub/deeper", "./other"}
    assert names == {f"./{rel}" for rel in files} | dirs, describe(listing)
    with tarfile.open(fileobj=io.BytesIO(r.stdout)) as tar:
        for rel, data in files.items():
            assert tar.extractfile(f"./{rel}").read() == data, rel


def test_find_type_f_counts_home_files(tv):
    files = _tree(tv)
    r = ok(tv.run(["/usr/bin/find", ".", "-type", "f"], cwd=tv.view / "tree"))
    assert sorted(r.stdout.splitlines()) == sorted(f"./{rel}" for rel in files), describe(r)
    assert len(r.stdout.splitlines()) == 22


# -- --stats -------------------------------------------------------------------

def test_stats_flag_reports_forwarded_syscalls_on_exit(tv):
    tv.both("s.txt", "stats\n", "decoy\n")
    r = ok(tv.run([CAT, tv.p("s.txt")], extra_wrap_args=["--stats"]))
    assert r.stdout == "stats\n", describe(r)
    assert "forward" in r.stderr.lower(), describe(r)
    # A row per syscall: name, then the forwarded count first.
    rows = [l.split() for l in r.stderr.splitlines() if l.split()[:1] == ["openat"]]
    assert rows and rows[0][1].isdigit() and int(rows[0][1]) >= 1, describe(r)
