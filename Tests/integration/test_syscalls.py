"""One test per forwarded syscall, each issued *raw*.

Every tracee is /usr/bin/python3 calling ctypes ``syscall(NR, ...)`` with the
x86_64 number, so the test exercises exactly that syscall (a glibc wrapper
might pick another one: ``stat()`` is ``newfstatat``, ``open()`` is
``openat``...).  Each test:

  * builds home content that differs from the target's decoy of the same
    name, so that the call executed locally would give another answer;
  * asserts on the results the tracee saw (returned values, bytes, parsed
    structs, errno names) and on the home state (BASE/homedata changed,
    BASE/view -- the target's decoys -- untouched);
  * runs ``wrap-and-run --stats`` and checks that the syscall under test was
    counted as forwarded at least as often as the script forwarded it.

``test_syscalls_vs_native`` runs one script twice -- natively on a copy of
the tree in BASE/homedata and under wrap-and-run on BASE/view -- and compares
the canonical JSON of ~30 results.
"""

import errno
import json
import os
import stat

import pytest

from conftest import describe, py, run_bounded

# --------------------------------------------------------------------------
# The tracee side: raw syscalls through ctypes
# --------------------------------------------------------------------------

PRELUDE = r'''
import ctypes, errno, json, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
P = sys.argv[1]                     # BASE/view: forwarded, decoys on the target
AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_REMOVEDIR = 0x200
AT_EACCESS = 0x200
AT_EMPTY_PATH = 0x1000
SEEK_DATA, SEEK_HOLE = 3, 4
os.umask(0o022)

def _arg(a):
    if isinstance(a, bool):
        return ctypes.c_long(int(a))
    if isinstance(a, int):
        return ctypes.c_long(a)
    if isinstance(a, str):
        return ctypes.c_char_p(os.fsencode(a))
    if isinstance(a, bytes):
        return ctypes.c_char_p(a)
    return a                        # ctypes buffers/arrays go by pointer

def sc(nr, *args):
    """The raw syscall: its return value, or the errno name when it fails."""
    ctypes.set_errno(0)
    ret = libc.syscall(ctypes.c_long(nr), *map(_arg, args))
    if ret == -1:
        e = ctypes.get_errno()
        return errno.errorcode.get(e, str(e))
    return ret

def must(nr, *args):
    ret = sc(nr, *args)
    if not isinstance(ret, int):
        raise SystemExit(f"syscall {nr} {args!r} failed with {ret}")
    return ret

def buf(n):
    return ctypes.create_string_buffer(n)

def cbytes(data):
    return ctypes.create_string_buffer(data, len(data))

class iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]

def iovs(*bufs):
    arr = (iovec * len(bufs))(*[iovec(ctypes.addressof(b), len(b)) for b in bufs])
    arr.keep = bufs                 # the buffers live as long as the array
    return arr

def pstat(b):                       # struct stat, x86_64
    _dev, ino, nlink, mode, uid, gid = struct.unpack_from("QQQIII", b, 0)
    size, = struct.unpack_from("q", b, 48)
    ms, mns = struct.unpack_from("qq", b, 88)
    return {"ino": ino, "nlink": nlink, "mode": mode, "size": size, "mtime_ns": ms * 10**9 + mns}

def pstatx(b):                      # struct statx
    mask, = struct.unpack_from("I", b, 0)
    nlink, = struct.unpack_from("I", b, 16)
    mode, = struct.unpack_from("H", b, 28)
    ino, size = struct.unpack_from("QQ", b, 32)
    ms, mns = struct.unpack_from("qI", b, 112)
    return {"mask": mask, "ino": ino, "nlink": nlink, "mode": mode, "size": size,
            "mtime_ns": ms * 10**9 + mns}

def dents(b, n):                    # struct linux_dirent64[]
    res, off = [], 0
    while off < n:
        ino, _doff, reclen, dtype = struct.unpack_from("QqHB", b, off)
        name = b[off + 19:off + reclen].split(b"\0", 1)[0].decode()
        res.append([name, ino, dtype])
        off += reclen
    return res

def how(flags, mode=0, resolve=0):  # struct open_how
    return cbytes(struct.pack("QQQ", flags, mode, resolve))

def rd(fd, n=4096):                 # raw read(2) of up to n bytes
    b = buf(n)
    k = must(0, fd, b, n)
    return b.raw[:k].decode("latin-1")

OUT = {}
def out(k, v):
    OUT[k] = v
'''

EPILOGUE = r'''
print("RESULT " + json.dumps(OUT, sort_keys=True))
'''


def sysrun(tv, body, *, cwd=None):
    """Runs PRELUDE+body under wrap-and-run --stats with P = BASE/view.
    Returns (OUT dict, CompletedProcess)."""
    r = tv.run(py(PRELUDE + body + EPILOGUE, tv.p()), cwd=cwd, extra_wrap_args=["--stats"],
               timeout=30)
    assert r.returncode == 0, describe(r)
    lines = [l for l in r.stdout.splitlines() if l.startswith("RESULT ")]
    assert len(lines) == 1, describe(r)
    return json.loads(lines[0][len("RESULT "):]), r


def forwarded(r, name: str) -> int:
    """The forwarded count of syscall `name` in the --stats table (0 if absent)."""
    for line in r.stderr.splitlines():
        cols = line.split()
        if len(cols) == 3 and cols[0] == name and cols[1].isdigit():
            return int(cols[1])
    return 0


def assert_forwarded(r, name: str, at_least: int) -> None:
    n = forwarded(r, name)
    assert n >= at_least, f"--stats counts {n} forwarded {name} calls, want >= {at_least}" + describe(r)


def hstat(path, follow=True) -> dict:
    """The fields the tracee's pstat() reports, from the test process's own
    stat of the home file (the bind mount keeps inode numbers)."""
    s = os.stat(path, follow_symlinks=follow)
    return {"ino": s.st_ino, "nlink": s.st_nlink, "mode": s.st_mode, "size": s.st_size,
            "mtime_ns": s.st_mtime_ns}


def errname(n: int) -> str:
    return errno.errorcode[n]


# ==========================================================================
# open family
# ==========================================================================

def test_open(tv):
    tv.both("r.txt", "home r\n", "decoy r, longer\n")
    tv.both("t.txt", "home t to be truncated\n", "decoy t\n")
    tv.home_file("exists.txt", "home exists\n")
    tv.decoy("target-only.txt", "t\n")
    out, r = sysrun(tv, r'''
fd = must(2, P + "/r.txt", os.O_RDONLY, 0)
out("read", rd(fd))
fd = must(2, "r.txt", os.O_RDONLY, 0)                  # relative to the home cwd
out("read_rel", rd(fd))
fd = must(2, P + "/new.txt", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
out("wrote", must(1, fd, b"created via open\n", 17))
fd = must(2, P + "/t.txt", os.O_RDWR | os.O_TRUNC, 0)
out("trunc_end", must(8, fd, 0, os.SEEK_END))
out("excl", sc(2, P + "/exists.txt", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
out("missing", sc(2, P + "/target-only.txt", os.O_RDONLY, 0))
''')
    assert out == {"read": "home r\n", "read_rel": "home r\n", "wrote": 17, "trunc_end": 0,
                   "excl": "EEXIST", "missing": "ENOENT"}, describe(r)
    assert (tv.homedata / "new.txt").read_text() == "created via open\n"
    assert stat.S_IMODE(os.stat(tv.homedata / "new.txt").st_mode) == 0o640
    assert (tv.homedata / "t.txt").read_text() == ""
    assert not (tv.view / "new.txt").exists()
    assert not (tv.view / "exists.txt").exists()
    assert (tv.view / "t.txt").read_text() == "decoy t\n"
    assert_forwarded(r, "open", 6)


def test_openat(tv):
    tv.home_file("dir/inner.txt", "home inner\n")
    tv.decoy("dir/inner.txt", "decoy inner\n")
    tv.both("rel.txt", "home rel\n", "decoy rel\n")
    tv.home_file("isfile", "a file at home\n")
    (tv.view / "isfile").mkdir()                               # a directory on the target
    tv.decoy("dir/target-only.txt", "t\n")
    out, r = sysrun(tv, r'''
d = must(257, AT_FDCWD, P + "/dir", os.O_RDONLY | os.O_DIRECTORY, 0)
out("dirfd_rel", rd(must(257, d, "inner.txt", os.O_RDONLY, 0)))
out("cwd_rel", rd(must(257, AT_FDCWD, "rel.txt", os.O_RDONLY, 0)))
out("abs_ignores_dirfd", rd(must(257, d, P + "/rel.txt", os.O_RDONLY, 0)))
fd = must(257, d, "made.txt", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
out("wrote", must(1, fd, b"made by openat\n", 15))
out("enotdir", sc(257, AT_FDCWD, P + "/isfile", os.O_RDONLY | os.O_DIRECTORY, 0))
out("enoent", sc(257, d, "target-only.txt", os.O_RDONLY, 0))
out("eexist", sc(257, d, "inner.txt", os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o600))
''')
    assert out == {"dirfd_rel": "home inner\n", "cwd_rel": "home rel\n",
                   "abs_ignores_dirfd": "home rel\n", "wrote": 15, "enotdir": "ENOTDIR",
                   "enoent": "ENOENT", "eexist": "EEXIST"}, describe(r)
    assert (tv.homedata / "dir/made.txt").read_text() == "made by openat\n"
    assert not (tv.view / "dir/made.txt").exists()
    assert_forwarded(r, "openat", 8)


def test_openat2(tv):
    tv.home_file("root/sub/f.txt", "home beneath\n")
    tv.decoy("root/sub/f.txt", "decoy beneath\n")
    tv.both("outside.txt", "home outside\n", "decoy outside\n")
    tv.home_file("root/real.txt", "real\n")
    os.symlink("real.txt", tv.homedata / "root/link")
    tv.decoy("root/link", "a regular file on the target\n")
    out, r = sysrun(tv, r'''
RESOLVE_NO_XDEV, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS, RESOLVE_BENEATH = 1, 2, 4, 8
d = must(257, AT_FDCWD, P + "/root", os.O_RDONLY | os.O_DIRECTORY, 0)
out("abs", rd(must(437, AT_FDCWD, P + "/outside.txt", how(os.O_RDONLY), 24)))
out("beneath", rd(must(437, d, "sub/f.txt", how(os.O_RDONLY, 0, RESOLVE_BENEATH), 24)))
out("beneath_dotdot", sc(437, d, "../outside.txt", how(os.O_RDONLY, 0, RESOLVE_BENEATH), 24))
out("beneath_abs", sc(437, d, P + "/outside.txt", how(os.O_RDONLY, 0, RESOLVE_BENEATH), 24))
out("no_symlinks", sc(437, d, "link", how(os.O_RDONLY, 0, RESOLVE_NO_SYMLINKS), 24))
out("symlink_followed", rd(must(437, d, "link", how(os.O_RDONLY), 24)))
fd = must(437, d, "created.txt", how(os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640, RESOLVE_BENEATH), 24)
out("wrote", must(1, fd, b"by openat2\n", 11))
out("unknown_resolve", sc(437, d, "sub/f.txt", how(os.O_RDONLY, 0, 1 << 40), 24))
''')
    assert out == {"abs": "home outside\n", "beneath": "home beneath\n",
                   "beneath_dotdot": "EXDEV", "beneath_abs": "EXDEV", "no_symlinks": "ELOOP",
                   "symlink_followed": "real\n", "wrote": 11, "unknown_resolve": "EINVAL"}, describe(r)
    assert (tv.homedata / "root/created.txt").read_text() == "by openat2\n"
    assert stat.S_IMODE(os.stat(tv.homedata / "root/created.txt").st_mode) == 0o640
    assert not (tv.view / "root/created.txt").exists()
    assert_forwarded(r, "openat2", 5)


# openat2(2) validates struct open_how strictly (unlike open/openat); the
# supervisor reads the struct, zeroes the mode unless O_CREAT/O_TMPFILE and
# masks it with 07777, and ignores bytes past the 24 it knows, so these
# EINVAL/E2BIG cases succeed under Tether.  Each case is its own test so a fix
# turns each into XPASS (strict: then drop the mark).

OPENAT2_ERRNO = r'''
how_bytes = {"mode_no_creat": struct.pack("QQQ", os.O_RDONLY, 0o644, 0),
             "mode_above_07777": struct.pack("QQQ", os.O_WRONLY | os.O_CREAT, 0o17777, 0),
             "nonzero_tail": struct.pack("QQQQ", os.O_RDONLY, 0, 0, 1)}[sys.argv[2]]
name = "f.txt" if sys.argv[2] != "mode_above_07777" else "new.txt"
out("ret", sc(437, AT_FDCWD, P + "/" + name, cbytes(how_bytes), len(how_bytes)))
'''


def _openat2_errno(tv, case):
    tv.both("f.txt", "home f\n", "decoy f\n")
    r = tv.run(py(PRELUDE + OPENAT2_ERRNO + EPILOGUE, tv.p(), case), extra_wrap_args=["--stats"], timeout=30)
    assert r.returncode == 0, describe(r)
    return json.loads(r.stdout.split("RESULT ", 1)[1])["ret"], r


def test_openat2_mode_without_o_creat_is_einval(tv):
    ret, r = _openat2_errno(tv, "mode_no_creat")
    assert ret == "EINVAL", describe(r)


def test_openat2_mode_above_07777_is_einval(tv):
    ret, r = _openat2_errno(tv, "mode_above_07777")
    assert ret == "EINVAL", describe(r)
    assert not (tv.homedata / "new.txt").exists()


def test_openat2_nonzero_bytes_past_known_open_how_is_e2big(tv):
    ret, r = _openat2_errno(tv, "nonzero_tail")
    assert ret == "E2BIG", describe(r)


def test_open_ignores_unknown_flag_bits(tv):
    tv.both("f.txt", "home f\n", "decoy f\n")
    out, r = sysrun(tv, r'''
fd = sc(2, P + "/f.txt", os.O_RDONLY | 0x800000, 0)
out("open", rd(fd) if isinstance(fd, int) else fd)
fd = sc(257, AT_FDCWD, P + "/f.txt", os.O_RDONLY | 0x800000, 0)
out("openat", rd(fd) if isinstance(fd, int) else fd)
''')
    assert out == {"open": "home f\n", "openat": "home f\n"}, describe(r)


def test_creat(tv):
    tv.both("trunc.txt", "home content to truncate\n", "decoy trunc\n")
    (tv.homedata / "adir").mkdir()
    (tv.view / "nodir").mkdir()                                # only the target has nodir/
    out, r = sysrun(tv, r'''
fd = must(85, P + "/made.txt", 0o640)
out("wrote", must(1, fd, b"made by creat\n", 14))
out("read_on_wronly", sc(0, fd, buf(4), 4))                   # creat opens O_WRONLY
fd = must(85, P + "/trunc.txt", 0o600)
out("trunc_end", must(8, fd, 0, os.SEEK_END))
out("eisdir", sc(85, P + "/adir", 0o644))
out("enoent", sc(85, P + "/nodir/x", 0o644))
''')
    assert out == {"wrote": 14, "read_on_wronly": "EBADF", "trunc_end": 0,
                   "eisdir": "EISDIR", "enoent": "ENOENT"}, describe(r)
    assert (tv.homedata / "made.txt").read_text() == "made by creat\n"
    assert stat.S_IMODE(os.stat(tv.homedata / "made.txt").st_mode) == 0o640
    assert (tv.homedata / "trunc.txt").read_bytes() == b""
    assert (tv.view / "trunc.txt").read_text() == "decoy trunc\n"
    assert not (tv.view / "made.txt").exists()
    assert not (tv.homedata / "nodir").exists()
    assert_forwarded(r, "creat", 3)


# ==========================================================================
# read / write family
# ==========================================================================

def test_read(tv):
    tv.both("r.txt", "0123456789 home\n", "decoy decoy decoy decoy\n")
    (tv.homedata / "dir").mkdir()
    out, r = sysrun(tv, r'''
fd = os.open(P + "/r.txt", os.O_RDONLY)
b = buf(10)
n = must(0, fd, b, 10); out("first", b.raw[:n].decode())
n = must(0, fd, b, 10); out("rest", b.raw[:n].decode())
out("eof", sc(0, fd, b, 10))
out("zero_len", sc(0, os.open(P + "/r.txt", os.O_RDONLY), b, 0))
out("ebadf_wronly", sc(0, os.open(P + "/r.txt", os.O_WRONLY), b, 10))
out("eisdir", sc(0, os.open(P + "/dir", os.O_RDONLY | os.O_DIRECTORY), b, 10))
''')
    assert out == {"first": "0123456789", "rest": " home\n", "eof": 0, "zero_len": 0,
                   "ebadf_wronly": "EBADF", "eisdir": "EISDIR"}, describe(r)
    assert_forwarded(r, "read", 5)


def test_write(tv):
    tv.both("w.txt", "home w\n", "decoy w\n")
    big = bytes(range(256)) * 800                               # 204800 bytes
    out, r = sysrun(tv, r'''
fd = os.open(P + "/w.txt", os.O_WRONLY | os.O_APPEND)
out("n", must(1, fd, b"appended\n", 9))
out("zero_len", sc(1, fd, b"", 0))
out("ebadf_rdonly", sc(1, os.open(P + "/w.txt", os.O_RDONLY), b"x", 1))
big = bytes(range(256)) * 800
fd = os.open(P + "/big.bin", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
done = 0
while done < len(big):
    chunk = cbytes(big[done:])
    done += must(1, fd, chunk, len(big) - done)
out("big", done)
''')
    assert out == {"n": 9, "zero_len": 0, "ebadf_rdonly": "EBADF", "big": len(big)}, describe(r)
    assert (tv.homedata / "w.txt").read_text() == "home w\nappended\n"
    assert (tv.homedata / "big.bin").read_bytes() == big
    assert (tv.view / "w.txt").read_text() == "decoy w\n"
    assert not (tv.view / "big.bin").exists()
    assert_forwarded(r, "write", 3)


def test_pread64(tv):
    tv.both("p.txt", "0123456789abcdef", "ZYXWVUTSRQPONMLKJIHGFEDCBA")
    out, r = sysrun(tv, r'''
fd = os.open(P + "/p.txt", os.O_RDONLY)
b = buf(16)
n = must(17, fd, b, 4, 10); out("at10", b.raw[:n].decode())
out("offset_unchanged", must(8, fd, 0, os.SEEK_CUR))
n = must(17, fd, b, 16, 12); out("short", b.raw[:n].decode())
out("past_eof", sc(17, fd, b, 4, 1000))
out("neg_offset", sc(17, fd, b, 4, -1))
out("ebadf_wronly", sc(17, os.open(P + "/p.txt", os.O_WRONLY), b, 4, 0))
''')
    assert out == {"at10": "abcd", "offset_unchanged": 0, "short": "cdef", "past_eof": 0,
                   "neg_offset": "EINVAL", "ebadf_wronly": "EBADF"}, describe(r)
    assert_forwarded(r, "pread64", 4)


def test_pwrite64(tv):
    tv.both("pw.txt", "0123456789", "abc")
    tv.both("ap.txt", "home append\n", "decoy append file\n")
    out, r = sysrun(tv, r'''
fd = os.open(P + "/pw.txt", os.O_RDWR)
out("n", must(18, fd, b"XY", 2, 3))
out("offset_unchanged", must(8, fd, 0, os.SEEK_CUR))
out("hole", must(18, fd, b"END", 3, 20))
out("neg_offset", sc(18, fd, b"Z", 1, -5))
out("ebadf_rdonly", sc(18, os.open(P + "/pw.txt", os.O_RDONLY), b"Z", 1, 0))
afd = os.open(P + "/ap.txt", os.O_WRONLY | os.O_APPEND)
out("append_ignores_offset", must(18, afd, b"tail\n", 5, 0))
''')
    assert out == {"n": 2, "offset_unchanged": 0, "hole": 3, "neg_offset": "EINVAL",
                   "ebadf_rdonly": "EBADF", "append_ignores_offset": 5}, describe(r)
    assert (tv.homedata / "pw.txt").read_bytes() == b"012XY56789" + b"\0" * 10 + b"END"
    assert (tv.homedata / "ap.txt").read_text() == "home append\ntail\n"
    assert (tv.view / "pw.txt").read_text() == "abc"
    assert (tv.view / "ap.txt").read_text() == "decoy append file\n"
    assert_forwarded(r, "pwrite64", 4)


def test_readv(tv):
    tv.both("v.txt", "abcdefghijklmnop", "decoy-decoy-decoy")
    out, r = sysrun(tv, r'''
fd = os.open(P + "/v.txt", os.O_RDONLY)
b1, b2 = buf(3), buf(5)
out("n", must(19, fd, iovs(b1, b2), 2))
out("parts", [b1.raw.decode(), b2.raw.decode()])
b3, b4 = buf(4), buf(10)
out("n2", must(19, fd, iovs(b3, b4), 2))
out("parts2", [b3.raw.decode(), b4.raw[:4].decode()])
out("eof", sc(19, fd, iovs(b3), 1))
out("einval_cnt", sc(19, fd, iovs(b3), -1))
out("ebadf_wronly", sc(19, os.open(P + "/v.txt", os.O_WRONLY), iovs(b3), 1))
''')
    assert out == {"n": 8, "parts": ["abc", "defgh"], "n2": 8, "parts2": ["ijkl", "mnop"],
                   "eof": 0, "einval_cnt": "EINVAL", "ebadf_wronly": "EBADF"}, describe(r)
    assert_forwarded(r, "readv", 3)


def test_writev(tv):
    tv.both("wv.txt", "old home content\n", "decoy wv\n")
    out, r = sysrun(tv, r'''
fd = os.open(P + "/wv.txt", os.O_WRONLY | os.O_TRUNC)
out("n", must(20, fd, iovs(cbytes(b"hello, "), cbytes(b"world"), cbytes(b"\n")), 3))
out("pos", must(8, fd, 0, os.SEEK_CUR))
out("ebadf_rdonly", sc(20, os.open(P + "/wv.txt", os.O_RDONLY), iovs(cbytes(b"x")), 1))
out("einval_cnt", sc(20, fd, iovs(cbytes(b"x")), -1))
''')
    assert out == {"n": 13, "pos": 13, "ebadf_rdonly": "EBADF", "einval_cnt": "EINVAL"}, describe(r)
    assert (tv.homedata / "wv.txt").read_text() == "hello, world\n"
    assert (tv.view / "wv.txt").read_text() == "decoy wv\n"
    assert_forwarded(r, "writev", 2)


def test_preadv(tv):
    tv.both("pv.txt", "0123456789ABCDEF", "decoy pv file!")
    out, r = sysrun(tv, r'''
fd = os.open(P + "/pv.txt", os.O_RDONLY)
b1, b2 = buf(2), buf(3)
out("n", must(295, fd, iovs(b1, b2), 2, 4, 0))
out("parts", [b1.raw.decode(), b2.raw.decode()])
out("offset_unchanged", must(8, fd, 0, os.SEEK_CUR))
b3 = buf(8)
out("short", must(295, fd, iovs(b3), 1, 12, 0))
out("short_data", b3.raw[:4].decode())
out("past_eof", sc(295, fd, iovs(b3), 1, 100, 0))
out("neg_offset", sc(295, fd, iovs(b3), 1, -1, 0))
''')
    assert out == {"n": 5, "parts": ["45", "678"], "offset_unchanged": 0, "short": 4,
                   "short_data": "CDEF", "past_eof": 0, "neg_offset": "EINVAL"}, describe(r)
    assert_forwarded(r, "preadv", 3)


def test_pwritev(tv):
    tv.both("pwv.txt", "0123456789", "decoy")
    out, r = sysrun(tv, r'''
fd = os.open(P + "/pwv.txt", os.O_RDWR)
out("n", must(296, fd, iovs(cbytes(b"ab"), cbytes(b"CD")), 2, 2, 0))
out("offset_unchanged", must(8, fd, 0, os.SEEK_CUR))
out("extend", must(296, fd, iovs(cbytes(b"xyz")), 1, 12, 0))
out("neg_offset", sc(296, fd, iovs(cbytes(b"x")), 1, -1, 0))
out("ebadf_rdonly", sc(296, os.open(P + "/pwv.txt", os.O_RDONLY), iovs(cbytes(b"x")), 1, 0, 0))
''')
    assert out == {"n": 4, "offset_unchanged": 0, "extend": 3, "neg_offset": "EINVAL",
                   "ebadf_rdonly": "EBADF"}, describe(r)
    assert (tv.homedata / "pwv.txt").read_bytes() == b"01abCD6789\0\0xyz"
    assert (tv.view / "pwv.txt").read_text() == "decoy"
    assert_forwarded(r, "pwritev", 3)


def test_lseek(tv):
    home = bytes(range(256)) * 4                                # 1024 bytes
    tv.both("s.bin", home, b"short decoy")
    # A sparse home file: data [0, 4096), a hole, data [1 MiB, 1 MiB + 4096).
    with open(tv.homedata / "sparse.bin", "wb") as f:
        f.write(b"d" * 4096)
        f.seek(1 << 20)
        f.write(b"e" * 4096)
    tv.decoy("sparse.bin", b"dense decoy" * 1000)
    fd = os.open(tv.homedata / "sparse.bin", os.O_RDONLY)
    try:
        native = {"hole0": os.lseek(fd, 0, os.SEEK_HOLE), "data_after_hole": os.lseek(fd, 4096, os.SEEK_DATA)}
    finally:
        os.close(fd)
    out, r = sysrun(tv, r'''
fd = os.open(P + "/s.bin", os.O_RDONLY)
out("end", must(8, fd, 0, os.SEEK_END))
out("end_minus", must(8, fd, -10, os.SEEK_END))
out("read_there", [ord(c) for c in rd(fd, 4)])
out("cur", must(8, fd, 0, os.SEEK_CUR))
out("set", must(8, fd, 5, os.SEEK_SET))
out("beyond_end", must(8, fd, 5000, os.SEEK_SET))
out("data0", sc(8, fd, 0, SEEK_DATA))
out("data_past_end", sc(8, fd, 1024, SEEK_DATA))
out("bad_whence", sc(8, fd, 0, 99))
out("neg", sc(8, fd, -1, os.SEEK_SET))
sp = os.open(P + "/sparse.bin", os.O_RDONLY)
out("sparse_end", must(8, sp, 0, os.SEEK_END))
out("hole0", sc(8, sp, 0, SEEK_HOLE))
out("data_after_hole", sc(8, sp, 4096, SEEK_DATA))
''')
    assert out == {"end": 1024, "end_minus": 1014, "read_there": list(home[1014:1018]),
                   "cur": 1018, "set": 5, "beyond_end": 5000, "data0": 0,
                   "data_past_end": "ENXIO", "bad_whence": "EINVAL", "neg": "EINVAL",
                   "sparse_end": (1 << 20) + 4096, **native}, describe(r)
    assert native["hole0"] < (1 << 20)  # the home fs keeps the hole (else the case is weak)
    assert_forwarded(r, "lseek", 12)


# ==========================================================================
# stat family
# ==========================================================================

def test_fstat(tv):
    tv.both("f.txt", "home fstat file, 31 bytes long\n", "decoy\n")
    os.chmod(tv.homedata / "f.txt", 0o640)
    os.link(tv.homedata / "f.txt", tv.homedata / "f.hardlink")   # nlink 2 at home
    os.utime(tv.homedata / "f.txt", ns=(1_000_000_000_123_456_789, 1_000_000_000_123_456_789))
    (tv.homedata / "d").mkdir(mode=0o711)
    os.chmod(tv.homedata / "d", 0o711)
    tv.decoy("d", "a file on the target\n")
    out, r = sysrun(tv, r'''
st = buf(144)
fd = os.open(P + "/f.txt", os.O_RDONLY)
must(5, fd, st); out("file", pstat(st.raw))
dfd = os.open(P + "/d", os.O_RDONLY | os.O_DIRECTORY)
must(5, dfd, st); out("dir", pstat(st.raw))
c = os.open(P + "/f.txt", os.O_RDONLY); os.close(c)
out("ebadf_closed", sc(5, c, st))
''')
    assert out["file"] == hstat(tv.homedata / "f.txt"), describe(r)
    assert out["file"]["nlink"] == 2 and out["file"]["size"] == 31
    assert out["dir"] == hstat(tv.homedata / "d"), describe(r)
    assert stat.S_ISDIR(out["dir"]["mode"])
    assert out["ebadf_closed"] == "EBADF", describe(r)
    assert_forwarded(r, "fstat", 2)


def test_stat(tv):
    tv.both("s.txt", "home stat\n", "decoy stat file\n")
    os.chmod(tv.homedata / "s.txt", 0o604)
    tv.home_file("target.txt", "the link target at home\n")
    os.symlink("target.txt", tv.homedata / "ln")
    tv.decoy("ln", "regular on the target\n")
    tv.decoy("target-only.txt", "t\n")
    tv.home_file("file", "regular at home\n")
    tv.decoy("file/x", "on the target file/ is a directory\n")
    out, r = sysrun(tv, r'''
st = buf(144)
must(4, P + "/s.txt", st); out("file", pstat(st.raw))
must(4, "s.txt", st); out("rel", pstat(st.raw))
must(4, P + "/ln", st); out("follows", pstat(st.raw))
out("enoent", sc(4, P + "/target-only.txt", st))
out("enotdir", sc(4, P + "/file/x", st))
''')
    assert out["file"] == hstat(tv.homedata / "s.txt"), describe(r)
    assert out["rel"] == out["file"], describe(r)
    assert out["follows"] == hstat(tv.homedata / "target.txt"), describe(r)
    assert (out["enoent"], out["enotdir"]) == ("ENOENT", "ENOTDIR"), describe(r)
    assert_forwarded(r, "stat", 5)


def test_lstat(tv):
    os.symlink("somewhere/at/home", tv.homedata / "ln")
    tv.decoy("ln", "regular on the target\n")
    tv.both("plain.txt", "plain home\n", "plain decoy, longer\n")
    tv.decoy("target-only.txt", "t\n")
    out, r = sysrun(tv, r'''
st = buf(144)
must(6, P + "/ln", st); out("link", pstat(st.raw))
must(6, P + "/plain.txt", st); out("plain", pstat(st.raw))
out("enoent", sc(6, P + "/target-only.txt", st))
out("dangling_follow", sc(4, P + "/ln", st))
''')
    assert out["link"] == hstat(tv.homedata / "ln", follow=False), describe(r)
    assert stat.S_ISLNK(out["link"]["mode"]) and out["link"]["size"] == len("somewhere/at/home")
    assert out["plain"] == hstat(tv.homedata / "plain.txt"), describe(r)
    assert (out["enoent"], out["dangling_follow"]) == ("ENOENT", "ENOENT"), describe(r)
    assert_forwarded(r, "lstat", 3)


def test_newfstatat(tv):
    tv.home_file("d/a.txt", "home a\n")
    tv.decoy("d/a.txt", "decoy a, longer\n")
    os.symlink("a.txt", tv.homedata / "d/ln")
    tv.decoy("d/ln", "regular on the target\n")
    tv.decoy("d/target-only", "t\n")
    out, r = sysrun(tv, r'''
st = buf(144)
d = os.open(P + "/d", os.O_RDONLY | os.O_DIRECTORY)
must(262, AT_FDCWD, P + "/d/a.txt", st, 0); out("abs", pstat(st.raw))
must(262, d, "a.txt", st, 0); out("dirfd", pstat(st.raw))
must(262, AT_FDCWD, "d/a.txt", st, 0); out("cwd_rel", pstat(st.raw))
must(262, d, "ln", st, AT_SYMLINK_NOFOLLOW); out("nofollow", pstat(st.raw))
must(262, d, "ln", st, 0); out("follow", pstat(st.raw))
f = os.open(P + "/d/a.txt", os.O_RDONLY)
must(262, f, "", st, AT_EMPTY_PATH); out("empty_path", pstat(st.raw))
out("enoent", sc(262, d, "target-only", st, 0))
out("enotdir", sc(262, f, "x", st, 0))
out("einval_flags", sc(262, d, "a.txt", st, 0x1))
''')
    home_a = hstat(tv.homedata / "d/a.txt")
    for k in ("abs", "dirfd", "cwd_rel", "follow", "empty_path"):
        assert out[k] == home_a, f"{k}: " + describe(r)
    assert out["nofollow"] == hstat(tv.homedata / "d/ln", follow=False), describe(r)
    assert (out["enoent"], out["enotdir"], out["einval_flags"]) == ("ENOENT", "ENOTDIR", "EINVAL"), describe(r)
    assert_forwarded(r, "newfstatat", 7)


def test_statx(tv):
    tv.both("x.txt", "home statx content\n", "decoy\n")
    os.chmod(tv.homedata / "x.txt", 0o751)
    os.link(tv.homedata / "x.txt", tv.homedata / "x.link")
    os.utime(tv.homedata / "x.txt", ns=(1_234_567_890_987_654_321, 1_234_567_890_987_654_321))
    os.symlink("x.txt", tv.homedata / "ln")
    tv.decoy("target-only", "t\n")
    out, r = sysrun(tv, r'''
STATX_BASIC_STATS = 0x7ff
sx = buf(256)
must(332, AT_FDCWD, P + "/x.txt", 0, STATX_BASIC_STATS, sx); out("path", pstatx(sx.raw))
must(332, AT_FDCWD, P + "/ln", AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, sx); out("link", pstatx(sx.raw))
f = os.open(P + "/x.txt", os.O_RDONLY)
must(332, f, "", AT_EMPTY_PATH, STATX_BASIC_STATS, sx); out("fd", pstatx(sx.raw))
out("enoent", sc(332, AT_FDCWD, P + "/target-only", 0, STATX_BASIC_STATS, sx))
out("einval_sync", sc(332, AT_FDCWD, P + "/x.txt", 0x6000, STATX_BASIC_STATS, sx))
out("einval_reserved_mask", sc(332, AT_FDCWD, P + "/x.txt", 0, 0x80000000, sx))
''')
    want_mask = 0x2 | 0x4 | 0x40 | 0x100 | 0x200  # MODE NLINK MTIME INO SIZE
    home = hstat(tv.homedata / "x.txt")
    for k in ("path", "fd"):
        got = dict(out[k])
        assert got.pop("mask") & want_mask == want_mask, describe(r)
        assert got == home, f"{k}: " + describe(r)
    assert home["nlink"] == 2 and stat.S_IMODE(home["mode"]) == 0o751
    link = dict(out["link"]); link.pop("mask")
    assert link == hstat(tv.homedata / "ln", follow=False), describe(r)
    assert (out["enoent"], out["einval_sync"], out["einval_reserved_mask"]) == ("ENOENT", "EINVAL", "EINVAL"), describe(r)
    assert_forwarded(r, "statx", 4)


# ==========================================================================
# access family
# ==========================================================================

def _access_views(tv):
    tv.home_file("x.sh", "#!/bin/sh\n", mode=0o755)
    tv.decoy("x.sh", "#!/bin/sh\n", mode=0o644)
    tv.home_file("nox", "data\n", mode=0o644)
    tv.decoy("nox", "data\n", mode=0o755)
    tv.home_file("home-only", "h\n")
    tv.decoy("target-only", "t\n")


def test_access(tv):
    _access_views(tv)
    out, r = sysrun(tv, r'''
out("x_ok", sc(21, P + "/x.sh", os.X_OK))
out("x_denied", sc(21, P + "/nox", os.X_OK))
out("home_only", sc(21, P + "/home-only", os.F_OK))
out("rw_rel", sc(21, "home-only", os.R_OK | os.W_OK))
out("target_only", sc(21, P + "/target-only", os.F_OK))
out("einval_mode", sc(21, P + "/home-only", 0x80))
''')
    assert out == {"x_ok": 0, "x_denied": "EACCES", "home_only": 0, "rw_rel": 0,
                   "target_only": "ENOENT", "einval_mode": "EINVAL"}, describe(r)
    assert_forwarded(r, "access", 5)


def test_faccessat(tv):
    _access_views(tv)
    (tv.homedata / "sub").mkdir()
    tv.home_file("sub/in", "h\n")
    out, r = sysrun(tv, r'''
d = os.open(P, os.O_RDONLY | os.O_DIRECTORY)
out("x_ok", sc(269, d, "x.sh", os.X_OK))
out("x_denied", sc(269, d, "nox", os.X_OK))
out("home_only", sc(269, AT_FDCWD, "home-only", os.F_OK))
out("nested", sc(269, d, "sub/in", os.R_OK))
out("target_only", sc(269, AT_FDCWD, P + "/target-only", os.F_OK))
f = os.open(P + "/home-only", os.O_RDONLY)
out("enotdir", sc(269, f, "x", os.F_OK))
''')
    assert out == {"x_ok": 0, "x_denied": "EACCES", "home_only": 0, "nested": 0,
                   "target_only": "ENOENT", "enotdir": "ENOTDIR"}, describe(r)
    assert_forwarded(r, "faccessat", 5)


def test_faccessat2(tv):
    _access_views(tv)
    os.symlink("nowhere-at-home", tv.homedata / "dangling")
    tv.decoy("dangling", "a regular file on the target\n")
    os.symlink("nox", tv.homedata / "ln-nox")
    out, r = sysrun(tv, r'''
d = os.open(P, os.O_RDONLY | os.O_DIRECTORY)
out("nofollow_dangling", sc(439, d, "dangling", os.F_OK, AT_SYMLINK_NOFOLLOW))
out("follow_dangling", sc(439, d, "dangling", os.F_OK, 0))
out("eaccess_x_denied", sc(439, AT_FDCWD, P + "/nox", os.X_OK, AT_EACCESS))
out("eaccess_x_ok", sc(439, AT_FDCWD, P + "/x.sh", os.X_OK, AT_EACCESS))
out("follow_to_nox", sc(439, d, "ln-nox", os.X_OK, 0))
out("home_only", sc(439, d, "home-only", os.R_OK, 0))
out("target_only", sc(439, d, "target-only", os.F_OK, 0))
out("einval_flags", sc(439, d, "home-only", os.F_OK, 0x4))
''')
    assert out == {"nofollow_dangling": 0, "follow_dangling": "ENOENT", "eaccess_x_denied": "EACCES",
                   "eaccess_x_ok": 0, "follow_to_nox": "EACCES", "home_only": 0,
                   "target_only": "ENOENT", "einval_flags": "EINVAL"}, describe(r)
    assert_forwarded(r, "faccessat2", 7)


# ==========================================================================
# directories
# ==========================================================================

def test_getdents64(tv):
    names = [f"home-{i:02d}-{'x' * i}" for i in range(20)]
    for n in names:
        tv.home_file(f"dir/{n}", n)
    (tv.homedata / "dir/sub").mkdir()
    os.symlink("home-00-", tv.homedata / "dir/ln")
    for n in ("decoy-a", "decoy-b"):
        tv.decoy(f"dir/{n}", n)
    tv.home_file("plain.txt", "a file\n")
    out, r = sysrun(tv, r'''
fd = os.open(P + "/dir", os.O_RDONLY | os.O_DIRECTORY)
def listing(bufsize):
    res, calls = [], 0
    b = buf(bufsize)
    while True:
        n = must(217, fd, b, bufsize)
        calls += 1
        if n == 0:
            return res, calls
        res += dents(b.raw, n)
first, calls = listing(256)                                   # several calls: the offset is kept at home
out("entries", sorted(first))
out("calls", calls)
must(8, fd, 0, os.SEEK_SET)
out("rewound", sorted(listing(4096)[0]) == sorted(first))
must(8, fd, 0, os.SEEK_SET)
out("einval_small", sc(217, fd, buf(8), 8))                  # no room for the first entry
out("enotdir", sc(217, os.open(P + "/plain.txt", os.O_RDONLY), buf(4096), 4096))
c = os.open(P + "/dir", os.O_RDONLY | os.O_DIRECTORY); os.close(c)
out("ebadf", sc(217, c, buf(4096), 4096))
''')
    home_dir = tv.homedata / "dir"
    DT_DIR, DT_REG, DT_LNK = 4, 8, 10
    want = [[".", os.stat(home_dir).st_ino, DT_DIR], ["..", os.stat(tv.homedata).st_ino, DT_DIR]]
    for n in os.listdir(home_dir):
        s = os.lstat(home_dir / n)
        want.append([n, s.st_ino,
                     DT_DIR if stat.S_ISDIR(s.st_mode) else DT_LNK if stat.S_ISLNK(s.st_mode) else DT_REG])
    # ".."'s inode as getdents reports it is the parent's (the view dir at home).
    assert out["entries"] == sorted(want), describe(r)
    assert out["calls"] > 2, describe(r)
    assert out["rewound"] is True
    assert (out["einval_small"], out["enotdir"], out["ebadf"]) == ("EINVAL", "ENOTDIR", "EBADF"), describe(r)
    assert_forwarded(r, "getdents64", out["calls"] + 2)


def test_mkdir(tv):
    (tv.homedata / "homedir").mkdir()
    (tv.view / "tonly").mkdir()
    tv.home_file("afile", "file at home\n")
    out, r = sysrun(tv, r'''
out("new", sc(83, P + "/newdir", 0o750))
out("rel", sc(83, "newdir/inner", 0o700))
out("file_inside", must(1, os.open(P + "/newdir/f", os.O_WRONLY | os.O_CREAT, 0o644), b"in new dir\n", 11))
out("eexist", sc(83, P + "/homedir", 0o755))
out("enoent", sc(83, P + "/tonly/x", 0o755))
out("enotdir", sc(83, P + "/afile/x", 0o755))
''')
    assert out == {"new": 0, "rel": 0, "file_inside": 11, "eexist": "EEXIST",
                   "enoent": "ENOENT", "enotdir": "ENOTDIR"}, describe(r)
    assert stat.S_IMODE(os.stat(tv.homedata / "newdir").st_mode) == 0o750
    assert (tv.homedata / "newdir/inner").is_dir()
    assert (tv.homedata / "newdir/f").read_text() == "in new dir\n"
    assert not (tv.view / "newdir").exists()
    assert not (tv.view / "homedir").exists()
    assert not (tv.homedata / "tonly").exists()
    assert_forwarded(r, "mkdir", 5)


def test_mkdirat(tv):
    (tv.homedata / "parent").mkdir()
    (tv.homedata / "parent/exists").mkdir()
    tv.decoy("parent", "a file on the target\n")
    tv.home_file("afile", "file at home\n")
    out, r = sysrun(tv, r'''
d = os.open(P + "/parent", os.O_RDONLY | os.O_DIRECTORY)
out("dirfd", sc(258, d, "child", 0o705))
out("cwd_rel", sc(258, AT_FDCWD, "parent/child2", 0o755))
out("abs", sc(258, d, P + "/top", 0o755))
out("eexist", sc(258, d, "exists", 0o755))
out("enotdir", sc(258, os.open(P + "/afile", os.O_RDONLY), "x", 0o755))
''')
    assert out == {"dirfd": 0, "cwd_rel": 0, "abs": 0, "eexist": "EEXIST", "enotdir": "ENOTDIR"}, describe(r)
    assert stat.S_IMODE(os.stat(tv.homedata / "parent/child").st_mode) == 0o705
    assert (tv.homedata / "parent/child2").is_dir() and (tv.homedata / "top").is_dir()
    assert (tv.view / "parent").is_file() and not (tv.view / "top").exists()
    assert_forwarded(r, "mkdirat", 5)


def test_rmdir(tv):
    (tv.homedata / "empty-at-home").mkdir()
    tv.decoy("empty-at-home/keep", "target has content here\n")
    tv.home_file("full-at-home/inside", "x")
    (tv.view / "full-at-home").mkdir()
    tv.home_file("afile", "x")
    (tv.view / "afile").mkdir()
    (tv.view / "target-only").mkdir()
    out, r = sysrun(tv, r'''
out("ok", sc(84, P + "/empty-at-home"))
out("enotempty", sc(84, P + "/full-at-home"))
out("enotdir", sc(84, P + "/afile"))
out("enoent", sc(84, P + "/target-only"))
out("einval_dot", sc(84, P + "/full-at-home/."))
''')
    assert out == {"ok": 0, "enotempty": "ENOTEMPTY", "enotdir": "ENOTDIR", "enoent": "ENOENT",
                   "einval_dot": "EINVAL"}, describe(r)
    assert not (tv.homedata / "empty-at-home").exists()
    assert (tv.view / "empty-at-home/keep").exists()
    assert (tv.homedata / "full-at-home/inside").exists()
    assert (tv.view / "target-only").is_dir()
    assert_forwarded(r, "rmdir", 5)


def test_unlink(tv):
    tv.both("u.txt", "home u\n", "decoy u\n")
    (tv.homedata / "adir").mkdir()
    tv.decoy("adir", "a file on the target\n")
    tv.decoy("target-only", "t\n")
    tv.home_file("sub/rel.txt", "x")
    out, r = sysrun(tv, r'''
out("ok", sc(87, P + "/u.txt"))
out("again", sc(87, P + "/u.txt"))
out("rel", sc(87, "sub/rel.txt"))
out("eisdir", sc(87, P + "/adir"))
out("enoent", sc(87, P + "/target-only"))
''')
    assert out == {"ok": 0, "again": "ENOENT", "rel": 0, "eisdir": "EISDIR", "enoent": "ENOENT"}, describe(r)
    assert not (tv.homedata / "u.txt").exists() and not (tv.homedata / "sub/rel.txt").exists()
    assert (tv.view / "u.txt").read_text() == "decoy u\n"
    assert (tv.homedata / "adir").is_dir() and (tv.view / "target-only").exists()
    assert_forwarded(r, "unlink", 5)


def test_unlinkat(tv):
    tv.home_file("d/f.txt", "home f\n")
    tv.decoy("d/f.txt", "decoy f\n")
    (tv.homedata / "d/emptydir").mkdir()
    tv.decoy("d/emptydir/keep", "target content\n")
    (tv.homedata / "d/subdir").mkdir()
    tv.home_file("d/g.txt", "home g\n")
    out, r = sysrun(tv, r'''
d = os.open(P + "/d", os.O_RDONLY | os.O_DIRECTORY)
out("file", sc(263, d, "f.txt", 0))
out("removedir", sc(263, d, "emptydir", AT_REMOVEDIR))
out("eisdir", sc(263, d, "subdir", 0))
out("enotdir", sc(263, d, "g.txt", AT_REMOVEDIR))
out("einval_flags", sc(263, d, "g.txt", 0x1))
out("cwd_rel", sc(263, AT_FDCWD, "d/g.txt", 0))
''')
    assert out == {"file": 0, "removedir": 0, "eisdir": "EISDIR", "enotdir": "ENOTDIR",
                   "einval_flags": "EINVAL", "cwd_rel": 0}, describe(r)
    assert sorted(os.listdir(tv.homedata / "d")) == ["subdir"]
    assert (tv.view / "d/f.txt").read_text() == "decoy f\n"
    assert (tv.view / "d/emptydir/keep").exists()
    assert_forwarded(r, "unlinkat", 6)


def test_rename(tv):
    tv.both("a.txt", "home a\n", "decoy a\n")
    tv.decoy("b.txt", "decoy b, only on the target\n")
    tv.decoy("target-only", "t\n")
    tv.home_file("d1/x", "x")
    tv.home_file("d2/y", "y")
    (tv.homedata / "emptyd").mkdir()
    tv.home_file("f.txt", "f\n")
    out, r = sysrun(tv, r'''
out("ok", sc(82, P + "/a.txt", P + "/b.txt"))
out("rel", sc(82, "b.txt", "c.txt"))
out("enoent", sc(82, P + "/target-only", P + "/z"))
out("enotempty", sc(82, P + "/d1", P + "/d2"))
out("eisdir", sc(82, P + "/f.txt", P + "/emptyd"))
out("einval_into_self", sc(82, P + "/d1", P + "/d1/sub"))
''')
    assert out == {"ok": 0, "rel": 0, "enoent": "ENOENT", "enotempty": "ENOTEMPTY",
                   "eisdir": "EISDIR", "einval_into_self": "EINVAL"}, describe(r)
    assert (tv.homedata / "c.txt").read_text() == "home a\n"
    assert not (tv.homedata / "a.txt").exists() and not (tv.homedata / "b.txt").exists()
    assert (tv.view / "a.txt").read_text() == "decoy a\n"
    assert (tv.view / "b.txt").read_text() == "decoy b, only on the target\n"
    assert not (tv.view / "c.txt").exists()
    assert_forwarded(r, "rename", 6)


def test_renameat(tv):
    tv.home_file("src/f", "home f\n")
    tv.decoy("src/f", "decoy f\n")
    (tv.homedata / "dst").mkdir()
    tv.home_file("src/g", "home g\n")
    (tv.homedata / "src/adir").mkdir()
    tv.decoy("src/target-only", "t\n")
    out, r = sysrun(tv, r'''
s = os.open(P + "/src", os.O_RDONLY | os.O_DIRECTORY)
d = os.open(P + "/dst", os.O_RDONLY | os.O_DIRECTORY)
out("across_dirfds", sc(264, s, "f", d, "moved"))
out("cwd_rel", sc(264, AT_FDCWD, "src/g", s, "g2"))
out("enoent", sc(264, s, "target-only", d, "x"))
out("enotdir", sc(264, s, "adir", s, "g2"))
''')
    assert out == {"across_dirfds": 0, "cwd_rel": 0, "enoent": "ENOENT", "enotdir": "ENOTDIR"}, describe(r)
    assert (tv.homedata / "dst/moved").read_text() == "home f\n"
    assert (tv.homedata / "src/g2").read_text() == "home g\n"
    assert sorted(os.listdir(tv.homedata / "src")) == ["adir", "g2"]
    assert (tv.view / "src/f").read_text() == "decoy f\n"
    assert not (tv.view / "dst").exists()
    assert_forwarded(r, "renameat", 4)


def test_renameat2(tv):
    RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
    tv.both("a", "home a\n", "decoy a\n")
    tv.home_file("taken", "home taken\n")      # the target has no "taken": a local NOREPLACE succeeds
    tv.both("x", "home x\n", "decoy x\n")
    tv.home_file("y", "home y\n")
    out, r = sysrun(tv, r'''
NOREPLACE, EXCHANGE = 1, 2
d = os.open(P, os.O_RDONLY | os.O_DIRECTORY)
out("noreplace_eexist", sc(316, d, "a", d, "taken", NOREPLACE))
out("noreplace_ok", sc(316, d, "a", d, "fresh", NOREPLACE))
out("exchange", sc(316, d, "x", AT_FDCWD, P + "/y", EXCHANGE))
out("exchange_enoent", sc(316, d, "x", d, "missing", EXCHANGE))
out("einval_both", sc(316, d, "x", d, "y", NOREPLACE | EXCHANGE))
out("plain", sc(316, d, "fresh", d, "taken", 0))
''')
    assert out == {"noreplace_eexist": "EEXIST", "noreplace_ok": 0, "exchange": 0,
                   "exchange_enoent": "ENOENT", "einval_both": "EINVAL", "plain": 0}, describe(r)
    assert sorted(os.listdir(tv.homedata)) == ["taken", "x", "y"]
    assert (tv.homedata / "taken").read_text() == "home a\n"
    assert (tv.homedata / "x").read_text() == "home y\n"
    assert (tv.homedata / "y").read_text() == "home x\n"
    assert sorted(os.listdir(tv.view)) == ["a", "x"]
    assert (tv.view / "x").read_text() == "decoy x\n"
    assert_forwarded(r, "renameat2", 6)


# ==========================================================================
# symlinks
# ==========================================================================

def _link_views(tv):
    os.symlink("target-at-home", tv.homedata / "ln")
    os.symlink("decoy-target", tv.view / "ln")
    os.symlink("relative/home/link", tv.homedata / "ln2")
    tv.decoy("ln2", "a regular file on the target\n")
    tv.both("plain", "home plain\n", "decoy plain\n")
    tv.decoy("target-only", "t\n")


def test_readlink(tv):
    _link_views(tv)
    out, r = sysrun(tv, r'''
b = buf(256)
n = must(89, P + "/ln", b, 256); out("ln", b.raw[:n].decode())
n = must(89, "ln2", b, 256); out("ln2_rel", b.raw[:n].decode())
small = buf(4)
out("small_n", must(89, P + "/ln", small, 4)); out("small", small.raw.decode())
out("einval_nonlink", sc(89, P + "/plain", b, 256))
out("enoent", sc(89, P + "/target-only", b, 256))
out("einval_bufsiz", sc(89, P + "/ln", b, 0))
''')
    assert out == {"ln": "target-at-home", "ln2_rel": "relative/home/link", "small_n": 4,
                   "small": "targ", "einval_nonlink": "EINVAL", "enoent": "ENOENT",
                   "einval_bufsiz": "EINVAL"}, describe(r)
    assert_forwarded(r, "readlink", 5)


def test_readlinkat(tv):
    _link_views(tv)
    out, r = sysrun(tv, r'''
b = buf(256)
d = os.open(P, os.O_RDONLY | os.O_DIRECTORY)
n = must(267, d, "ln", b, 256); out("dirfd", b.raw[:n].decode())
n = must(267, AT_FDCWD, "ln2", b, 256); out("cwd_rel", b.raw[:n].decode())
n = must(267, d, P + "/ln2", b, 256); out("abs", b.raw[:n].decode())
out("einval_nonlink", sc(267, d, "plain", b, 256))
out("enoent", sc(267, d, "target-only", b, 256))
out("enotdir", sc(267, os.open(P + "/plain", os.O_RDONLY), "x", b, 256))
''')
    assert out == {"dirfd": "target-at-home", "cwd_rel": "relative/home/link",
                   "abs": "relative/home/link", "einval_nonlink": "EINVAL", "enoent": "ENOENT",
                   "enotdir": "ENOTDIR"}, describe(r)
    assert_forwarded(r, "readlinkat", 5)


# ==========================================================================
# sizes and sync
# ==========================================================================

def test_ftruncate(tv):
    tv.both("t.txt", "home content: one hundred bytes? no, fewer\n", "decoy t\n")
    out, r = sysrun(tv, r'''
fd = os.open(P + "/t.txt", os.O_RDWR)
out("shrink", sc(77, fd, 7))
out("size_after_shrink", must(8, fd, 0, os.SEEK_END))
out("grow", sc(77, fd, 5000))
out("einval_rdonly", sc(77, os.open(P + "/t.txt", os.O_RDONLY), 1))
out("einval_neg", sc(77, fd, -1))
out("ebadf", sc(77, 999, 1))
''')
    assert out == {"shrink": 0, "size_after_shrink": 7, "grow": 0, "einval_rdonly": "EINVAL",
                   "einval_neg": "EINVAL", "ebadf": "EBADF"}, describe(r)
    assert (tv.homedata / "t.txt").read_bytes() == b"home co" + b"\0" * 4993
    assert (tv.view / "t.txt").read_text() == "decoy t\n"
    assert_forwarded(r, "ftruncate", 4)


def test_truncate(tv):
    tv.both("t.txt", "abcdefghij home\n", "decoy t, a longer one\n")
    (tv.homedata / "adir").mkdir()
    tv.decoy("adir", "a file on the target\n")
    tv.decoy("target-only", "t\n")
    out, r = sysrun(tv, r'''
out("shrink", sc(76, P + "/t.txt", 4))
out("grow_rel", sc(76, "t.txt", 6))
out("eisdir", sc(76, P + "/adir", 0))
out("enoent", sc(76, P + "/target-only", 0))
out("einval_neg", sc(76, P + "/t.txt", -1))
''')
    assert out == {"shrink": 0, "grow_rel": 0, "eisdir": "EISDIR", "enoent": "ENOENT",
                   "einval_neg": "EINVAL"}, describe(r)
    assert (tv.homedata / "t.txt").read_bytes() == b"abcd\0\0"
    assert (tv.view / "t.txt").read_text() == "decoy t, a longer one\n"
    assert (tv.view / "target-only").read_text() == "t\n"
    assert_forwarded(r, "truncate", 5)


SYNC_BODY = r'''
NR = int(sys.argv[2])
fd = os.open(P + "/s.txt", os.O_WRONLY | os.O_APPEND)
must(1, fd, b"synced\n", 7)
out("file", sc(NR, fd))
out("dir", sc(NR, os.open(P + "/d", os.O_RDONLY | os.O_DIRECTORY)))
c = os.open(P + "/s.txt", os.O_RDONLY); os.close(c)
out("ebadf_closed", sc(NR, c))
'''


def _sync_test(tv, nr, name):
    tv.both("s.txt", "home s\n", "decoy s\n")
    (tv.homedata / "d").mkdir()
    # A local fsync on the placeholder (a socket) fails with EINVAL; on the
    # target d does not exist at all.
    r = tv.run(py(PRELUDE + SYNC_BODY + EPILOGUE, tv.p(), str(nr)), extra_wrap_args=["--stats"], timeout=30)
    assert r.returncode == 0, describe(r)
    out = json.loads(r.stdout.split("RESULT ", 1)[1])
    assert out == {"file": 0, "dir": 0, "ebadf_closed": "EBADF"}, describe(r)
    assert (tv.homedata / "s.txt").read_text() == "home s\nsynced\n"
    assert (tv.view / "s.txt").read_text() == "decoy s\n"
    assert_forwarded(r, name, 2)


def test_fsync(tv):
    _sync_test(tv, 74, "fsync")


def test_fdatasync(tv):
    _sync_test(tv, 75, "fdatasync")


# ==========================================================================
# working directory
# ==========================================================================

def _cwd_views(tv):
    tv.home_file("homeonly/f.txt", "home f in homeonly\n")
    tv.home_file("homeonly/deeper/g.txt", "home g\n")
    tv.home_file("afile", "a file at home\n")
    (tv.view / "afile").mkdir()                                # a dir on the target
    (tv.view / "target-only").mkdir()
    tv.decoy("f.txt", "decoy f at the top\n")


def test_chdir(tv):
    _cwd_views(tv)
    out, r = sysrun(tv, r'''
out("chdir", sc(80, P + "/homeonly"))
out("rel_open", rd(must(257, AT_FDCWD, "f.txt", os.O_RDONLY, 0)))
b = buf(4096); n = must(79, b, 4096); out("cwd", b.raw[:n - 1].decode())
out("chdir_rel", sc(80, "deeper"))
out("rel_open2", rd(must(2, "g.txt", os.O_RDONLY, 0)))
out("chdir_dotdot", sc(80, "../.."))
n = must(79, b, 4096); out("cwd2", b.raw[:n - 1].decode())
out("enotdir", sc(80, P + "/afile"))
out("enoent", sc(80, P + "/target-only"))
n = must(79, b, 4096); out("cwd_after_errors", b.raw[:n - 1].decode())
''')
    assert out == {"chdir": 0, "rel_open": "home f in homeonly\n", "cwd": tv.p("homeonly"),
                   "chdir_rel": 0, "rel_open2": "home g\n", "chdir_dotdot": 0, "cwd2": tv.p(),
                   "enotdir": "ENOTDIR", "enoent": "ENOENT", "cwd_after_errors": tv.p()}, describe(r)
    assert_forwarded(r, "chdir", 5)


def test_fchdir(tv):
    _cwd_views(tv)
    out, r = sysrun(tv, r'''
d = os.open(P + "/homeonly", os.O_RDONLY | os.O_DIRECTORY)
out("fchdir", sc(81, d))
out("rel_open", rd(must(2, "f.txt", os.O_RDONLY, 0)))
b = buf(4096); n = must(79, b, 4096); out("cwd", b.raw[:n - 1].decode())
out("enotdir", sc(81, os.open(P + "/afile", os.O_RDONLY)))
c = os.open(P + "/homeonly", os.O_RDONLY | os.O_DIRECTORY); os.close(c)
out("ebadf", sc(81, c))
n = must(79, b, 4096); out("cwd_after_errors", b.raw[:n - 1].decode())
''')
    assert out == {"fchdir": 0, "rel_open": "home f in homeonly\n", "cwd": tv.p("homeonly"),
                   "enotdir": "ENOTDIR", "ebadf": "EBADF",
                   "cwd_after_errors": tv.p("homeonly")}, describe(r)
    assert_forwarded(r, "fchdir", 2)


def test_getcwd(tv):
    _cwd_views(tv)
    (tv.homedata / "gone").mkdir()
    out, r = sysrun(tv, r'''
b = buf(4096)
n = must(79, b, 4096); out("start", [n, b.raw[:n].decode()])
must(80, P + "/homeonly/deeper")
n = must(79, b, 4096); out("after_chdir", [n, b.raw[:n].decode()])
out("erange_small", sc(79, b, 5))
out("erange_zero", sc(79, b, 0))
out("exact", sc(79, b, n))
must(80, P + "/gone"); must(84, P + "/gone")
out("enoent_removed", sc(79, b, 4096))
''')
    start, deeper = tv.p(), tv.p("homeonly/deeper")
    assert out == {"start": [len(start) + 1, start + "\0"],
                   "after_chdir": [len(deeper) + 1, deeper + "\0"],
                   "erange_small": "ERANGE", "erange_zero": "ERANGE", "exact": len(deeper) + 1,
                   "enoent_removed": "ENOENT"}, describe(r)
    assert not (tv.homedata / "gone").exists()
    assert_forwarded(r, "getcwd", 5)


# ==========================================================================
# a correctness table: the same script natively and under wrap-and-run
# ==========================================================================

VS_NATIVE = r'''
import errno, json, os, stat, sys
base = sys.argv[1]
os.chdir(base)
os.umask(0o027)   # the home must apply the tracee's umask
R = []

def rec(name, fn):
    try:
        v = fn()
    except OSError as e:
        v = "E:" + errno.errorcode.get(e.errno, str(e.errno))
    R.append([name, v])

def st(p, follow=True, full=False):
    s = os.stat(p, follow_symlinks=follow)
    d = {"type": stat.S_IFMT(s.st_mode), "perm": stat.S_IMODE(s.st_mode), "size": s.st_size,
         "nlink": s.st_nlink, "uid": s.st_uid, "gid": s.st_gid, "rdev": s.st_rdev}
    if full:  # only for entries the script never modifies
        d.update(mtime_ns=s.st_mtime_ns, blocks=s.st_blocks, blksize=s.st_blksize)
    return d

def rw(p, flags, data=None, n=100):
    fd = os.open(p, flags, 0o666)
    try:
        res = {}
        if data is not None:
            res["wrote"] = os.write(fd, data)
        res["pos"] = os.lseek(fd, 0, os.SEEK_CUR)
        if flags & os.O_ACCMODE != os.O_WRONLY:
            os.lseek(fd, 0, os.SEEK_SET)
            res["read"] = os.read(fd, n).decode("latin-1")
        res["fstat_size"] = os.fstat(fd).st_size
        return res
    finally:
        os.close(fd)

def lseeks(p):
    fd = os.open(p, os.O_RDONLY)
    try:
        res = [os.lseek(fd, 0, os.SEEK_END), os.lseek(fd, -3, os.SEEK_CUR), os.lseek(fd, 0, os.SEEK_DATA),
               os.lseek(fd, 0, os.SEEK_HOLE)]
        try:
            os.lseek(fd, 1 << 30, os.SEEK_DATA)
        except OSError as e:
            res.append(errno.errorcode[e.errno])
        return res
    finally:
        os.close(fd)

def pio():
    fd = os.open("data.bin", os.O_RDWR)
    try:
        return [os.pread(fd, 5, 3).decode(), os.pwrite(fd, b"PW", 1), os.pread(fd, 8, 0).decode(),
                os.pwrite(fd, b"END", 40), os.pread(fd, 100, 38).decode("latin-1"),
                os.lseek(fd, 0, os.SEEK_CUR), os.pread(fd, 4, 1 << 20).decode()]
    finally:
        os.close(fd)

def dirfd_ops():
    d = os.open("dir", os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = os.open("a.txt", os.O_RDONLY, dir_fd=d)
        data = os.read(fd, 100).decode(); os.close(fd)
        return [data, os.readlink("ln-a", dir_fd=d), st("a.txt", full=True) == st("dir/a.txt", full=True),
                os.access("a.txt", os.R_OK, dir_fd=d)]
    finally:
        os.close(d)

def cwd_ops():
    os.chdir("dir/sub")
    try:
        return [os.getcwd().replace(base, "<BASE>"), sorted(os.listdir("."))]
    finally:
        os.chdir(base)

def walk():
    res = []
    for root, dirs, files in os.walk(".", topdown=True):
        dirs.sort()
        for n in sorted(dirs + files):
            p = os.path.join(root, n)
            s = os.lstat(p)
            res.append([p, stat.S_IFMT(s.st_mode), stat.S_IMODE(s.st_mode), s.st_size])
    return res

rec("stat file", lambda: st("dir/a.txt", full=True))
rec("stat dir", lambda: st("dir", full=True))
rec("stat abs", lambda: st(os.path.join(base, "data.bin"), full=True))
rec("lstat link", lambda: st("dir/ln-a", follow=False, full=True))
rec("stat via link", lambda: st("dir/ln-a", full=True))
rec("stat missing", lambda: st("missing"))
rec("stat through file", lambda: st("dir/a.txt/x"))
rec("lstat dangling", lambda: st("dangling", follow=False, full=True))
rec("stat dangling", lambda: st("dangling"))
rec("readlink", lambda: os.readlink("dir/ln-a"))
rec("readlink abs", lambda: os.readlink(os.path.join(base, "dangling")))
rec("readlink non-link", lambda: os.readlink("dir/a.txt"))
rec("listdir", lambda: sorted(os.listdir("dir")))
rec("scandir types", lambda: sorted([e.name, e.is_dir(follow_symlinks=False), e.is_symlink()] for e in os.scandir("dir")))
rec("open O_DIRECTORY on file", lambda: os.open("dir/a.txt", os.O_RDONLY | os.O_DIRECTORY))
rec("open dir for writing", lambda: os.open("dir", os.O_WRONLY))
rec("open O_EXCL existing", lambda: os.open("dir/a.txt", os.O_WRONLY | os.O_CREAT | os.O_EXCL))
rec("open O_NOFOLLOW link", lambda: os.open("dir/ln-a", os.O_RDONLY | os.O_NOFOLLOW))
rec("open missing", lambda: os.open("nope/x", os.O_RDONLY))
rec("create excl", lambda: rw("new.txt", os.O_RDWR | os.O_CREAT | os.O_EXCL, b"fresh\n"))
rec("stat created", lambda: st("new.txt"))
rec("trunc rdwr", lambda: rw("trunc.txt", os.O_RDWR | os.O_TRUNC, b"xy"))
rec("append", lambda: rw("append.txt", os.O_WRONLY | os.O_APPEND, b"+tail"))
rec("rdonly read", lambda: rw("append.txt", os.O_RDONLY))
rec("write on rdonly", lambda: os.write(os.open("dir/a.txt", os.O_RDONLY), b"x"))
rec("lseeks sparse", lambda: lseeks("sparse.bin"))
rec("lseeks dense", lambda: lseeks("data.bin"))
rec("pread/pwrite", pio)
rec("dirfd ops", dirfd_ops)
rec("cwd ops", cwd_ops)
rec("access", lambda: [os.access("exe", os.X_OK), os.access("dir/a.txt", os.X_OK),
                      os.access("dir/a.txt", os.R_OK | os.W_OK), os.access("missing", os.F_OK)])
rec("mkdir existing", lambda: os.mkdir("dir"))
rec("mkdir new", lambda: [os.mkdir("newdir", 0o777), st("newdir")])
rec("rmdir non-empty", lambda: os.rmdir("dir"))
rec("rmdir file", lambda: os.rmdir("dir/a.txt"))
rec("unlink dir", lambda: os.unlink("dir/sub"))
rec("unlink file", lambda: os.unlink("dir/b.txt"))
rec("rename", lambda: os.rename("trunc.txt", "renamed.txt"))
rec("rename missing", lambda: os.rename("missing", "x"))
rec("rename dir onto non-empty", lambda: os.rename("newdir", "dir"))
rec("truncate", lambda: [os.truncate("renamed.txt", 10), os.stat("renamed.txt").st_size])
rec("ftruncate", lambda: (lambda fd: [os.ftruncate(fd, 3), os.fstat(fd).st_size, os.close(fd)])(os.open("append.txt", os.O_RDWR)))
rec("fsync", lambda: (lambda fd: [os.fsync(fd), os.fdatasync(fd), os.close(fd)])(os.open("append.txt", os.O_RDWR)))
rec("final tree", walk)
print(json.dumps(R, sort_keys=True, indent=1))
'''


def _build_table_tree(root, decoy=False):
    """The same tree twice (native copy, forwarded copy); decoy=True builds
    the target's differing decoy tree of the same names."""
    root.mkdir(parents=True, exist_ok=True)
    tag = "decoy " if decoy else ""
    (root / "dir/sub").mkdir(parents=True)
    (root / "dir/a.txt").write_text(tag + "alpha at home\n")
    (root / "dir/b.txt").write_text(tag + "bravo\n")
    (root / "dir/sub/c").write_text("c")
    os.symlink("a.txt" if not decoy else "b.txt", root / "dir/ln-a")
    if not decoy:
        os.symlink("nowhere", root / "dangling")
    (root / "data.bin").write_bytes((b"0123456789" if not decoy else b"9876543210") * 4)
    (root / "trunc.txt").write_text(tag + "to be truncated\n")
    (root / "append.txt").write_text(tag + "append here\n")
    (root / "exe").write_text("#!/bin/sh\n")
    os.chmod(root / "exe", 0o644 if decoy else 0o755)
    os.chmod(root / "dir/a.txt", 0o640)
    with open(root / "sparse.bin", "wb") as f:
        f.write(b"s" * 4096)
        f.seek(1 << 20)
        f.write(b"t" * 10)
    if not decoy:
        for p in ("dir/a.txt", "dir", "data.bin", "dangling", "dir/ln-a", "sparse.bin"):
            os.utime(root / p, ns=(1_111_111_111_000_000_001, 1_222_222_222_000_000_002),
                     follow_symlinks=False)


def test_syscalls_vs_native(tv):
    native_base = tv.homedata / "native"   # run natively by the test process
    _build_table_tree(native_base)
    _build_table_tree(tv.homedata / "fwd")  # = BASE/view/fwd at home
    _build_table_tree(tv.view / "fwd", decoy=True)
    native = run_bounded(py(VS_NATIVE, native_base), cwd=str(tv.local), timeout=30)
    assert native.returncode == 0, describe(native)
    r = tv.run(py(VS_NATIVE, tv.p("fwd")), extra_wrap_args=["--stats"], timeout=30)
    assert r.returncode == 0, describe(r)
    nat, fwd = json.loads(native.stdout), json.loads(r.stdout)
    assert len(nat) >= 25
    diff = [(n[0], n[1], f[1]) for n, f in zip(nat, fwd) if n != f]
    assert not diff and len(nat) == len(fwd), (
        "native vs forwarded differ (name, native, forwarded):\n"
        + "\n".join(map(repr, diff)) + describe(r))
    # The forwarded run changed the home copy exactly as the native run
    # changed its own copy, and left the target's decoys alone.
    def snapshot(root):
        res = {}
        for dirpath, dirs, files in os.walk(root):
            for n in dirs + files:
                p = os.path.join(dirpath, n)
                rel = os.path.relpath(p, root)
                if os.path.islink(p):
                    res[rel] = "-> " + os.readlink(p)
                elif os.path.isfile(p):
                    res[rel] = open(p, "rb").read()
                else:
                    res[rel] = "dir"
        return res
    assert snapshot(tv.homedata / "fwd") == snapshot(native_base)
    assert (tv.view / "fwd/trunc.txt").exists() and not (tv.view / "fwd/new.txt").exists()
    for name in ("openat", "newfstatat", "getdents64", "lseek", "pread64", "pwrite64", "readlink",
                 "rename", "truncate", "ftruncate", "fsync", "fdatasync", "mkdir", "rmdir",
                 "unlink", "chdir", "getcwd", "access"):
        assert_forwarded(r, name, 1)
