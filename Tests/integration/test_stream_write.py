"""`streamWrite` (the up pump's write) at the wire, against a real homestub:
answered as soon as its turn has come, before home writes; later ones wait
for the earlier ones to end and keep their order; an error home hits after
answering is the next one's answer; an empty one answers once every earlier
one has ended. A FIFO at home stands in for the socket: its 64 KiB buffer
holds a write at home until the test reads."""

import os
import select
import socket
import struct
import time

from test_protocol import ECHO, OPENAT, ROOT_DIR, authenticate, connect, frame, reply

STREAM_WRITE = 85
BIG = 300 * 1024   # well past the FIFO's buffer: home's write waits for our reads


def readable(c, seconds: float) -> bool:
    return bool(select.select([c.sock], [], [], seconds)[0])


def open_at_home(tv, c, name: str, flags: int, ident: int) -> int:
    c.sendall(frame(OPENAT, (ROOT_DIR, flags, 0, 0), tv.p(name).encode() + b"\0", ident=ident))
    op, handle, _ = reply(c)
    assert op == OPENAT and handle >= 0, handle
    return handle


def read_exactly(fd: int, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        assert chunk, f"end of file after {len(data)} of {n} bytes"
        data += chunk
    return data


def test_stream_writes_are_answered_before_they_write_and_keep_their_order(tv):
    os.mkfifo(tv.homedata / "p", 0o666)
    first, second = bytes(i % 251 for i in range(BIG)), b"second write\n"
    with connect(tv) as s:
        c = authenticate(tv, s)
        handle = open_at_home(tv, c, "p", os.O_RDWR, 1)
        c.sendall(frame(STREAM_WRITE, (handle,), first, ident=2))
        # Answered while home still waits to write most of it (nobody reads yet).
        assert reply(c) == (STREAM_WRITE, BIG, b"")
        c.sendall(frame(STREAM_WRITE, (handle,), second, ident=3))
        c.sendall(frame(ECHO, (4,), ident=4))
        assert reply(c) == (ECHO, 4, b"\0" * 4)       # not behind the writes
        assert not readable(c, 0.3)                   # the second waits for the first to end
        r = os.open(tv.homedata / "p", os.O_RDONLY)
        try:
            assert read_exactly(r, BIG + len(second)) == first + second
            assert reply(c) == (STREAM_WRITE, len(second), b"")
            c.sendall(frame(STREAM_WRITE, (handle,), ident=5))   # empty: its turn has come
            assert reply(c) == (STREAM_WRITE, 0, b"")
        finally:
            os.close(r)


def test_an_error_after_the_answer_is_the_next_stream_writes_answer(tv):
    os.mkfifo(tv.homedata / "q", 0o666)
    with connect(tv) as s:
        c = authenticate(tv, s)
        r = os.open(tv.homedata / "q", os.O_RDONLY | os.O_NONBLOCK)
        handle = open_at_home(tv, c, "q", os.O_WRONLY, 1)
        c.sendall(frame(STREAM_WRITE, (handle,), b"x" * BIG, ident=2))
        assert reply(c) == (STREAM_WRITE, BIG, b"")
        time.sleep(0.2)            # home has filled the FIFO and waits
        os.close(r)                # no reader left: home's write ends with EPIPE
        c.sendall(frame(STREAM_WRITE, (handle,), b"after", ident=3))
        assert reply(c) == (STREAM_WRITE, -32, b"")   # -EPIPE, and nothing written
        c.sendall(frame(STREAM_WRITE, (handle,), ident=4))
        assert reply(c) == (STREAM_WRITE, -32, b"")
        c.sendall(frame(ECHO, (4,), ident=5))
        assert reply(c) == (ECHO, 4, b"\0" * 4)       # the session goes on
