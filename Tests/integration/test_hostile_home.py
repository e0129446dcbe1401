"""A client that trusts nothing from home. A fake home (a Python script
behind --home-command, speaking the protocol) lies in one way per test: a
read reply longer than asked, a struct of the wrong size, a reply to a
request nobody made, a reply of another op. Each time the program gets EIO
(never more bytes than it asked for, never a crash) and wrap-and-run says
what home did wrong."""

import re
import signal
import sys

import pytest

from conftest import WRAP, describe, run_bounded

FAKE_HOME = r'''
import os, struct, sys
mode = sys.argv[1]
inp, out = sys.stdin.buffer, sys.stdout.buffer

def read_frame():
    header = inp.read(16)
    if len(header) < 16:
        sys.exit(0)
    length, op, flags, ident = struct.unpack("<IHHQ", header)
    return op, ident, inp.read(length - 16)

def send(op, ident, result, payload=b"", flags=1):
    out.write(struct.pack("<IHHQq", 24 + len(payload), op, flags, ident, result) + payload)
    out.flush()

def handshake_frame(op, scalars, payload=b""):
    body = b"".join(struct.pack("<q", s) for s in scalars) + payload
    out.write(struct.pack("<IHHQ", 16 + len(body), op, 0, 0) + body)

read_frame()                                              # hello
handshake_frame(2, (0x3130524548544554, 1, 0, 0), os.urandom(32))   # challenge, no auth
handshake_frame(4, ())                                    # welcome
out.flush()
while True:
    op, ident, body = read_frame()
    if op == 16:                                          # openat: handle 5
        send(op, ident, 5)
    elif op == 18:                                        # read
        count = struct.unpack("<q", body[8:16])[0]
        if mode == "inflated":
            send(op, ident, count + 65536, b"A" * (count + 65536))
        elif mode == "unasked":
            send(op, ident + (1 << 16), count, b"A" * count)
        elif mode == "wrong-op":
            send(17, ident, 0)
        elif mode == "request":
            send(op, ident, count, b"A" * count, flags=0)
        else:
            send(op, ident, min(count, 4), b"A" * min(count, 4))
    elif op in (23, 24):                                  # fstat, statx
        send(op, ident, 0, b"\0" * (100 if mode == "short-stat" else 256))
    elif op == 17 or op == 36:
        send(op, ident, 0)
    else:
        send(op, ident, -38)                              # ENOSYS
'''

PROGRAM = r'''
import os, sys
fd = os.open("/data/f", os.O_RDONLY)
try:
    if sys.argv[1] == "stat":
        print("size", os.fstat(fd).st_size, flush=True)
    else:
        print("got", len(os.read(fd, 4)), flush=True)
except OSError as e:
    print("errno", e.errno, flush=True)
'''


def run_against(tmp_path, mode, what="read"):
    fake = tmp_path / "fake_home.py"
    fake.write_text(FAKE_HOME)
    argv = [str(WRAP), "--home-command", f"{sys.executable} {fake} {mode}", "--local", "/", "--forward", "/data",
            "--", sys.executable, "-c", PROGRAM, what]
    return run_bounded(argv, cwd=str(tmp_path), timeout=30)


def test_an_honest_fake_home_is_served(tmp_path):
    r = run_against(tmp_path, "honest")
    assert (r.returncode, r.stdout) == (0, "got 4\n"), describe(r)


@pytest.mark.parametrize("mode, said", [
    ("inflated", r"exceeds the 4 bytes asked for"),
    ("unasked", r"not in flight"),
    ("wrong-op", r"answered a read request with a close reply"),
    ("request", r"malformed frame|sent a request"),
])
def test_a_lying_read_reply_gives_eio_never_more_bytes_or_a_crash(tmp_path, mode, said):
    r = run_against(tmp_path, mode)
    assert r.returncode == 0 and r.stdout == "errno 5\n", describe(r)   # EIO, and the program lived on
    assert r.returncode != 128 + signal.SIGSEGV
    assert any(l.startswith("wrap-and-run: ") and re.search(said, l) for l in r.stderr.splitlines()), describe(r)


def test_a_stat_reply_of_the_wrong_size_gives_eio(tmp_path):
    r = run_against(tmp_path, "short-stat", "stat")
    assert (r.returncode, r.stdout) == (0, "errno 5\n"), describe(r)
    assert "100 bytes where the struct is 256" in r.stderr, describe(r)
