"""Bad peers against a real homestub: a wrong magic, an oversized frame, an
unknown op, a frame cut short. Each ends that session with a logged reason;
the homestub never crashes and keeps serving the next client. Then the
concurrent deputy at the wire: replies out of order, `cancel`, and a handle
closed under a blocked call."""

import hashlib
import hmac
import os
import socket
import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

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


def _read_frame(s):
    if isinstance(s, Sealed):
        return s.read_frame()
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


def recv_exactly(s: socket.socket, n: int):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def session_keys(key: bytes, client_nonce: bytes, server_nonce: bytes):
    """(client to server, server to client): HKDF-SHA256 as the README states."""
    def derive(info: bytes) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=client_nonce + server_nonce, info=info).derive(key)
    return derive(b"tether-v1 frames client to server"), derive(b"tether-v1 frames server to client")


def nonce(counter: int) -> bytes:
    return b"\0" * 4 + struct.pack("<Q", counter)


class Sealed:
    """An authenticated session's stream: frames sealed with AES-256-GCM,
    a key per direction, the frame's position in its direction as nonce, and
    the 4-byte length prefix as associated data."""

    def __init__(self, sock: socket.socket, send_key: bytes, recv_key: bytes):
        self.sock = sock
        self.send_aead, self.recv_aead = AESGCM(send_key), AESGCM(recv_key)
        self.sent = self.received = 0

    def seal(self, plain: bytes, counter=None) -> bytes:
        prefix = struct.pack("<I", len(plain) + 16)
        if counter is None:
            counter, self.sent = self.sent, self.sent + 1
        return prefix + self.send_aead.encrypt(nonce(counter), plain, prefix)

    def sendall(self, plain: bytes) -> None:
        self.sock.sendall(self.seal(plain))

    def read_frame(self):
        prefix = recv_exactly(self.sock, 4)
        if prefix is None:
            return None
        sealed = recv_exactly(self.sock, struct.unpack("<I", prefix)[0])
        if sealed is None:
            return None
        plain = self.recv_aead.decrypt(nonce(self.received), sealed, prefix)
        self.received += 1
        length, op, flags, ident = struct.unpack("<IHHQ", plain[:16])
        assert length == len(plain)
        return op, plain[16:]


def authenticate(tv, s: socket.socket) -> Sealed:
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
    return Sealed(s, *session_keys(key, client_nonce, server_nonce))


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
        c = authenticate(tv, s)
        s.sendall(struct.pack("<IHHQ", 0xFFFFFFFF, 18, 0, 1))   # read, 4 GiB long
        assert read_frame(c) is None
    assert wait_for_log(tv.home, r"protocol error: .*(oversized|too large|length)", since=since, timeout=3.0), tv.home.log()
    still_serves(tv)


def test_unknown_op_after_authentication_closes_the_session(tv):
    since = len(tv.home.log())
    with connect(tv) as s:
        c = authenticate(tv, s)
        c.sendall(frame(0x7777, (), b"x" * 8, ident=5))
        assert read_frame(c) is None
    assert wait_for_log(tv.home, r"protocol error: .*(unknown op|0x7777|30583)", since=since, timeout=3.0), tv.home.log()
    still_serves(tv)


def test_frame_cut_short_then_eof_ends_the_session(tv):
    since = len(tv.home.log())
    with connect(tv) as s:
        c = authenticate(tv, s)
        s.sendall(c.seal(frame(18, (999, 4096), ident=7))[:20])   # a sealed frame cut short
        s.shutdown(socket.SHUT_WR)
        assert read_frame(c) is None
    assert wait_for_log(tv.home, r"session \d+ ended", since=since, timeout=3.0), tv.home.log()
    still_serves(tv)


def test_a_handle_the_session_never_opened_is_ebadf(tv):
    with connect(tv) as s:
        c = authenticate(tv, s)
        c.sendall(frame(18, (3, 16), ident=9))   # read from descriptor 3: not this session's handle
        op, body = read_frame(c)
        assert op == 18 and struct.unpack("<q", body[:8])[0] == -9   # -EBADF


OPENAT, CLOSE, READ, CANCEL, ECHO = 16, 17, 18, 36, 37
ROOT_DIR = -1


def reply(s):
    op, body = read_frame(s)
    return op, struct.unpack("<q", body[:8])[0], body[8:]


def test_a_detached_request_gets_no_reply(tv):
    # Id 0xffff is the client's fire-and-forget channel (a release, a
    # cancel): the home runs it and answers nothing, so the next frame on
    # the stream is the reply to the next request.
    with connect(tv) as s:
        c = authenticate(tv, s)
        c.sendall(frame(OPENAT, (ROOT_DIR, os.O_RDONLY, 0, 0), b".\0", ident=3))
        op, handle, _ = reply(c)
        assert op == OPENAT and handle >= 0
        c.sendall(frame(CLOSE, (handle,), ident=0xffff))
        c.sendall(frame(CANCEL, (12345,), ident=0xffff))
        c.sendall(frame(READ, (handle, 16), ident=4))   # the handle is closed by now
        assert reply(c) == (READ, -9, b"")   # -EBADF, and no reply to the two before it


def test_cancel_of_a_request_that_is_not_blocked_is_ignored(tv):
    with connect(tv) as s:
        c = authenticate(tv, s)
        c.sendall(frame(CANCEL, (12345,), ident=1))
        assert reply(c)[:2] == (CANCEL, 0)
        c.sendall(frame(ECHO, (8,), ident=2))
        assert reply(c) == (ECHO, 8, b"\0" * 8)


def test_blocked_read_answers_out_of_order_and_cancel_ends_it_with_eintr(tv):
    os.mkfifo(tv.homedata / "p", 0o666)
    with connect(tv) as s:
        c = authenticate(tv, s)
        c.sendall(frame(OPENAT, (ROOT_DIR, os.O_RDWR, 0, 0), tv.p("p").encode() + b"\0", ident=1))
        op, handle, _ = reply(c)
        assert op == OPENAT and handle >= 0
        c.sendall(frame(READ, (handle, 100), ident=2))          # waits at home: the FIFO is empty
        c.sendall(frame(ECHO, (4,), ident=3))                   # not behind it
        assert reply(c) == (ECHO, 4, b"\0" * 4)
        # Closing the handle under the blocked read only unlists it: its
        # descriptor stays open (and its number unused) until the read ends.
        c.sendall(frame(CLOSE, (handle,), ident=4))
        assert reply(c)[:2] == (CLOSE, 0)
        tv.both("other.txt", "x\n", "decoy\n")
        c.sendall(frame(OPENAT, (ROOT_DIR, os.O_RDONLY, 0, 0), tv.p("other.txt").encode() + b"\0", ident=5))
        op, other, _ = reply(c)
        assert op == OPENAT and other >= 0 and other != handle, (handle, other)
        c.sendall(frame(CANCEL, (2,), ident=7))
        got = {reply(c)[:2] for _ in range(2)}
        assert got == {(CANCEL, 0), (READ, -4)}, got            # -EINTR: nothing was read
    still_serves(tv)


def test_cancel_after_the_data_arrived_keeps_the_data(tv):
    p = tv.homedata / "p"
    os.mkfifo(p, 0o666)
    with connect(tv) as s:
        c = authenticate(tv, s)
        c.sendall(frame(OPENAT, (ROOT_DIR, os.O_RDWR, 0, 0), tv.p("p").encode() + b"\0", ident=1))
        _, handle, _ = reply(c)
        c.sendall(frame(READ, (handle, 100), ident=2))
        w = os.open(p, os.O_WRONLY)
        os.write(w, b"consumed at home")
        os.close(w)
        assert reply(c) == (READ, 16, b"consumed at home")
        c.sendall(frame(CANCEL, (2,), ident=3))                 # too late: nothing to interrupt
        assert reply(c)[:2] == (CANCEL, 0)


CREDENTIALS = 54


def test_malformed_credentials_are_einval_and_the_session_goes_on(tv):
    with connect(tv) as s:
        c = authenticate(tv, s)
        c.sendall(frame(CREDENTIALS, (1, 0, 0, 3), struct.pack("<I", 5), ident=1))     # 3 groups announced, 1 sent
        assert reply(c)[:2] == (CREDENTIALS, -22)
        c.sendall(frame(CREDENTIALS, (70000, 0, 0, 0), ident=2))                     # no such channel
        assert reply(c)[:2] == (CREDENTIALS, -22)
        c.sendall(frame(CREDENTIALS, (1, 1 << 40, 0, 0), ident=3))                   # uid out of range
        assert reply(c)[:2] == (CREDENTIALS, -22)
        c.sendall(frame(CREDENTIALS, (1, 0, 0, 70000), b"\0" * 4 * 70000, ident=4))  # over NGROUPS_MAX
        assert reply(c)[:2] == (CREDENTIALS, -22)
        c.sendall(frame(ECHO, (4,), ident=5))
        assert reply(c) == (ECHO, 4, b"\0" * 4)


def test_credentials_apply_to_their_channel_only(tv):
    tv.both("secret.txt", "home secret\n", "decoy\n")
    os.chmod(tv.homedata / "secret.txt", 0o600)
    path = tv.p("secret.txt").encode() + b"\0"
    with connect(tv) as s:
        c = authenticate(tv, s)
        c.sendall(frame(CREDENTIALS, (7, 65534, 65534, 0), ident=(1 << 16) | 7))    # channel 7 acts as nobody
        assert reply(c)[:2] == (CREDENTIALS, 0)
        c.sendall(frame(OPENAT, (ROOT_DIR, os.O_RDONLY, 0, 0), path, ident=(2 << 16) | 7))
        assert reply(c)[:2] == (OPENAT, -13)                                      # EACCES, as nobody
        c.sendall(frame(OPENAT, (ROOT_DIR, os.O_RDONLY, 0, 0), path, ident=(3 << 16) | 8))
        op, handle, _ = reply(c)
        assert op == OPENAT and handle >= 0                                       # channel 8: the home's own
