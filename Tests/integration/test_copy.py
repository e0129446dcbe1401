"""`copy` rules (bind by value): a file is fetched from home into the local
content-addressed cache once, then opened locally; a change at home is seen
by the next open; corrupt entries are fetched again; concurrent sessions
leave one entry; --cache-max evicts the least recently used; writes fail
with EROFS. `--stats` counts what was fetched, so "served from the cache"
fails when it was not."""

import hashlib
import os
import re
import stat
import subprocess
import time

from conftest import MIN_ENV, PY, PY_ERRNAME, describe, run_bounded, write
from test_policy_file import rule

WINDOW = 0.2  # as test_coherence: an invalidation crosses in far less

READER = PY_ERRNAME + r'''
import mmap, os, sys
def first(data):
    return data[:40].split(b"\n")[0].decode(errors="replace")
for line in sys.stdin:
    cmd, path = line.split()
    try:
        if cmd == "read":
            with open(path, "rb") as f: data = f.read()
            out = f"{len(data)} {__import__('hashlib').sha256(data).hexdigest()} {first(data)}"
        elif cmd == "map":
            fd = os.open(path, os.O_RDONLY)
            m = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
            out = f"{len(m)} {first(bytes(m[:40]))}"
            m.close(); os.close(fd)
        elif cmd == "write":
            open(path, "ab").close(); out = "ok"
        elif cmd == "truncate":
            os.truncate(path, 0); out = "ok"
    except OSError as e:
        out = ename(e)
    print(out, flush=True)
'''


class Session:
    """A reader tracee under wrap-and-run --policy --stats, with its own cache dir."""

    def __init__(self, tv, policy, cache, extra=()):
        env = {**MIN_ENV, "XDG_CACHE_HOME": str(cache)}
        argv = tv.wrap_argv([PY, "-c", READER], extra_wrap_args=["--policy", policy, "--stats", *extra])
        self.proc = subprocess.Popen(argv, cwd=str(tv.view), env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True)

    def __call__(self, cmd, path):
        self.proc.stdin.write(f"{cmd} {path}\n".encode())
        self.proc.stdin.flush()
        line = self.proc.stdout.readline().decode().strip()
        assert line, f"no answer to {cmd} {path}: {self.proc.stderr.read().decode()}"
        return line

    def finish(self):
        """Ends it; returns (fetched files, fetched bytes, opens from the cache)."""
        self.proc.stdin.close()
        assert self.proc.wait(timeout=60) == 0
        err = self.proc.stderr.read().decode()
        m = re.search(r"copy cache: (\d+) fetched from home \((\d+) bytes\), (\d+) opened from the cache", err)
        assert m, err
        self.stats = err
        return tuple(map(int, m.groups()))


def setup(tv, content=b"home copy v1\n" * 100):
    tv.both("lib/data.bin", content, b"DECOY " * 50)
    cache = tv.local / "cache"
    policy = write(tv.local / "copy.toml", rule(tv.p("lib"), "copy"))
    return tv.p("lib/data.bin"), policy, cache


def objects(cache):
    d = cache / "tether" / "objects"
    return sorted(os.listdir(d)) if d.exists() else []


def describe_sha(data):
    head = data[:40].split(b"\n")[0].decode(errors="replace")
    # Stripped as Session strips the line it reads: random bytes may end
    # their head in whitespace (a tab failed this test once in ~40 runs).
    return f"{len(data)} {hashlib.sha256(data).hexdigest()} {head}".strip()


def test_a_copy_is_fetched_once_then_opened_from_the_cache(tv):
    content = b"home copy v1\n" * 100
    path, policy, cache = setup(tv, content)
    s = Session(tv, policy, cache)
    assert s("read", path) == describe_sha(content)   # home's content, not the decoy
    assert s("read", path) == describe_sha(content)
    assert s("map", path) == f"{len(content)} home copy v1"
    assert s.finish() == (1, len(content), 2)
    # The cache: mode 0700, one read-only object named by its hash.
    assert stat.S_IMODE(os.stat(cache / "tether").st_mode) == 0o700
    digest = hashlib.sha256(content).hexdigest()
    assert objects(cache) == [digest]
    obj = cache / "tether" / "objects" / digest
    assert obj.read_bytes() == content and stat.S_IMODE(obj.stat().st_mode) == 0o555
    # A second session checks the entry against home and fetches nothing.
    s = Session(tv, policy, cache)
    assert s("read", path) == describe_sha(content)
    assert s.finish() == (0, 0, 1)


def test_a_change_at_home_is_seen_by_the_next_open(tv):
    path, policy, cache = setup(tv)
    s = Session(tv, policy, cache)
    first = s("read", path)
    assert first.endswith("home copy v1")
    s("read", path)  # now cached, and watched
    write(tv.homedata / "lib/data.bin", b"home copy v2, longer\n" * 7)
    time.sleep(WINDOW)
    got = s("read", path)
    fetched = s.finish()[0]
    assert got == describe_sha(b"home copy v2, longer\n" * 7), s.stats
    assert fetched == 2
    # Same size, same second: the mtime's nanoseconds tell them apart.
    s = Session(tv, policy, cache)
    assert s("read", path).endswith("home copy v2, longer")
    write(tv.homedata / "lib/data.bin", b"home copy v3, longer\n" * 7)
    time.sleep(WINDOW)
    assert s("read", path).endswith("home copy v3, longer")
    assert s.finish()[0] == 1


def test_a_corrupt_or_truncated_entry_is_fetched_again(tv):
    content = b"intact\n" * 1000
    path, policy, cache = setup(tv, content)
    s = Session(tv, policy, cache)
    s("read", path)
    assert s.finish()[0] == 1
    obj = cache / "tether" / "objects" / hashlib.sha256(content).hexdigest()
    for damage in (lambda f: os.truncate(f, 100), lambda f: f.write_bytes(b"X" * len(content))):
        os.chmod(obj, 0o644)
        damage(obj)
        s = Session(tv, policy, cache)
        assert s("read", path) == describe_sha(content)
        assert s.finish() == (1, len(content), 0)
        assert obj.read_bytes() == content


def test_eight_concurrent_sessions_leave_one_valid_entry(tv):
    content = os.urandom(4 << 20)
    path, policy, cache = setup(tv, content)
    sessions = [Session(tv, policy, cache) for _ in range(8)]
    for s in sessions:
        s.proc.stdin.write(f"read {path}\n".encode())
        s.proc.stdin.flush()
    for s in sessions:
        assert s.proc.stdout.readline().decode().strip() == describe_sha(content)
    fetched = sum(s.finish()[0] for s in sessions)
    assert 1 <= fetched <= 8
    digest = hashlib.sha256(content).hexdigest()
    assert objects(cache) == [digest]
    assert hashlib.sha256((cache / "tether" / "objects" / digest).read_bytes()).hexdigest() == digest
    assert os.listdir(cache / "tether" / "tmp") == []
    assert len(os.listdir(cache / "tether" / "index")) == 1


def test_cache_max_evicts_the_least_recently_used(tv):
    a, b = os.urandom(600 << 10), os.urandom(600 << 10)
    tv.both("lib/a.bin", a, b"decoy")
    tv.both("lib/b.bin", b, b"decoy")
    cache = tv.local / "cache"
    policy = write(tv.local / "copy.toml", rule(tv.p("lib"), "copy"))
    for name in ("a.bin", "b.bin"):
        s = Session(tv, policy, cache, extra=["--cache-max", "1M"])
        s("read", tv.p("lib/" + name))
        assert s.finish()[0] == 1
    assert objects(cache) == [hashlib.sha256(b).hexdigest()]
    s = Session(tv, policy, cache, extra=["--cache-max", "1M"])
    assert s("read", tv.p("lib/a.bin")) == describe_sha(a)
    assert s.finish()[0] == 1   # evicted, so fetched again
    assert objects(cache) == [hashlib.sha256(a).hexdigest()]


def test_writes_to_a_copy_path_fail_with_erofs(tv):
    path, policy, cache = setup(tv)
    s = Session(tv, policy, cache)
    assert s("write", path) == "EROFS"
    assert s("truncate", path) == "EROFS"
    s.proc.stdin.close()
    assert s.proc.wait(timeout=60) == 0
    assert (tv.homedata / "lib/data.bin").read_bytes() == b"home copy v1\n" * 100


def test_a_bad_cache_max_is_refused(tv):
    path, policy, cache = setup(tv)
    r = run_bounded(tv.wrap_argv(["/usr/bin/true"], extra_wrap_args=["--policy", policy, "--cache-max", "lots"]))
    assert r.returncode == 125 and "--cache-max" in r.stderr, describe(r)


# A home behind a slow link: homestub --stdio whose output reaches
# wrap-and-run at about 1.5 MB/s.
SLOW_RELAY = r'''
import os, subprocess, sys, threading, time
home = subprocess.Popen(sys.argv[1:], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
def up():
    while (b := os.read(0, 65536)):
        home.stdin.write(b)
    home.stdin.close()
threading.Thread(target=up, daemon=True).start()
while (b := os.read(home.stdout.fileno(), 16384)):
    os.write(1, b)
    time.sleep(0.01)
'''


def test_a_copy_over_a_second_reports_its_progress(bins, scratch):
    from test_spawn import Spawned
    from conftest import HOMESTUB, WRAP
    import shlex
    sp = Spawned(scratch)
    content = os.urandom(4 << 20)
    (sp.home / "big.bin").write_bytes(content)
    (sp.view / "big.bin").write_bytes(b"decoy")
    relay = write(scratch / "relay.py", SLOW_RELAY)
    policy = write(scratch / "copy.toml", rule(str(sp.view), "copy"))
    command = shlex.join([PY, str(relay), str(HOMESTUB), "--stdio", "--root", str(sp.root)])
    argv = [str(WRAP), "--home-command", command, "--policy", str(policy), "--",
            PY, "-c", "import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],'rb').read()).hexdigest())",
            str(sp.view / "big.bin")]
    started = time.monotonic()
    r = run_bounded(argv, cwd=str(sp.view), env={**MIN_ENV, "XDG_CACHE_HOME": str(scratch / "cache")}, timeout=120)
    took = time.monotonic() - started
    assert r.returncode == 0 and r.stdout.strip() == hashlib.sha256(content).hexdigest(), describe(r)
    assert took > 1.5, f"the copy took only {took:.2f} s: the relay did not slow it enough to test"
    assert re.search(rf"copying {re.escape(str(sp.view))}/big.bin from home: \d+ of 4 MiB", r.stderr), describe(r)
    assert f"copied {sp.view}/big.bin (4 MiB)" in r.stderr, describe(r)
