"""Closes under the ptrace engine: they stop only once they must be seen.

Under seccomp every close of a placeholder number stops (a notification).
The ptrace filter lets close run, and the tracer adds the close filter to a
process (all its threads) before its first unwaited write, whose error
close reports, and its first POSIX lock, which any close of the file
releases (README, "Closes under ptrace"). These tests hold both engines to
what a program must see, and show under ptrace when the filter is added
(the kernel counts a process's filters in /proc/self/status), and what
happens when it cannot be (a thread with a filter of its own).
"""

from __future__ import annotations

import json

from conftest import describe, py
from test_coherence import small_home  # noqa: F401  (a fixture)
from test_file_semantics import result

# The home's 256 KiB tmpfs is filled to its last page before the program
# runs: a 16 KiB write is then acknowledged at once (write-behind) and
# comes out short at home.
FILLED = 252 * 1024


def run_on_full_home(tv, script, *args):
    """Runs `script` once the home's small tmpfs is filled to its last page."""
    r = tv.in_home_ns(["sh", "-c", f"head -c {FILLED} /dev/zero > {tv.view}/small/fill"])
    assert r.returncode == 0, describe(r)
    return tv.run(py(script, *args), timeout=30)


PRELUDE = r'''
import ctypes, errno, fcntl, json, os, re, struct, sys, threading
def status(field):
    return int(re.search(field + r":\s+(\d+)", open("/proc/self/status").read()).group(1))
def attempt(f):
    """f()'s result ("ok" for None), or its errno's name."""
    try:
        r = f()
        return "ok" if r is None else r
    except OSError as e:
        return errno.errorcode[e.errno]
'''

# A thread that exists before the write closes the descriptor after it:
# the close filter must reach every thread (TSYNC), not only the writer.
CLOSE_IN_OTHER_THREAD = PRELUDE + r'''
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
go, res = threading.Event(), {}
def closer():
    go.wait()
    res["close"] = attempt(lambda: os.close(fd))
t = threading.Thread(target=closer)
t.start()
res["written"] = os.write(fd, b"x" * 16384)
go.set()
t.join()
print("RESULT " + json.dumps(res))
'''


def test_an_unwaited_writes_error_is_reported_by_a_close_in_another_thread(small_home):  # noqa: F811
    tv = small_home
    got = result(run_on_full_home(tv, CLOSE_IN_OTHER_THREAD, tv.p("small/out")))
    assert got == {"written": 16384, "close": "ENOSPC"}, got


# A child forked before its parent's first write, and one forked after:
# each close reports its own process's lost write.
FORKS = PRELUDE + r'''
def child(path, r):
    os.read(r, 1)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    n = os.write(fd, b"y" * 16384)
    print("CHILD " + json.dumps([n, attempt(lambda: os.close(fd))]), flush=True)
    os._exit(0)
r, w = os.pipe()
early = os.fork()
if early == 0:
    child(sys.argv[1] + "/early", r)
fd = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(fd, b"z")           # the parent's first write: its filter is added
os.close(fd)
late = os.fork()
if late == 0:
    child(sys.argv[1] + "/late", r)
os.write(w, b"g")            # one child at a time: the disk holds one page
os.waitpid(early, 0)
os.unlink(sys.argv[1] + "/early")
os.write(w, b"g")
os.waitpid(late, 0)
print("RESULT {}")
'''


def test_children_forked_before_and_after_the_parents_first_write_see_their_errors_at_close(small_home):  # noqa: F811
    tv = small_home
    r = run_on_full_home(tv, FORKS, tv.p("small"), tv.p("other"))
    result(r)
    children = [json.loads(l[len("CHILD "):]) for l in r.stdout.splitlines() if l.startswith("CHILD ")]
    assert children == [[16384, "ENOSPC"], [16384, "ENOSPC"]], describe(r)


# The filter count: unchanged by reads and closes, one more at the first
# write to a home file (ptrace) and never again, inherited by a child.
COUNT = PRELUDE + r'''
res = {"tracer": status("TracerPid") != 0, "start": status("Seccomp_filters")}
for i in range(3):
    fd = os.open(sys.argv[1], os.O_RDONLY)
    os.read(fd, 100)
    os.close(fd)
res["after_reads"] = status("Seccomp_filters")
for i in range(3):
    fd = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(fd, b"line\n")
    os.close(fd)
    res.setdefault("after_writes", []).append(status("Seccomp_filters"))
pid = os.fork()
if pid == 0:
    os._exit(status("Seccomp_filters"))
res["child"] = os.waitpid(pid, 0)[1] >> 8
print("RESULT " + json.dumps(res))
'''


def test_the_close_filter_is_added_at_the_first_write_under_ptrace_only(tv):
    tv.home_file("in.txt", "home\n")
    tv.decoy("in.txt", "decoy\n")
    got = result(tv.run(py(COUNT, tv.p("in.txt"), tv.p("out.txt")), timeout=30))
    n = got["start"]
    added = 1 if got["tracer"] else 0
    assert got["after_reads"] == n, got
    assert got["after_writes"] == [n + added] * 3, got
    assert got["child"] == n + added, got
    assert (tv.homedata / "out.txt").read_text() == "line\n" * 3
    assert not (tv.local / "out.txt").exists()


# A thread with a filter of its own (allow-all) keeps TSYNC from adding the
# close filter: under ptrace the process's writes then wait for their
# answers (the error comes from write itself), its POSIX locks are refused
# with ENOLCK (a query, F_GETLK, is still answered), and wrap-and-run says
# why once; under seccomp nothing
# changes (its closes stop anyway).
OWN_FILTER = PRELUDE + r'''
class SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]
class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]
libc = ctypes.CDLL(None, use_errno=True)
def own_filter():
    allow = (SockFilter * 1)(SockFilter(0x06, 0, 0, 0x7fff0000))   # BPF_RET|BPF_K, SECCOMP_RET_ALLOW
    prog = SockFprog(1, allow)
    res["own_filter"] = libc.prctl(22, 2, ctypes.byref(prog), 0, 0)  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
res = {"tracer": status("TracerPid") != 0}
t = threading.Thread(target=own_filter)
t.start()
t.join()
# A second thread that lives on keeps the filter tree split.
stay = threading.Event()
u = threading.Thread(target=lambda: (own_filter(), stay.wait()))
u.start()
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
res["written"] = attempt(lambda: os.write(fd, b"x" * 16384))
res["close"] = attempt(lambda: os.close(fd))
fd = os.open(sys.argv[2], os.O_RDWR | os.O_CREAT, 0o644)
res["lock"] = attempt(lambda: fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB))
query = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)   # F_GETLK takes no lock: still answered
res["query"] = attempt(lambda: struct.unpack("hhqqi4x", fcntl.fcntl(fd, fcntl.F_GETLK, query))[0] == fcntl.F_UNLCK)
stay.set()
u.join()
print("RESULT " + json.dumps(res))
'''


def test_a_process_whose_threads_have_filters_of_their_own_keeps_its_errors_and_locks_honest(small_home):  # noqa: F811
    tv = small_home
    r = run_on_full_home(tv, OWN_FILTER, tv.p("small/out"), tv.p("lock"))
    got = result(r)
    assert got["own_filter"] == 0, got
    if got["tracer"]:
        # Synchronous: the short write says so itself; the lock is refused.
        assert got["written"] in (4096, "ENOSPC") and got["close"] == "ok" and got["lock"] == "ENOLCK", got
        assert got["query"] is True, got
        assert r.stderr.count("cannot make the closes of process") == 1, describe(r)
    else:
        assert got == {"tracer": False, "own_filter": 0, "written": 16384, "close": "ENOSPC", "lock": "ok",
                       "query": True}, got
