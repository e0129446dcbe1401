"""`--stdio home` with an ssh:// home (issue 10, point 5): the session's
`homestub --stdio` runs under `ssh -T` and has no terminal, so a second
login (`ssh -tt`, same destination and options) runs `homestub
--hand-terminal`, which hands the pty sshd made to the session's deputy
over a Unix socket in a private directory at home, with a one-time secret.

The home is a real sshd in the home's namespace (`sshd_home`), with a
devpts instance of its own: its /dev/pts/N exists only at home. wrap-and-run
runs on a pty of the test's (the user's terminal on the target), as the
controlling terminal of its session, so a resize there is a SIGWINCH for ssh.
"""
import fcntl
import os
import pathlib
import select
import shlex
import struct
import subprocess
import termios
import time

import pytest

from conftest import MIN_ENV, PY, SH, WRAP, HOMESTUB, describe, write
from test_user_view import sshd_home  # noqa: F401 (the fixture)


@pytest.fixture
def pty_home(sshd_home):  # noqa: F811
    """The ssh home with a devpts instance of its own (ptys sshd makes are home's only)."""
    tv, home, env = sshd_home
    r = tv.in_home_ns(["mount", "-t", "devpts", "-o", "newinstance,ptmxmode=0666", "devpts", "/dev/pts"])
    assert r.returncode == 0, describe(r)
    return tv, home, env


class Outer:
    """wrap-and-run on a pty of the test's: its stdin, stdout and stderr,
    and the controlling terminal of its session."""

    def __init__(self, argv, env, cwd, rows=24, cols=80):
        self.master, slave = os.openpty()
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd,
                                     start_new_session=True,
                                     preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        os.close(slave)
        self.seen = b""

    def until(self, text, timeout=30) -> str:
        """What the terminal showed until `text` (its \\r\\n read as \\n)."""
        deadline = time.monotonic() + timeout
        while text.encode() not in self.seen.replace(b"\r\n", b"\n"):
            left = deadline - time.monotonic()
            r, _, _ = select.select([self.master], [], [], max(left, 0))
            assert r, f"no {text!r} on the terminal; it showed {self.seen!r}"
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: every slave closed
                chunk = b""
            assert chunk, f"the terminal closed before {text!r}; it showed {self.seen!r}"
            self.seen += chunk
        return self.text()

    def text(self) -> str:
        return self.seen.replace(b"\r\n", b"\n").decode(errors="replace")

    def finish(self, timeout=30) -> tuple:
        """The exit status, and all the terminal showed."""
        try:
            status = self.proc.wait(timeout=timeout)
        finally:
            self.proc.kill()
        while True:
            r, _, _ = select.select([self.master], [], [], 0.5)
            if not r:
                break
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                break
            if not chunk:
                break
            self.seen += chunk
        os.close(self.master)
        return status, self.text()

    def resize(self, rows, cols):
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def wrap_argv(home, *program, extra=()):
    return [str(WRAP), "--home", f"ssh://root@127.0.0.1:{home.port}", "--remote-homestub", str(HOMESTUB),
            "--stdio", "home", *extra, "--", *program]


WINCH = ("import signal, time\n"
         "got = []\n"
         "signal.signal(signal.SIGWINCH, lambda *a: got.append(1))\n"
         "print('resize me', flush=True)\n"
         "deadline = time.time() + 20\n"
         "while not got and time.time() < deadline:\n"
         "    time.sleep(0.05)\n"
         "print('winch', bool(got), flush=True)\n")

SESSION = (f"tty; stty size; {PY} -c 'import sys; print(sys.stdin.isatty())';"
           f" {PY} -c 'import os; s = os.fstat(0); print(\"id\", s.st_dev, s.st_ino)'; echo ready;"
           f" read line; echo \"got:$line\"; {PY} -c {shlex.quote(WINCH)}; stty size; exit 7")


def test_the_program_runs_on_a_pty_of_the_homes(pty_home):
    tv, home, env = pty_home
    outer = Outer(wrap_argv(home, SH, "-c", SESSION), env, tv.view)
    shown = outer.until("ready\n")
    lines = shown.splitlines()
    end = lines.index("ready")
    name = lines[end - 4]
    assert name.startswith("/dev/pts/"), shown
    assert lines[end - 3:end - 1] == ["24 80", "True"], shown
    # The name is home's devpts: there it is the very device the program has.
    ident = lines[end - 1].split()[1:]
    r = tv.in_home_ns([PY, "-c", f"import os; s = os.stat({name!r}); print(s.st_dev, s.st_ino)"])
    assert (r.returncode, r.stdout.split()) == (0, ident), describe(r)
    here = os.stat(name) if os.path.exists(name) else None
    assert here is None or [str(here.st_dev), str(here.st_ino)] != ident
    os.write(outer.master, b"typed at the target\r")
    shown = outer.until("got:typed at the target\n")
    assert "typed at the target\ngot:typed at the target\n" in shown, "the home pty echoes the line"
    outer.until("resize me\n")
    outer.resize(41, 101)
    outer.until("winch True\n41 101\n")
    status, shown = outer.finish()
    assert status == 7, shown


# The handlers only note (a print in a handler may land inside another print).
SIGNALS = ("import signal, sys, time\n"
           "got = []\n"
           "for s in (signal.SIGINT, signal.SIGQUIT):\n"
           "    signal.signal(s, lambda n, f: got.append(n))\n"
           "print('armed', flush=True)\n"
           "said, deadline = 0, time.time() + 20\n"
           "while len(got) < 2 and time.time() < deadline:\n"
           "    for n in got[said:]:\n"
           "        print(signal.Signals(n).name, flush=True)\n"
           "    said = len(got)\n"
           "    time.sleep(0.05)\n"
           "for n in got[said:]:\n"
           "    print(signal.Signals(n).name, flush=True)\n"
           "sys.exit(0 if got == [signal.SIGINT, signal.SIGQUIT] else 3)\n")


def test_interrupt_and_quit_typed_at_the_terminal_reach_the_program(pty_home):
    """^C and ^\\ make the home pty signal its foreground group, the
    helper's; it passes them on, and the program gets them, not the logins."""
    tv, home, env = pty_home
    outer = Outer(wrap_argv(home, PY, "-c", SIGNALS), env, tv.view)
    outer.until("armed\n")
    os.write(outer.master, b"\x03")
    outer.until("SIGINT\n")
    os.write(outer.master, b"\x1c")
    outer.until("SIGQUIT\n")
    status, shown = outer.finish()
    assert status == 0, shown


def test_the_second_login_shares_the_first_ones_control_master(pty_home):
    """ssh options in TETHER_SSH_COMMAND serve both logins: with
    ControlMaster the second is a session on the first one's connection
    (sshd authenticates once)."""
    tv, home, env = pty_home
    master = dict(env, TETHER_SSH_COMMAND=env["TETHER_SSH_COMMAND"] + f" -o ControlMaster=auto"
                  f" -o ControlPath={tv.local}/ssh/cm-%C -o ControlPersist=no")
    outer = Outer(wrap_argv(home, SH, "-c", "test -t 0 && echo on-a-tty; exit 5"), master, tv.view)
    status, shown = outer.finish()
    assert (status, shown.split()) == (5, ["on-a-tty"]), shown
    assert home.log().count("Accepted publickey") == 1, home.log()


def test_the_terminals_names_are_looked_up_at_home(bins):
    """With an ssh:// home, --stdio home forwards /dev/pts (the program's
    terminal is a pty there, and ttyname checks its name), unless a rule
    names /dev/pts; other homes and --stdio local keep the default."""
    def explain(*args):
        r = subprocess.run([str(WRAP), *args, "--explain", "/dev/pts/3"], capture_output=True, text=True, env=dict(MIN_ENV))
        assert r.returncode == 0, describe(r)
        return r.stdout
    assert explain("--home", "ssh://node", "--stdio", "home") == "/dev/pts/3: forward by rule /dev/pts (--forward)\n"
    assert explain("--home", "ssh://node", "--stdio", "home", "--local", "/dev/pts").startswith("/dev/pts/3: local by rule /dev/pts ")
    for args in (["--home", "ssh://node"], ["--home-command", "ssh node homestub --stdio", "--stdio", "home"]):
        assert explain(*args).startswith("/dev/pts/3: local by rule /dev (default)"), args


# --------------------------------------------------------------------------
# Failures: one line, a status of its own, the program never started, and
# no rendezvous left at home.
# --------------------------------------------------------------------------

def twisted_ssh(tv, env, twist: str) -> dict:
    """TETHER_SSH_COMMAND for an ssh whose second login (-tt) is changed by
    `twist`, Python that may rewrite `args` (ssh's arguments) and `cfg`
    (its -F file) before ssh runs; the first login is left alone."""
    cfg = env["TETHER_SSH_COMMAND"].split("-F ", 1)[1]
    body = "\n".join("    " + line for line in twist.splitlines())
    script = write(tv.local / "twisted-ssh", f"""#!{PY}
import os, re, subprocess, sys, time
args = sys.argv[1:]
cfg = {cfg!r}
if "-tt" in args:
{body}
os.execv("/usr/bin/ssh", ["ssh", "-F", cfg] + args)
""", mode=0o755)
    return dict(env, TETHER_SSH_COMMAND=str(script))


def rendezvous_left() -> set:
    return set(pathlib.Path("/tmp").glob("tether-terminal-*"))


def fails_with_one_line(tv, home, env, status, needle):
    before = rendezvous_left()
    marker = tv.p("program-ran")
    outer = Outer(wrap_argv(home, SH, "-c", f"echo ran > {marker}"), env, tv.view)
    got, shown = outer.finish(timeout=60)
    lines = [l for l in shown.splitlines() if l.strip()]
    assert (got, len(lines)) == (status, 1), shown
    assert lines[0].startswith("wrap-and-run: --stdio home: ") and needle in lines[0], shown
    assert not (tv.homedata / "program-ran").exists() and not (tv.view / "program-ran").exists()
    deadline = time.monotonic() + 10
    while rendezvous_left() - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not rendezvous_left() - before, "the rendezvous directory stays at home"
    return lines[0]


def test_a_refused_second_login_is_unreachable(pty_home):
    tv, home, env = pty_home
    d = tv.local / "ssh"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", d / "stranger"], check=True)
    write(d / "stranger_config", (d / "ssh_config").read_text().replace(f"{d}/user_key", f"{d}/stranger"))
    line = fails_with_one_line(tv, home, twisted_ssh(tv, env, f"cfg = {str(d / 'stranger_config')!r}"), 69,
                               "the second login, for the home's terminal, ended (status 255)")
    assert "Permission denied" in line


def test_a_wrong_secret_is_refused(pty_home):
    tv, home, env = pty_home
    twist = "args[-1] = re.sub('TETHER_TERMINAL_SECRET=[0-9a-f]+', 'TETHER_TERMINAL_SECRET=' + '5a' * 32, args[-1])"
    fails_with_one_line(tv, home, twisted_ssh(tv, env, twist), 77, "without this session's secret")


def test_a_login_without_a_pty_is_no_terminal(pty_home):
    # As sshd with PermitTTY no: the helper has no terminal and says so to the session.
    tv, home, env = pty_home
    fails_with_one_line(tv, home, twisted_ssh(tv, env, 'args[args.index("-tt")] = "-T"'), 126,
                        "the home has no terminal")


def test_a_helper_whose_session_is_gone_says_so(pty_home):
    """wrap-and-run killed while its second login starts: the session ends
    at home (its rendezvous with it), and the helper, left alone, says so
    in one line with a status of its own."""
    tv, home, env = pty_home
    started, status = tv.local / "login-started", tv.local / "login-status"
    twist = (f"open({str(started)!r}, 'w').close()\n"
             f"time.sleep(2)\n"
             f"rc = subprocess.call(['/usr/bin/ssh', '-F', cfg] + args)\n"
             f"open({str(status)!r}, 'w').write(str(rc))\n"
             f"sys.exit(rc)")
    # Under a shell that leads the terminal's session, as a user's would
    # (the death of a session leader would hang the terminal up).
    argv = [SH, "-c", '"$@"; sleep 60', "sh", *wrap_argv(home, SH, "-c", "echo never")]
    outer = Outer(argv, twisted_ssh(tv, env, twist), tv.view)
    deadline = time.monotonic() + 30
    while not started.exists():
        assert time.monotonic() < deadline and outer.proc.poll() is None, outer.text()
        time.sleep(0.02)
    wrap = int(pathlib.Path(f"/proc/{outer.proc.pid}/task/{outer.proc.pid}/children").read_text().split()[0])
    os.kill(wrap, 9)
    while not status.exists():
        assert time.monotonic() < deadline, outer.text()
        time.sleep(0.05)
    assert status.read_text() == "69"
    shown = outer.until("(it ended)")
    lines = [l for l in shown.splitlines() if l.strip() and l != "Killed"]  # the shell's word on wrap-and-run
    assert len(lines) == 1 and lines[0].startswith("homestub: no session waits for a terminal at /"), shown
    outer.proc.kill()
    outer.finish()


def test_the_helper_refuses_a_bad_command_line(bins):
    homestub, _ = bins
    r = subprocess.run([str(homestub), "--hand-terminal", "/tmp"], capture_output=True, text=True,
                       env=dict(MIN_ENV, TETHER_TERMINAL_SECRET="not hex"))
    assert r.returncode == 64 and "usage" in r.stderr, describe(r)
    # A directory that is not this user's private one: nobody waits there.
    r = subprocess.run([str(homestub), "--hand-terminal", "/tmp"], capture_output=True, text=True,
                       env=dict(MIN_ENV, TETHER_TERMINAL_SECRET="ab" * 32))
    assert r.returncode == 69 and "not a private directory" in r.stderr, describe(r)
