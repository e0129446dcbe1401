"""The small-read cache (issue 9, point 5) in the two-view harness.

A tracee reads a small forwarded file whole again and again, so the session
keeps its bytes (`ReadCache.contents`); then something changes the file: the
tracee itself, this test process at home, or a second session. The next
read must see the change. The files exist only at home (the target has a
decoy of the same name), and `--stats` counts the cache's hits, so a test
of "served from the cache" fails when nothing was kept.
"""

from __future__ import annotations

import os
import re
import time

from conftest import PY, CommandTracee, command_program, describe

# Longer than an inotify wake-up plus one wire hop on a loaded machine.
WINDOW = 0.2

SERVER = command_program(r'''
if cmd == "cat":
    with open(a[0], "rb") as f: out = f.read().decode().replace("\n", "|") or "-"
elif cmd == "open": held[a[0]] = os.open(a[1], os.O_RDONLY); out = "ok"
elif cmd == "read": out = repr(os.read(held[a[0]], int(a[1])))
elif cmd == "pread": out = repr(os.pread(held[a[0]], int(a[1]), int(a[2])))
elif cmd == "seek": out = str(os.lseek(held[a[0]], int(a[1]), int(a[2])))
elif cmd == "readv":
    b = bytearray(int(a[1])); n = os.readv(held[a[0]], [b]); out = repr(bytes(b[:n]))
elif cmd == "dup2": os.dup2(held[a[0]], int(a[1])); held[a[2]] = int(a[1]); out = "ok"
elif cmd == "close": os.close(held.pop(a[0])); out = "ok"
elif cmd == "write":
    with open(a[0], "w") as f: f.write(a[1])
    out = "ok"
elif cmd == "append":
    with open(a[0], "a") as f: f.write(a[1])
    out = "ok"
''', prelude=r'''
held = {}
''')



def cache_line(stats: str) -> tuple[int, int]:
    m = re.search(r"small-read cache: (\d+) hits, (\d+) files kept", stats)
    assert m, f"no small-read cache line in --stats:\n{stats}"
    return int(m.group(1)), int(m.group(2))


def warm(t, path: str) -> str:
    """Reads path whole until it is kept (first read plain, second watches
    it, third keeps it); returns its content."""
    first = t("cat", path)
    for _ in range(4):
        assert t("cat", path) == first
    return first


def warmed(tv, content: str) -> tuple[CommandTracee, str]:
    """A file f with `content` at home (a decoy on the target), and a
    tracee that has read it until it is kept; returns the tracee and f."""
    tv.home_file("f", content)
    tv.decoy("f", "decoy " + content)
    tv.start_home()
    t = CommandTracee(tv, SERVER)
    f = tv.p("f")
    assert warm(t, f) == content.replace("\n", "|")
    return t, f


def test_a_file_read_again_and_again_is_served_from_the_cache(tv):
    t, f = warmed(tv, "home-data")
    for _ in range(10):
        assert t("cat", f) == "home-data"
    hits, kept = cache_line(t.finish())
    assert kept >= 1 and hits >= 10, (hits, kept)


def test_changes_at_home_are_seen_by_the_next_read(tv):
    t, f = warmed(tv, "one")
    (tv.homedata / "f").write_text("two, longer")
    time.sleep(WINDOW)
    assert t("cat", f) == "two, longer"
    warm(t, f)
    with open(tv.homedata / "f", "a") as h:
        h.write("+more")
    time.sleep(WINDOW)
    assert t("cat", f) == "two, longer+more"
    warm(t, f)
    # Another file takes its name.
    (tv.homedata / "g").write_text("replacement")
    os.rename(tv.homedata / "g", tv.homedata / "f")
    time.sleep(WINDOW)
    assert t("cat", f) == "replacement"
    warm(t, f)
    os.unlink(tv.homedata / "f")
    time.sleep(WINDOW)
    assert t("cat", f) == "ENOENT"
    assert cache_line(t.finish())[0] > 0


def test_the_sessions_own_writes_are_seen_by_its_next_read(tv):
    t, f = warmed(tv, "a")
    assert t("append", f, "b") == "ok"
    assert t("cat", f) == "ab"
    warm(t, f)
    assert t("write", f, "c") == "ok"
    assert t("cat", f) == "c"
    assert (tv.homedata / "f").read_text() == "c"
    assert cache_line(t.finish())[0] > 0


def test_another_session_s_write_is_seen(tv):
    t, f = warmed(tv, "before")
    r = tv.run([PY, "-c", "import sys; open(sys.argv[1], 'w').write('after')", f])
    assert r.returncode == 0, describe(r)
    time.sleep(WINDOW)
    assert t("cat", f) == "after"
    assert cache_line(t.finish())[0] > 0


def test_reads_seeks_and_preads_on_a_served_handle_behave_as_natively(tv):
    text = "".join(f"{i}\n" for i in range(1000))
    t, f = warmed(tv, text)
    data = text.encode()
    assert t("open", "h", f) == "ok"
    assert t("seek", "h", 0, os.SEEK_CUR) == "0"
    assert t("read", "h", 10) == repr(data[:10])
    assert t("seek", "h", 0, os.SEEK_CUR) == "10"
    assert t("pread", "h", 4, 20) == repr(data[20:24])
    assert t("pread", "h", 100, len(data) - 3) == repr(data[-3:])
    assert t("seek", "h", 0, os.SEEK_CUR) == "10"
    assert t("seek", "h", -5, os.SEEK_END) == str(len(data) - 5)
    assert t("read", "h", 100) == repr(data[-5:])
    assert t("read", "h", 100) == repr(b"")
    assert t("seek", "h", 3, os.SEEK_SET) == "3"
    assert t("read", "h", 2) == repr(data[3:5])
    assert t("seek", "h", 7, os.SEEK_CUR) == "12"
    assert t("read", "h", 3) == repr(data[12:15])
    assert t("seek", "h", len(data) + 50, os.SEEK_SET) == str(len(data) + 50)
    assert t("read", "h", 10) == repr(b"")
    assert t("seek", "h", -1, os.SEEK_SET) == "EINVAL"
    assert t("close", "h") == "ok"
    hits, _ = cache_line(t.finish())
    assert hits >= 5, hits


def test_other_calls_on_a_served_handle_go_on_from_the_served_offset(tv):
    """readv and a dup2 onto a stream view use the offset at home: it
    must first be put where the cache's reads left it."""
    text = "0123456789abcdefghijklmnopqrstuvwxyz"
    t, f = warmed(tv, text)
    assert t("open", "h", f) == "ok"
    assert t("read", "h", 4) == repr(b"0123")
    assert t("readv", "h", 4) == repr(b"4567")
    assert t("read", "h", 2) == repr(b"89")
    assert t("open", "k", f) == "ok"
    assert t("read", "k", 10) == repr(b"0123456789")
    assert t("dup2", "k", 7, "v") == "ok"
    assert t("read", "v", 5) == repr(b"abcde")
    assert t("read", "k", 3) == repr(b"fgh")
    hits, _ = cache_line(t.finish())
    assert hits >= 2, hits


def test_a_file_past_the_bound_is_read_at_home_and_never_kept(tv):
    big = "x" * (64 * 1024 + 1)
    tv.home_file("big", big)
    tv.decoy("big", "decoy")
    tv.start_home()
    t = CommandTracee(tv, SERVER)
    for _ in range(6):
        assert t("cat", tv.p("big")) == big
    hits, kept = cache_line(t.finish())
    assert (hits, kept) == (0, 0)


def test_no_cache_reads_every_time_at_home(tv):
    tv.home_file("f", "home-data")
    tv.decoy("f", "decoy")
    tv.start_home()
    t = CommandTracee(tv, SERVER, ["--no-cache"])
    for _ in range(6):
        assert t("cat", tv.p("f")) == "home-data"
    (tv.homedata / "f").write_text("changed")
    assert t("cat", tv.p("f")) == "changed"
    stats = t.finish()
    assert "small-read cache" not in stats
