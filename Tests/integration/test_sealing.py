"""Sealed frames at work: after the handshake nothing a relay or a raw peer
slips in, replays, reorders or alters is executed. The session closes with
a logged reason, the program gets EIO, and the file a forged unlinkat named
is still there."""

import os
import socket
import struct
import threading

from conftest import CAT, MIN_ENV, WRAP, describe, run_bounded
from test_failure import assert_wrap_message, wait_for_log
from test_protocol import ECHO, ROOT_DIR, authenticate, connect, frame, read_frame, recv_exactly, reply

UNLINKAT, MKDIRAT = 28, 27


def unlink_frame(tv, name, ident=1):
    return frame(UNLINKAT, (ROOT_DIR, 0), tv.p(name).encode() + b"\0", ident=ident)


def test_a_plain_frame_after_the_handshake_is_not_executed(tv):
    victim = tv.home_file("victim.txt", "still here\n")
    since = len(tv.home.log())
    with connect(tv) as s:
        authenticate(tv, s)
        # The review's injection, unsealed. Home reads its first 4 bytes as a
        # sealed length: 4 more bytes complete that "sealed frame".
        s.sendall(unlink_frame(tv, "victim.txt") + b"\0" * 4)
        assert read_frame(s) is None
    assert wait_for_log(tv.home, r"failed authentication", since=since), tv.home.log()
    assert victim.read_text() == "still here\n"


def test_a_replayed_frame_closes_the_session_after_the_original(tv):
    since = len(tv.home.log())
    with connect(tv) as s:
        c = authenticate(tv, s)
        sealed = c.seal(frame(ECHO, (4,), ident=1))
        s.sendall(sealed)
        assert reply(c) == (ECHO, 4, b"\0" * 4)
        s.sendall(sealed)                                   # the same bytes again
        assert read_frame(c) is None
    assert wait_for_log(tv.home, r"failed authentication", since=since), tv.home.log()


def test_reordered_frames_close_the_session_and_neither_runs(tv):
    with connect(tv) as s:
        c = authenticate(tv, s)
        first = c.seal(frame(MKDIRAT, (ROOT_DIR, 0o755), tv.p("first").encode() + b"\0", ident=1))
        second = c.seal(frame(MKDIRAT, (ROOT_DIR, 0o755), tv.p("second").encode() + b"\0", ident=2))
        s.sendall(second + first)
        assert read_frame(c) is None
    assert not (tv.homedata / "first").exists() and not (tv.homedata / "second").exists()


def test_a_frame_sealed_for_the_other_direction_is_refused(tv):
    # A reflection: the client's own sealed frame sent back as if from the
    # server would need the server's key; here the client's key is used for
    # the server's direction.
    victim = tv.home_file("victim.txt", "still here\n")
    with connect(tv) as s:
        c = authenticate(tv, s)
        c.send_aead, c.recv_aead = c.recv_aead, c.send_aead
        c.sendall(unlink_frame(tv, "victim.txt"))
        assert read_frame(s) is None
    assert victim.read_text() == "still here\n"


class Relay:
    """A TCP relay between wrap-and-run and homestub that passes the
    handshake (two plain frames each way) untouched, then either injects a
    plain frame towards home or flips one bit of home's first sealed frame."""

    def __init__(self, home_port, inject=None, flip_reply=False):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        self.home_port, self.inject, self.flip_reply = home_port, inject, flip_reply
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        client, _ = self.listener.accept()
        home = socket.create_connection(("127.0.0.1", self.home_port))
        threading.Thread(target=self.pump, args=(client, home, True), daemon=True).start()
        self.pump(home, client, False)

    def pump(self, src, dst, to_home):
        try:
            for _ in range(2):                            # hello, authenticate / challenge, welcome
                header = recv_exactly(src, 16)
                body = recv_exactly(src, struct.unpack("<I", header[:4])[0] - 16)
                dst.sendall(header + body)
            if to_home and self.inject:
                dst.sendall(self.inject)
            if not to_home and self.flip_reply:
                prefix = recv_exactly(src, 4)
                sealed = bytearray(recv_exactly(src, struct.unpack("<I", prefix)[0]))
                sealed[5] ^= 0x01
                dst.sendall(prefix + bytes(sealed))
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def run_through(tv, relay, args):
    argv = [str(WRAP), "--home", f"127.0.0.1:{relay.port}", "--key-file", str(tv.home.key), "--", *args]
    return run_bounded(argv, cwd=str(tv.view), timeout=30)


def test_a_relay_injecting_an_unlinkat_gets_the_session_closed_and_the_victim_survives(tv):
    victim = tv.home_file("victim.txt", "still here\n")
    since = len(tv.home.log())
    r = run_through(tv, Relay(tv.home.port, inject=unlink_frame(tv, "victim.txt", ident=0x10002)),
                    [CAT, tv.p("victim.txt")])
    assert wait_for_log(tv.home, r"failed authentication", since=since), tv.home.log()
    assert victim.read_text() == "still here\n"
    assert r.returncode != 0 and r.returncode < 128, describe(r)
    assert_wrap_message(r, r"lost connection|lost the home node")


def test_a_relay_altering_a_reply_gets_eio_and_a_message_never_a_crash(tv):
    tv.both("file.txt", "home\n", "decoy\n")
    r = run_through(tv, Relay(tv.home.port, flip_reply=True), [CAT, tv.p("file.txt")])
    assert r.returncode != 0 and r.returncode < 128, describe(r)
    assert "home\n" not in r.stdout, describe(r)
    assert_wrap_message(r, r"failed to open")
