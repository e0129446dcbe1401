"""Tracee arguments never trap the supervisor, and descriptors made at the
numbers the supervisor places its own on go through it. Each script runs
natively and under wrap-and-run, and the two must print the same."""

import subprocess

from conftest import MIN_ENV, describe, py
from test_files import ok

# readv with an iov_len of 2**63 (negative as a ssize_t) is EINVAL before
# anything is read; a read with a count beyond SSIZE_MAX is capped by the
# kernel and reads what there is.
HUGE_SIZES = r'''
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
class iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
fd = os.open(sys.argv[1], os.O_RDONLY)
buf = ctypes.create_string_buffer(64)
iov = (iovec * 2)(iovec(ctypes.cast(buf, ctypes.c_void_p), 4), iovec(ctypes.cast(buf, ctypes.c_void_p), 2**63))
n = libc.readv(fd, iov, 2)
print("readv", n, os.strerror(ctypes.get_errno()) if n < 0 else "", flush=True)
libc.read.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
n = libc.read(fd, buf, 2**63 + 5)
print("read", n, buf.raw[:max(n, 0)].decode(), flush=True)
os.lseek(fd, 0, 0)
n = libc.read(fd, buf, 2**64 - 1)
print("read", n, buf.raw[:max(n, 0)].decode(), flush=True)
'''


def test_sizes_beyond_what_the_kernel_accepts_get_the_kernels_answer(tv):
    path = tv.both("small.txt", "tiny\n", "tiny\n")
    native = subprocess.run(py(HUGE_SIZES, path), capture_output=True, text=True, env=dict(MIN_ENV), timeout=30)
    traced = ok(tv.run(py(HUGE_SIZES, tv.p("small.txt"))))
    assert native.returncode == 0, native.stderr
    assert traced.stdout == native.stdout, describe(traced) + "\nnative:\n" + native.stdout
    assert "readv -1 Invalid argument" in traced.stdout


# dup2 onto numbers in the upper range (where placeholders go): of a local
# file and of a home file; then more home opens, which must not land on
# them; each number reads what it should.
DUP2_HIGH = r'''
import os, resource, sys
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
home = os.open(sys.argv[1], os.O_RDONLY)
local = os.open(sys.argv[2], os.O_RDONLY)
a, b = home + 1, home + 2
assert os.dup2(local, a) == a and os.dup2(home, b) == b
later = [os.open(sys.argv[1], os.O_RDONLY) for _ in range(4)]
print("distinct", len({home, a, b, *later}) == 7, flush=True)
print(os.pread(a, 5, 0).decode(), os.pread(b, 5, 0).decode(), *(os.pread(f, 5, 0).decode() for f in later), flush=True)
'''


def test_dup2_onto_placeholder_numbers_goes_through_the_supervisor(tv, scratch):
    local = scratch / "local.txt"
    local.write_text("local\n")
    tv.both("h.txt", "home!\n", "decoy\n")
    r = ok(tv.run(py(DUP2_HIGH, tv.p("h.txt"), local)))
    assert r.stdout.split("\n")[:2] == ["distinct True", "local home! home! home! home! home!"], describe(r)
