"""The traced program never outlives its supervisor half-working: every
process of it (children, daemons that double-forked into a new session)
dies with wrap-and-run, whether wrap-and-run is killed or the program's
first process simply exits first."""

import os
import signal
import time

from conftest import alive, describe, py, run_bounded, wrap_spawn_argv
from test_file_semantics import Line

# Prints the pids of: itself, a child, and a daemon that left through a
# double fork and setsid (its parent exits, so it is an orphan).
FAMILY = r'''
import os, sys, time
child = os.fork()
if child == 0:
    time.sleep(60); os._exit(0)
r, w = os.pipe()
middle = os.fork()
if middle == 0:
    os.setsid()
    daemon = os.fork()
    if daemon == 0:
        time.sleep(60); os._exit(0)
    os.write(w, str(daemon).encode()); os._exit(0)
os.waitpid(middle, 0)
daemon = int(os.read(r, 32))
print("pids", os.getpid(), child, daemon, flush=True)
sys.stdin.readline()
print(open(sys.argv[1]).read(), end="", flush=True)
'''


def gone_within(pids, seconds: float) -> list:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.02)
    return [p for p in pids if alive(p)]


def test_killing_wrap_and_run_kills_every_process_of_the_program(tv):
    tv.both("file.txt", "home\n", "decoy\n")
    t = Line(tv, py(FAMILY, tv.p("file.txt")))
    pids = [int(p) for p in t.expect("pids").split()]
    assert all(alive(p) for p in pids), pids
    os.kill(t.proc.pid, signal.SIGKILL)
    t.proc.wait(5)
    assert gone_within(pids, 1.0) == [], f"still running after wrap-and-run was killed: {pids}"


def test_the_reported_case_a_sleeping_shell_dies_with_its_killed_supervisor(tv):
    tv.both("file.txt", "home\n", "decoy\n")
    t = Line(tv, ["/bin/sh", "-c", f"echo $$; sleep 3; cat {tv.p('file.txt')}; echo done"])
    shell = int(t.expect(""))
    os.kill(t.proc.pid, signal.SIGKILL)
    t.proc.wait(5)
    assert gone_within([shell], 1.0) == [], "the shell outlived its supervisor"


def test_processes_the_program_leaves_behind_end_with_it(tv):
    r = tv.run(["/bin/sh", "-c", "sleep 60 & echo $!"], timeout=20)
    assert r.returncode == 0, describe(r)
    assert gone_within([int(r.stdout.split()[0])], 1.0) == [], "a background sleep outlived wrap-and-run"


def test_the_program_status_still_comes_through_the_keeper(tv):
    assert tv.run(["/bin/sh", "-c", "exit 7"]).returncode == 7
    assert tv.run(["/bin/sh", "-c", "kill -TERM $$"]).returncode == 128 + signal.SIGTERM


# Prints what the program's parent (the keeper) holds open: fd -> target.
KEEPER_FDS = r'''
import os
d = f"/proc/{os.getppid()}/fd"
for fd in sorted(os.listdir(d), key=int):
    print(fd, os.readlink(f"{d}/{fd}"))
'''


def test_the_keeper_holds_only_its_own_socket_and_stdio(bins, scratch):
    # The keeper is forked from the supervisor and never execs: a copy of a
    # home stream's far end there would keep the stream open after the home
    # ended, and the supervisor would wait for its end of file for ever.
    r = run_bounded(wrap_spawn_argv(py(KEEPER_FDS)), cwd=scratch)
    assert r.returncode == 0, describe(r)
    held = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    # Its own: the socket to the supervisor, and the signalfd it waits on.
    extra = sorted(t for fd, t in held.items() if fd not in ("0", "1", "2"))
    assert len(extra) == 2 and extra[0] == "anon_inode:[signalfd]" and extra[1].startswith("socket:"), held
