"""Terminals and devices at home: the home mounts a devpts instance of its
own and makes a pty there, so its /dev/pts/N exists only at home (the
target's /dev/pts/N, if any, is another terminal). A tracee that opens it
through `--forward /dev/pts` reads and writes the home pty (the bytes show
on its master, held by a helper in the home's namespace), and its ioctls
(termios, window size, FIONREAD) act on it; stty run in the home's
namespace sees what the tracee set."""
import fcntl
import os
import shlex
import struct
import subprocess
import termios
import textwrap

import pytest

from conftest import MIN_ENV, PY, describe

# The home side of the pty: makes it, prints the slave's name, then
# answers one line per command: write HEX (to the master), read N (from
# the master, up to 10 s), setwinsz ROWS COLS, winsz.
HELPER = r'''
import fcntl, os, select, struct, sys, termios, tty
m, s = os.openpty()
tty.setraw(s)
print(os.ttyname(s), flush=True)
for line in sys.stdin:
    cmd, *a = line.split()
    if cmd == "write":
        os.write(m, bytes.fromhex(a[0]))
        out = "ok"
    elif cmd == "read":
        want, got = int(a[0]), b""
        while len(got) < want:
            r, _, _ = select.select([m], [], [], 10)
            if not r:
                break
            got += os.read(m, want - len(got))
        out = got.hex() or "-"
    elif cmd == "setwinsz":
        fcntl.ioctl(m, termios.TIOCSWINSZ, struct.pack("HHHH", int(a[0]), int(a[1]), 0, 0))
        out = "ok"
    elif cmd == "winsz":
        out = "%d %d" % struct.unpack("HHHH", fcntl.ioctl(m, termios.TIOCGWINSZ, bytes(8)))[:2]
    print(out, flush=True)
'''


class HomePty:
    """A pty in the home's own devpts instance, its master held by HELPER."""

    def __init__(self, tv):
        pid = tv.home.ns_init_pid()
        script = ("mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts"
                  f" && exec {PY} -c {shlex.quote(HELPER)}")
        self.proc = subprocess.Popen(["nsenter", "-t", str(pid), "-m", "--", "sh", "-c", script],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=dict(MIN_ENV))
        self.slave = self.proc.stdout.readline().strip()
        assert self.slave.startswith("/dev/pts/"), self.proc.stderr.read()
        self.tv = tv

    def __call__(self, *words) -> str:
        self.proc.stdin.write(" ".join(map(str, words)) + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def stty(self) -> str:
        r = self.tv.in_home_ns(["stty", "-a", "-F", self.slave])
        assert r.returncode == 0, describe(r)
        return r.stdout

    def close(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def home_pty(tv):
    p = HomePty(tv)
    try:
        yield p
    finally:
        p.close()


FORWARD = ["--forward", "/dev/pts"]

PRELUDE = textwrap.dedent('''
    import ctypes, errno, fcntl, os, select, struct, sys, termios
    libc = ctypes.CDLL(None, use_errno=True)
    def ioctl_raw(fd, request, arg):
        r = libc.ioctl(fd, ctypes.c_ulong(request), ctypes.c_void_p(arg))
        return "ok" if r == 0 else errno.errorcode[ctypes.get_errno()]
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_NOCTTY)
''')


def run_tracee(tv, pty, body, timeout=60):
    r = tv.run([PY, "-c", PRELUDE + textwrap.dedent(body), pty.slave], extra_wrap_args=FORWARD, timeout=timeout)
    assert r.returncode == 0, describe(r)
    return r.stdout.split("\n")


def test_isatty_and_termios_round_trip_change_the_home_pty(tv, home_pty):
    assert "-echo" in home_pty.stty().split()
    out = run_tracee(tv, home_pty, '''
        print(os.isatty(fd))
        a = termios.tcgetattr(fd)
        print(bool(a[3] & termios.ECHO), bool(a[3] & termios.ICANON))
        a[3] |= termios.ECHO | termios.ICANON
        a[6][termios.VINTR] = b"\\x07"
        termios.tcsetattr(fd, termios.TCSANOW, a)
        b = termios.tcgetattr(fd)
        print(bool(b[3] & termios.ECHO), bool(b[3] & termios.ICANON), b[6][termios.VINTR] == b"\\x07")
    ''')
    assert out[:3] == ["True", "False False", "True True True"]
    # The object itself: fstat, ttyname (/proc/self/fd/N) are the home pty's.
    out = run_tracee(tv, home_pty, '''
        import stat
        st = os.fstat(fd)
        print(stat.S_ISCHR(st.st_mode), os.ttyname(fd), os.major(st.st_rdev), os.minor(st.st_rdev))
    ''')
    home = tv.in_home_ns([PY, "-c", f"import os; st = os.stat({home_pty.slave!r}); print(os.major(st.st_rdev), os.minor(st.st_rdev))"])
    assert out[0] == f"True {home_pty.slave} {home.stdout.strip()}", describe(home)
    home = home_pty.stty().split()
    assert "echo" in home and "icanon" in home and "^G;" in home


def test_stty_reads_the_home_pty(tv, home_pty):
    assert home_pty("setwinsz", 37, 101) == "ok"
    r = tv.run(["stty", "-a", "-F", home_pty.slave], extra_wrap_args=FORWARD)
    assert r.returncode == 0, describe(r)
    assert "rows 37; columns 101;" in r.stdout and "-echo" in r.stdout.split()
    # The same name on the target is not that terminal.
    local = subprocess.run(["stty", "-a", "-F", home_pty.slave], capture_output=True, text=True)
    assert "rows 37; columns 101;" not in local.stdout


def test_window_size_both_ways(tv, home_pty):
    assert home_pty("setwinsz", 41, 99) == "ok"
    out = run_tracee(tv, home_pty, '''
        print(*struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, bytes(8)))[:2])
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 132, 0, 0))
    ''')
    assert out[0] == "41 99"
    assert home_pty("winsz") == "50 132"


def test_bytes_flow_both_ways_with_poll_select_and_fionread(tv, home_pty):
    proc = tv.popen([PY, "-c", PRELUDE + textwrap.dedent('''
        os.write(fd, b"to-home")
        p = select.poll()
        p.register(fd, select.POLLIN)
        print("poll", p.poll(20000), flush=True)
        r, _, _ = select.select([fd], [], [], 20)
        n = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, bytes(4)))[0]
        print("select", r == [fd], "fionread", n, flush=True)
        print("read", os.read(fd, 100), flush=True)
    '''), home_pty.slave], extra_wrap_args=FORWARD)
    try:
        assert bytes.fromhex(home_pty("read", 7)) == b"to-home"
        assert home_pty("write", b"from-home".hex()) == "ok"
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    lines = out.decode().split("\n")
    assert lines[0].startswith("poll [(") and lines[0].endswith(", 1)]"), lines
    assert lines[1] == "select True fionread 9"
    assert lines[2] == "read b'from-home'"


def test_bad_requests_and_pointers_get_the_kernels_errno(tv, home_pty):
    out = run_tracee(tv, home_pty, '''
        print(ioctl_raw(fd, 0x54FF, 0))          # a terminal-type request nobody knows
        print(ioctl_raw(fd, 0x8912, 0))          # SIOCGIFCONF: no socket behind a terminal
        print(ioctl_raw(fd, 0x1234, 0))          # another type: the placeholder's own ENOTTY
        print(ioctl_raw(fd, termios.TIOCGWINSZ, 8))
        print(ioctl_raw(fd, termios.TCSETS, 8))
        print(ioctl_raw(fd, termios.FIONCLEX, 0), ioctl_raw(fd, termios.FIOCLEX, 0),
              fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)
        r, w = os.pipe()
        print(os.isatty(r), ioctl_raw(r, termios.TIOCGWINSZ, 0))
    ''')
    assert out[:7] == ["ENOTTY", "ENOTTY", "ENOTTY", "EFAULT", "EFAULT", "ok ok 1", "False ENOTTY"]


def test_a_write_reaches_home_before_a_later_tcsetsf(tv, home_pty):
    # 256 KiB written, then TCSETSF (tcsetattr TCSAFLUSH): the bytes are at
    # home before the new settings apply, none lost.
    proc = tv.popen([PY, "-c", PRELUDE + textwrap.dedent('''
        data = bytes(range(256)) * 1024
        os.set_blocking(fd, True)
        done = 0
        while done < len(data):
            done += os.write(fd, data[done:])
        a = termios.tcgetattr(fd)
        a[3] |= termios.ECHO
        termios.tcsetattr(fd, termios.TCSAFLUSH, a)
        print("set", flush=True)
    '''), home_pty.slave], extra_wrap_args=FORWARD)
    try:
        got = bytes.fromhex(home_pty("read", 256 * 1024))
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert got == bytes(range(256)) * 1024
    assert "echo" in home_pty.stty().split()


STDIO_PROGRAM = r'''
import fcntl, os, signal, struct, sys, termios, time
def size():
    return struct.unpack("HHHH", fcntl.ioctl(1, termios.TIOCGWINSZ, bytes(8)))[:2]
got = []
signal.signal(signal.SIGWINCH, lambda *a: got.append(size()))
print("tty", os.isatty(0), os.isatty(1), os.isatty(2), *size(), os.ttyname(0), flush=True)
print("read", sys.stdin.readline().strip(), flush=True)
deadline = time.time() + 20
while not got and time.time() < deadline:
    time.sleep(0.05)
print("winch", *(got[-1] if got else ("none",)), flush=True)
'''


def read_until(fd, text, timeout=30):
    """Reads the pty master `fd` until `text` shows (the terminal's \\r\\n as \\n)."""
    import select
    import time
    got, deadline = b"", time.monotonic() + timeout
    while text.encode() not in got.replace(b"\r\n", b"\n"):
        left = deadline - time.monotonic()
        r, _, _ = select.select([fd], [], [], max(left, 0))
        assert r, f"no {text!r} from the home terminal; got {got!r}"
        got += os.read(fd, 4096)
    return got.replace(b"\r\n", b"\n").decode()


def test_stdio_home_is_the_home_commands_terminal_with_sigwinch(bins):
    # The home's terminal: a pty made here, the home command's stderr.
    homestub, wrap = bins
    master, slave = os.openpty()
    try:
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 77, 0, 0))
        argv = [str(wrap), "--home-command", f"exec {homestub} --stdio 2>{os.ttyname(slave)}",
                "--stdio", "home", "--", PY, "-c", STDIO_PROGRAM]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=dict(MIN_ENV), start_new_session=True)
        try:
            line = f"tty True True True 33 77 {os.ttyname(slave)}\n"
            assert line in read_until(master, line)
            os.write(master, b"hello\n")
            assert "read hello\n" in read_until(master, "read hello\n")
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
            assert "winch 40 100\n" in read_until(master, "winch ")
            out, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
        assert proc.returncode == 0, err
        assert out == b""   # the program wrote to the home's terminal, not to wrap-and-run's stdout
    finally:
        os.close(master)
        os.close(slave)


def test_stdio_home_without_a_home_terminal_says_so(bins):
    homestub, wrap = bins
    r = subprocess.run([str(wrap), "--home-command", f"exec {homestub} --stdio 2>/dev/null", "--stdio", "home",
                        "--", "/bin/true"], capture_output=True, text=True, timeout=30, env=dict(MIN_ENV))
    assert r.returncode != 0 and "--stdio home: the home has no terminal" in r.stderr, describe(r)
    r = subprocess.run([str(wrap), "--stdio", "elsewhere", "--", "/bin/true"], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "--stdio takes local or home" in r.stderr, describe(r)


def test_what_a_program_wrote_just_before_it_exited_reaches_home(tv, home_pty):
    # Written, then exit at once: the bytes are at home when wrap-and-run
    # has ended (it sends home what the pump had not moved yet), read only then.
    out = run_tracee(tv, home_pty, "os.write(fd, bytes(range(256)) * 12)\nos._exit(0)\n")
    assert out == [""]
    assert bytes.fromhex(home_pty("read", 3072)) == bytes(range(256)) * 12
