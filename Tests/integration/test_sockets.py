"""Sockets at home: the home runs in a network namespace of its own (only a
loopback), so a server started there is reachable only through forwarding:
the target's loopback has nothing listening on that port. `--local-net`
keeps sockets on the target, where the same connect is refused."""
import hashlib
import os
import select
import shlex
import signal
import subprocess
import textwrap
import time

import pytest

from conftest import HOMESTUB, MIN_ENV, PY, WRAP, describe, free_port, require_binaries, \
    require_root_and_unshare, run_bounded

# A small server for the home's namespace: `server.py MODE PORT`; prints
# "ready" once listening, and one line per finished connection.
SERVER = r'''
import hashlib, socket, sys, threading, time
mode, port = sys.argv[1], int(sys.argv[2])
if mode == "dns":
    # Answers every A query with 127.0.0.1, every other with no records.
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 53))
    print("ready", flush=True)
    while True:
        q, peer = u.recvfrom(512)
        i = 12
        while q[i]:
            i += q[i] + 1
        qtype = q[i + 1:i + 3]
        question = q[12:i + 5]
        a = qtype == b"\0\1"
        head = q[:2] + b"\x81\x80" + b"\0\1" + (b"\0\1" if a else b"\0\0") + b"\0\0\0\0"
        answer = b"\xc0\x0c\0\1\0\1\0\0\0\x3c\0\4\x7f\0\0\1" if a else b""
        u.sendto(head + question + answer, peer)
if mode == "udpecho":
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", port))
    print("ready", flush=True)
    while True:
        d, peer = u.recvfrom(65536)
        u.sendto(d.upper(), peer)
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(16)
print("ready", flush=True)

def pattern(n):
    block = bytes(range(256)) * 256
    out, left = [], n
    while left > 0:
        out.append(block[:min(left, len(block))])
        left -= len(block)
    return b"".join(out)

def serve(c):
    if mode == "echo":
        while True:
            d = c.recv(65536)
            if not d:
                break
            c.sendall(d)
        print("echo-done", flush=True)
    elif mode in ("hash", "slowhash"):
        if mode == "slowhash":
            # Lagging: a small receive buffer, a pause per read.
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
        h, n = hashlib.sha256(), 0
        while True:
            if mode == "slowhash":
                time.sleep(0.002)
            d = c.recv(65536)
            if not d:
                break
            h.update(d)
            n += len(d)
        c.sendall(f"{n} {h.hexdigest()}".encode())
        print(f"{mode}-done", flush=True)
    elif mode == "source":
        n = int(c.recv(64).decode())
        c.sendall(pattern(n))
        print("source-done", flush=True)
    elif mode == "flood":
        block = b"x" * 65536
        try:
            while True:
                c.sendall(block)
        except OSError:
            print("flood-closed", flush=True)
    elif mode == "close":
        c.sendall(b"bye")
        print("close-done", flush=True)
    c.close()

while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
'''


class NetHome:
    """A network namespace (loopback only) that the home runs in, with a
    mount namespace whose /etc/hosts names homeonly.tether.test."""

    def __init__(self, base):
        self.base = base
        # The home's /etc/hosts knows a name the target's does not.
        hosts = base / "hosts"
        hosts.write_text(open("/etc/hosts").read() + "\n127.0.0.1 homeonly.tether.test\n")
        # Its name server is one of its own (see test_dns_at_home).
        resolv = base / "resolv.conf"
        resolv.write_text("nameserver 127.0.0.1\noptions timeout:2 attempts:1\n")
        self.holder = subprocess.Popen(
            ["unshare", "--net", "--mount", "--propagation", "private", "--", "sh", "-c",
             f"ip link set lo up && mount --bind {shlex.quote(str(hosts))} /etc/hosts"
             f" && mount --bind {shlex.quote(str(resolv))} /etc/resolv.conf && echo up && exec sleep 3600"],
            stdout=subprocess.PIPE, env=dict(MIN_ENV), start_new_session=True)
        assert self.holder.stdout.readline().strip() == b"up"
        self.pid = self.holder.pid
        self.servers = []
        (base / "server.py").write_text(SERVER)

    def home_command(self) -> str:
        return f"nsenter -t {self.pid} -n -m -- {shlex.quote(str(HOMESTUB))} --stdio"

    def server(self, mode: str) -> tuple:
        """Starts a server in the namespace; returns (port, process)."""
        port = 53 if mode == "dns" else free_port()
        p = subprocess.Popen(["nsenter", "-t", str(self.pid), "-n", "--", PY, str(self.base / "server.py"), mode,
                              str(port)], stdout=subprocess.PIPE, env=dict(MIN_ENV), start_new_session=True)
        assert p.stdout.readline().strip() == b"ready"
        self.servers.append(p)
        return port, p

    def in_ns(self, argv, timeout=30) -> subprocess.CompletedProcess:
        return run_bounded(["nsenter", "-t", str(self.pid), "-n", "--", *argv], timeout=timeout)

    def wrap(self, args, extra=()) -> list:
        return [str(WRAP), "--home-command", self.home_command(), *extra, "--", *map(str, args)]

    def run(self, args, extra=(), timeout=60, **kw) -> subprocess.CompletedProcess:
        return run_bounded(self.wrap(args, extra), cwd=str(self.base), timeout=timeout, **kw)

    def close(self):
        for p in self.servers + [self.holder]:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


def serve(home_class, tmp_path):
    """A home of `home_class` (NetHome or a subclass) for one test, closed after it."""
    require_binaries()
    require_root_and_unshare()
    os.chmod(tmp_path, 0o755)
    n = home_class(tmp_path)
    try:
        yield n
    finally:
        n.close()


@pytest.fixture
def net(tmp_path):
    yield from serve(NetHome, tmp_path)


def py(code: str) -> list:
    return [PY, "-c", textwrap.dedent(code)]


CLIENT = """
import socket, sys
s = socket.create_connection(("127.0.0.1", {port}))
s.sendall(b"hello home")
print(s.recv(100).decode())
"""


def test_connect_reaches_a_server_only_home_has(net):
    port, _ = net.server("echo")
    r = net.run(py(CLIENT.format(port=port)))
    assert r.returncode == 0 and r.stdout == "hello home\n", describe(r)
    # The target's own network has no such server.
    r = net.run(py(CLIENT.format(port=port)), extra=["--local-net"])
    assert r.returncode != 0 and "ConnectionRefusedError" in r.stderr, describe(r)


def test_urllib_and_curl_fetch_from_home(net):
    (net.base / "site").mkdir()
    (net.base / "site" / "page.txt").write_text("served at home\n")
    port = free_port()
    srv = subprocess.Popen(["nsenter", "-t", str(net.pid), "-n", "--", PY, "-m", "http.server", "--bind", "127.0.0.1",
                            "--directory", str(net.base / "site"), str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(MIN_ENV),
                           start_new_session=True)
    net.servers.append(srv)
    deadline = time.monotonic() + 10
    while net.in_ns(["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{port}/"]).returncode != 0:
        assert time.monotonic() < deadline, "http.server did not start"
        time.sleep(0.1)
    url = f"http://127.0.0.1:{port}/page.txt"
    r = net.run(py(f"import urllib.request; print(urllib.request.urlopen({url!r}).read().decode(), end='')"))
    assert r.returncode == 0 and r.stdout == "served at home\n", describe(r)
    r = net.run(["/usr/bin/curl", "-sS", url])
    assert r.returncode == 0 and r.stdout == "served at home\n", describe(r)
    r = net.run(["/usr/bin/curl", "-sS", url], extra=["--local-net"])
    assert r.returncode != 0, describe(r)


def test_refused_connect_blocking_and_non_blocking(net):
    port = free_port()  # nothing listens there at home
    r = net.run(py(f"""
        import errno, select, socket
        s = socket.socket()
        try:
            s.connect(("127.0.0.1", {port}))
        except OSError as e:
            print("blocking", errno.errorcode[e.errno])
        s = socket.socket()
        s.setblocking(False)
        print("nonblocking", errno.errorcode[s.connect_ex(("127.0.0.1", {port}))])
        _, w, _ = select.select([], [s], [], 10)
        print("writable", bool(w))
        print("SO_ERROR", errno.errorcode[s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)])
    """))
    assert r.returncode == 0, describe(r)
    assert r.stdout.split("\n")[:4] == ["blocking ECONNREFUSED", "nonblocking EINPROGRESS", "writable True",
                                        "SO_ERROR ECONNREFUSED"], describe(r)


def test_non_blocking_connect_poll_then_talk(net):
    port, _ = net.server("echo")
    r = net.run(py(f"""
        import errno, select, socket
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        print(errno.errorcode[s.connect_ex(("127.0.0.1", {port}))])
        p = select.poll()
        p.register(s, select.POLLOUT)
        print("ready", p.poll(10000)[0][1] & select.POLLOUT != 0)
        print("SO_ERROR", s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
        print("peer", s.getpeername()[1] == {port}, "local", s.getsockname()[0])
        s.setblocking(True)
        s.sendall(b"ping")
        print(s.recv(10).decode())
    """))
    assert r.returncode == 0, describe(r)
    assert r.stdout.split("\n")[:5] == ["EINPROGRESS", "ready True", "SO_ERROR 0", "peer True local 127.0.0.1",
                                        "ping"], describe(r)


def test_epoll_readiness_half_close_and_rdhup(net):
    port, _ = net.server("hash")
    r = net.run(py(f"""
        import select, socket
        s = socket.create_connection(("127.0.0.1", {port}))
        ep = select.epoll()
        ep.register(s.fileno(), select.EPOLLIN | select.EPOLLRDHUP)
        print("idle", ep.poll(0.3))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        print("nodelay", s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        s.sendall(b"abc" * 1000)
        s.shutdown(socket.SHUT_WR)          # the server hashes until end of file
        events = ep.poll(10)
        print("ready", events[0][1] & select.EPOLLIN != 0)
        data = b""
        while True:
            d = s.recv(1000)
            if not d:
                break
            data += d
        print(data.decode())
        print("rdhup", ep.poll(1)[0][1] & select.EPOLLRDHUP != 0)
    """))
    want = hashlib.sha256(b"abc" * 1000).hexdigest()
    assert r.returncode == 0, describe(r)
    assert r.stdout.split("\n")[:5] == ["idle []", "nodelay 1", "ready True", f"3000 {want}", "rdhup True"], describe(r)


def test_peer_that_closes_shows_end_of_file(net):
    port, _ = net.server("close")
    r = net.run(py(f"""
        import socket
        s = socket.create_connection(("127.0.0.1", {port}))
        print(s.recv(10).decode(), repr(s.recv(10)))
    """))
    assert r.returncode == 0 and r.stdout == "bye b''\n", describe(r)


def test_large_transfers_both_ways(net):
    size = 8 << 20
    up_port, _ = net.server("hash")
    down_port, _ = net.server("source")
    r = net.run(py(f"""
        import hashlib, socket
        block = bytes(range(256)) * 256
        s = socket.create_connection(("127.0.0.1", {up_port}))
        h = hashlib.sha256()
        for i in range({size} // len(block)):
            chunk = block[i % 256:] + block[:i % 256]
            h.update(chunk)
            s.sendall(chunk)
        s.shutdown(socket.SHUT_WR)
        print(s.recv(200).decode() == f"{size} {{h.hexdigest()}}")
        s = socket.create_connection(("127.0.0.1", {down_port}))
        s.sendall(b"{size}")
        h, n = hashlib.sha256(), 0
        while True:
            d = s.recv(1 << 20)
            if not d:
                break
            h.update(d)
            n += len(d)
        print(n, h.hexdigest())
    """), timeout=120)
    block = bytes(range(256)) * 256
    want = hashlib.sha256((block * (size // len(block)))[:size]).hexdigest()
    assert r.returncode == 0, describe(r)
    assert r.stdout.split("\n")[:2] == ["True", f"{size} {want}"], describe(r)


def parent_of(net, child: str) -> subprocess.Popen:
    """A traced python3 that starts `child` (python3 source, which prints
    its pid first), prints that pid, then on a line of stdin prints the
    child's exit status: a process to kill under a session that goes on."""
    return subprocess.Popen(net.wrap(py(f"""
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", {child!r}], stdout=subprocess.PIPE)
        print(child.stdout.readline().decode().strip(), flush=True)
        sys.stdin.readline()
        print(child.wait(), flush=True)
    """)), cwd=str(net.base), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=dict(MIN_ENV), start_new_session=True)


def child_was_killed(p: subprocess.Popen):
    """Lets a `parent_of` process end: it must report its child killed by
    SIGKILL and exit cleanly (the session went on)."""
    p.stdin.write(b"\n")
    p.stdin.flush()
    assert p.stdout.readline().strip() == b"-9"
    assert p.wait(timeout=20) == 0


def test_killed_tracee_mid_transfer_closes_the_home_socket(net):
    """A process of the session killed while home floods it: the session
    goes on, and its home socket is closed (the server's sends fail)."""
    port, server = net.server("flood")
    child = textwrap.dedent(f"""
        import os, socket
        s = socket.create_connection(("127.0.0.1", {port}))
        s.recv(65536)
        print(os.getpid(), flush=True)
        while True:
            s.recv(1)
    """)
    p = parent_of(net, child)
    try:
        pid = int(p.stdout.readline())
        os.kill(pid, signal.SIGKILL)
        ready, _, _ = select.select([server.stdout], [], [], 20)
        assert ready, "the home socket stayed open after its process was killed"
        assert server.stdout.readline().strip() == b"flood-closed"
        child_was_killed(p)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)


def test_http_server_under_wrap_and_run_listens_at_home(net):
    (net.base / "site").mkdir()
    (net.base / "site" / "index.txt").write_text("from the traced server\n")
    port = free_port()
    srv = subprocess.Popen(net.wrap([PY, "-m", "http.server", "--bind", "127.0.0.1", "--directory",
                                     str(net.base / "site"), str(port)]),
                           cwd=str(net.base), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=dict(MIN_ENV), start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/index.txt"
        deadline = time.monotonic() + 15
        while True:
            r = net.in_ns(["curl", "-sS", url])
            if r.returncode == 0:
                break
            assert srv.poll() is None and time.monotonic() < deadline, describe(r)
            time.sleep(0.1)
        assert r.stdout == "from the traced server\n", describe(r)
        # Twice more: each request is a new accepted connection.
        for _ in range(2):
            r = net.in_ns(["curl", "-sS", url])
            assert r.stdout == "from the traced server\n", describe(r)
        # Not on the target's network.
        r = run_bounded(["curl", "-sS", url])
        assert r.returncode != 0, describe(r)
    finally:
        os.killpg(srv.pid, signal.SIGTERM)
        srv.wait(timeout=20)


def test_accept_readiness_and_peer_address_with_poll(net):
    port = free_port()
    p = subprocess.Popen(net.wrap(py(f"""
        import select, socket, sys
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", {port}))
        srv.listen(4)
        srv.setblocking(False)
        print("listening", srv.getsockname()[1] == {port}, flush=True)
        try:
            srv.accept()
        except BlockingIOError:
            print("EAGAIN", flush=True)
        p = select.poll()
        p.register(srv, select.POLLIN)
        print("ready", p.poll(15000)[0][1] & select.POLLIN != 0, flush=True)
        c, peer = srv.accept()
        print("peer", peer[0], peer[1] == c.getpeername()[1], flush=True)
        c.setblocking(True)
        c.sendall(c.recv(100).upper())
        c.close()
    """)), cwd=str(net.base), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(MIN_ENV),
        start_new_session=True)
    try:
        assert p.stdout.readline() == b"listening True\n"
        assert p.stdout.readline() == b"EAGAIN\n"
        r = net.in_ns([PY, "-c", f"import socket; s = socket.create_connection(('127.0.0.1', {port}));"
                       " s.sendall(b'shout'); print(s.recv(100).decode())"])
        assert r.returncode == 0 and r.stdout == "SHOUT\n", describe(r)
        assert p.stdout.readline() == b"ready True\n"
        assert p.stdout.readline() == b"peer 127.0.0.1 True\n"
        assert p.wait(timeout=20) == 0, p.stderr.read().decode()
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)


def test_udp_echo_only_home_has_keeps_boundaries_and_addresses(net):
    port, _ = net.server("udpecho")
    code = f"""
        import select, socket
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.settimeout(5)
        for word in (b"one", b"three", b"fifteen"):
            u.sendto(word, ("127.0.0.1", {port}))
        p = select.poll()
        p.register(u, select.POLLIN)
        print("ready", p.poll(5000)[0][1] & select.POLLIN != 0)
        for _ in range(3):
            d, peer = u.recvfrom(100)
            print(d.decode(), peer == ("127.0.0.1", {port}))
        u.sendmsg([b"scat", b"ter"], [], 0, ("127.0.0.1", {port}))
        d, anc, flags, peer = u.recvmsg(100)
        print(d.decode(), peer[1] == {port})
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.settimeout(5)
        c.connect(("127.0.0.1", {port}))
        c.send(b"connected")
        print(c.recv(100).decode(), c.getpeername()[1] == {port})
    """
    r = net.run(py(code))
    assert r.returncode == 0, describe(r)
    assert r.stdout.split("\n")[:6] == ["ready True", "ONE True", "THREE True", "FIFTEEN True", "SCATTER True",
                                        "CONNECTED True"], describe(r)
    # On the target's own network nobody answers.
    r = net.run(py(f"""
        import socket
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.settimeout(1)
        u.sendto(b"x", ("127.0.0.1", {port}))
        try:
            u.recvfrom(100)
        except OSError as e:
            print(type(e).__name__)
    """), extra=["--local-net"])
    assert r.stdout.strip() in ("TimeoutError", "ConnectionRefusedError"), describe(r)


def test_bad_socket_arguments_get_the_kernels_errno(net):
    """A malformed sockaddr length and an unsupported family, through libc."""
    port, _ = net.server("echo")
    r = net.run(py(f"""
        import ctypes, errno, socket
        libc = ctypes.CDLL(None, use_errno=True)
        s = socket.socket()
        addr = ctypes.create_string_buffer(256)
        for length in (200, 1, -1):
            rc = libc.connect(s.fileno(), addr, length)
            print(length, rc, errno.errorcode[ctypes.get_errno()])
        rc = libc.getsockopt(s.fileno(), socket.SOL_SOCKET, socket.SO_TYPE, None, None)
        print("getsockopt", rc, errno.errorcode[ctypes.get_errno()])
        try:
            socket.socket(12345, socket.SOCK_STREAM)
        except OSError as e:
            print("family", errno.errorcode[e.errno])
        s.connect(("127.0.0.1", {port}))
        s.sendall(b"still fine")
        print(s.recv(100).decode())
    """))
    assert r.returncode == 0, describe(r)
    assert r.stdout.split("\n")[:6] == ["200 -1 EINVAL", "1 -1 EINVAL", "-1 -1 EINVAL", "getsockopt -1 EFAULT",
                                        "family EAFNOSUPPORT", "still fine"], describe(r)


def test_names_resolve_with_the_homes_name_service_files(net):
    port, _ = net.server("echo")
    code = f"""
        import socket
        print(socket.gethostbyname("homeonly.tether.test"))
        s = socket.create_connection(("homeonly.tether.test", {port}))
        s.sendall(b"by name")
        print(s.recv(100).decode())
    """
    r = net.run(py(code))
    assert r.returncode == 0 and r.stdout == "127.0.0.1\nby name\n", describe(r)
    r = net.run(py(code), extra=["--local-net"])
    assert r.returncode != 0 and "gaierror" in r.stderr, describe(r)
    r = run_bounded([WRAP, "--explain", "/etc/resolv.conf", "--explain", "/etc/passwd"])
    lines = r.stdout.splitlines()
    assert lines[0].startswith("/etc/resolv.conf: forward by rule /etc/resolv.conf (network at home)"), describe(r)
    assert lines[1].startswith("/etc/passwd: local by rule /etc (default)"), describe(r)


def test_dns_at_home(net):
    """A name only the home's name server knows: the resolver reads the
    home's resolv.conf and its queries (sendmmsg, recvfrom) go out at home."""
    _, dns = net.server("dns")
    port, _ = net.server("echo")
    code = f"""
        import socket
        print(socket.gethostbyname("only.at.home.example"))
        s = socket.create_connection(("another.home.example", {port}))
        s.sendall(b"resolved at home")
        print(s.recv(100).decode())
    """
    r = net.run(py(code), timeout=60)
    assert r.returncode == 0 and r.stdout == "127.0.0.1\nresolved at home\n", describe(r)


def test_asyncio_client_with_100_concurrent_connections(net):
    port, _ = net.server("echo")
    r = net.run(py(f"""
        import asyncio
        async def one(i):
            reader, writer = await asyncio.open_connection("127.0.0.1", {port})
            msg = f"message {{i}} ".encode() * 100
            writer.write(msg)
            await writer.drain()
            got = await reader.readexactly(len(msg))
            writer.close()
            await writer.wait_closed()
            return got == msg
        async def main():
            results = await asyncio.gather(*(one(i) for i in range(100)))
            print(sum(results))
        asyncio.run(main())
    """), timeout=120)
    assert r.returncode == 0 and r.stdout == "100\n", describe(r)


def test_select_over_a_local_pipe_and_a_home_socket(net):
    port, _ = net.server("echo")
    r = net.run(py(f"""
        import os, select, socket
        rd, wr = os.pipe()
        s = socket.create_connection(("127.0.0.1", {port}))
        print(select.select([rd, s], [], [], 0.2)[0] == [])
        os.write(wr, b"p")
        print(select.select([rd, s], [], [], 5)[0] == [rd])
        os.read(rd, 1)
        s.sendall(b"echo me")
        print(select.select([rd, s], [], [], 5)[0] == [s], s.recv(100).decode())
    """))
    assert r.returncode == 0 and r.stdout == "True\nTrue\nTrue echo me\n", describe(r)


def test_a_signal_interrupts_a_blocking_accept_and_recvfrom_at_home(net):
    port = free_port()
    r = net.run(py(f"""
        import signal, socket
        class Alarm(Exception):
            pass
        def ring(*_):
            raise Alarm()
        signal.signal(signal.SIGALRM, ring)
        srv = socket.socket()
        srv.bind(("127.0.0.1", {port}))
        srv.listen(1)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", {port}))
        for what, call in (("accept", srv.accept), ("recvfrom", lambda: u.recvfrom(10))):
            signal.setitimer(signal.ITIMER_REAL, 0.3)
            try:
                call()
            except Alarm:
                print(what, "interrupted")
    """), timeout=30)
    assert r.returncode == 0 and r.stdout == "accept interrupted\nrecvfrom interrupted\n", describe(r)


def test_a_killed_listener_frees_its_home_port(net):
    """A process listening at home is killed while its session goes on:
    the home socket is closed, so the port can be bound again there."""
    port = free_port()
    child = textwrap.dedent(f"""
        import os, socket
        srv = socket.socket()
        srv.bind(("127.0.0.1", {port}))
        srv.listen(1)
        print(os.getpid(), flush=True)
        srv.accept()
    """)
    p = parent_of(net, child)
    try:
        pid = int(p.stdout.readline())
        bind = [PY, "-c", f"import socket; s = socket.socket(); s.bind(('127.0.0.1', {port})); s.listen(1); print('bound')"]
        r = net.in_ns(bind)
        assert r.returncode != 0 and "Address already in use" in r.stderr, describe(r)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while (r := net.in_ns(bind)).returncode != 0:
            assert time.monotonic() < deadline, describe(r)
            time.sleep(0.1)
        assert r.stdout == "bound\n"
        child_was_killed(p)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)


def test_per_address_rules_keep_some_destinations_local(net):
    """--local-net ADDRESS:PORT: that destination is the target's own (a
    server only the target has), every other is home's."""
    home_port, _ = net.server("echo")
    local_port = free_port()
    target = subprocess.Popen([PY, str(net.base / "server.py"), "close", str(local_port)], stdout=subprocess.PIPE,
                              env=dict(MIN_ENV), start_new_session=True)
    net.servers.append(target)
    assert target.stdout.readline().strip() == b"ready"
    code = f"""
        import socket
        s = socket.create_connection(("127.0.0.1", {home_port}))
        s.sendall(b"home")
        print(s.recv(100).decode())
        t = socket.create_connection(("127.0.0.1", {local_port}))
        print(t.recv(100).decode(), t.getpeername()[1] == {local_port})
    """
    r = net.run(py(code), extra=["--local-net", f"127.0.0.1:{local_port}"])
    assert r.returncode == 0 and r.stdout == "home\nbye True\n", describe(r)
    # Without the rule the second server is out of reach (it is not at home).
    r = net.run(py(code))
    assert r.returncode != 0 and "ConnectionRefusedError" in r.stderr, describe(r)
    # The longest match decides; --explain says which rule.
    r = run_bounded([WRAP, "--local-net", "127.0.0.0/8", "--forward-net", f"127.0.0.1:{home_port}",
                     "--explain", f"127.0.0.1:{home_port}", "--explain", "127.0.0.1:9"])
    assert r.stdout == (f"127.0.0.1:{home_port}: forward by rule 127.0.0.1:{home_port} (--forward-net)\n"
                        "127.0.0.1:9: local by rule 127.0.0.0/8 (--local-net)\n"), describe(r)
    r = run_bounded([WRAP, "--local-net", "300.1.2.3/8", "--", "true"])
    assert r.returncode == 125 and "CIDR" in r.stderr, describe(r)
