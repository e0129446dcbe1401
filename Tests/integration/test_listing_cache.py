"""The directory-listing cache (issue 9, point 5) in the two-view harness.

A tracee lists a forwarded directory again and again, so the session keeps
its getdents64 records (`ListingCache`); then something changes it: the
tracee itself, this test process at home, or a second session. The next
listing must see the change. `--stats` counts the listing cache's hits, so a
test of "served from the cache" fails when nothing was kept.
"""

from __future__ import annotations

import os
import re
import time

from conftest import PY, CommandTracee, command_program, describe

# Longer than an inotify wake-up plus one wire hop on a loaded machine.
WINDOW = 0.2

SERVER = command_program(r'''
if cmd == "ls": out = ",".join(sorted(os.listdir(a[0]))) or "-"
elif cmd == "count": out = str(len(os.listdir(a[0])))
elif cmd == "open": held = os.open(a[0], os.O_RDONLY | os.O_DIRECTORY); out = "ok"
elif cmd == "step": out = ",".join(step(held, int(a[0]))) or "-"
elif cmd == "raw": out = ",".join(getdents_names(a[0], int(a[1]))) or "-"
elif cmd == "create":
    with open(a[0], "w") as f: f.write("x")
    out = "ok"
elif cmd == "rename": os.rename(a[0], a[1]); out = "ok"
elif cmd == "unlink": os.unlink(a[0]); out = "ok"
elif cmd == "mkdir": os.mkdir(a[0]); out = "ok"
''', prelude=r'''
import ctypes, errno, os, sys
libc = ctypes.CDLL(None, use_errno=True)
held = None
def step(fd, size):
    """The names of one getdents64 call of `size` bytes on fd."""
    buf = ctypes.create_string_buffer(size)
    n = libc.syscall(217, fd, buf, size)
    if n < 0: raise OSError(ctypes.get_errno(), "getdents64")
    names, at = [], 0
    while at < n:
        reclen = int.from_bytes(buf.raw[at + 16:at + 18], "little")
        names.append(buf.raw[at + 19:at + reclen].split(b"\0")[0].decode())
        at += reclen
    return names
def getdents_names(path, size):
    """Every name of path by raw getdents64 calls of `size` bytes."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    buf = ctypes.create_string_buffer(size)
    names = []
    try:
        while True:
            n = libc.syscall(217, fd, buf, size)
            if n < 0: raise OSError(ctypes.get_errno(), "getdents64")
            if n == 0: return names
            at = 0
            while at < n:
                reclen = int.from_bytes(buf.raw[at + 16:at + 18], "little")
                names.append(buf.raw[at + 19:at + reclen].split(b"\0")[0].decode())
                at += reclen
    finally:
        os.close(fd)
''')

# opendir/readdir/telldir/seekdir/rewinddir through glibc: the names of a
# whole read, of a read after rewinddir, and of a read after seekdir back to
# the position telldir gave after the third entry.
DIRWALK = r'''
import ctypes, os, sys
libc = ctypes.CDLL(None)
class Dirent(ctypes.Structure):
    _fields_ = [("ino", ctypes.c_uint64), ("off", ctypes.c_int64), ("reclen", ctypes.c_uint16),
                ("type", ctypes.c_uint8), ("name", ctypes.c_char * 256)]
libc.opendir.restype = ctypes.c_void_p
libc.readdir.restype = ctypes.POINTER(Dirent)
libc.readdir.argtypes = libc.telldir.argtypes = libc.rewinddir.argtypes = libc.closedir.argtypes = [ctypes.c_void_p]
libc.telldir.restype = ctypes.c_long
libc.seekdir.argtypes = [ctypes.c_void_p, ctypes.c_long]
path = sys.argv[1]
for _ in range(5):
    os.listdir(path)
d = libc.opendir(path.encode())
def rest(limit=None):
    out = []
    while limit is None or len(out) < limit:
        e = libc.readdir(d)
        if not e: break
        out.append(e.contents.name.decode())
    return out
whole = rest()
libc.rewinddir(d)
first = rest(3)
pos = libc.telldir(d)
after = rest()
libc.seekdir(d, pos)
again = rest()
libc.closedir(d)
print(whole == first + after, after == again, len(whole))
print(",".join(whole))
print(",".join(again))
'''



def hits(stats: str) -> int:
    m = re.search(r"listing cache: (\d+) hits", stats)
    assert m, f"no listing cache line in --stats:\n{stats}"
    return int(m.group(1))


def warm(t, d: str) -> str:
    """Lists d until its listing is kept (first listing plain, second
    watches it, third keeps it); returns the listing."""
    first = t("ls", d)
    for _ in range(4):
        assert t("ls", d) == first
    return first


def test_a_repeated_listing_is_served_from_the_cache(tv):
    for name in ("a", "b", "c"):
        tv.home_file(f"d/{name}", name)
    tv.decoy("d/decoy-only", "x")
    tv.start_home()
    t = CommandTracee(tv, SERVER)
    assert warm(t, tv.p("d")) == "a,b,c"
    for _ in range(10):
        assert t("ls", tv.p("d")) == "a,b,c"
        # Two records a call: served a slice at a time.
        assert t("raw", tv.p("d"), 64).count(",") == 4
    assert hits(t.finish()) >= 20


def test_changes_at_home_are_seen_by_the_next_listing(tv):
    tv.home_file("d/a", "a")
    tv.home_file("d/b", "b")
    tv.start_home()
    t = CommandTracee(tv, SERVER)
    d = tv.p("d")
    assert warm(t, d) == "a,b"
    (tv.homedata / "d" / "new").write_text("n")
    time.sleep(WINDOW)
    assert t("ls", d) == "a,b,new"
    warm(t, d)
    os.unlink(tv.homedata / "d" / "a")
    time.sleep(WINDOW)
    assert t("ls", d) == "b,new"
    warm(t, d)
    os.rename(tv.homedata / "d" / "b", tv.homedata / "d" / "c")
    time.sleep(WINDOW)
    assert t("ls", d) == "c,new"
    warm(t, d)
    # The directory itself moved away and another took its name.
    os.rename(tv.homedata / "d", tv.homedata / "old")
    (tv.homedata / "d").mkdir()
    (tv.homedata / "d" / "z").write_text("z")
    time.sleep(WINDOW)
    assert t("ls", d) == "z"
    assert hits(t.finish()) > 0


def warmed(tv):
    """A home directory d holding the file a, and a tracee whose listing
    of it is kept; returns the tracee and d's path."""
    tv.home_file("d/a", "a")
    tv.start_home()
    t = CommandTracee(tv, SERVER)
    d = tv.p("d")
    assert warm(t, d) == "a"
    return t, d


def test_the_sessions_own_changes_are_seen_by_its_next_listing(tv):
    t, d = warmed(tv)
    assert t("create", tv.p("d/b")) == "ok"
    assert t("ls", d) == "a,b"
    warm(t, d)
    assert t("rename", tv.p("d/a"), tv.p("d/c")) == "ok"
    assert t("ls", d) == "b,c"
    warm(t, d)
    assert t("unlink", tv.p("d/b")) == "ok"
    assert t("ls", d) == "c"
    warm(t, d)
    assert t("mkdir", tv.p("d/sub")) == "ok"
    assert t("ls", d) == "c,sub"
    assert (tv.homedata / "d" / "sub").is_dir()
    assert hits(t.finish()) > 0


def test_another_session_s_changes_are_seen(tv):
    t, d = warmed(tv)
    script = ("import os, sys; d = sys.argv[1]\n"
              "open(d + '/born', 'w').write('new')\n"
              "os.rename(d + '/a', d + '/moved')\n")
    r = tv.run([PY, "-c", script, d])
    assert r.returncode == 0, describe(r)
    time.sleep(WINDOW)
    assert t("ls", d) == "born,moved"
    assert hits(t.finish()) > 0


def test_a_listing_changed_while_it_is_served_loses_and_repeats_no_entry(tv):
    names = [f"n{i:03d}" for i in range(40)]
    for n in names:
        tv.home_file(f"d/{n}", n)
    tv.start_home()
    t = CommandTracee(tv, SERVER)
    d = tv.p("d")
    warm(t, d)
    # Small reads: the first calls are served, the change arrives, the rest
    # go home from where the served records left the handle.
    listed = t("raw", d, 200).split(",")
    assert sorted(set(listed) - {".", ".."}) == names and len(listed) == len(set(listed))
    assert t("open", d) == "ok"
    out = t("step", 200).split(",")
    assert len(out) >= 2
    (tv.homedata / "d" / "late").write_text("l")
    time.sleep(WINDOW)
    while True:
        more = t("step", 200)
        if more == "-":
            break
        out += more.split(",")
    assert sorted(set(out) - {".", "..", "late"}) == names and len(out) == len(set(out)), out
    assert t("ls", d).split(",") == sorted(names + ["late"])
    t.finish()


def test_rewinddir_and_seekdir_after_a_cached_listing_behave_as_natively(tv):
    for i in range(30):
        tv.home_file(f"d/entry-{i:02d}", "h")
        tv.decoy(f"d/entry-{i:02d}", "v")
    tv.start_home()
    r = tv.run([PY, "-c", DIRWALK, tv.p("d")], extra_wrap_args=["--stats"])
    assert r.returncode == 0, describe(r)
    native = run_native(tv, DIRWALK, tv.p("d"))
    assert r.stdout.splitlines()[0] == "True True 32", r.stdout
    assert sorted(r.stdout.splitlines()[1].split(",")) == sorted(native.splitlines()[1].split(","))
    assert r.stdout.splitlines()[0] == native.splitlines()[0]
    assert hits(r.stderr) > 0


def run_native(tv, program: str, *args) -> str:
    import subprocess
    r = subprocess.run([PY, "-c", program, *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_a_directory_larger_than_the_bound_lists_fully(tv):
    # 3000 records of about 120 bytes: more than the 256 KiB kept per listing.
    names = sorted(f"{i:05d}-" + "x" * 95 for i in range(3000))
    for n in names:
        tv.home_file(f"big/{n}", "")
    tv.start_home()
    t = CommandTracee(tv, SERVER)
    for _ in range(5):
        assert t("count", tv.p("big")) == "3000"
    listed = t("raw", tv.p("big"), 32768).split(",")
    assert sorted(set(listed) - {".", ".."}) == names and len(listed) == 3002
    t.finish()


def test_no_cache_flag_turns_it_off(tv):
    tv.home_file("d/a", "a")
    tv.start_home()
    t = CommandTracee(tv, SERVER, ["--no-cache"])
    for _ in range(6):
        assert t("ls", tv.p("d")) == "a"
    assert "listing cache" not in t.finish()
