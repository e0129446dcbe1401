"""Bulk transfers and idle cost.

Large reads of home files (≥ 64 KiB) are spliced at home when the stream
is not sealed (--home spawn): the data must be exactly what a copying
read gives, at every offset, at end of file, and through the file offset
that the tracee's processes share. The same script runs over a sealed
TCP home, where nothing is spliced, as the reference.

An idle session must cost no CPU: after a burst of forwarded calls, the
supervisor's and the home's pollers stop polling (adaptive polling), so a
traced `sleep` costs them next to nothing.
"""

import hashlib
import os
import pathlib
import random
import subprocess
import threading
import time

import pytest

from conftest import SH, describe, py, run_bounded, wrap_spawn_argv

SIZE = 3 * (1 << 20) + 12345

# argv[1]: a home file of SIZE bytes; argv[2]: a home directory. Prints one
# result per line.
READS = r"""
import errno, hashlib, os, sys
p, d = sys.argv[1], sys.argv[2]
fd = os.open(p, os.O_RDONLY)
size = os.fstat(fd).st_size
h = hashlib.sha256()
while True:
    b = os.read(fd, 256 << 10)
    if not b:
        break
    h.update(b)
print("read", h.hexdigest(), os.lseek(fd, 0, os.SEEK_CUR))
os.lseek(fd, 100, os.SEEK_SET)
h = hashlib.sha256(os.read(fd, 1 << 20))
print("read-at-100", h.hexdigest(), os.lseek(fd, 0, os.SEEK_CUR))
print("pread-tail", hashlib.sha256(os.pread(fd, 1 << 20, size - 1000)).hexdigest())
print("pread-2mib", hashlib.sha256(os.pread(fd, 2 << 20, 4096)).hexdigest())
print("pread-eof", len(os.pread(fd, 1 << 20, size)), len(os.pread(fd, 1 << 20, size + 5)))
a, b = bytearray(100000), bytearray(200000)
n = os.preadv(fd, [a, b], 7)
print("preadv", n, hashlib.sha256(bytes(a) + bytes(b)).hexdigest())
dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
try:
    os.read(dfd, 1 << 20)
    print("dir-read ok")
except OSError as e:
    print("dir-read", errno.errorcode[e.errno])
"""


def expected(data: bytes) -> str:
    def sha(b):
        return hashlib.sha256(b).hexdigest()
    size = len(data)
    return "\n".join([
        f"read {sha(data)} {size}",
        f"read-at-100 {sha(data[100:100 + (1 << 20)])} {100 + (1 << 20)}",
        f"pread-tail {sha(data[size - 1000:])}",
        f"pread-2mib {sha(data[4096:4096 + (2 << 20)])}",
        "pread-eof 0 0",
        f"preadv 300000 {sha(data[7:300007])}",
        "dir-read EISDIR",
    ]) + "\n"


def content() -> bytes:
    return random.Random(9).randbytes(SIZE)


def test_large_reads_spliced_over_the_private_home_match_the_file(bins, scratch):
    root = scratch / "homeroot"
    view = scratch / "view"
    home = root / str(view).lstrip("/")
    home.mkdir(parents=True)
    view.mkdir()
    (home / "sub").mkdir()
    (view / "sub").mkdir()
    data = content()
    (home / "big.bin").write_bytes(data)
    (view / "big.bin").write_bytes(b"decoy" * 1000)
    r = run_bounded(wrap_spawn_argv(py(READS, view / "big.bin", view / "sub"), root=root), cwd=view)
    assert (r.returncode, r.stdout) == (0, expected(data)), describe(r)


def test_large_reads_over_a_sealed_home_match_the_file(tv):
    data = content()
    tv.home_file("big.bin", data)
    tv.decoy("big.bin", b"decoy" * 1000)
    (tv.homedata / "sub").mkdir()
    (tv.view / "sub").mkdir()
    r = tv.run(py(READS, tv.p("big.bin"), tv.p("sub")))
    assert (r.returncode, r.stdout) == (0, expected(data)), describe(r)


# argv[1]: a home file. Writes 200 chunks of 96 KiB, each filled with its own
# byte, one after the other with no wait between: each is large enough to be
# spliced and small enough to go write-behind.
CHUNKS = r"""
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
for i in range(200):
    assert os.write(fd, bytes([i % 251]) * (96 << 10)) == 96 << 10
os.close(fd)
print("written")
"""


@pytest.mark.parametrize("extra", [[], ["--sync-writes"]], ids=["write-behind", "sync-writes"])
def test_large_writes_back_to_back_over_the_private_home_land_intact(bins, scratch, extra):
    # A write that returns before home has it (write-behind) must not be
    # sent by reference to a buffer the next write reuses.
    root = scratch / "homeroot"
    view = scratch / "view"
    home = root / str(view).lstrip("/")
    home.mkdir(parents=True)
    view.mkdir()
    r = run_bounded(wrap_spawn_argv(py(CHUNKS, view / "out.bin"), root=root, extra=extra), cwd=view)
    assert (r.returncode, r.stdout) == (0, "written\n"), describe(r)
    data = (home / "out.bin").read_bytes()
    assert len(data) == 200 * (96 << 10)
    bad = [i for i in range(200) if data[i * (96 << 10):(i + 1) * (96 << 10)] != bytes([i % 251]) * (96 << 10)]
    assert bad == [], f"chunks {bad[:10]} differ from what was written"
    assert not (view / "out.bin").exists()


def test_large_read_of_a_fifo_at_home_is_not_lost(bins, scratch):
    # A FIFO is a stream: its reads copy (a splice could not be cancelled).
    fifo = scratch / "fifo"
    os.mkfifo(fifo)
    script = "import os,sys\nfd=os.open(sys.argv[1],os.O_RDONLY)\nn=0\nwhile True:\n" \
             "    b=os.read(fd,1<<20)\n    if not b: break\n    n+=len(b)\nprint(n)\n"

    def feed():
        with open(fifo, "wb") as w:
            w.write(b"z" * 300000)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    r = run_bounded(wrap_spawn_argv(py(script, fifo)), cwd=scratch)
    writer.join(timeout=10)
    assert (r.returncode, r.stdout) == (0, "300000\n"), describe(r)


# --------------------------------------------------------------------------
# Idle cost
# --------------------------------------------------------------------------

TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


def cpu_ms(pids) -> float:
    """user + system CPU of the processes (all their threads), in ms."""
    total = 0
    for pid in pids:
        try:
            fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += int(fields[11]) + int(fields[12])
    return total * TICK_MS


def tree(pid: int) -> list:
    """pid and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in pathlib.Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except (FileNotFoundError, ProcessLookupError):
                pass
    return out


IDLE_BUDGET_MS = 50


def idle_cost(proc, ours) -> float:
    """CPU the session's own processes spend while the tracee sleeps: the
    tracee printed "ready" after a burst of forwarded reads."""
    assert proc.stdout.readline() == b"ready\n"
    time.sleep(0.2)
    before = cpu_ms(ours())
    time.sleep(1.0)
    return cpu_ms(ours()) - before


BURST = "i=0; while [ $i -lt 200 ]; do read x < {f}; i=$((i+1)); done; echo ready; exec sleep 3"


def test_idle_private_session_costs_no_cpu(bins, scratch):
    (scratch / "f").write_text("x\n")
    proc = subprocess.Popen(wrap_spawn_argv([SH, "-c", BURST.format(f=scratch / "f")]), cwd=scratch,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        # The supervisor and its home are one process (the deputy is a thread).
        spent = idle_cost(proc, lambda: [proc.pid])
    finally:
        proc.kill()
        proc.wait()
    assert spent < IDLE_BUDGET_MS, f"an idle private session cost {spent:.0f} ms of CPU in 1 s"


def test_idle_tcp_session_costs_no_cpu(tv):
    tv.home_file("f", "x\n")
    proc = tv.popen([SH, "-c", BURST.format(f=tv.p("f"))])
    home = tv.home.ns_init_pid()
    assert home is not None
    try:
        spent = idle_cost(proc, lambda: [proc.pid] + tree(home))
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()
    assert spent < IDLE_BUDGET_MS, f"an idle TCP session cost {spent:.0f} ms of CPU in 1 s"
