"""errno passthrough and bad inputs.

The tracee must see exactly the errno the home kernel returned.  Each case is
built so that the same call made locally on the target's decoy view would
give a *different* result (usually success), so a local call cannot pass.
"""

import os
import pathlib

import pytest

from conftest import PY_ERRNAME, describe, py, require_binaries

TRY = PY_ERRNAME + r'''
import os, sys
op, path = sys.argv[1], sys.argv[2]
try:
    if op == "read":
        fd = os.open(path, os.O_RDONLY)
        print("OK", os.read(fd, 100))
    elif op == "write":
        os.open(path, os.O_WRONLY)
        print("OK")
    elif op == "create":
        os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        print("OK")
    elif op == "excl":
        os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        print("OK")
    elif op == "mkdir":
        os.mkdir(path)
        print("OK")
    elif op == "rmdir":
        os.rmdir(path)
        print("OK")
    elif op == "unlink":
        os.unlink(path)
        print("OK")
    elif op == "stat":
        print("OK", os.stat(path).st_size)
except OSError as e:
    print(ename(e))
'''


def try_op(tv, op, rel, **kw):
    path = rel if rel.startswith("/") or rel == "" else tv.p(rel)
    r = tv.run(py(TRY, op, path), **kw)
    assert r.returncode == 0, describe(r)
    return r


def test_enoent_for_file_missing_at_home_but_present_on_target(tv):
    tv.decoy("missing.txt", "only the target has this\n")
    r = try_op(tv, "read", "missing.txt")
    assert r.stdout == "ENOENT\n", describe(r)


def test_enoent_from_cat_of_missing_home_file(tv):
    tv.decoy("gone.txt", "only the target has this\n")
    r = tv.run(["/usr/bin/cat", tv.p("gone.txt")])
    assert r.returncode == 1, describe(r)
    assert r.stdout == "", describe(r)
    assert "No such file or directory" in r.stderr, describe(r)


def test_enoent_for_stat_of_missing_home_file(tv):
    tv.decoy("nostat.txt", "x")
    r = try_op(tv, "stat", "nostat.txt")
    assert r.stdout == "ENOENT\n", describe(r)


def test_eisdir_opening_home_directory_for_writing(tv):
    (tv.homedata / "adir").mkdir()
    tv.decoy("adir", "on the target this is a regular file\n")
    r = try_op(tv, "write", "adir")
    assert r.stdout == "EISDIR\n", describe(r)


def test_enotdir_when_home_path_component_is_a_file(tv):
    tv.home_file("file", "a regular file at home\n")
    tv.decoy("file/x", "on the target file/ is a directory\n")
    r = try_op(tv, "read", "file/x")
    assert r.stdout == "ENOTDIR\n", describe(r)


def test_eexist_mkdir_of_existing_home_directory(tv):
    (tv.homedata / "there").mkdir()
    r = try_op(tv, "mkdir", "there")
    assert r.stdout == "EEXIST\n", describe(r)
    assert not (tv.view / "there").exists()


def test_eexist_o_creat_o_excl_on_existing_home_file(tv):
    tv.home_file("exists.txt", "home\n")
    r = try_op(tv, "excl", "exists.txt")
    assert r.stdout == "EEXIST\n", describe(r)
    assert (tv.homedata / "exists.txt").read_text() == "home\n"
    assert not (tv.view / "exists.txt").exists()


def test_enotempty_rmdir_of_non_empty_home_directory(tv):
    tv.home_file("full/inside", "x")
    (tv.view / "full").mkdir()  # empty on the target: a local rmdir would succeed
    r = try_op(tv, "rmdir", "full")
    assert r.stdout == "ENOTEMPTY\n", describe(r)
    assert (tv.homedata / "full/inside").exists()
    assert (tv.view / "full").is_dir()


def test_error_names_for_several_cases_in_one_process(tv):
    # One tracee, several errors in a row: the session keeps working after errors.
    tv.decoy("m1", "x")
    (tv.homedata / "d1").mkdir()
    tv.home_file("f1", "x")
    tv.home_file("ne/x", "x")
    script = PY_ERRNAME + r'''
import os
calls = [
    lambda: os.open("m1", os.O_RDONLY),
    lambda: os.open("d1", os.O_WRONLY),
    lambda: os.open("f1/x", os.O_RDONLY),
    lambda: os.mkdir("d1"),
    lambda: os.rmdir("ne"),
    lambda: os.rmdir("f1"),
    lambda: os.unlink("d1"),
]
for c in calls:
    try:
        c(); print("OK")
    except OSError as e:
        print(ename(e))
print(open("f1").read())
'''
    r = tv.run(py(script))
    assert r.returncode == 0, describe(r)
    assert r.stdout.splitlines() == ["ENOENT", "EISDIR", "ENOTDIR", "EEXIST", "ENOTEMPTY",
                                     "ENOTDIR", "EISDIR", "x"], describe(r)


# -- EACCES: homestub and tracee run as nobody --------------------------------------

@pytest.fixture
def nv(views):
    """Two views with a homestub running as nobody (tracees run as nobody too)."""
    require_binaries()
    views.start_home(user="nobody")
    return views


def test_eacces_reading_mode_000_home_file_as_nobody(nv):
    nv.home_file("locked.txt", "root only\n", mode=0o000)
    nv.decoy("locked.txt", "readable decoy\n", mode=0o644)
    r = try_op(nv, "read", "locked.txt", user="nobody")
    assert r.stdout == "EACCES\n", describe(r)


def test_eacces_creating_file_in_root_owned_home_dir_as_nobody(nv):
    (nv.homedata / "ro").mkdir(mode=0o755)
    (nv.view / "ro").mkdir()
    os.chmod(nv.view / "ro", 0o777)  # writable on the target: a local create would succeed
    r = try_op(nv, "create", "ro/new.txt", user="nobody")
    assert r.stdout == "EACCES\n", describe(r)
    assert not (nv.view / "ro/new.txt").exists()
    assert not (nv.homedata / "ro/new.txt").exists()


def test_files_created_by_nobody_are_owned_by_nobody_at_home(nv):
    (nv.homedata / "pub").mkdir()
    os.chmod(nv.homedata / "pub", 0o777)
    (nv.view / "pub").mkdir()
    r = try_op(nv, "create", "pub/mine.txt", user="nobody")
    assert r.stdout == "OK\n", describe(r)
    assert os.stat(nv.homedata / "pub/mine.txt").st_uid == 65534
    assert not (nv.view / "pub/mine.txt").exists()


# -- bad inputs -------------------------------------------------------------

BAD_POINTER = PY_ERRNAME + r'''
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
SYS_openat, SYS_mkdir, SYS_write = 257, 83, 1
AT_FDCWD = -100
def report(ret):
    print(errno.errorcode[ctypes.get_errno()] if ret < 0 else "OK")
report(libc.syscall(SYS_openat, ctypes.c_long(AT_FDCWD), ctypes.c_void_p(1), 0))
report(libc.syscall(SYS_mkdir, ctypes.c_void_p(0xdead0000), 0o755))
fd = os.open(sys.argv[1], os.O_WRONLY)
report(libc.syscall(SYS_write, fd, ctypes.c_void_p(1), 10))
os.close(fd)
'''


def test_efault_for_bad_path_and_buffer_pointers(tv):
    # The tracee's cwd is forwarded, so the supervisor must read the path
    # itself and report EFAULT exactly as the kernel would.
    tv.both("w.txt", "home w\n", "decoy w\n")
    r = tv.run(py(BAD_POINTER, tv.p("w.txt")))
    assert r.returncode == 0, describe(r)
    assert r.stdout.splitlines() == ["EFAULT", "EFAULT", "EFAULT"], describe(r)
    assert (tv.homedata / "w.txt").read_text() == "home w\n"


def test_enametoolong_for_overlong_home_path(tv):
    long_component = "n" * 300          # > NAME_MAX (255)
    r = try_op(tv, "read", long_component)
    assert r.stdout == "ENAMETOOLONG\n", describe(r)
    very_long = tv.p("/".join(["d" * 200] * 25))  # > PATH_MAX (4096)
    r = try_op(tv, "stat", very_long)
    assert r.stdout == "ENAMETOOLONG\n", describe(r)


def test_empty_path_gives_enoent(tv):
    r = try_op(tv, "read", "")
    assert r.stdout == "ENOENT\n", describe(r)


def test_ebadf_after_closing_forwarded_fd(tv):
    tv.both("c.txt", "home c\n", "decoy c\n")
    script = PY_ERRNAME + r'''
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
print(os.read(fd, 4).decode())
os.close(fd)
try:
    os.read(fd, 1); print("OK")
except OSError as e:
    print(ename(e))
'''
    r = tv.run(py(script, tv.p("c.txt")))
    assert r.returncode == 0, describe(r)
    assert r.stdout == "home\nEBADF\n", describe(r)
