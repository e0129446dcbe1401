"""Concurrency, cancellation and signals (issue 7) in the two-view harness.

A call blocked at home (a FIFO open or read, a lock wait) must stall no
other call of the session; a signal to the blocked tracee thread must run
its handler promptly, with the result the kernel would give locally
(EINTR, the restart under SA_RESTART, or the partial count); no byte that
the home consumed may be lost. The FIFOs live in BASE/homedata, so the
test process is "a process at home" when it opens them there; the target
has no such file at BASE/view, so a tracee that reaches one was forwarded.
"""

from __future__ import annotations

import hashlib
import os
import random
import statistics
import subprocess
import threading
import time

import pytest

from conftest import CAT, PY, SANITIZER, SH, describe, py, run_bounded
from test_file_semantics import Line
from test_files import ok


def fifo(tv, name):
    path = tv.homedata / name
    os.mkfifo(path, 0o666)
    assert not (tv.view / name).exists()
    return path


def compile_c(tv, name, source):
    src = tv.local / f"{name}.c"
    src.write_text(source)
    exe = tv.local / name
    r = subprocess.run(["gcc", "-O2", "-Wall", "-o", str(exe), str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return exe


# -- 1. a blocked call stalls nothing else ------------------------------------

BLOCKED_OPEN = r'''
import os, sys, threading, time
fifo, regular = sys.argv[1], sys.argv[2]
got = []
def opener():
    fd = os.open(fifo, os.O_RDONLY)          # waits at home for a writer
    got.append(os.read(fd, 100).decode())
t = threading.Thread(target=opener, daemon=True)
t.start()
time.sleep(0.3)
t0 = time.monotonic()
with open(regular) as f:
    data = f.read().strip()
print("regular", data, round(time.monotonic() - t0, 3), flush=True)
print("blocked", t.is_alive(), flush=True)
sys.stdin.readline()
t.join(10)
print("fifo", got, flush=True)
'''


def test_thread_blocked_opening_a_home_fifo_does_not_stall_another_threads_open(tv):
    p = fifo(tv, "p")
    tv.both("regular.txt", "home regular\n", "decoy\n")
    t = Line(tv, py(BLOCKED_OPEN, tv.p("p"), tv.p("regular.txt")))
    name, _, took = t.expect("regular ").rpartition(" ")
    assert name == "home regular"
    assert float(took) < 2.0, took
    assert t.expect("blocked ") == "True"
    w = os.open(p, os.O_WRONLY)               # the reader's open at home is waiting: no block here
    os.write(w, b"through the fifo")
    os.close(w)
    t.send()
    assert t.expect("fifo ") == "['through the fifo']"
    t.finish()


def test_two_processes_one_blocked_on_a_home_fifo_one_reading_a_file(tv):
    fifo(tv, "p")
    tv.both("f.txt", "home file\n", "decoy\n")
    r = ok(tv.run([SH, "-c", f"{CAT} p > /dev/null & sleep 0.2; {CAT} f.txt; kill $!; wait"], timeout=20))
    assert r.stdout == "home file\n", describe(r)


def test_fifo_pipeline_at_home_within_one_session(tv):
    script = "mkfifo p && { cat p > out & } && echo through-fifo > p && wait && cat out"
    r = ok(tv.run([SH, "-c", script], timeout=20))
    assert r.stdout == "through-fifo\n", describe(r)
    assert (tv.homedata / "out").read_text() == "through-fifo\n"
    assert not (tv.view / "out").exists() and not (tv.view / "p").exists()


def test_producer_and_consumer_through_a_home_fifo_move_every_byte(tv):
    script = ("mkfifo p && { head -c 3000000 /dev/urandom | tee src | cat > p & } "
              "&& sha256sum < p > got && wait && sha256sum < src")
    r = ok(tv.run([SH, "-c", script], timeout=60))
    got = (tv.homedata / "got").read_text().split()[0]
    assert r.stdout.split()[0] == got, describe(r)
    assert hashlib.sha256((tv.homedata / "src").read_bytes()).hexdigest() == got


def test_the_fifo_pipeline_eight_times_never_loses_the_tracers_wake_up(tv):
    # Under ptrace the tracer read the SIGCHLD that told of several stopped
    # threads, took one (the reader's read of the FIFO, which it handles
    # itself and which waits at home) and left the writer's for a SIGCHLD
    # that never came: a hang in about one run in six on an idle machine.
    script = ("mkfifo p && { head -c 1000000 /dev/urandom | tee src | cat > p & } "
              "&& sha256sum < p > got && wait && cat got && sha256sum < src && rm p src got")
    for _ in range(8):
        r = ok(tv.run([SH, "-c", script], timeout=30))
        got, sent = r.stdout.split()[0], r.stdout.split()[2]
        assert got == sent and len(got) == 64, describe(r)


# -- 2. many calls blocked at home, one more at full speed ---------------------

MANY_BLOCKED = r'''
import os, sys, threading, time
n, fifos, regular = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def loop(k):
    t0 = time.monotonic()
    for _ in range(k):
        fd = os.open(regular, os.O_RDONLY)
        assert os.read(fd, 100) == b"home regular\n"
        os.close(fd)
    return time.monotonic() - t0
quiet = loop(200)
results, ready = {}, threading.Semaphore(0)
def reader(i):
    fd = os.open(f"{fifos}/f{i}", os.O_RDONLY)
    ready.release()
    try:
        results[i] = os.read(fd, 100).decode()
    except OSError as e:
        results[i] = f"errno {e.errno} {time.monotonic():.6f}"
threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(n)]
for t in threads: t.start()
for _ in range(n): ready.acquire()
time.sleep(0.3)                                   # every reader is now in read() at home
loaded = loop(200)
print("loop", round(quiet, 4), round(loaded, 4), sum(t.is_alive() for t in threads), flush=True)
sys.stdin.readline()
for t in threads: t.join(10)
print("done", flush=True)
for i in range(n): print(i, results.get(i), flush=True)
'''


def _many_fifos(tv, n):
    d = tv.homedata / "fifos"
    d.mkdir()
    ends = []
    for i in range(n):
        os.mkfifo(d / f"f{i}", 0o666)
        ends.append(os.open(d / f"f{i}", os.O_RDWR))    # a writer at home: the tracee's open returns, its read waits
    return ends


@pytest.mark.skipif(SANITIZER != "", reason=(
    "a speed ratio: with 64 calls parked at home their threads poll the stream every few ms, and "
    "under a sanitizer each poll's allocations are recorded with a stack trace (perf: most of "
    "wrap-and-run's time in StackDepot and unwinding), so a forwarded call takes ~25 ms instead "
    "of <1 ms; the plain debug and release builds pass"))
def test_64_threads_blocked_at_home_and_a_65th_reads_files_at_full_speed(tv):
    tv.both("regular.txt", "home regular\n", "decoy\n")
    ends = _many_fifos(tv, 64)
    try:
        t = Line(tv, py(MANY_BLOCKED, "64", tv.p("fifos"), tv.p("regular.txt")))
        quiet, loaded, alive = t.expect("loop ", timeout=60).split()
        assert int(alive) == 64
        # 200 forwarded open+read+close while 64 calls wait at home: not stalled
        # (calls queued behind the blocked ones never finish before those are
        # released). The bound tolerates a slow mode seen in about one session
        # in eight on the final build of 2026-12-02: 0.5-1.1 s for the 200
        # against 0.06-0.3 s, slow for the whole session (a second loop in it
        # is as slow); none in ten at the session's start (991ac02). Its cause
        # is not found yet: the README's known limits and issue 7's target.
        assert float(loaded) < 3 * float(quiet) + 1.5, (quiet, loaded)
        for i, fd in enumerate(ends):
            os.write(fd, f"msg{i}".encode())
        t.send()
        t.expect("done", timeout=20)
        for i in range(64):
            assert t.expect(f"{i} ") == f"msg{i}"
        t.finish()
    finally:
        for fd in ends:
            os.close(fd)


def test_home_death_fails_64_blocked_calls_with_eio_within_a_second(tv):
    tv.both("regular.txt", "home regular\n", "decoy\n")
    ends = _many_fifos(tv, 64)
    home = tv.home
    try:
        t = Line(tv, py(MANY_BLOCKED, "64", tv.p("fifos"), tv.p("regular.txt")))
        t.expect("loop ", timeout=60)
        killed = time.monotonic()
        home.kill()
        t.send()
        t.expect("done", timeout=20)
        for i in range(64):
            err, code, when = t.expect(f"{i} ").split()
            assert (err, code) == ("errno", "5"), (i, err, code)   # EIO
            assert float(when) - killed < 1.0, (i, float(when) - killed)
        t.proc.wait(timeout=10)
        assert "lost connection to home" in t.proc.stderr.read().decode()
    finally:
        for fd in ends:
            os.close(fd)


# -- 3. signals while blocked at home -----------------------------------------

ALARM_C = r'''
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t fired;
static void on_alarm(int s) { (void)s; fired++; }
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static void arm(double s) {
    struct itimerval it = {{0, 0}, {(time_t)s, (suseconds_t)((s - (time_t)s) * 1e6)}};
    setitimer(ITIMER_REAL, &it, NULL);
}

int main(int argc, char **argv) {
    const char *mode = argv[2];
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = strcmp(mode, "restart") == 0 ? SA_RESTART : 0;
    sigaction(SIGALRM, &sa, NULL);
    char buf[1 << 19];
    if (strcmp(mode, "write") == 0) {
        int fd = open(argv[1], O_WRONLY);
        memset(buf, 'w', sizeof buf);
        arm(0.3);
        ssize_t n = write(fd, buf, sizeof buf);      /* a pipe holds 64 KiB: waits, then the alarm */
        printf("wrote %zd %s fired %d\n", n, n < 0 ? strerror(errno) : "-", (int)fired);
        return 0;
    }
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) { perror("open"); return 1; }
    if (strcmp(mode, "restart") == 0) {
        arm(0.2);
        ssize_t n = read(fd, buf, sizeof buf);       /* restarted after the handler; data comes at ~0.6 s */
        printf("restart %zd fired %d\n", n, (int)fired);
        return 0;
    }
    for (int i = 0; i < 5; i++) {
        double t0 = now();
        arm(0.2);
        ssize_t n = read(fd, buf, sizeof buf);
        double late = now() - (t0 + 0.2);
        printf("eintr %zd %s %.2f\n", n, n < 0 && errno == EINTR ? "EINTR" : "other", late * 1000);
    }
    return 0;
}
'''


def test_read_blocked_at_home_interrupted_by_alarm_returns_eintr_within_10ms(tv):
    exe = compile_c(tv, "alarm", ALARM_C)
    p = fifo(tv, "p")
    hold = os.open(p, os.O_RDWR)                     # a writer exists, no data: the read waits at home
    try:
        r = ok(tv.run([exe, tv.p("p"), "eintr"], timeout=30))
    finally:
        os.close(hold)
    lines = r.stdout.split("\n")[:5]
    late = []
    for line in lines:
        word, n, what, ms = line.split()
        assert (word, n, what) == ("eintr", "-1", "EINTR"), describe(r)
        late.append(float(ms))
    assert statistics.median(late) <= 10.0, late
    # A sanitized homestub and wrap-and-run run several times slower: one
    # late sample of 63 ms was seen under ThreadSanitizer.
    assert max(late) <= (250.0 if SANITIZER else 50.0), late


def test_read_blocked_at_home_restarts_after_an_sa_restart_handler(tv):
    exe = compile_c(tv, "alarm", ALARM_C)
    p = fifo(tv, "p")
    hold = os.open(p, os.O_RDWR)
    timer = threading.Timer(0.6, lambda: os.write(hold, b"late data"))
    timer.start()
    try:
        r = ok(tv.run([exe, tv.p("p"), "restart"], timeout=30))
    finally:
        timer.join()
        os.close(hold)
    assert r.stdout == "restart 9 fired 1\n", describe(r)


def test_blocked_write_to_a_home_pipe_interrupted_reports_the_partial_count(tv):
    exe = compile_c(tv, "alarm", ALARM_C)
    p = fifo(tv, "p")
    reader = os.open(p, os.O_RDONLY | os.O_NONBLOCK)  # a reader at home that reads nothing yet
    try:
        r = ok(tv.run([exe, tv.p("p"), "write"], timeout=30))
        word, n, _, _, fired = r.stdout.split()
        assert word == "wrote" and fired == "1", describe(r)
        n = int(n)
        assert 0 < n < (1 << 19), describe(r)
        got = b""
        while True:
            try:
                chunk = os.read(reader, 1 << 20)
            except BlockingIOError:
                break
            if not chunk:
                break
            got += chunk
        assert len(got) == n and set(got) == {ord("w")}   # exactly what the tracee was told
    finally:
        os.close(reader)


STORM_READER = r'''
import hashlib, os, signal, sys
hits = [0]
def on_alarm(*_): hits[0] += 1
signal.signal(signal.SIGALRM, on_alarm)
signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)    # a signal every 2 ms
fd = os.open(sys.argv[1], os.O_RDONLY)
h, n = hashlib.sha256(), 0
while True:
    chunk = os.read(fd, 4096)                           # EINTR is retried by Python (PEP 475)
    if not chunk:
        break
    h.update(chunk); n += len(chunk)
signal.setitimer(signal.ITIMER_REAL, 0, 0)
print(n, h.hexdigest(), hits[0] > 50, flush=True)
'''


def test_signal_storm_during_blocked_reads_loses_no_byte(tv):
    p = fifo(tv, "p")
    data = random.Random(7).randbytes(2_000_000)
    proc = tv.popen(py(STORM_READER, tv.p("p")))

    def writer():
        fd = os.open(p, os.O_WRONLY)                   # waits for the tracee's open at home
        time.sleep(0.4)                                # the first read waits at home through ~200 signals
        rnd = random.Random(8)
        i = 0
        while i < len(data):
            k = rnd.randint(1, 70000)
            os.write(fd, data[i:i + k])
            i += k
            if rnd.random() < 0.3:
                time.sleep(rnd.random() * 0.01)       # let reads wait at home, under the storm
        os.close(fd)

    w = threading.Thread(target=writer)
    w.start()
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("storm reader hung")
    w.join(10)
    assert proc.returncode == 0, err.decode()
    n, digest, stormed = out.decode().split()
    assert int(n) == len(data), err.decode()
    assert digest == hashlib.sha256(data).hexdigest()
    assert stormed == "True"


FIFO_OPEN_UNDER_ITIMER = r'''
import hashlib, os, signal, sys
signal.signal(signal.SIGALRM, lambda *a: None)
signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
fd = os.open(sys.argv[1], os.O_RDONLY)      # interrupted and restarted every 50 ms until a writer comes
data = b""
while True:
    chunk = os.read(fd, 65536)
    if not chunk:
        break
    data += chunk
print(len(data), hashlib.sha256(data).hexdigest(), flush=True)
'''


def test_fifo_open_and_read_under_a_50ms_interval_timer_get_the_data(tv):
    p = fifo(tv, "p")
    data = b"written at home after 1.5 s\n" * 1000
    proc = tv.popen(py(FIFO_OPEN_UNDER_ITIMER, tv.p("p")))
    time.sleep(1.5)
    fd = os.open(p, os.O_WRONLY)
    os.write(fd, data)
    os.close(fd)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("reader hung")
    assert out.decode().split() == [str(len(data)), hashlib.sha256(data).hexdigest()], err.decode()


LOCK_WAIT_ALARM = r'''
import fcntl, os, signal, sys, time
class Alarm(Exception): pass
def on_alarm(*_): raise Alarm()
signal.signal(signal.SIGALRM, on_alarm)
fd = os.open(sys.argv[1], os.O_RDWR)
signal.alarm(1)
t0 = time.monotonic()
try:
    fcntl.lockf(fd, fcntl.LOCK_EX)          # F_SETLKW: waits at home for the holder
    print("granted", flush=True)
except Alarm:
    print("interrupted", round(time.monotonic() - t0, 3), flush=True)
'''


def test_lock_wait_at_home_is_interrupted_by_a_signal(tv):
    import fcntl
    tv.both("l.dat", "home\n", "decoy\n")
    hfd = os.open(tv.homedata / "l.dat", os.O_RDWR)
    fcntl.lockf(hfd, fcntl.LOCK_EX)                    # held at home for the whole test
    try:
        r = ok(tv.run(py(LOCK_WAIT_ALARM, tv.p("l.dat")), timeout=20))
    finally:
        os.close(hfd)
    word, took = r.stdout.split()
    assert word == "interrupted", describe(r)
    # 1.221 s was seen under ThreadSanitizer, which slows every step.
    assert 0.95 <= float(took) < (1.5 if SANITIZER else 1.2), describe(r)


# -- 4. many threads, real builds ---------------------------------------------

STORM_16 = r'''
import hashlib, os, random, sys, threading
d = sys.argv[1]
out = {}
def reader(i):
    rnd = random.Random(i)
    fd = os.open(f"{d}/f{i}", os.O_RDONLY)
    h, off = hashlib.sha256(), 0
    while True:
        k = rnd.randint(1, 200000)
        chunk = os.pread(fd, k, off) if rnd.random() < 0.5 else os.read(fd, k)
        if not chunk:
            break
        h.update(chunk); off += len(chunk)
        os.lseek(fd, off, os.SEEK_SET)
    os.close(fd)
    out[i] = h.hexdigest()
ts = [threading.Thread(target=reader, args=(i,)) for i in range(16)]
for t in ts: t.start()
for t in ts: t.join()
for i in range(16): print(i, out[i], flush=True)
'''


def test_16_threads_reading_16_home_files_get_every_byte_right(tv):
    (tv.homedata / "d").mkdir()
    want = {}
    for i in range(16):
        data = random.Random(100 + i).randbytes(1_000_000 + i * 4097)
        (tv.homedata / "d" / f"f{i}").write_bytes(data)
        (tv.view / "d").mkdir(exist_ok=True)
        (tv.view / "d" / f"f{i}").write_bytes(b"decoy")
        want[i] = hashlib.sha256(data).hexdigest()
    r = ok(tv.run(py(STORM_16, tv.p("d")), timeout=120))
    got = dict(line.split() for line in r.stdout.splitlines())
    assert got == {str(i): h for i, h in want.items()}, describe(r)


def test_make_j8_of_a_c_project_whose_sources_are_at_home(tv):
    proj = tv.homedata / "proj"
    proj.mkdir()
    (tv.view / "proj").mkdir()                       # the target has the directory, empty
    n = 24
    for i in range(n):
        (proj / f"u{i}.c").write_text(f"int u{i}(void) {{ return {i + 1}; }}\n")
    decls = "".join(f"int u{i}(void);\n" for i in range(n))
    calls = " + ".join(f"u{i}()" for i in range(n))
    (proj / "main.c").write_text(f'#include <stdio.h>\n{decls}int main(void) {{ printf("%d\\n", {calls}); return 0; }}\n')
    objs = " ".join(f"u{i}.o" for i in range(n)) + " main.o"
    (proj / "Makefile").write_text(f"app: {objs}\n\tgcc -o app {objs}\n%.o: %.c\n\tgcc -O1 -c $< -o $@\n")
    r = ok(tv.run(["/usr/bin/make", "-j8"], cwd=tv.view / "proj", timeout=300))
    assert (proj / "app").exists(), describe(r)
    assert list((tv.view / "proj").iterdir()) == []
    run = subprocess.run([str(proj / "app")], capture_output=True, text=True)
    assert run.stdout == f"{n * (n + 1) // 2}\n"


# -- 5. credentials at home ---------------------------------------------------

DROP_PRIVILEGES = r'''
import errno, os, sys
d = sys.argv[1]
def try_(what, f):
    try:
        f(); print(what, "ok", flush=True)
    except OSError as e:
        print(what, errno.errorcode[e.errno], flush=True)
os.mkdir(f"{d}/made-as-root")
os.setgroups([])
os.setegid(65534)
os.seteuid(65534)
try_("chmod", lambda: os.chmod(f"{d}/root-owned.txt", 0o666))
try_("create", lambda: os.close(os.open(f"{d}/closed/new.txt", os.O_CREAT | os.O_WRONLY, 0o644)))
try_("mkdir", lambda: os.mkdir(f"{d}/open/made-as-nobody"))
try_("read-0600", lambda: open(f"{d}/secret.txt").read())
os.seteuid(0)                                   # the saved uid lets it come back
try_("read-0600-again", lambda: open(f"{d}/secret.txt").read())
'''


def test_calls_act_at_home_with_the_tracee_threads_credentials(tv):
    if os.geteuid() != 0:
        pytest.skip("needs root: the home adopts credentials only when privileged")
    tv.both("root-owned.txt", "home\n", "decoy\n")
    tv.both("secret.txt", "home secret\n", "decoy\n")
    os.chmod(tv.homedata / "secret.txt", 0o600)
    for name, mode in (("closed", 0o755), ("open", 0o777)):
        (tv.homedata / name).mkdir()
        os.chmod(tv.homedata / name, mode)
    r = ok(tv.run(py(DROP_PRIVILEGES, tv.p()), timeout=30))
    assert r.stdout.splitlines() == [
        "chmod EPERM", "create EACCES", "mkdir ok", "read-0600 EACCES", "read-0600-again ok",
    ], describe(r)
    made = os.stat(tv.homedata / "open" / "made-as-nobody")
    assert (made.st_uid, made.st_gid) == (65534, 65534)
    assert os.stat(tv.homedata / "made-as-root").st_uid == 0
    assert (tv.homedata / "root-owned.txt").stat().st_mode & 0o777 == 0o644
    assert not (tv.homedata / "closed" / "new.txt").exists()


# -- 6. the shell tools people reach for ----------------------------------------

def test_timeout_kills_a_cat_blocked_on_a_home_fifo_and_the_session_goes_on(tv):
    fifo(tv, "p")
    tv.both("f.txt", "home file\n", "decoy\n")
    t0 = time.monotonic()
    r = ok(tv.run([SH, "-c", "timeout 1 cat p; echo rc=$?; cat f.txt"], timeout=20))
    assert r.stdout == "rc=124\nhome file\n", describe(r)
    assert time.monotonic() - t0 < 10


def test_flock_tool_waits_for_a_home_holder_and_gives_up_on_its_deadline(tv):
    import fcntl
    tv.both("l.dat", "home\n", "decoy\n")
    hfd = os.open(tv.homedata / "l.dat", os.O_RDONLY)
    fcntl.flock(hfd, fcntl.LOCK_EX)                          # a process at home holds it
    timer = threading.Timer(1.5, lambda: fcntl.flock(hfd, fcntl.LOCK_UN))
    timer.start()
    try:
        # flock -w arms an alarm: the signal interrupts the wait at home.
        r = ok(tv.run([SH, "-c", "flock -w 0.3 l.dat -c true; echo first=$?; flock l.dat -c 'echo got'"], timeout=30))
    finally:
        timer.join()
        os.close(hfd)
    assert r.stdout == "first=1\ngot\n", describe(r)
