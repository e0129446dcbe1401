"""Unix datagram and seqpacket sockets at home: a socket whose address
(bind, connect, a datagram's destination) is a forwarded path, or an
abstract name while the network is at home, lives at home, with message
boundaries and peer names kept; a local path keeps it on the target. The
home runs in network and mount namespaces of its own (`UnixHome`), with a
tmpfs over `srv/` that only it sees."""
import os
import shutil
import signal
import socket
import stat
import subprocess
import time

import pytest

from conftest import MIN_ENV, PY, describe, run_bounded
from test_sockets import py, serve
from test_unix_sockets import UnixHome

# Servers for the home's namespaces: `unix_dgram_server.py MODE ADDRESS`
# (a leading @ names an abstract address); prints "ready", then one line
# per message: its length, its bytes (the first 24 past 64) and its sender.
# dgram: answers a named sender with the message upper-cased; seqpacket:
# echoes each message upper-cased on its connection.
SERVER = r'''
import socket, sys, threading
mode, name = sys.argv[1], sys.argv[2]
address = "\0" + name[1:] if name.startswith("@") else name
kind = socket.SOCK_DGRAM if mode == "dgram" else socket.SOCK_SEQPACKET
s = socket.socket(socket.AF_UNIX, kind)
s.bind(address)
if mode == "dgram":
    print("ready", flush=True)
    while True:
        d, peer = s.recvfrom(1 << 20)
        print(len(d), repr(d if len(d) <= 64 else d[:24]), repr(peer), flush=True)
        if peer:
            s.sendto(d.upper(), peer)
s.listen(8)
print("ready", flush=True)

def serve(c):
    while True:
        d = c.recv(1 << 20)
        if not d:
            break
        print(len(d), repr(d if len(d) <= 64 else d[:24]), flush=True)
        c.send(d.upper())
    print("eof", flush=True)
    c.close()

while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
'''


class DatagramHome(UnixHome):
    """A UnixHome with datagram and seqpacket servers."""

    def __init__(self, base):
        super().__init__(base)
        (base / "unix_dgram_server.py").write_text(SERVER)

    def dgram_server(self, mode: str, address: str) -> subprocess.Popen:
        p = subprocess.Popen(["nsenter", "-t", str(self.pid), "-n", "-m", "--", PY,
                              str(self.base / "unix_dgram_server.py"), mode, address],
                             stdout=subprocess.PIPE, env=dict(MIN_ENV), start_new_session=True)
        assert p.stdout.readline().strip() == b"ready"
        self.servers.append(p)
        return p

    def stale_socket(self, path):
        """Leaves a socket file at home that no one is bound to."""
        r = self.in_home([PY, "-c", "import socket, sys; socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).bind(sys.argv[1])",
                          str(path)])
        assert r.returncode == 0 and self.is_socket_at_home(path), describe(r)


def lines(p, n):
    """The next n lines a server printed."""
    return [p.stdout.readline().decode().rstrip("\n") for _ in range(n)]


@pytest.fixture
def dnet(tmp_path):
    yield from serve(DatagramHome, tmp_path)


def test_logger_reaches_a_datagram_server_only_home_has(dnet):
    """syslog's way: a datagram socket connected to /dev/log-like path that
    only home has (util-linux logger when installed, else Python's)."""
    path = dnet.srv / "log"
    server = dnet.dgram_server("dgram", str(path))
    if shutil.which("logger"):
        argv = ["logger", "--socket-errors=on", "-u", str(path), "--", "hello from the target"]
    else:
        argv = py(f"""
            import socket
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            s.connect({str(path)!r})
            s.send(b"<13>hello from the target")
        """)
    r = dnet.run(argv)
    assert r.returncode == 0, describe(r)
    line = lines(server, 1)[0]
    assert "hello from the target" in line and line.endswith(" None"), line
    # Without forwarding the target has no such socket.
    r = run_bounded(argv)
    assert r.returncode != 0, describe(r)


def test_boundaries_sender_names_and_truncation(dnet):
    """A traced socket bound to a home path: the file is made at home, not
    on the target; a 1-byte and a 60 KiB datagram arrive as two messages
    both ways, each named by its sender; MSG_TRUNC as the kernel's."""
    server_path, client_path = dnet.srv / "d.sock", dnet.srv / "client.sock"
    server = dnet.dgram_server("dgram", str(server_path))
    r = dnet.run(py(f"""
        import socket
        c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        c.bind({str(client_path)!r})
        print(c.getsockname())
        c.sendto(b"x", {str(server_path)!r})
        c.sendto(b"y" * 61440, {str(server_path)!r})
        d, peer = c.recvfrom(100000)
        print(d, peer)
        d, peer = c.recvfrom(100000)
        print(len(d), set(d), peer)
        c.sendto(b"hello", {str(server_path)!r})
        print(c.recv(2, socket.MSG_TRUNC | socket.MSG_PEEK)[:2], len(c.recv(2, socket.MSG_TRUNC)))
        c.sendto(b"hello", {str(server_path)!r})
        d, _, flags, peer = c.recvmsg(2)
        print(d, flags == socket.MSG_TRUNC, peer)
        c.sendto(b"again", {str(server_path)!r})
        d, _, flags, peer = c.recvmsg(100)
        print(d, flags, peer)
        u = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        u.sendto(b"unnamed", {str(server_path)!r})
        # Once at home, a socket autobinds there: the server answers its
        # abstract name (and maybe "first" too: a sender is named as it is
        # when the server reads).
        v = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        v.sendto(b"first", {str(server_path)!r})
        v.bind("")
        name = v.getsockname()
        v.sendto(b"auto", {str(server_path)!r})
        while (got := v.recvfrom(100))[0] == b"FIRST":
            pass
        print(name[0] == 0 and len(name) == 6, got == (b"AUTO", {str(server_path)!r}))
    """))
    assert r.returncode == 0, describe(r)
    sp, cp = str(server_path), str(client_path)
    assert r.stdout.split("\n") == [
        cp, f"b'X' {sp}", f"61440 {{89}} {sp}", "b'HE' 5", f"b'HE' True {sp}", f"b'AGAIN' 0 {sp}", "True True", ""], describe(r)
    assert lines(server, 6) == [
        f"1 b'x' {cp!r}", f"61440 b'yyyyyyyyyyyyyyyyyyyyyyyy' {cp!r}", f"5 b'hello' {cp!r}", f"5 b'hello' {cp!r}",
        f"5 b'again' {cp!r}", "7 b'unnamed' None"]
    first, auto = lines(server, 2)
    assert first.startswith("5 b'first' ") and auto.startswith("4 b'auto' b'\\x00"), (first, auto)
    # The socket file is at home, not on the target.
    assert dnet.is_socket_at_home(client_path) and not client_path.exists()


def test_a_traced_datagram_server_at_home(dnet):
    """bind at home, readiness in poll and epoll, the sender's name (or an
    unnamed one: no name, as the kernel gives), the answer to a named one."""
    path = dnet.srv / "traced.sock"
    p = subprocess.Popen(dnet.wrap(py(f"""
        import os, select, socket
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind({str(path)!r})
        poller = select.poll()
        poller.register(s, select.POLLIN)
        print("bound", poller.poll(0), flush=True)
        for _ in range(2):
            print("ready", poller.poll(15000)[0][1] & select.POLLIN != 0, flush=True)
            e = select.epoll()
            e.register(s.fileno(), select.EPOLLIN)
            print("epoll", len(e.poll(15)), flush=True)
            d, peer = s.recvfrom(100)
            print("got", d, repr(peer), flush=True)
            if peer:
                s.sendto(d[::-1], peer)
        print("after", poller.poll(0), flush=True)
        os.unlink({str(path)!r})
    """)), cwd=str(dnet.base), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=dict(MIN_ENV), start_new_session=True)
    try:
        assert p.stdout.readline() == b"bound []\n", p.stderr.read1().decode()
        assert dnet.is_socket_at_home(path) and not path.exists()
        r = dnet.in_home([PY, "-c", "import socket, sys; socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)"
                          ".sendto(b'anon', sys.argv[1])", str(path)])
        assert r.returncode == 0, describe(r)
        assert lines(p, 3) == ["ready True", "epoll 1", "got b'anon' None"]
        back = dnet.srv / "back.sock"
        r = dnet.in_home([PY, "-c", "import socket, sys; s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM);"
                          " s.bind(sys.argv[2]); s.sendto(b'stressed', sys.argv[1]); print(s.recvfrom(100))",
                          str(path), str(back)])
        assert r.returncode == 0 and r.stdout == f"(b'desserts', {str(path)!r})\n", describe(r)
        assert lines(p, 4) == ["ready True", "epoll 1", f"got b'stressed' {str(back)!r}", "after []"]
        assert p.wait(timeout=20) == 0, p.stderr.read().decode()
        assert not dnet.is_socket_at_home(path)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)


def test_seqpacket_echo_at_home(dnet):
    """A seqpacket client of a home-only server: boundaries both ways (a
    message past the pumps' splice size too), a
    short read drops the rest of its message (MSG_TRUNC), shutdown reaches home."""
    path = dnet.srv / "sp.sock"
    server = dnet.dgram_server("seqpacket", str(path))
    r = dnet.run(py(f"""
        import socket
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.settimeout(20)
        s.connect({str(path)!r})
        print(s.getpeername())
        s.send(b"x")
        s.send(b"y" * 61440)
        print(s.recv(100000), len(s.recv(100000)))
        s.send(b"z" * 100000)                 # past the pumps' 64 KiB splice size
        s.send(b"w")
        print(len(s.recv(200000)), s.recv(10))
        s.send(b"hello")
        d, _, flags, _ = s.recvmsg(2)
        print(d, flags == socket.MSG_TRUNC)
        s.send(b"bye")
        print(s.recv(100))
        s.shutdown(socket.SHUT_WR)
        print(s.recv(100))
    """))
    assert r.returncode == 0, describe(r)
    assert r.stdout == f"{path}\nb'X' 61440\n100000 b'W'\nb'HE' True\nb'BYE'\nb''\n", describe(r)
    assert lines(server, 7) == ["1 b'x'", "61440 b'yyyyyyyyyyyyyyyyyyyyyyyy'", "100000 b'zzzzzzzzzzzzzzzzzzzzzzzz'",
                                "1 b'w'", "5 b'hello'", "3 b'bye'", "eof"]


def test_a_traced_seqpacket_server_at_home(dnet):
    path = dnet.srv / "tsp.sock"
    p = subprocess.Popen(dnet.wrap(py(f"""
        import os, socket
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        srv.bind({str(path)!r})
        srv.listen(2)
        print("listening", srv.getsockname(), flush=True)
        c, _ = srv.accept()
        print("accepted", c.type == socket.SOCK_SEQPACKET, flush=True)
        for _ in range(2):
            d = c.recv(100000)
            print(len(d), flush=True)
            c.send(d[:3][::-1])
        c.close()
        os.unlink({str(path)!r})
    """)), cwd=str(dnet.base), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=dict(MIN_ENV), start_new_session=True)
    try:
        assert p.stdout.readline().decode() == f"listening {path}\n", p.stderr.read1().decode()
        assert dnet.is_socket_at_home(path) and not path.exists()
        r = dnet.in_home([PY, "-c", "import socket, sys; s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET);"
                          " s.connect(sys.argv[1]); s.send(b'a'); s.send(b'bcd' * 20000);"
                          " print(s.recv(100), s.recv(100), s.recv(100))", str(path)])
        assert r.returncode == 0 and r.stdout == "b'a' b'dcb' b''\n", describe(r)
        assert lines(p, 3) == ["accepted True", "1", "60000"]
        assert p.wait(timeout=20) == 0, p.stderr.read().decode()
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)


def test_abstract_datagrams_follow_the_network_rule(dnet):
    name = f"tether-dgram-{os.getpid()}-{time.monotonic_ns()}"
    server = dnet.dgram_server("dgram", "@" + name)
    code = f"""
        import socket
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        print(s.sendto(b"abstract", "\\0{name}"))
    """
    r = dnet.run(py(code))
    assert r.returncode == 0 and r.stdout == "8\n", describe(r)
    assert lines(server, 1) == ["8 b'abstract' None"]
    r = dnet.run(py(code), extra=["--local-net"])
    assert r.returncode != 0 and "ConnectionRefusedError" in r.stderr, describe(r)


def test_local_paths_and_socketpairs_stay_local(dnet):
    (dnet.base / "loc").mkdir()
    path, server_path = dnet.base / "loc" / "here.sock", dnet.base / "loc" / "server.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(server_path))
    server.settimeout(20)
    try:
        r = dnet.run(py(f"""
            import socket
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            s.bind({str(path)!r})
            print(s.getsockname(), s.sendto(b"local", {str(server_path)!r}))
            a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
            a.send(b"one")
            a.send(b"two")
            print(b.recv(10), b.recv(10))
        """), extra=["--local", str(dnet.base / "loc")])
        assert r.returncode == 0 and r.stdout == f"{path} 5\nb'one' b'two'\n", describe(r)
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        assert server.recvfrom(100) == (b"local", str(path))
    finally:
        server.close()


def test_bad_datagram_addresses_and_sizes_get_the_kernels_errno(dnet):
    """On a socket of the target and on one at home: lengths past
    sockaddr_un or short of its family (EINVAL), a missing home path
    (ENOENT), a socket file no one is bound to (ECONNREFUSED), a datagram
    larger than the send buffer (EMSGSIZE); never a crash."""
    server_path = dnet.srv / "ok.sock"
    server = dnet.dgram_server("dgram", str(server_path))
    dnet.stale_socket(dnet.srv / "stale.sock")
    r = dnet.run(py(f"""
        import ctypes, errno, socket
        libc = ctypes.CDLL(None, use_errno=True)
        def address(path):
            return ctypes.create_string_buffer(b"\\1\\0" + path.encode(), 256)
        def tries(s, name):
            ok = address({str(server_path)!r})
            out = []
            for length in (111, 200, 1, -1):
                rc = libc.sendto(s.fileno(), b"x", 1, 0, ok, length)
                out.append(f"{{length}}:{{errno.errorcode[ctypes.get_errno()] if rc < 0 else rc}}")
            for path, data in (({str(dnet.srv / "none.sock")!r}, b"x"), ({str(dnet.srv / "stale.sock")!r}, b"x"),
                               ({str(server_path)!r}, b"z" * 300000)):
                try:
                    s.sendto(data, path)
                    out.append("sent")
                except OSError as e:
                    out.append(errno.errorcode[e.errno])
            try:
                s.connect({str(dnet.srv / "none.sock")!r})
            except OSError as e:
                out.append(errno.errorcode[e.errno])
            print(name, *out)
        tries(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM), "target")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind({str(dnet.srv / "errs.sock")!r})
        tries(s, "home")
        print(s.sendto(b"still fine", {str(server_path)!r}))
        s.shutdown(socket.SHUT_WR)
        try:
            s.sendto(b"after shutdown", {str(server_path)!r})
        except OSError as e:
            print(errno.errorcode[e.errno])
    """))
    assert r.returncode == 0, describe(r)
    errs = "111:EINVAL 200:EINVAL 1:EINVAL -1:EINVAL ENOENT ECONNREFUSED EMSGSIZE ENOENT"
    assert r.stdout == f"target {errs}\nhome {errs}\n10\nEPIPE\n", describe(r)
    assert lines(server, 1) == [f"10 b'still fine' {str(dnet.srv / 'errs.sock')!r}"]


# sendmmsg(2) and recvmmsg(2) through ctypes (Python has neither): the
# kernel's structs (also test_socket_bulk's), then helpers.
MMSG_TYPES = r'''
import ctypes, socket
libc = ctypes.CDLL(None, use_errno=True)

class iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]

class msghdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32), ("iov", ctypes.POINTER(iovec)),
                ("iovlen", ctypes.c_size_t), ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]

class mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", msghdr), ("len", ctypes.c_uint32)]
'''

MMSG = MMSG_TYPES + r'''
def unix_address(path):
    raw = b"\1\0" + path.encode() + b"\0"
    return ctypes.create_string_buffer(raw, 110), len(raw)

def sendmmsg(s, datagrams, to):
    name, namelen = unix_address(to)
    keep, msgs = [], (mmsghdr * len(datagrams))()
    for m, d in zip(msgs, datagrams):
        b = ctypes.create_string_buffer(d, len(d))
        v = iovec(ctypes.cast(b, ctypes.c_void_p), len(d))
        keep += [b, v]
        m.hdr.name, m.hdr.namelen = ctypes.cast(name, ctypes.c_void_p), namelen
        m.hdr.iov, m.hdr.iovlen = ctypes.pointer(v), 1
    n = libc.sendmmsg(s.fileno(), msgs, len(datagrams), 0)
    return n, [m.len for m in msgs][:max(n, 0)]

def recvmmsg(s, count, size):
    keep, msgs = [], (mmsghdr * count)()
    for m in msgs:
        b, a = ctypes.create_string_buffer(size), ctypes.create_string_buffer(110)
        v = iovec(ctypes.cast(b, ctypes.c_void_p), size)
        keep += [(b, a), v]
        m.hdr.name, m.hdr.namelen = ctypes.cast(a, ctypes.c_void_p), 110
        m.hdr.iov, m.hdr.iovlen = ctypes.pointer(v), 1
    n = libc.recvmmsg(s.fileno(), msgs, count, 0, None)
    out = []
    for (b, a), m in zip(keep[::2], msgs[:max(n, 0)]):
        out.append((b.raw[:min(m.len, size)], m.len, m.hdr.flags, a.raw[2:m.hdr.namelen].rstrip(b"\0").decode()))
    return n, out
'''


def test_sendmmsg_and_recvmmsg_keep_each_datagram(dnet):
    server_path, client_path = dnet.srv / "mm.sock", dnet.srv / "mmc.sock"
    server = dnet.dgram_server("dgram", str(server_path))
    (dnet.base / "mmsg.py").write_text(MMSG)
    r = dnet.run(py(f"""
        import socket, sys
        sys.path.insert(0, {str(dnet.base)!r})
        from mmsg import sendmmsg, recvmmsg
        # A socket of the target: the first destination moves it home.
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        print(sendmmsg(s, [b"one", b"", b"three" * 10], {str(server_path)!r}))
        s.close()
        c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        c.bind({str(client_path)!r})
        print(sendmmsg(c, [b"a", b"bb", b"ccc"], {str(server_path)!r}))
        got = []
        while len(got) < 3:
            n, out = recvmmsg(c, 3, 2)
            got += out
        print(got)
    """))
    assert r.returncode == 0, describe(r)
    sp = str(server_path)
    assert r.stdout == (f"(3, [3, 0, 50])\n(3, [1, 2, 3])\n"
                        f"[(b'A', 1, 0, {sp!r}), (b'BB', 2, 0, {sp!r}), (b'CC', 2, {socket.MSG_TRUNC}, {sp!r})]\n"), describe(r)
    assert lines(server, 6)[:3] == ["3 b'one' None", "0 b'' None", "50 b'threethreethreethreethreethreethreethreethreethree' None"]


def test_udp_at_home_reports_truncation_as_the_kernel(dnet):
    """The receive side is UDP's too: MSG_TRUNC returns the datagram's full
    length and a short recvmsg sets MSG_TRUNC in its flags."""
    port, _ = dnet.server("udpecho")
    r = dnet.run(py(f"""
        import socket
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.connect(("127.0.0.1", {port}))
        u.send(b"datagram")
        print(len(u.recv(3, socket.MSG_TRUNC)))
        u.send(b"datagram")
        d, _, flags, _ = u.recvmsg(3)
        print(d, flags == socket.MSG_TRUNC)
        u.send(b"fits")
        d, _, flags, _ = u.recvmsg(100)
        print(d, flags)
    """))
    assert r.returncode == 0 and r.stdout == "8\nb'DAT' True\nb'FITS' 0\n", describe(r)
