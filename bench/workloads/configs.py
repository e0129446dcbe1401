"""The configurations a workload runs in, and the servers behind them.

Every configuration sees the same export root EXPORT, each in its own way:

    native   EXPORT itself (the home's own file system)
    tcp      wrap-and-run --home 127.0.0.1:PORT against homestub --root EXPORT:
             tracee path /P is EXPORT/P at home
    spawn    wrap-and-run --home spawn --root EXPORT (private home, socketpair)
    sshfs    sshfs with its default options, mounted from an OpenSSH server on
             127.0.0.1:PORT at a local mount point M: M/P is EXPORT/P

`Servers` starts and stops homestub, sshd and sshfs; `close()` undoes
whatever was started, in reverse order, and is safe to call more than once.
"""

from __future__ import annotations

import os
import pathlib
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from typing import Callable, Optional

START_TIMEOUT = 20.0
# Where sshd, sshfs, fusermount and ssh-keygen are looked for.
TOOL_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Config:
    """One way to reach the export root: `base` is the export root as the
    workload's commands name it, `prefix` what runs `sh -c SCRIPT`."""
    key: str
    label: str
    base: str
    prefix: tuple

    def argv(self, script: str) -> list:
        return [*self.prefix, "/bin/sh", "-c", script]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    """True once something listens on 127.0.0.1:port; reads /proc/net/tcp
    rather than connecting, so homestub logs no aborted session."""
    want = {f"0100007F:{port:04X}", f"00000000:{port:04X}"}
    with open("/proc/net/tcp") as f:
        return any(c[1] in want and c[3] == "0A" for c in (line.split() for line in list(f)[1:]))


def kill_group(proc: Optional[subprocess.Popen]) -> None:
    """SIGKILL to a child started with start_new_session, and its group."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


class Servers:
    """homestub, sshd and sshfs for one run, all under `local` (keys, logs,
    configuration, the mount point); `notes` says what was skipped and why."""

    def __init__(self, bin_dir: pathlib.Path, export: pathlib.Path, local: pathlib.Path) -> None:
        self.bin, self.export, self.local = bin_dir, export, local
        self.notes: list = []
        self._undo: list = []  # callables, run last-first by close()

    # ----- helpers ------------------------------------------------------

    def _start(self, argv: list, log: str) -> subprocess.Popen:
        out = open(self.local / log, "ab")
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                cwd="/", start_new_session=True)
        out.close()
        self._undo.append(lambda: kill_group(proc))
        return proc

    def _wait(self, ready: Callable[[], bool], proc: subprocess.Popen, what: str, log: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.local / log).read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{what} did not start (status {proc.poll()}):\n{tail}")
            time.sleep(0.02)

    def log_tail(self, log: str, n: int = 1500) -> str:
        try:
            return (self.local / log).read_text(errors="replace")[-n:]
        except FileNotFoundError:
            return ""

    def close(self) -> None:
        while self._undo:
            try:
                self._undo.pop()()
            except Exception as e:  # keep undoing the rest
                print(f"cleanup: {e}")

    # ----- Tether ---------------------------------------------------------

    def tether(self, spawn: bool) -> list:
        """Starts homestub --root EXPORT on a free loopback port; returns the
        tcp configuration (and the spawn one when asked)."""
        key = self.local / "tether.key"
        key.write_bytes(os.urandom(24).hex().encode())
        os.chmod(key, 0o600)
        port = free_port()
        wrap, homestub = str(self.bin / "wrap-and-run"), str(self.bin / "homestub")
        proc = self._start([homestub, "--listen", f"127.0.0.1:{port}", "--key-file", str(key),
                            "--root", str(self.export)], "homestub.log")
        self._wait(lambda: listening(port), proc, "homestub", "homestub.log")
        # Scratch files of compilers and friends stay on the target, as they
        # do under sshfs: only the tree is at home.
        configs = [Config("tcp", "Tether TCP", "", (wrap, "--home", f"127.0.0.1:{port}", "--key-file",
                                                    str(key), "--local", "/tmp", "--"))]
        if spawn:
            configs.append(Config("spawn", "Tether spawn", "", (wrap, "--home", "spawn", "--root",
                                                                str(self.export), "--local", "/tmp", "--")))
        return configs

    # ----- sshfs ----------------------------------------------------------

    def sshfs(self) -> Optional[Config]:
        """An OpenSSH server of our own on a free loopback port (throwaway
        host and user keys) and sshfs with default options mounted from it;
        None, with a note, when sshfs, sshd or FUSE is missing."""
        sshd, sshfs = shutil.which("sshd", path=TOOL_PATH), shutil.which("sshfs", path=TOOL_PATH)
        fuser = shutil.which("fusermount3", path=TOOL_PATH) or shutil.which("fusermount", path=TOOL_PATH)
        keygen = shutil.which("ssh-keygen", path=TOOL_PATH)
        missing = [n for n, p in (("sshfs", sshfs), ("sshd", sshd), ("fusermount", fuser), ("ssh-keygen", keygen))
                   if p is None]
        if not os.path.exists("/dev/fuse"):
            missing.append("/dev/fuse")
        if missing:
            self.notes.append(f"sshfs skipped: {', '.join(missing)} not found (apt-get install sshfs openssh-server)")
            return None
        d = self.local / "ssh"
        d.mkdir(mode=0o700)
        for name in ("host_key", "user_key"):
            subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)],
                           check=True, capture_output=True, timeout=30)
        shutil.copy(d / "user_key.pub", d / "authorized_keys")
        sftp = next((p for p in ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server",
                                 "/usr/libexec/sftp-server") if os.access(p, os.X_OK)), "internal-sftp")
        port = free_port()
        (d / "sshd_config").write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n"
            f"AuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            f"Subsystem sftp {sftp}\n")
        if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
            os.makedirs("/run/sshd", mode=0o755)  # sshd's privilege-separation directory
        proc = self._start([sshd, "-D", "-e", "-f", str(d / "sshd_config")], "sshd.log")
        self._wait(lambda: listening(port), proc, "sshd", "sshd.log")

        mnt = self.local / "mnt"
        mnt.mkdir()
        user = pwd.getpwuid(os.geteuid()).pw_name
        # -f keeps sshfs in the foreground so that we own its pid; -F /dev/null
        # keeps the user's ssh_config out. No caching option is changed.
        fs = self._start([sshfs, "-f", "-p", str(port), "-F", "/dev/null", "-o",
                          f"IdentityFile={d}/user_key,StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,"
                          "BatchMode=yes,LogLevel=ERROR", f"{user}@127.0.0.1:{self.export}", str(mnt)],
                         "sshfs.log")
        self._undo.append(lambda: unmount(fuser, mnt))
        self._wait(lambda: os.path.ismount(mnt), fs, "sshfs", "sshfs.log")
        return Config("sshfs", "sshfs", str(mnt), ())


def unmount(fuser: str, mnt: pathlib.Path) -> None:
    """fusermount -u, then a lazy unmount if something still holds it."""
    if not os.path.ismount(mnt):
        return
    r = subprocess.run([fuser, "-u", str(mnt)], capture_output=True, timeout=30)
    if r.returncode != 0 and os.path.ismount(mnt):
        subprocess.run([fuser, "-u", "-z", str(mnt)], capture_output=True, timeout=30)
