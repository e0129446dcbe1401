"""Two-view integration harness for Tether.

The home and the target must *differ*, or a passing test proves nothing.
Each test gets a base directory under /tmp (a forwarded prefix) holding:

    BASE/view/      what the target (the test process, wrap-and-run and the
                    tracee) sees: DECOY files with the same names as the home
                    files but other contents.
    BASE/homedata/  the real home files.

homestub runs in its own mount + pid namespace in which BASE/homedata is
bind-mounted onto BASE/view.  So the *same absolute path* BASE/view/x names
the decoy on the target and the real file at home:

    * a tracee that reads BASE/view/x and prints the home content proves the
      read was forwarded;
    * a file a tracee creates under BASE/view must appear in BASE/homedata
      and must NOT appear in BASE/view as the test process sees it.

Both namespaces share the network namespace, so homestub listens on
127.0.0.1:PORT and wrap-and-run connects to it.

Environment:
    TETHER_BIN            folder holding homestub and wrap-and-run
                          (default: <repo>/.build/release)
    TETHER_REQUIRE_BIN=1  fail instead of skip when the binaries are missing
    TETHER_SANITIZER      address or thread: the binaries carry that sanitizer
                          (scripts/sanitizer-test.sh); ASAN_OPTIONS and
                          TSAN_OPTIONS are then passed to them
    TETHER_ENGINE         seccomp, ptrace or auto: the engine every
                          wrap-and-run of the suite uses (wrap-and-run reads
                          it as the default of --engine; it is passed in
                          MIN_ENV); `make integration-test` runs the suite
                          once per engine
"""

from __future__ import annotations

import errno as _errno
import os
import pathlib
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import textwrap
import tempfile
import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
BIN_DIR = pathlib.Path(os.path.abspath(os.environ.get("TETHER_BIN", str(REPO / ".build" / "release"))))
HOMESTUB = BIN_DIR / "homestub"
WRAP = BIN_DIR / "wrap-and-run"

# Programs the tracees run.  Absolute paths under /usr/bin or /bin only: those
# are local by default, while e.g. a pyenv shim under /root is forwarded.
PY = "/usr/bin/python3"
SH = "/bin/sh"  # dash on the CI image
CAT = "/usr/bin/cat"

# Minimal environment for every tracee and every wrap-and-run.
MIN_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C", "LC_ALL": "C"}
# Sanitizer runs (`make asan-test`, `make tsan-test`): homestub, its deputies and
# wrap-and-run must get the sanitizer's options (above all log_path, so reports
# from every child process land in files). Tracees are not instrumented and
# ignore them.
for _name in ("ASAN_OPTIONS", "LSAN_OPTIONS", "TSAN_OPTIONS", "UBSAN_OPTIONS"):
    if _name in os.environ:
        MIN_ENV[_name] = os.environ[_name]
# The engine under test ("auto" when unset: seccomp on this kernel).
ENGINE = os.environ.get("TETHER_ENGINE", "auto")
if "TETHER_ENGINE" in os.environ:
    MIN_ENV["TETHER_ENGINE"] = ENGINE
# Which sanitizer the binaries carry ("address", "thread"), or "" for none.
SANITIZER = os.environ.get("TETHER_SANITIZER", "")

NOBODY_SETPRIV = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]

HOME_START_TIMEOUT = 10.0


# --------------------------------------------------------------------------
# Session-wide preconditions
# --------------------------------------------------------------------------

_unshare_checked: Optional[str] = None  # None: not checked; "": works; else reason


def _unshare_problem() -> str:
    """Returns "" when unshare --mount --pid works here, else the reason."""
    global _unshare_checked
    if _unshare_checked is None:
        try:
            r = subprocess.run(
                ["unshare", "--mount", "--propagation", "private", "--pid", "--fork",
                 "--", "sh", "-c", "mount -t tmpfs none /mnt 2>/dev/null || true; exit 0"],
                capture_output=True, text=True, timeout=10)
            _unshare_checked = "" if r.returncode == 0 else (
                f"unshare --mount --pid failed (status {r.returncode}): {r.stderr.strip()}")
        except FileNotFoundError:
            _unshare_checked = "unshare(1) is not installed"
        except subprocess.TimeoutExpired:
            _unshare_checked = "unshare(1) hung"
    return _unshare_checked


def require_root_and_unshare() -> None:
    if os.geteuid() != 0:
        pytest.skip("the two-view harness needs root (mount namespaces, bind mounts, setpriv)")
    problem = _unshare_problem()
    if problem:
        pytest.skip(f"cannot build the home view: {problem}")


def require_binaries() -> None:
    missing = [str(p) for p in (HOMESTUB, WRAP) if not os.access(p, os.X_OK)]
    if missing:
        msg = f"Tether binaries not built: {', '.join(missing)} (set TETHER_BIN or build first)"
        if os.environ.get("TETHER_REQUIRE_BIN") == "1":
            pytest.fail(msg)
        pytest.skip(msg)


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def is_listening(port: int) -> bool:
    """True once something listens on 127.0.0.1:port or 0.0.0.0:port.

    Reads /proc/net/tcp instead of connecting, so that waiting for the home
    never opens (and then drops) a session that homestub would log.
    """
    want4 = {f"0100007F:{port:04X}", f"00000000:{port:04X}"}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    local, state = cols[1], cols[3]
                    if state != "0A":  # TCP_LISTEN
                        continue
                    if local in want4 or (table.endswith("6") and local.endswith(f":{port:04X}")):
                        return True
        except FileNotFoundError:
            continue
    return False


def write_key(path: pathlib.Path, n: int = 48, mode: int = 0o600, owner: Optional[str] = None) -> pathlib.Path:
    path.write_bytes(os.urandom(n).hex().encode()[:n])  # printable, >= 32 bytes
    os.chmod(path, mode)
    if owner is not None:
        shutil.chown(path, user=owner, group="nogroup" if owner == "nobody" else None)
    return path


def write(path: pathlib.Path, content, mode: Optional[int] = None) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    if mode is not None:
        os.chmod(path, mode)
    return path


def py(script: str, *args: str) -> list:
    """argv running a python script under the system python3.

    -I: isolated (no cwd on sys.path, no PYTHON* env, no user site);
    -S: no site import (faster start, fewer forwarded stats).
    """
    return [PY, "-I", "-S", "-c", script, *map(str, args)]


# A python snippet that prints an errno name the way the tests compare it.
PY_ERRNAME = "import errno\ndef ename(e):\n    return errno.errorcode.get(e.errno, str(e.errno))\n"


def alive(pid: int) -> bool:
    """Running, not a zombie. A process that exits between the open of its
    stat file and the read gives ESRCH on the read, which means gone too."""
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def errno_name(n: int) -> str:
    return _errno.errorcode[n]


def _kill_tree(proc: subprocess.Popen, pgid: Optional[int]) -> None:
    if pgid is not None:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.kill()
    except ProcessLookupError:
        pass


def run_bounded(argv: Sequence[str], *, cwd=None, timeout: float = 60, input=None,
                env=None, binary: bool = False) -> subprocess.CompletedProcess:
    """subprocess.run with capture that kills the whole process group on
    timeout and fails the test with "hung". stdout is bytes when binary."""
    proc = subprocess.Popen(
        list(map(str, argv)), cwd=cwd, env=env if env is not None else dict(MIN_ENV),
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    if isinstance(input, str):
        input = input.encode()
    try:
        out, err = proc.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_tree(proc, proc.pid)
        out, err = proc.communicate()
        pytest.fail(
            f"hung: {shlex.join(map(str, argv))} did not finish within {timeout} s\n"
            f"--- stdout ---\n{out.decode(errors='replace')}\n"
            f"--- stderr ---\n{err.decode(errors='replace')}")
    return subprocess.CompletedProcess(list(map(str, argv)), proc.returncode,
                                       out if binary else out.decode(errors="replace"),
                                       err.decode(errors="replace"))


def describe(r: subprocess.CompletedProcess) -> str:
    """Context for assertion messages."""
    out = r.stdout if isinstance(r.stdout, str) else r.stdout[:2000].decode(errors="replace")
    return (f"\n$ {shlex.join(r.args)}\nexit status {r.returncode}\n"
            f"--- stdout ---\n{out}\n--- stderr ---\n{r.stderr}")


# --------------------------------------------------------------------------
# The home: homestub (or a stand-in) in its own mount + pid namespace
# --------------------------------------------------------------------------

@dataclass
class Home:
    """One homestub running in its own mount + pid namespace."""
    proc: subprocess.Popen
    port: int
    key: pathlib.Path
    log_path: pathlib.Path
    root: Optional[pathlib.Path]
    user: Optional[str]
    _log_file: object = None
    killed: bool = False

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def ns_init_pid(self) -> Optional[int]:
        """pid (in our namespace) of the namespace's pid 1: unshare's child."""
        try:
            kids = pathlib.Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            return int(kids[0]) if kids else None
        except (FileNotFoundError, ProcessLookupError, ValueError):
            return None

    def kill(self) -> None:
        """Kills the whole home: unshare, the namespace's init (homestub) and
        thereby every deputy inside the pid namespace. Waits until gone."""
        if self.killed:
            return
        self.killed = True
        init = self.ns_init_pid()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # unshare is its own group leader
        except ProcessLookupError:
            pass
        if init is not None:
            try:
                os.kill(init, signal.SIGKILL)  # in case homestub left the process group
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 5
        while init is not None and time.monotonic() < deadline and alive(init):
            time.sleep(0.02)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


class TwoViews:
    """A base directory with the target's view (decoys) and the home's data."""

    def __init__(self) -> None:
        self.base = pathlib.Path(tempfile.mkdtemp(prefix="tether-it-", dir="/tmp"))
        os.chmod(self.base, 0o755)  # nobody must traverse it
        self.view = self.base / "view"          # target's view (decoys)
        self.homedata = self.base / "homedata"  # home's view of BASE/view
        self.local = self.base / "local"        # shared scratch, never passed to a tracee
        for d in (self.view, self.homedata, self.local):
            d.mkdir(mode=0o755)
            os.chmod(d, 0o755)
        self.key = write_key(self.local / "key")
        self.homes: list[Home] = []
        self.home: Optional[Home] = None
        self._nobody_bin: Optional[pathlib.Path] = None

    # ----- populating the two views -----------------------------------

    def home_file(self, rel: str, content, mode: Optional[int] = None) -> pathlib.Path:
        """A file that exists at home (seen by tracees as BASE/view/rel)."""
        return write(self.homedata / rel, content, mode)

    def decoy(self, rel: str, content, mode: Optional[int] = None) -> pathlib.Path:
        """A file the target sees at BASE/view/rel (home does not)."""
        return write(self.view / rel, content, mode)

    def both(self, rel: str, home_content, decoy_content=None) -> pathlib.Path:
        """Home file plus a decoy of the same name with different content."""
        if decoy_content is None:
            decoy_content = b"DECOY " + (home_content if isinstance(home_content, bytes)
                                         else home_content.encode())[::-1] + b" DECOY\n"
        self.decoy(rel, decoy_content)
        self.home_file(rel, home_content)
        return self.view / rel  # the path a tracee uses

    def p(self, rel: str = "") -> str:
        """Absolute path a tracee uses for rel (BASE/view/rel)."""
        return str(self.view / rel) if rel else str(self.view)

    # ----- binaries usable by a given user -----------------------------

    def binaries_for(self, user: Optional[str]) -> tuple:
        if user is None:
            return HOMESTUB, WRAP
        probe = subprocess.run(
            NOBODY_SETPRIV + ["sh", "-c", 'test -x "$1" && test -x "$2" && test -r "$1"', "sh",
                              str(HOMESTUB), str(WRAP)], env=dict(MIN_ENV))
        if probe.returncode == 0:
            return HOMESTUB, WRAP
        if self._nobody_bin is None:
            self._nobody_bin = self.base / "bin"
            self._nobody_bin.mkdir(mode=0o755)
            for b in (HOMESTUB, WRAP):
                shutil.copy2(b, self._nobody_bin / b.name)
                os.chmod(self._nobody_bin / b.name, 0o755)
        return self._nobody_bin / HOMESTUB.name, self._nobody_bin / WRAP.name

    # ----- the home ---------------------------------------------------

    def start_home(self, *, root: Optional[pathlib.Path] = None, user: Optional[str] = None,
                   key: Optional[pathlib.Path] = None, server_argv: Optional[list] = None,
                   wait: bool = True, extra_args: Sequence[str] = ()) -> Home:
        """Starts homestub (or server_argv, a stand-in) in its own mount+pid
        namespace with BASE/homedata bind-mounted onto BASE/view.

        server_argv may contain "{port}", substituted with the chosen port.
        extra_args are added to homestub's own arguments. A homestub that
        runs as root without --root gets --allow-root (the harness's plain
        homes act for any tracee user on purpose).
        """
        require_root_and_unshare()
        port = free_port()
        key = key or self.key
        if user is not None:
            shutil.chown(key, user=user, group="nogroup" if user == "nobody" else None)
        if server_argv is None:
            homestub, _ = self.binaries_for(user)
            server_argv = [str(homestub), "--listen", f"127.0.0.1:{port}", "--key-file", str(key)]
            if root is not None:
                server_argv += ["--root", str(root)]
            elif user is None and os.geteuid() == 0 and "--user" not in extra_args:
                server_argv += ["--allow-root"]
            server_argv += [str(a) for a in extra_args]
        else:
            server_argv = [a.replace("{port}", str(port)) for a in server_argv]
        if user is not None:
            server_argv = NOBODY_SETPRIV + server_argv
        script = (f"mount --bind {shlex.quote(str(self.homedata))} {shlex.quote(str(self.view))}"
                  f" && exec {shlex.join(server_argv)}")
        log_path = self.local / f"home-{len(self.homes)}.log"
        log_file = open(log_path, "wb")
        proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child",
             "--", "sh", "-c", script],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
            env=dict(MIN_ENV), cwd="/", start_new_session=True)
        home = Home(proc=proc, port=port, key=key, log_path=log_path, root=root, user=user,
                    _log_file=log_file)
        self.homes.append(home)
        if self.home is None:
            self.home = home
        if wait:
            deadline = time.monotonic() + HOME_START_TIMEOUT
            while not is_listening(port):
                if proc.poll() is not None:
                    pytest.fail(f"home exited with status {proc.returncode} before listening:\n"
                                f"$ {script}\n{home.log()}")
                if time.monotonic() > deadline:
                    home.kill()
                    pytest.fail(f"home did not listen on {home.addr} within "
                                f"{HOME_START_TIMEOUT} s:\n$ {script}\n{home.log()}")
                time.sleep(0.02)
        return home

    def in_home_ns(self, argv: Sequence[str], home: Optional[Home] = None) -> subprocess.CompletedProcess:
        """Runs argv inside the home's mount namespace (harness self-checks)."""
        home = home or self.home
        pid = home.ns_init_pid()
        assert pid is not None, "home namespace is gone"
        return subprocess.run(["nsenter", "-t", str(pid), "-m", "--", *argv],
                              capture_output=True, text=True, timeout=10, env=dict(MIN_ENV))

    # ----- running tracees --------------------------------------------

    def wrap_argv(self, args: Sequence[str], *, user: Optional[str] = None,
                  extra_wrap_args: Sequence[str] = (), home: Optional[Home] = None,
                  key: Optional[pathlib.Path] = None) -> list:
        home = home or self.home
        assert home is not None, "start_home() first"
        _, wrap = self.binaries_for(user)
        argv = [str(wrap), "--home", home.addr, "--key-file", str(key or home.key),
                *map(str, extra_wrap_args), "--", *map(str, args)]
        return (NOBODY_SETPRIV + argv) if user else argv

    def run(self, args: Sequence[str], *, cwd=None, user: Optional[str] = None,
            extra_wrap_args: Sequence[str] = (), timeout: float = 60, input=None,
            home: Optional[Home] = None, key: Optional[pathlib.Path] = None,
            binary: bool = False) -> subprocess.CompletedProcess:
        """Runs args under wrap-and-run against the home (cwd defaults to
        BASE/view); fails the test with "hung" on timeout."""
        argv = self.wrap_argv(args, user=user, extra_wrap_args=extra_wrap_args, home=home, key=key)
        return run_bounded(argv, cwd=str(cwd) if cwd is not None else str(self.view),
                           timeout=timeout, input=input, binary=binary)

    def popen(self, args: Sequence[str], *, cwd=None, user=None, extra_wrap_args=(),
              home=None) -> subprocess.Popen:
        argv = self.wrap_argv(args, user=user, extra_wrap_args=extra_wrap_args, home=home)
        return subprocess.Popen(argv, cwd=str(cwd) if cwd is not None else str(self.view),
                                env=dict(MIN_ENV), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)

    # ----- teardown ---------------------------------------------------

    def close(self) -> None:
        for h in self.homes:
            h.kill()
        # The bind mount lived only in the (now dead) namespace; from here
        # BASE/view is the plain decoy directory.
        shutil.rmtree(self.base, ignore_errors=True)


def command_program(commands: str, prelude: str = "") -> str:
    """A python3 program that reads "CMD ARG..." lines and answers each with
    one line: what `commands` (an if/elif chain on `cmd` and the list `a`
    that sets `out`) gives, "?" for an unknown command, or the errno name of
    the OSError it raised. `prelude` runs first (imports, helpers)."""
    body = textwrap.indent(textwrap.dedent(commands).strip("\n"), " " * 8)
    return (f"import errno, os, sys\n{textwrap.dedent(prelude).strip()}\n"
            "for line in sys.stdin:\n    cmd, *a = line.split()\n    try:\n"
            f"{body}\n        else: out = '?'\n"
            "    except OSError as e:\n        out = errno.errorcode.get(e.errno, str(e.errno))\n"
            "    print(out, flush=True)\n")


class CommandTracee:
    """A python3 tracee under wrap-and-run (with --stats) running `script`
    (see `command_program`), which answers one line per command line it
    reads."""

    def __init__(self, tv, script: str, extra=()):
        self.proc = tv.popen([PY, "-c", script], extra_wrap_args=["--stats", *extra])

    def __call__(self, *words) -> str:
        self.proc.stdin.write((" ".join(map(str, words)) + "\n").encode())
        self.proc.stdin.flush()
        line = self.proc.stdout.readline().decode().strip()
        assert line, f"tracee gave no answer to {words}: {self.proc.stderr.read().decode()}"
        return line

    def finish(self) -> str:
        """Ends the tracee; returns wrap-and-run's stderr (with --stats)."""
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0
        return self.proc.stderr.read().decode()


def wrap_spawn_argv(args: Sequence[str], *, root=None, extra: Sequence[str] = ()) -> list:
    argv = [str(WRAP), "--home", "spawn"]
    if root is not None:
        argv += ["--root", str(root)]
    return argv + [*map(str, extra), "--", *map(str, args)]


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------

@pytest.fixture
def views():
    """Two views with no home started yet (for tests that need --root, a
    non-root homestub, or a stand-in server)."""
    require_root_and_unshare()
    tv = TwoViews()
    try:
        yield tv
    finally:
        tv.close()


@pytest.fixture
def tv(views):
    """Two views plus a running homestub (root /, run as root)."""
    require_binaries()
    views.start_home()
    return views


@pytest.fixture
def bins():
    """Only the binaries (no namespace), e.g. for key-file checks and spawn."""
    require_binaries()
    return HOMESTUB, WRAP


@pytest.fixture
def scratch():
    """A plain temp dir under /tmp (for --home spawn tests)."""
    d = pathlib.Path(tempfile.mkdtemp(prefix="tether-it-", dir="/tmp"))
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def shm_marker():
    """A path under /dev/shm (local by default) that a tracee may create to
    show it ran, even when forwarding is broken."""
    p = pathlib.Path(f"/dev/shm/tether-it-{os.getpid()}-{time.monotonic_ns()}")
    try:
        yield p
    finally:
        try:
            p.unlink()
        except FileNotFoundError:
            pass
