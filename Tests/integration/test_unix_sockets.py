"""Unix sockets at home: a bind or connect whose path is forwarded runs at
home (the socket file is made there, a home-only server is reached), an
abstract name follows the network rule, a path under a local rule stays on
the target. The home runs in network and mount namespaces of its own
(`NetHome`), with a tmpfs over `srv/` that only it sees."""
import os
import signal
import socket
import stat
import subprocess
import time

import pytest

from conftest import MIN_ENV, PY, describe, run_bounded
from test_sockets import NetHome, py, serve

# A Unix echo server for the home's namespaces: `unix_server.py ADDRESS`
# (a leading @ names an abstract address); prints "ready" once listening.
UNIX_SERVER = r'''
import socket, sys, threading
name = sys.argv[1]
address = "\0" + name[1:] if name.startswith("@") else name
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(address)
srv.listen(16)
print("ready", flush=True)

def serve(c):
    while True:
        d = c.recv(65536)
        if not d:
            break
        c.sendall(d.upper())
    c.close()

while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
'''


class UnixHome(NetHome):
    """A NetHome whose `srv/` is a tmpfs only the home sees."""

    def __init__(self, base):
        super().__init__(base)
        self.srv = base / "srv"
        self.srv.mkdir()
        r = run_bounded(["nsenter", "-t", str(self.pid), "-m", "--", "mount", "-t", "tmpfs", "tmpfs", str(self.srv)])
        assert r.returncode == 0, describe(r)
        (base / "unix_server.py").write_text(UNIX_SERVER)

    def in_home(self, argv, timeout=30) -> subprocess.CompletedProcess:
        """Runs argv in the home's network and mount namespaces."""
        return run_bounded(["nsenter", "-t", str(self.pid), "-n", "-m", "--", *argv], timeout=timeout)

    def unix_server(self, address: str) -> subprocess.Popen:
        p = subprocess.Popen(["nsenter", "-t", str(self.pid), "-n", "-m", "--", PY, str(self.base / "unix_server.py"),
                              address], stdout=subprocess.PIPE, env=dict(MIN_ENV), start_new_session=True)
        assert p.stdout.readline().strip() == b"ready"
        self.servers.append(p)
        return p

    def is_socket_at_home(self, path) -> bool:
        return self.in_home(["test", "-S", str(path)]).returncode == 0


@pytest.fixture
def unet(tmp_path):
    yield from serve(UnixHome, tmp_path)


def test_connect_reaches_a_unix_server_only_home_has(unet):
    path = unet.srv / "app.sock"
    unet.unix_server(str(path))
    assert not path.exists()
    r = unet.run(py(f"""
        import os, socket
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect({str(path)!r})
        print(s.getpeername(), repr(s.getsockname()))
        s.sendall(b"hello unix")
        print(s.recv(100).decode())
        # Relative to a working directory at home.
        os.chdir({str(unet.srv)!r})
        t = socket.socket(socket.AF_UNIX)
        t.connect("app.sock")
        t.sendall(b"relative")
        print(t.recv(100).decode(), t.getpeername())
    """))
    assert r.returncode == 0, describe(r)
    # The peer's name is the server's, as it bound it.
    assert r.stdout == f"{path} ''\nHELLO UNIX\nRELATIVE {path}\n", describe(r)
    # Without the home's file the same connect fails on the target.
    r = run_bounded(py(f"import socket; socket.socket(socket.AF_UNIX).connect({str(path)!r})"))
    assert r.returncode != 0 and "FileNotFoundError" in r.stderr, describe(r)


def test_a_traced_unix_server_binds_listens_and_accepts_at_home(unet):
    path = unet.srv / "traced.sock"
    p = subprocess.Popen(unet.wrap(py(f"""
        import os, select, socket, stat
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind({str(path)!r})
        srv.listen(4)
        print("listening", srv.getsockname(), stat.S_ISSOCK(os.stat({str(path)!r}).st_mode), flush=True)
        p = select.poll()
        p.register(srv, select.POLLIN)
        print("ready", p.poll(15000)[0][1] & select.POLLIN != 0, flush=True)
        c, peer = srv.accept()
        print("accepted", repr(peer), c.getsockname(), flush=True)
        c.sendall(c.recv(100)[::-1])
        c.close()
        srv.close()
        os.unlink({str(path)!r})
    """)), cwd=str(unet.base), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=dict(MIN_ENV), start_new_session=True)
    try:
        assert p.stdout.readline().decode() == f"listening {path} True\n", p.stderr.read1().decode()
        # The socket file is at home, not on the target.
        assert unet.is_socket_at_home(path) and not path.exists()
        r = unet.in_home([PY, "-c", "import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]);"
                          " s.sendall(b'stressed'); print(s.recv(100).decode())", str(path)])
        assert r.returncode == 0 and r.stdout == "desserts\n", describe(r)
        assert p.stdout.readline() == b"ready True\n"
        assert p.stdout.readline().decode() == f"accepted '' {path}\n"
        assert p.wait(timeout=20) == 0, p.stderr.read().decode()
        assert not unet.is_socket_at_home(path)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)


def test_abstract_names_follow_the_network_rule(unet):
    name = f"tether-test-{os.getpid()}-{time.monotonic_ns()}"
    code = f"""
        import socket
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect("\\0{name}")
        s.sendall(b"abstract")
        print(s.recv(100).decode())
    """
    unet.unix_server("@" + name)
    # The network is at home: the home's abstract name answers.
    r = unet.run(py(code))
    assert r.returncode == 0 and r.stdout == "ABSTRACT\n", describe(r)
    # With --local-net the target's namespace has no such name.
    r = unet.run(py(code), extra=["--local-net"])
    assert r.returncode != 0 and "ConnectionRefusedError" in r.stderr, describe(r)


def test_a_path_under_a_local_rule_stays_local(unet):
    (unet.base / "loc").mkdir()
    path = unet.base / "loc" / "here.sock"
    r = unet.run(py(f"""
        import socket
        s = socket.socket(socket.AF_UNIX)
        s.bind({str(path)!r})
        print(s.getsockname())
    """), extra=["--local", str(unet.base / "loc")])
    assert r.returncode == 0 and r.stdout == f"{path}\n", describe(r)
    assert stat.S_ISSOCK(os.stat(path).st_mode)


def test_bad_unix_addresses_get_the_kernels_errno(unet):
    """Lengths past sockaddr_un or short of its family, on a socket of the
    target and on one already at home, through libc: EINVAL, never a crash."""
    path = unet.srv / "app.sock"
    unet.unix_server(str(path))
    r = unet.run(py(f"""
        import ctypes, errno, socket
        libc = ctypes.CDLL(None, use_errno=True)
        addr = ctypes.create_string_buffer(b"\\1\\0" + {str(path).encode()!r}, 256)
        def tries(s, name):
            for length in (111, 200, 1, -1):
                rc = libc.connect(s.fileno(), addr, length)
                print(name, length, rc, errno.errorcode[ctypes.get_errno()])
        s = socket.socket(socket.AF_UNIX)
        tries(s, "target")
        s.connect({str(path)!r})
        tries(s, "home")
        s.sendall(b"still fine")
        print(s.recv(100).decode())
    """))
    assert r.returncode == 0, describe(r)
    assert r.stdout.split("\n")[:9] == [
        "target 111 -1 EINVAL", "target 200 -1 EINVAL", "target 1 -1 EINVAL", "target -1 -1 EINVAL",
        "home 111 -1 EINVAL", "home 200 -1 EINVAL", "home 1 -1 EINVAL", "home -1 -1 EINVAL", "STILL FINE"], describe(r)


def passrights_supported():
    """Whether this kernel has SO_PASSRIGHTS (Linux 6.16+)."""
    a, b = socket.socketpair()
    with a, b:
        try:
            b.setsockopt(socket.SOL_SOCKET, 83, 0)
            return True
        except OSError:
            return False


def test_ancillary_data_on_a_socket_at_home_is_not_dropped_silently(unet):
    """SCM_RIGHTS cannot reach home: on UDP at home sendmsg is EOPNOTSUPP;
    on a pumped Unix stream (its sendmsg runs natively on the pair) it is
    EPERM where the kernel lets our end refuse descriptors (SO_PASSRIGHTS:
    the pump may then splice), and the connection goes on; on older
    kernels the connection is reset both ways, so the program and its
    peer see it."""
    path = unet.srv / "app.sock"
    unet.unix_server(str(path))
    port, _ = unet.server("udpecho")
    r = unet.run(py(f"""
        import array, errno, socket
        rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [0]))]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.connect(("127.0.0.1", {port}))
        try:
            u.sendmsg([b"fd"], rights)
        except OSError as e:
            print("EOPNOTSUPP" if e.errno == errno.EOPNOTSUPP else errno.errorcode[e.errno])
        print(u.sendmsg([b"plain"]), u.recv(100).decode())
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect({str(path)!r})
        print(s.sendmsg([b"plain"]), s.recv(100).decode())
        try:
            s.sendmsg([b"fd"], rights)
        except OSError as e:
            print(errno.errorcode[e.errno])
            print(s.sendmsg([b"after"]), s.recv(100).decode())
            raise SystemExit
        print(repr(s.recv(100)))
        try:
            for _ in range(3):
                s.send(b"more")
        except OSError as e:
            print(errno.errorcode[e.errno])
    """))
    after = "EPERM\n5 AFTER\n" if passrights_supported() else "b''\nEPIPE\n"
    assert r.returncode == 0 and r.stdout == "EOPNOTSUPP\n5 PLAIN\n5 PLAIN\n" + after, describe(r)
