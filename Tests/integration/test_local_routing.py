"""Calls that end up local, and the fast identification of local descriptors.

glibc's fstat is newfstatat(fd, "", AT_EMPTY_PATH). The supervisor answers a
local descriptor's fstat without a syscall to identify it (the process's
descriptor record says no placeholder can be below the placeholder range),
but a *non-empty* name with AT_EMPTY_PATH is resolved by the kernel as
usual: an absolute name ignores the local dirfd and `..` climbs out of a
local directory, so such a name into a forwarded prefix must still reach
home (the seccomp filter cannot read names, which is why these calls stay
intercepted). Local calls must answer exactly as natively, and a
placeholder that lands below the range (a stream view, a copy onto 0-2, a
pidfd_getfd) must still be fstat'ed at home.
"""

import json
import os
import pathlib
import shutil
import stat
import subprocess
import tempfile

import pytest

from conftest import MIN_ENV, PY, SH, describe, py
from test_files import ok

@pytest.fixture
def local_dir():
    """A directory under /dev/shm: local by the default policy."""
    d = pathlib.Path(tempfile.mkdtemp(prefix="tether-it-", dir="/dev/shm"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


HOME = "home content, longer than the decoy\n"
DECOY = "decoy\n"

# newfstatat/statx through ctypes, so the flags are exactly what is asked.
CALLS = r'''
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
AT_EMPTY_PATH = 0x1000
def newfstatat(dirfd, name, flags):
    buf = ctypes.create_string_buffer(144)
    if libc.syscall(262, dirfd, name.encode(), buf, flags) != 0:
        return "errno %d" % ctypes.get_errno()
    return int.from_bytes(buf.raw[48:56], "little")            # st_size
def statx(dirfd, name, flags):
    buf = ctypes.create_string_buffer(256)
    if libc.syscall(332, dirfd, name.encode(), flags, 0x7ff, buf) != 0:
        return "errno %d" % ctypes.get_errno()
    return int.from_bytes(buf.raw[40:48], "little")            # stx_size
'''

AT_EMPTY_NAMES = CALLS + r'''
target, local_dir = sys.argv[1], sys.argv[2]
up = "/".join([".."] * len(local_dir.strip("/").split("/")))
d = os.open(local_dir, os.O_RDONLY | os.O_DIRECTORY)
f = os.open("/dev/null", os.O_RDONLY)
print("newfstatat abs", newfstatat(d, target, AT_EMPTY_PATH))
print("newfstatat abs on file fd", newfstatat(f, target, AT_EMPTY_PATH))
print("newfstatat dotdot", newfstatat(d, up + target, AT_EMPTY_PATH))
print("statx abs", statx(d, target, AT_EMPTY_PATH))
print("statx dotdot", statx(d, up + target, AT_EMPTY_PATH))
print("os.stat dir_fd", os.stat(target, dir_fd=d).st_size)
print("empty on local dir", newfstatat(d, "", AT_EMPTY_PATH) == os.stat(local_dir).st_size)
'''


def test_a_nonempty_name_with_at_empty_path_and_a_local_dirfd_is_routed_by_the_name(tv, local_dir):
    tv.both("x.txt", HOME, DECOY)
    r = ok(tv.run(py(AT_EMPTY_NAMES, tv.p("x.txt"), str(local_dir))))
    n = len(HOME)
    assert r.stdout.split("\n") == [f"newfstatat abs {n}", f"newfstatat abs on file fd {n}", f"newfstatat dotdot {n}",
                                    f"statx abs {n}", f"statx dotdot {n}", f"os.stat dir_fd {n}",
                                    "empty on local dir True", ""], describe(r)


# Every kind of local descriptor, fstat'ed (glibc: newfstatat with "" and
# AT_EMPTY_PATH), statx'ed with AT_EMPTY_PATH and through fstat(2) itself,
# against what the kernel says for the same object by name.
LOCAL_KINDS = CALLS + r'''
import json, socket, stat
out = {}
def fields(st):
    return [st.st_mode, st.st_ino, st.st_dev, st.st_size, st.st_nlink, st.st_rdev, st.st_uid]
def record(kind, fd, name=None):
    st = os.fstat(fd)
    raw = ctypes.create_string_buffer(144)
    assert libc.syscall(5, fd, raw) == 0, kind                  # fstat(2)
    out[kind] = {"fstat": fields(st),
                 "fstat2": int.from_bytes(raw.raw[8:16], "little") == st.st_ino,
                 "statx": statx(fd, "", AT_EMPTY_PATH) == st.st_size,
                 "byname": fields(os.stat(name)) if name else None,
                 "proc": os.readlink("/proc/self/fd/%d" % fd)}
local_file, local_dir = sys.argv[1], sys.argv[2]
record("regular", os.open(local_file, os.O_RDONLY), local_file)
record("directory", os.open(local_dir, os.O_RDONLY | os.O_DIRECTORY), local_dir)
record("devnull", os.open("/dev/null", os.O_RDWR), "/dev/null")
record("opath", os.open(local_file, os.O_PATH), local_file)
r, w = os.pipe()
record("pipe", r)
a, b = socket.socketpair()
record("socket", a.fileno())
record("stdin", 0)
print(json.dumps(out))
'''


def test_fstat_of_every_kind_of_local_descriptor_answers_as_natively(tv, local_dir):
    local_file = local_dir / "local.bin"
    local_file.write_bytes(b"x" * 12345)
    args = py(LOCAL_KINDS, str(local_file), str(local_dir))
    traced = json.loads(ok(tv.run(args, input="")).stdout)
    native = json.loads(subprocess.run(args, env=MIN_ENV, capture_output=True, text=True, input="",
                                       check=True, cwd=str(local_dir)).stdout)
    assert traced.keys() == native.keys()
    for kind, got in traced.items():
        assert got["fstat2"] and got["statx"], (kind, got)
        if got["byname"] is not None:
            assert got["fstat"] == got["byname"] == native[kind]["fstat"], (kind, got, native[kind])
    assert stat.S_ISFIFO(traced["pipe"]["fstat"][0]) and traced["pipe"]["proc"] == "pipe:[%d]" % traced["pipe"]["fstat"][1]
    assert stat.S_ISSOCK(traced["socket"]["fstat"][0])
    assert traced["socket"]["proc"] == "socket:[%d]" % traced["socket"]["fstat"][1]
    assert stat.S_ISREG(traced["regular"]["fstat"][0]) and traced["regular"]["fstat"][3] == 12345


# Placeholders below the range: a stream view (dup2 onto 7), a copy onto 1,
# a copy taken with pidfd_getfd (the kernel picks a low number), and a
# forked child's inherited stream view: each fstat'ed at home.
LOW_PLACEHOLDERS = CALLS + r'''
import ctypes, os, sys
target = sys.argv[1]
fd = os.open(target, os.O_RDONLY)
print("high", os.fstat(fd).st_size, newfstatat(fd, "", AT_EMPTY_PATH))
local = os.open("/dev/null", os.O_RDONLY)
print("local before", os.fstat(local).st_size)
os.dup2(fd, 7)
print("view", os.fstat(7).st_size, statx(7, "", AT_EMPTY_PATH))
print("local after", os.fstat(local).st_size, flush=True)
pid = os.fork()
if pid == 0:
    print("child view", os.fstat(7).st_size, flush=True)
    os._exit(0)
os.waitpid(pid, 0)
'''

PIDFD_GETFD = r'''
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    fd = os.open(sys.argv[1], os.O_RDONLY)
    os.write(w, b"%d\n" % fd)
    time.sleep(30)
    os._exit(0)
childfd = int(os.read(r, 64))
pidfd = os.pidfd_open(pid)
got = libc.syscall(438, pidfd, childfd, 0)
print("low", 0 <= got < childfd, os.fstat(got).st_size)
os.kill(pid, 9)
os.waitpid(pid, 0)
'''


def test_placeholders_below_the_range_are_still_fstated_at_home(tv):
    tv.both("x.txt", HOME, DECOY)
    n = len(HOME)
    r = ok(tv.run(py(LOW_PLACEHOLDERS, tv.p("x.txt"))))
    assert r.stdout.split("\n") == [f"high {n} {n}", "local before 0", f"view {n} {n}", "local after 0",
                                    f"child view {n}", ""], describe(r)
    r = ok(tv.run(py(PIDFD_GETFD, tv.p("x.txt"))))
    assert r.stdout == f"low True {n}\n", describe(r)


def test_fstat_of_stdout_redirected_to_a_forwarded_file_goes_home(tv):
    tv.decoy("out.txt", "a decoy the target has\n")
    script = "import os, stat, sys; os.write(1, b'abc'); st = os.fstat(1); " \
             "print(stat.S_ISREG(st.st_mode), st.st_size, file=sys.stderr)"
    r = ok(tv.run([SH, "-c", f"{PY} -c \"{script}\" > {tv.p('out.txt')}"]))
    assert r.stderr.strip().endswith("True 3"), describe(r)
    assert (tv.homedata / "out.txt").read_text() == "abc"


# The umask applied at home is the process's own, kept by intercepting
# umask(2): changed twice, inherited by a forked child, and read back
# (os.umask returns the old mask, which the kernel keeps as ever).
UMASKS = r'''
import os, sys
d = sys.argv[1]
def make(name):
    os.close(os.open(os.path.join(d, name), os.O_WRONLY | os.O_CREAT, 0o666))
    os.mkdir(os.path.join(d, name + ".dir"), 0o777)
os.umask(0o077); make("a")
print("old", oct(os.umask(0o027)), flush=True); make("b")
pid = os.fork()
if pid == 0:
    make("c"); os.umask(0o002); make("d"); os._exit(0)
os.waitpid(pid, 0)
make("e")
'''


def test_files_created_at_home_get_the_process_umask_as_it_changes(tv):
    r = ok(tv.run(py(UMASKS, tv.p())))
    assert r.stdout == "old 0o77\n", describe(r)
    modes = {n: (tv.homedata / n).stat().st_mode & 0o777 for n in "abcde"}
    dirs = {n: (tv.homedata / (n + ".dir")).stat().st_mode & 0o777 for n in "abcde"}
    assert modes == {"a": 0o600, "b": 0o640, "c": 0o640, "d": 0o664, "e": 0o640}, modes
    assert dirs == {"a": 0o700, "b": 0o750, "c": 0o750, "d": 0o775, "e": 0o750}, dirs


# A process P clones C with CLONE_FILES before making any intercepted call,
# so C is seen first (its parent unknown); C puts a stream view on 5 in the
# table they share. P's first call, fstat(5), must still go home.
CLONE_FILES_C = r'''
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
static char stack[1 << 16];
static int child(void *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0 || dup2(fd, 5) != 5) return 1;
    close(fd);
    return 0;
}
int main(int argc, char **argv) {
    (void)argc;
    pid_t p = fork();
    if (p == 0) {
        pid_t c = clone(child, stack + sizeof stack, CLONE_FILES | SIGCHLD, argv[1]);
        int status = 1;
        if (c < 0 || waitpid(c, &status, 0) != c || status != 0) _exit(2);
        struct stat st;
        if (fstat(5, &st) != 0) _exit(3);
        printf("%s %lld\n", S_ISREG(st.st_mode) ? "regular" : "other", (long long)st.st_size);
        fflush(stdout);
        _exit(0);
    }
    int status = 1;
    waitpid(p, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
'''


def test_a_clone_files_child_seen_before_its_parent_shares_its_record(tv):
    from test_concurrency import compile_c
    tv.both("x.txt", HOME, DECOY)
    exe = compile_c(tv, "clonefiles", CLONE_FILES_C)
    r = ok(tv.run([str(exe), tv.p("x.txt")]))
    assert r.stdout == f"regular {len(HOME)}\n", describe(r)
