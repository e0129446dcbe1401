"""A silent partition: the link between the nodes goes down (no FIN, no
RST ever arrives). The program's pending call fails with EIO within 5 s and
wrap-and-run says so; the home's deputy notices too, within its
--idle-timeout, and ends the session. Two network namespaces joined by a
veth pair; the target's end is taken down."""

import os
import subprocess
import time
import uuid

import pytest

from conftest import HOMESTUB, MIN_ENV, PY, WRAP, describe, free_port, write_key
from test_failure import wait_for_log


def ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


@pytest.fixture
def two_hosts():
    tag = uuid.uuid4().hex[:6]
    home, target = f"th-{tag}", f"tt-{tag}"
    veth_h, veth_t = f"vh{tag}", f"vt{tag}"
    try:
        ip("netns", "add", home)
        ip("netns", "add", target)
    except (subprocess.CalledProcessError, FileNotFoundError) as e:
        pytest.skip(f"cannot create network namespaces here: {e}")
    try:
        ip("link", "add", veth_h, "netns", home, "type", "veth", "peer", "name", veth_t, "netns", target)
        ip("-n", home, "addr", "add", "10.77.0.1/24", "dev", veth_h)
        ip("-n", target, "addr", "add", "10.77.0.2/24", "dev", veth_t)
        for ns, dev in ((home, veth_h), (target, veth_t)):
            ip("-n", ns, "link", "set", dev, "up")
            ip("-n", ns, "link", "set", "lo", "up")
        yield home, target, veth_t
    finally:
        ip("netns", "del", home, check=False)
        ip("netns", "del", target, check=False)


class Log:
    def __init__(self, path):
        self.path = path

    def log(self):
        return self.path.read_text(errors="replace") if self.path.exists() else ""


def test_a_dropped_link_fails_the_pending_call_with_eio_within_5s_on_both_sides(two_hosts, tmp_path):
    home_ns, target_ns, target_dev = two_hosts
    root = tmp_path / "root"
    (root / "part").mkdir(parents=True)
    os.mkfifo(root / "part" / "p", 0o666)
    key = write_key(tmp_path / "key")
    port = free_port()
    log = Log(tmp_path / "home.log")
    home = subprocess.Popen(["ip", "netns", "exec", home_ns, str(HOMESTUB), "--listen", f"10.77.0.1:{port}",
                             "--root", str(root), "--key-file", str(key), "--idle-timeout", "3"],
                            stdout=subprocess.DEVNULL, stderr=open(log.path, "wb"))
    try:
        assert wait_for_log(log, r"listening", timeout=10), log.log()
        program = "print('waiting', flush=True)\ntry:\n    open('/part/p').read()\nexcept OSError as e:\n    print('errno', e.errno, flush=True)\n"
        proc = subprocess.Popen(["ip", "netns", "exec", target_ns, str(WRAP), "--home", f"10.77.0.1:{port}",
                                 "--key-file", str(key), "--", PY, "-I", "-S", "-c", program],
                                cwd="/usr", env=dict(MIN_ENV), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout.readline() == "waiting\n"
        assert wait_for_log(log, r"session \d+ started", timeout=5), log.log()
        time.sleep(0.5)                                    # the open is now blocked at home
        since = len(log.log())
        ip("-n", target_ns, "link", "set", target_dev, "down")
        down = time.monotonic()
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"the program still waits 10 s after the link went down\n{out}\n{err}")
        took = time.monotonic() - down
        assert out == "errno 5\n", (out, err)
        assert took < 5.0, f"EIO came {took:.1f} s after the link went down"
        assert "lost connection" in err, err
        # The deputy notices within its --idle-timeout (3 s) and a probe.
        assert wait_for_log(log, r"session \d+ ended", since=since, timeout=6), log.log()
    finally:
        home.terminate()
        home.wait(5)
