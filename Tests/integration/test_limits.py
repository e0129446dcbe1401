"""Per-session limits at home: open handles (--max-open, EMFILE to the
program) and calls in flight off the reader (--max-inflight, EAGAIN). The
session goes on past each refusal."""

import os

from conftest import describe, py
from test_files import ok

OPEN_UNTIL_REFUSED = r'''
import os, sys, time
fds = []
try:
    while len(fds) < 1000:
        fds.append(os.open(sys.argv[1], os.O_RDONLY))
except OSError as e:
    print("refused after", len(fds), "errno", e.errno, flush=True)
os.close(fds.pop())
time.sleep(0.2)              # the home handle goes once the supervisor sees the placeholder closed
fds.append(os.open(sys.argv[1], os.O_RDONLY))
print("reopened", os.pread(fds[-1], 4, 0).decode(), flush=True)
'''


def test_opens_beyond_max_open_are_emfile_and_a_close_makes_room(tv):
    tv.both("f.txt", "home\n", "decoy\n")
    home = tv.start_home(extra_args=["--max-open", "40"])
    r = ok(tv.run(py(OPEN_UNTIL_REFUSED, tv.p("f.txt")), home=home))
    first, second = r.stdout.splitlines()
    words = first.split()
    assert words[0] == "refused" and words[-1] == "24" and 30 <= int(words[2]) < 40, describe(r)
    assert second == "reopened home", describe(r)


BLOCKED_READS = r'''
import os, sys, threading
n = int(sys.argv[2])
results = {}
def reader(i):
    try:
        # The open counts at home too: under load it may be the call refused.
        fd = os.open(f"{sys.argv[1]}/f{i}", os.O_RDONLY)
        results[i] = os.read(fd, 100).decode()
    except OSError as e:
        results[i] = f"errno {e.errno}"
threads = [threading.Thread(target=reader, args=(i,)) for i in range(n)]
for t in threads: t.start()
print("started", flush=True)
sys.stdin.readline()
for t in threads: t.join(10)
print(sorted(results.values()), flush=True)
'''


def test_calls_beyond_max_inflight_are_eagain_and_the_others_finish(tv):
    from test_file_semantics import Line
    d = tv.homedata / "fifos"
    d.mkdir()
    ends = []
    for i in range(6):
        os.mkfifo(d / f"f{i}", 0o666)
        ends.append(os.open(d / f"f{i}", os.O_RDWR))       # a writer at home: opens return, reads wait
    home = tv.start_home(extra_args=["--max-inflight", "4"])
    try:
        proc_args = py(BLOCKED_READS, tv.p("fifos"), 6)
        t = Line.__new__(Line)
        t.proc, t.buf, t.seen = tv.popen(proc_args, home=home), b"", []
        t.expect("started", timeout=20)
        import time
        time.sleep(2.0)                                   # four reads wait at home, two calls were refused
        for i, fd in enumerate(ends):
            os.write(fd, b"data")
        t.send()
        got = t.expect("[", timeout=20)
        assert got.count("'errno 11'") == 2 and got.count("'data'") == 4, got
    finally:
        for fd in ends:
            os.close(fd)
