"""Real programs on files that exist only at home (complete file semantics).

Each test runs an unmodified, widely used program under wrap-and-run on a
tree under BASE/view whose real contents live at home (BASE/homedata); the
target's BASE/view holds decoys (or nothing) of the same names.  Each test
asserts on

  * what the program printed,
  * the home state (BASE/homedata, inspected directly by the test process,
    which sees the very same files the home deputy works on), and
  * the absence of anything new on the target (BASE/view as the test process
    sees it: decoys unchanged, no created files).

The programs exercise the calls forwarded by the "complete file semantics"
work: record locks (sqlite3), lock files + rename + hard links + read-only
mmaps (git), utimensat/fchmod/fchown/symlinkat (tar, rsync), rename-over
edits (sed -i, vim), temp files and chmod of linker output (gcc, make).

Needs: sqlite3, git, tar+gzip, make+gcc, rsync, vim (vim.basic); a missing
program skips its test.
"""

import hashlib
import os
import pathlib
import select
import shutil
import sqlite3
import stat
import subprocess
import time

import pytest

from conftest import PY, SH, describe, py, run_bounded
from test_files import ok


def need(*programs):
    for p in programs:
        if not os.access(p, os.X_OK):
            pytest.skip(f"{p} is not installed")


def snapshot(root: pathlib.Path) -> dict:
    """rel path -> (type, mode, uid, gid, mtime_ns, content or link target)
    for everything under root (root itself excluded), without following
    symlinks."""
    res = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = pathlib.Path(dirpath) / name
            st = os.lstat(p)
            rel = str(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                body = ("link", os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                body = ("file", p.read_bytes())
            elif stat.S_ISDIR(st.st_mode):
                body = ("dir", None)
            else:
                body = ("other", stat.S_IFMT(st.st_mode))
            mtime = None if stat.S_ISLNK(st.st_mode) else st.st_mtime_ns
            res[rel] = (body[0], stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, mtime, body[1])
    return res


def names(root: pathlib.Path) -> set:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def build_tree(top: pathlib.Path, tag: str) -> None:
    """A home tree with several modes, a nested dir, symlinks, an empty file,
    a binary file and a file owned by another uid; integer-second mtimes
    (tar keeps seconds) set bottom-up so directory mtimes are fixed too."""
    top.mkdir(parents=True)
    (top / "sub" / "deeper").mkdir(parents=True)
    (top / "empty-dir").mkdir()
    files = {
        "readme.txt": (f"{tag} readme\n".encode(), 0o644),
        "script.sh": (f"#!/bin/sh\necho {tag}\n".encode(), 0o755),
        "secret.key": (f"{tag} secret\n".encode(), 0o600),
        "empty": (b"", 0o640),
        "sub/data.bin": (bytes(range(256)) * 40 + tag.encode(), 0o644),
        "sub/deeper/notes.md": (f"# {tag}\n\nnotes\n".encode(), 0o444),
        "sub/owned": (f"{tag} owned by 1234:2345\n".encode(), 0o640),
    }
    for rel, (content, mode) in files.items():
        (top / rel).write_bytes(content)
        os.chmod(top / rel, mode)
    os.chown(top / "sub/owned", 1234, 2345)
    os.symlink("readme.txt", top / "link-to-readme")
    os.symlink("../sub/deeper/notes.md", top / "sub/rel-link")
    os.symlink("/nonexistent/absolute", top / "dangling")
    t = 1_600_000_000
    for i, rel in enumerate(sorted(files)):
        os.utime(top / rel, (t + i, t + 1000 + i))
    for i, d in enumerate(["sub/deeper", "sub", "empty-dir"]):
        os.utime(top / d, (t + 50 + i, t + 2000 + i))
    os.chmod(top / "empty-dir", 0o700)
    os.utime(top / "empty-dir", (t + 60, t + 3000))


def decoy_tree(top: pathlib.Path) -> None:
    top.mkdir(parents=True)
    (top / "readme.txt").write_text("DECOY readme\n")
    (top / "decoy-only.txt").write_text("only on the target\n")
    (top / "sub").mkdir()
    (top / "sub" / "data.bin").write_bytes(b"DECOY")


# ==========================================================================
# 1. sqlite3: transactions, then lock contention with a reader at home
# ==========================================================================

SQL_SETUP = "PRAGMA journal_mode=DELETE;\nCREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER NOT NULL, s TEXT);\n" + "".join(
    f"BEGIN;\nWITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<1000)\n"
    f"  INSERT INTO t(v, s) SELECT x + {k * 1000}, 'row ' || (x + {k * 1000}) FROM c;\nCOMMIT;\n"
    for k in range(10)) + "SELECT count(*), sum(v), max(s) FROM t;\n"


def read_line_until(stream, deadline: float) -> bytes:
    """One line from a pipe, or b"" when the deadline passes first."""
    buf = b""
    fd = stream.fileno()
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            return b""
        r, _, _ = select.select([fd], [], [], left)
        if not r:
            return b""
        chunk = os.read(fd, 1)
        if not chunk:
            return buf
        buf += chunk
    return buf


def test_sqlite3_transactions_and_lock_contention_with_a_home_reader(tv):
    need("/usr/bin/sqlite3")
    db = tv.p("app.db")
    tv.decoy("app.db", "this is not a database (target decoy)\n")
    r = ok(tv.run(["/usr/bin/sqlite3", db], input=SQL_SETUP, timeout=60))
    assert r.stdout == "delete\n10000|50005000|row 9999\n", describe(r)

    home_db = tv.homedata / "app.db"
    with sqlite3.connect(home_db) as con:
        assert con.execute("SELECT count(*), sum(v), min(id), max(id) FROM t").fetchone() == (10000, 50005000, 1, 10000)
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    con.close()
    assert (tv.view / "app.db").read_text() == "this is not a database (target decoy)\n"
    assert sorted(os.listdir(tv.view)) == ["app.db"], "journal or db files appeared on the target"
    assert sorted(os.listdir(tv.homedata)) == ["app.db"], "a journal was left at home"

    # A reader at home holds a SHARED lock (open deferred transaction after a SELECT).
    reader = subprocess.Popen(["/usr/bin/sqlite3", str(home_db)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        reader.stdin.write(b"BEGIN; SELECT count(*) FROM t;\n")
        reader.stdin.flush()
        line = read_line_until(reader.stdout, time.monotonic() + 10)
        assert line == b"10000\n", f"home reader did not start its read transaction: {line!r}"

        write_sql = ".timeout 200\nINSERT INTO t(v, s) VALUES (7, 'while locked');\n"
        t0 = time.monotonic()
        r = tv.run(["/usr/bin/sqlite3", "-bail", db], input=write_sql, timeout=30)
        waited = time.monotonic() - t0
        assert r.returncode != 0 and "database is locked" in r.stderr, describe(r)
        assert waited < 15, f"the busy write took {waited:.1f} s"
        # The lock did not leak: the home reader still reads, and nothing was written.
        reader.stdin.write(b"SELECT count(*) FROM t;\n")
        reader.stdin.flush()
        assert read_line_until(reader.stdout, time.monotonic() + 10) == b"10000\n"
    finally:
        try:
            reader.stdin.write(b"COMMIT;\n")
            reader.stdin.close()
        except (BrokenPipeError, ValueError):
            pass
        try:
            reader.wait(timeout=10)
        except subprocess.TimeoutExpired:
            reader.kill()
            reader.wait()

    r = ok(tv.run(["/usr/bin/sqlite3", "-bail", db],
                  input=".timeout 2000\nINSERT INTO t(v, s) VALUES (7, 'after');\nSELECT count(*), sum(v) FROM t;\n",
                  timeout=30))
    assert r.stdout == "10001|50005007\n", describe(r)
    with sqlite3.connect(home_db) as con:
        assert con.execute("SELECT s FROM t WHERE id = 10001").fetchone() == ("after",)
    con.close()
    assert (tv.view / "app.db").read_text() == "this is not a database (target decoy)\n"


# ==========================================================================
# 2. git: a repository in a forwarded working directory
# ==========================================================================

GIT_SCRIPT = r'''
set -e
git init -q -b main
git config user.name "Tether Test"
git config user.email tether@example.invalid
git add .
git commit -q -m "first commit"
echo "second line" >> a.txt
ln -s a.txt link-to-a
chmod +x tool.sh
git add -A
git commit -q -m "second commit"
echo untracked > new.txt
git log --oneline --format="%h %s"
echo ---
git status --porcelain
echo ---
git rev-parse HEAD
git cat-file -p HEAD:a.txt
'''


def test_git_init_commit_log_status_in_a_home_repository(tv):
    need("/usr/bin/git")
    repo = tv.homedata / "repo"
    (repo / "src").mkdir(parents=True)
    (repo / "a.txt").write_text("home a\n")
    (repo / "src" / "main.c").write_text("int main(void) { return 0; }\n")
    (repo / "tool.sh").write_text("#!/bin/sh\necho tool\n")
    # The target has a decoy working tree (the cwd must exist on the target too).
    (tv.view / "repo").mkdir()
    (tv.view / "repo" / "a.txt").write_text("DECOY a\n")
    (tv.view / "repo" / "decoy-only.txt").write_text("target only\n")

    r = ok(tv.run([SH, "-c", GIT_SCRIPT], cwd=tv.view / "repo", timeout=60))
    log, status, rest = r.stdout.split("---\n")
    head, *blob = rest.splitlines()
    assert [l.split(" ", 1)[1] for l in log.splitlines()] == ["second commit", "first commit"], describe(r)
    assert status == "?? new.txt\n", describe(r)
    assert blob == ["home a", "second line"], describe(r)

    # The same repository, read directly at home by the test process's git.
    env = {"PATH": "/usr/bin:/bin", "LANG": "C", "HOME": str(tv.local), "GIT_CONFIG_NOSYSTEM": "1"}
    g = lambda *a: run_bounded(["/usr/bin/git", "-C", str(repo), *a], env=env, timeout=30)
    assert ok(g("rev-parse", "HEAD")).stdout.strip() == head
    assert ok(g("log", "--format=%s")).stdout == "second commit\nfirst commit\n"
    ok(g("fsck", "--full", "--strict"))
    tree = ok(g("ls-tree", "-r", "HEAD")).stdout
    assert "120000 blob" in tree and "link-to-a" in tree, tree           # symlink committed
    assert "100755 blob" in tree and "tool.sh" in tree, tree             # exec bit committed
    assert "decoy-only.txt" not in tree, tree
    assert ok(g("status", "--porcelain")).stdout == "?? new.txt\n"
    assert os.readlink(repo / "link-to-a") == "a.txt"
    assert not list(repo.glob(".git/**/*.lock")), "lock files left at home"

    # Nothing on the target.
    assert sorted(os.listdir(tv.view / "repo")) == ["a.txt", "decoy-only.txt"]
    assert (tv.view / "repo" / "a.txt").read_text() == "DECOY a\n"
    assert not (tv.view / "repo" / ".git").exists()


# ==========================================================================
# 3. tar: archive a home tree and extract it into home
# ==========================================================================

TAR_SCRIPT = ("set -e; /usr/bin/tar -czf out.tgz tree; mkdir dest; "
              "/usr/bin/tar -xzf out.tgz -C dest; /usr/bin/tar -tzf out.tgz | sort")


def tar_round_trip(tv):
    need("/usr/bin/tar", "/usr/bin/gzip")
    build_tree(tv.homedata / "tree", "home")
    decoy_tree(tv.view / "tree")
    r = ok(tv.run([SH, "-c", TAR_SCRIPT], cwd=tv.view, timeout=60))
    listed = {l.rstrip("/") for l in r.stdout.splitlines()}
    assert listed == {"tree"} | {f"tree/{n}" for n in names(tv.homedata / "tree")}, describe(r)
    # The archive is at home only and holds the home tree, not the decoys.
    assert not (tv.view / "out.tgz").exists() and not (tv.view / "dest").exists()
    assert (tv.view / "tree" / "readme.txt").read_text() == "DECOY readme\n"
    assert "tree/decoy-only.txt" not in listed
    return snapshot(tv.homedata / "tree"), snapshot(tv.homedata / "dest" / "tree")


def test_tar_czf_then_xzf_preserves_files_symlinks_modes_mtimes_owners_at_home(tv):
    want, got = tar_round_trip(tv)
    assert set(got) == set(want)
    nondirs = lambda snap: {k: v for k, v in snap.items() if v[0] != "dir"}
    assert nondirs(got) == nondirs(want)
    assert got["sub/owned"][2:4] == (1234, 2345)
    assert got["script.sh"][1] == 0o755 and got["sub/deeper/notes.md"][1] == 0o444
    assert got["sub/rel-link"][5] == "../sub/deeper/notes.md"


def test_tar_xzf_restores_directory_modes_and_mtimes_at_home(tv):
    want, got = tar_round_trip(tv)
    dirs = lambda snap: {k: v for k, v in snap.items() if v[0] == "dir"}
    assert dirs(got) == dirs(want)


# ==========================================================================
# 4. make + gcc: a multi-file C project built at home
# ==========================================================================

PROJECT = {
    "greet.h": "#ifndef GREET_H\n#define GREET_H\nconst char *greeting(void);\nint answer(int);\n#endif\n",
    "main.c": '#include <stdio.h>\n#include "greet.h"\n'
              'int main(void) { printf("%s %d\\n", greeting(), answer(6)); return 0; }\n',
    "greet.c": '#include "greet.h"\nconst char *greeting(void) { return "hello from the home build"; }\n',
    "answer.c": '#include "greet.h"\nint answer(int x) { return x * 7; }\n',
    "Makefile": "OBJS = main.o greet.o answer.o\n"
                "prog: $(OBJS)\n\t$(CC) -o $@ $(OBJS)\n"
                "%.o: %.c greet.h\n\t$(CC) -O1 -c -o $@ $<\n"
                "clean:\n\trm -f prog $(OBJS)\n",
}


def test_make_and_gcc_build_a_multi_file_project_at_home(tv):
    need("/usr/bin/make", "/usr/bin/gcc")
    for name, text in PROJECT.items():
        tv.home_file(f"proj/{name}", text)
    tv.decoy("proj/main.c", '#include <stdio.h>\nint main(void) { puts("DECOY"); return 3; }\n')
    tv.decoy("proj/Makefile", "prog:\n\t@echo DECOY MAKEFILE; exit 9\n")
    proj = tv.homedata / "proj"

    r = ok(tv.run(["/usr/bin/make", "CC=/usr/bin/gcc"], cwd=tv.view / "proj", timeout=120))
    assert "DECOY" not in r.stdout, describe(r)
    assert sorted(os.listdir(proj)) == sorted(list(PROJECT) + ["main.o", "greet.o", "answer.o", "prog"]), describe(r)
    st = os.stat(proj / "prog")
    assert stat.S_IMODE(st.st_mode) & 0o111 == 0o111, oct(st.st_mode)
    assert (proj / "prog").read_bytes()[:4] == b"\x7fELF"
    run = run_bounded([str(proj / "prog")], timeout=10)
    assert run.returncode == 0 and run.stdout == "hello from the home build 42\n", describe(run)

    # Up to date: make compares the forwarded mtimes.
    r = ok(tv.run(["/usr/bin/make", "CC=/usr/bin/gcc"], cwd=tv.view / "proj", timeout=60))
    assert "is up to date" in r.stdout, describe(r)
    # Touch one source at home: only that object and the link are redone.
    t = time.time() + 5
    os.utime(proj / "answer.c", (t, t))
    r = ok(tv.run(["/usr/bin/make", "CC=/usr/bin/gcc"], cwd=tv.view / "proj", timeout=120))
    assert "answer.o" in r.stdout and "main.o" not in r.stdout.replace("-o prog main.o", ""), describe(r)

    # Nothing on the target but the decoys.
    assert sorted(os.listdir(tv.view / "proj")) == ["Makefile", "main.c"]


# ==========================================================================
# 5. python3: modules and packages that exist only at home
# ==========================================================================

IMPORTER = r'''
import sys
sys.path.insert(0, sys.argv[1])
import homemod, homepkg.sub
print(homemod.VALUE, homepkg.sub.X, homepkg.INIT)
print(homemod.__file__)
try:
    import decoyonly
    print("decoyonly imported")
except ModuleNotFoundError as e:
    print("no", e.name)
'''


def test_python_imports_modules_and_packages_that_exist_only_at_home(tv, shm_marker):
    tv.home_file("pylib/homemod.py", "VALUE = 'home module'\n")
    tv.home_file("pylib/homepkg/__init__.py", "INIT = 'home package init'\n")
    tv.home_file("pylib/homepkg/sub.py", "from . import INIT\nX = 'home sub ' + str(len(INIT))\n")
    # Decoys on the target: executing one leaves a marker in /dev/shm (local).
    trap = f"open({str(shm_marker)!r}, 'w').write('decoy ran')\nVALUE = 'DECOY'\nX = INIT = 'DECOY'\n"
    tv.decoy("pylib/homemod.py", trap)
    tv.decoy("pylib/homepkg/__init__.py", trap)
    tv.decoy("pylib/decoyonly.py", trap)
    want = (f"home module home sub 17 home package init\n{tv.p('pylib/homemod.py')}\nno decoyonly\n")

    # -I but not -S/-B: compiles and writes __pycache__ at home; the second run loads it.
    for _ in range(2):
        r = ok(tv.run([PY, "-I", "-c", IMPORTER, tv.p("pylib")]))
        assert r.stdout == want, describe(r)
    assert not shm_marker.exists(), "a decoy module was executed"
    pyc = {p.name.split(".")[0] for p in (tv.homedata / "pylib").rglob("__pycache__/*.pyc")}
    assert pyc == {"homemod", "__init__", "sub"}
    assert not list((tv.view / "pylib").rglob("__pycache__")), "bytecode written on the target"


# ==========================================================================
# 6. rsync -a from home to a target-local directory
# ==========================================================================

def rsync_to(tv, dest: pathlib.Path, extra_wrap_args=()):
    need("/usr/bin/rsync")
    build_tree(tv.homedata / "src", "home")
    decoy_tree(tv.view / "src")
    before_home = snapshot(tv.homedata)
    r = tv.run(["/usr/bin/rsync", "-a", tv.p("src") + "/", str(dest)], extra_wrap_args=extra_wrap_args, timeout=60)
    assert r.returncode == 0, describe(r)
    got = snapshot(dest)
    want = snapshot(tv.homedata / "src")
    assert got == want, describe(r)
    assert got["sub/owned"][2:4] == (1234, 2345)
    assert os.readlink(dest / "dangling") == "/nonexistent/absolute"
    # Nothing new or changed at home; the target's decoy source untouched.
    assert snapshot(tv.homedata) == before_home
    assert (tv.view / "src" / "readme.txt").read_text() == "DECOY readme\n"


def test_rsync_archive_from_home_to_a_local_prefix_inside_the_forwarded_tree(tv):
    dest = tv.view / "localdest"
    rsync_to(tv, dest, extra_wrap_args=["--local", str(dest)])
    assert not (tv.homedata / "localdest").exists()


def test_rsync_archive_from_home_to_a_local_directory_in_dev_shm(tv):
    dest = pathlib.Path(f"/dev/shm/tether-it-rsync-{os.getpid()}-{time.monotonic_ns()}")
    try:
        rsync_to(tv, dest)
    finally:
        shutil.rmtree(dest, ignore_errors=True)


# ==========================================================================
# 7. find -exec sha256sum over a home tree
# ==========================================================================

def test_find_exec_sha256sum_hashes_home_contents(tv):
    build_tree(tv.homedata / "tree", "home")
    for i in range(30):
        tv.home_file(f"tree/many/f{i:02d}.dat", os.urandom(1000 + 997 * i))
    decoy_tree(tv.view / "tree")
    r = ok(tv.run(["/usr/bin/find", ".", "-type", "f", "-exec", "/usr/bin/sha256sum", "{}", "+"],
                  cwd=tv.view / "tree", timeout=60))
    got = sorted(r.stdout.splitlines())
    want = sorted(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  ./{p.relative_to(tv.homedata / 'tree')}"
                  for p in (tv.homedata / "tree").rglob("*") if p.is_file() and not p.is_symlink())
    assert got == want, describe(r)
    assert len(got) == 37


# ==========================================================================
# 8. in-place editors: sed -i and vim (rename over the original)
# ==========================================================================

def test_sed_in_place_edits_the_home_file_by_rename(tv):
    tv.both("edit.txt", "alpha\nbanana\ncarrot\n", "DECOY alpha aaa\n")
    home = tv.homedata / "edit.txt"
    os.chmod(home, 0o640)
    os.chown(home, 1234, 2345)
    ino = os.stat(home).st_ino
    r = ok(tv.run(["/usr/bin/sed", "-i", "s/a/b/", tv.p("edit.txt")]))
    assert home.read_text() == "blpha\nbbnana\ncbrrot\n", describe(r)
    st = os.stat(home)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 1234, 2345)
    assert st.st_ino != ino, "sed -i should have renamed a new file over the original"
    assert sorted(os.listdir(tv.homedata)) == ["edit.txt"], "temp files left at home"
    assert (tv.view / "edit.txt").read_text() == "DECOY alpha aaa\n"
    assert sorted(os.listdir(tv.view)) == ["edit.txt"]


def test_vim_ex_mode_substitutes_and_writes_the_home_file(tv):
    vim = "/usr/bin/vim.basic" if os.access("/usr/bin/vim.basic", os.X_OK) else "/usr/bin/vim"
    need(vim)
    tv.both("notes.txt", "x marks\nthe xylophone\nno match\n", "DECOY xxx\n")
    home = tv.homedata / "notes.txt"
    os.chmod(home, 0o604)
    r = ok(tv.run([vim, "-es", "-u", "NONE", "-i", "NONE", "-N", "-c", "%s/x/y/g", "-c", "wq", tv.p("notes.txt")],
                  timeout=60))
    assert home.read_text() == "y marks\nthe yylophone\nno match\n", describe(r)
    assert stat.S_IMODE(os.stat(home).st_mode) == 0o604
    assert sorted(os.listdir(tv.homedata)) == ["notes.txt"], "swap/backup files left at home"
    assert (tv.view / "notes.txt").read_text() == "DECOY xxx\n"
    assert sorted(os.listdir(tv.view)) == ["notes.txt"]
