"""Confinement as root: homestub --root run as root (as CI runs it).

Layout as in test_root.py: R = BASE/view/export at home (BASE/homedata/export
here), and the tracee's cwd BASE/view is R/B/view at home (the "mirror").
Inside the root, device nodes cannot be made (EPERM) or opened for data
(EACCES, unless --allow-devices), and set-uid bits (and set-gid, except on
directories) never appear. homestub refuses to serve as root without --root
(or --user, or --allow-root); --user drops every deputy to that user."""

import os
import re
import stat
import struct
import subprocess

import pytest

from conftest import HOMESTUB, PY_ERRNAME, describe, free_port, py, require_binaries, run_bounded, write_key

NOBODY = 65534


class Confined:
    def __init__(self, views, extra_args=()):
        require_binaries()
        if os.geteuid() != 0:
            pytest.skip("confinement as root needs root")
        self.tv = views
        self.root = views.homedata / "export"
        self.mirror = self.root / str(views.view).lstrip("/")
        self.mirror.mkdir(parents=True)
        views.start_home(root=views.view / "export", extra_args=list(extra_args))

    def run(self, script, *args):
        r = self.tv.run(py(PY_ERRNAME + script, *args))
        assert r.returncode == 0, describe(r)
        return r.stdout.splitlines()


TRY = r'''
import os, sys, stat
def attempt(label, f):
    try:
        f(); print(label, "ok")
    except OSError as e:
        print(label, ename(e))
'''


def test_mknod_of_devices_is_eperm_and_fifos_sockets_files_still_work(views):
    c = Confined(views)
    out = c.run(TRY + r'''
attempt("chr", lambda: os.mknod("kmsg", stat.S_IFCHR | 0o600, os.makedev(1, 11)))
attempt("blk", lambda: os.mknod("disk", stat.S_IFBLK | 0o600, os.makedev(7, 0)))
attempt("fifo", lambda: os.mknod("fifo", stat.S_IFIFO | 0o600))
attempt("sock", lambda: os.mknod("sock", stat.S_IFSOCK | 0o600))
attempt("reg", lambda: os.mknod("reg", stat.S_IFREG | 0o600))
attempt("setuid-reg", lambda: os.mknod("sreg", stat.S_IFREG | 0o4755))
''')
    assert out == ["chr EPERM", "blk EPERM", "fifo ok", "sock ok", "reg ok", "setuid-reg ok"]
    assert not (c.mirror / "kmsg").exists() and not (c.mirror / "disk").exists()
    assert stat.S_ISFIFO(os.lstat(c.mirror / "fifo").st_mode)
    assert stat.S_ISSOCK(os.lstat(c.mirror / "sock").st_mode)
    assert stat.S_IMODE(os.lstat(c.mirror / "sreg").st_mode) == 0o755


OPEN_ZERO = TRY + r'''
def read4():
    fd = os.open("zero", os.O_RDONLY)
    try:
        print("data", os.read(fd, 4).hex())
    finally:
        os.close(fd)
attempt("open", read4)
attempt("stat", lambda: print("chr", stat.S_ISCHR(os.stat("zero").st_mode)))
attempt("o_path", lambda: os.close(os.open("zero", os.O_PATH)))
'''


def plant_zero(c):
    os.mknod(c.mirror / "zero", stat.S_IFCHR | 0o666, os.makedev(1, 5))


def test_a_device_node_planted_in_the_root_cannot_be_opened(views):
    c = Confined(views)
    plant_zero(c)
    assert c.run(OPEN_ZERO) == ["open EACCES", "chr True", "stat ok", "o_path ok"]


def test_allow_devices_lets_the_planted_node_be_read(views):
    c = Confined(views, ["--allow-devices"])
    plant_zero(c)
    assert c.run(OPEN_ZERO) == ["data 00000000", "open ok", "chr True", "stat ok", "o_path ok"]


def test_set_id_bits_are_stripped_on_chmod_fchmod_fchmodat_and_create(views):
    c = Confined(views)
    for name in ("a", "b", "c"):
        (c.mirror / name).write_text(name)
    out = c.run(TRY + r'''
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
attempt("chmod", lambda: os.chmod("a", 0o4755))
def fchmod():
    fd = os.open("b", os.O_RDONLY); os.fchmod(fd, 0o6755); os.close(fd)
attempt("fchmod", fchmod)
attempt("fchmodat", lambda: os.chmod("c", 0o2755, dir_fd=os.open(".", os.O_RDONLY)))
attempt("create", lambda: os.close(os.open("d", os.O_CREAT | os.O_WRONLY, 0o4755)))
attempt("mkdir", lambda: os.mkdir("e", 0o6755))
def chmod_dir():
    os.mkdir("f"); os.chmod("f", 0o6755)
attempt("chmod-dir", chmod_dir)
for n in "abcdef":
    print(n, oct(stat.S_IMODE(os.stat(n).st_mode)))
''')
    assert out[:6] == ["chmod ok", "fchmod ok", "fchmodat ok", "create ok", "mkdir ok", "chmod-dir ok"], out
    modes = {n: stat.S_IMODE(os.stat(c.mirror / n).st_mode) for n in "abcdef"}
    # mkdir never sets set-id bits itself (the kernel's rule); chmod may
    # leave set-gid on a directory: there it only passes the group on.
    assert modes == {"a": 0o755, "b": 0o755, "c": 0o755, "d": 0o755, "e": 0o755, "f": 0o2755}, modes
    assert out[6:] == [f"{n} {oct(m)}" for n, m in modes.items()]


def test_file_capabilities_cannot_be_set_inside_the_root(views):
    c = Confined(views)
    (c.mirror / "prog").write_text("x")
    (c.mirror / "control").write_text("x")
    blob = struct.pack("<5I", 0x02000001, 1 << 21, 0, 0, 0)   # v2, effective, CAP_SYS_ADMIN
    try:   # the home's file system takes file capabilities natively
        os.setxattr(c.mirror / "control", "security.capability", blob)
    except OSError as e:
        pytest.skip(f"no file capabilities on this file system: {e}")
    out = c.run(TRY + f'''
attempt("setcap", lambda: os.setxattr("prog", "security.capability", {blob!r}))
attempt("user-xattr", lambda: os.setxattr("prog", "user.note", b"fine"))
''')
    assert out == ["setcap EPERM", "user-xattr ok"], out
    assert "security.capability" not in os.listxattr(c.mirror / "prog")


def test_homestub_as_root_refuses_to_serve_without_root(bins, scratch):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    key = write_key(scratch / "key")
    r = run_bounded([HOMESTUB, "--listen", f"127.0.0.1:{free_port()}", "--key-file", key], timeout=10)
    assert r.returncode != 0, describe(r)
    assert re.search(r"refusing to serve the network as root without --root", r.stderr), describe(r)
    assert "--allow-root" in r.stderr, describe(r)


def test_user_nobody_deputy_creates_files_as_nobody_and_cannot_read_root_only_files(views):
    c = Confined(views, ["--user", "nobody"])
    os.chown(c.mirror, NOBODY, NOBODY)
    (c.mirror / "root-only.txt").write_text("secret\n")
    os.chmod(c.mirror / "root-only.txt", 0o600)
    (c.mirror / "public.txt").write_text("public\n")
    out = c.run(TRY + r'''
attempt("create", lambda: open("made.txt", "w").write("x"))
attempt("read-root-only", lambda: open("root-only.txt").read())
attempt("read-public", lambda: print(open("public.txt").read().strip()))
attempt("chown-to-root", lambda: os.chown("made.txt", 0, 0))
''')
    # The tracee is root, and says so in its credentials: the deputy does not listen.
    assert out == ["create ok", "read-root-only EACCES", "public", "read-public ok", "chown-to-root EPERM"], out
    st = os.stat(c.mirror / "made.txt")
    assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY), st
    # The standby deputy waiting for the next session runs as nobody too.
    stub = views.home.ns_init_pid()
    kids = [int(k) for k in open(f"/proc/{stub}/task/{stub}/children").read().split()]
    assert kids, "no standby deputy"
    for k in kids:
        assert status_field(k, "Uid").split() == [str(NOBODY)] * 4
        assert int(status_field(k, "CapEff"), 16) == 0 and int(status_field(k, "CapPrm"), 16) == 0
    # The listener kept CAP_KILL, CAP_SETGID and CAP_SETUID only, bounding set included.
    for field in ("CapEff", "CapPrm", "CapBnd"):
        assert int(status_field(stub, field), 16) == (1 << 5) | (1 << 6) | (1 << 7), field


def status_field(pid, name):
    for line in open(f"/proc/{pid}/status").read().splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise KeyError(name)
