"""Bad peers against a real homestub: a wrong magic, an oversized frame, an
unknown op, a frame cut short. Each ends that session with a logged reason;
the homestub never crashes and keeps serving the next client."""

import hashlib
import hmac
import os
import socket
import struct

from conftest import CAT, describe
from test_failure import wait_for_log

MAGIC = 0x3130524548544554   # "TETHER01"
HELLO, CHALLENGE, AUTHENTICATE, WELCOME, REFUSED = 1, 2, 3, 4, 5


def frame(op: int, scalars=(), payload=b"", ident=0, length=None) -> bytes:
    body = b"".join(struct.pack("<q", s) for s in scalars) + payload
    return struct.pack("<IHHQ", length if length is not None else 16 + len(body), op, 0, ident) + body


def read_frame(s: socket.socket):
    """The next frame as (op, body); None once the peer has closed (a reset
    counts: closing with our bytes unread makes the kernel send one)."""
    try:
        return _read_frame(s)
    except ConnectionResetError:
        return None


def _read_frame(s: socket.socket):
    header = b""
    while len(header) < 16:
        chunk = s.recv(16 - len(header))
        if not chunk:
            return None
        header += chunk
    length, op, flags, ident = struct.unpack("<IHHQ", header)
    body = b""
    while len(body) < length - 16:
        chunk = s.recv(length - 16 - len(body))
        if not chunk:
            return None
        body += chunk
    return op, body


def connect(tv) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", tv.home.port), timeout=10)
    return s


def authenticate(tv, s: socket.socket) -> None:
    key = tv.key.read_bytes()
    if key.endswith(b"\n"):
        key = key[:-1]
    client_nonce = os.urandom(32)
    s.sendall(frame(HELLO, (MAGIC, 1, 0), client_nonce))
    op, body = read_frame(s)
    assert op == CHALLENGE
    server_nonce = body[32:]
    proof = hmac.new(key, b"tether-v1 client" + server_nonce + client_nonce, hashlib.sha256).digest()
    s.sendall(frame(AUTHENTICATE, (), proof))
    op, body = read_frame(s)
    assert op == WELCOME
    assert body == hmac.new(key, b"tether-v1 server" + client_nonce + server_nonce, hashlib.sha256).digest()


def still_serves(tv):
    tv.both("alive.txt", "home alive\n", "decoy\n")
    r = tv.run([CAT, tv.p("alive.txt")])
    assert (r.returncode, r.stdout) == (0, "home alive\n"), describe(r)


def test_wrong_magic_is_refused_and_logged(tv):
    since = len(tv.home.log())
    with connect(tv) as s:
        s.sendall(frame(HELLO, (0x1234, 1, 0), os.urandom(32)))
        op, body = read_frame(s)
        assert op == REFUSED and struct.unpack("<q", body[:8])[0] == 3   # bad magic
        assert read_frame(s) is None                                    # then closed
    assert wait_for_log(tv.home, r"refused", since=since, timeout=3.0), tv.home.log()
    still_serves(tv)


def test_oversized_frame_after_authentication_closes_the_session(tv):
    since = len(tv.home.log())
    with connect(tv) as s:
        authenticate(tv, s)
        s.sendall(struct.pack("<IHHQ", 0xFFFFFFFF, 18, 0, 1))   # read, 4 GiB long
        assert read_frame(s) is None
    assert wait_for_log(tv.home, r"protocol error: .*(oversized|too large|length)", since=since, timeout=3.0), tv.home.log()
    still_serves(tv)


def test_unknown_op_after_authentication_closes_the_session(tv):
    since = len(tv.home.log())
    with connect(tv) as s:
        authenticate(tv, s)
        s.sendall(frame(0x7777, (), b"x" * 8, ident=5))
        assert read_frame(s) is None
    assert wait_for_log(tv.home, r"protocol error: .*(unknown op|0x7777|30583)", since=since, timeout=3.0), tv.home.log()
    still_serves(tv)


def test_frame_cut_short_then_eof_ends_the_session(tv):
    since = len(tv.home.log())
    with connect(tv) as s:
        authenticate(tv, s)
        s.sendall(frame(18, (999, 4096), ident=7)[:20])   # header plus half a scalar
        s.shutdown(socket.SHUT_WR)
        assert read_frame(s) is None
    assert wait_for_log(tv.home, r"session \d+ ended", since=since, timeout=3.0), tv.home.log()
    still_serves(tv)


def test_a_handle_the_session_never_opened_is_ebadf(tv):
    with connect(tv) as s:
        authenticate(tv, s)
        s.sendall(frame(18, (3, 16), ident=9))   # read from descriptor 3: not this session's handle
        op, body = read_frame(s)
        assert op == 18 and struct.unpack("<q", body[:8])[0] == -9   # -EBADF
