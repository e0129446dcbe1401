"""Races of a process under wrap-and-run, started or attached, on the
engine TETHER_ENGINE names: signals sent while calls are injected into
it (the attach's, and the ptrace engine's placeholder installs), and
execve from a thread other than the leader.
"""
import contextlib
import os
import select
import signal
import subprocess
import threading
import time

from attach_tracee import DECOY, HOME, Tracee, attach, start_loop, wait_attached
from conftest import SH, py
from test_concurrency import compile_c


# A thread (not the leader) calls execve: the kernel ends every other
# thread and gives it the leader's id. The new program's calls go on being
# served, and its status is the program's.
EXEC_FROM_A_THREAD = r"""
import os, sys, threading
def run():
    os.execv(sys.argv[1], sys.argv[1:])
threading.Thread(target=run).start()
threading.Event().wait()
"""


def test_execve_from_a_thread_forwards_in_the_new_program(tv):
    tv.home_file("only.txt", HOME + "\n")
    r = tv.run(py(EXEC_FROM_A_THREAD, SH, "-c", f"cat {tv.p('only.txt')}; exit 7"))
    assert (r.returncode, r.stdout) == (7, HOME + "\n"), (r.returncode, r.stdout, r.stderr)


def test_attached_execve_from_a_thread_forwards_in_the_new_program(tv):
    # As above, in a process taken over: the thread execs once the loop
    # has read the home's file.
    script = r"""
import os, sys, threading, time
path, stop = sys.argv[1], sys.argv[2]
def run():
    while True:
        with open(path) as f:
            data = f.read().strip()
        print(data, flush=True)
        if data == "HOME-CONTENT":
            os.execv("/bin/sh", ["sh", "-c", f"cat {path}; exit 7"])
        time.sleep(0.2)
threading.Thread(target=run).start()
print("pid", os.getpid(), flush=True)
threading.Event().wait()
"""
    t, pid, stop = start_loop(tv, script)
    try:
        t.wait_for(lambda l: l == DECOY)
        w = attach(tv, pid)
        t.wait_for(lambda l: l == HOME)
        assert t.wait_for(lambda l: True) == HOME   # cat, in the new program
        _, err = w.communicate(timeout=20)
        assert w.returncode == 7, err
        assert t.proc.wait(timeout=10) == 7
    finally:
        t.kill()


# -- signals sent while calls are injected into the tracee ----------------------
#
# The attach runs its calls in a stopped thread of the tracee, and the ptrace
# engine installs every placeholder (each forwarded open) the same way: a
# signal that comes meanwhile must reach the program once the thread goes
# on, no more and no fewer times. Standard signals coalesce while pending,
# so a count of them proves nothing by itself: SIGUSR1 goes one at a time,
# the next only once the handler has acknowledged the last (a lost one
# stalls the exchange); SIGRTMIN is queued by the kernel, never coalesced,
# so its handler must run exactly as often as it was sent, in a burst.
SIGNALLED_OPENS_C = r'''
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static volatile sig_atomic_t rt, usr1;
static void on_rt(int s) { (void)s; rt++; }
static void on_usr1(int s)
{
    (void)s;
    usr1++;
    char ack = 1;
    (void)write(2, &ack, 1);
}
int main(int argc, char **argv)
{
    const char *path = argv[1], *stop = argv[2];
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_flags = SA_RESTART;
    sa.sa_handler = on_rt;
    sigaction(SIGRTMIN, &sa, NULL);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    printf("pid %d\n", getpid());
    fflush(stdout);
    long opens = 0, home = 0, last = 0;
    char buf[64];
    while (access(stop, F_OK) != 0) {
        int fd = open(path, O_RDONLY);
        if (fd < 0) {
            printf("open: %s\n", strerror(errno));
            return 1;
        }
        ssize_t n = read(fd, buf, sizeof buf - 1);
        buf[n > 0 ? n : 0] = 0;
        last = strncmp(buf, "HOME-CONTENT", 12) == 0;
        home += last;
        close(fd);
        if (++opens == 20) {
            printf("looping\n");
            fflush(stdout);
        }
    }
    printf("opens %ld home %ld last %ld rt %d usr1 %d\n", opens, home, last, (int)rt, (int)usr1);
    return 7;
}
'''


class Signaller:
    """Sends SIGRTMIN in a burst and SIGUSR1 one at a time (each after the
    tracee's acknowledgement, byte 1 on the pipe `acks`) to `pid` until
    stopped; counts what was sent."""

    def __init__(self, pid, acks):
        self.pid, self.acks = pid, acks
        self.done = threading.Event()
        self.rt = self.usr1 = 0
        self.lost = None
        self.threads = [threading.Thread(target=self._rt), threading.Thread(target=self._usr1)]
        for t in self.threads:
            t.start()

    def _rt(self):
        while not self.done.is_set():
            for _ in range(4):
                os.kill(self.pid, signal.SIGRTMIN)
                self.rt += 1
            time.sleep(0.001)

    def _usr1(self):
        while not self.done.is_set():
            os.kill(self.pid, signal.SIGUSR1)
            self.usr1 += 1
            deadline = time.monotonic() + 10
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.acks], [], [], left)[0]:
                    self.lost = f"SIGUSR1 number {self.usr1} was never handled"
                    return
                got = os.read(self.acks, 1)
                if got == b"\x01":
                    break
                assert got, "the tracee's stderr closed"

    def stop(self):
        self.done.set()
        for t in self.threads:
            t.join(timeout=30)
        assert self.lost is None, self.lost


def signalled_opens_report(t, sender, stop):
    """Stops the signals, lets the tracee end and returns its counts."""
    sender.stop()
    stop.write_text("")
    words = t.wait_for(lambda l: l.startswith("opens ") or l.startswith("open:")).split()
    assert words[0] == "opens", words
    report = dict(zip(words[::2], map(int, words[1::2])))
    assert report["opens"] > 50 and report["last"] == 1, report
    assert (report["rt"], report["usr1"]) == (sender.rt, sender.usr1), report
    return report


@contextlib.contextmanager
def signalled_opener(tv, wrapped):
    """The opening loop (under wrap-and-run when `wrapped`), looping, with
    its signaller; yields (tracee, pid, signaller, stop file)."""
    exe = compile_c(tv, "signalled", SIGNALLED_OPENS_C)
    tv.both("data.txt", HOME + "\n", DECOY + "\n")
    stop = tv.local / "stop"
    argv = [str(exe), tv.p("data.txt"), str(stop)]
    r, w = os.pipe()
    t = Tracee(tv.wrap_argv(argv) if wrapped else argv, stderr=w)
    os.close(w)
    try:
        pid = int(t.wait_for(lambda l: l.startswith("pid ")).split()[1])
        t.wait_for(lambda l: l == "looping")
        yield t, pid, Signaller(pid, r), stop
    finally:
        t.kill()
        os.close(r)


def test_signals_during_placeholder_installs_are_all_delivered(tv):
    # Every open is forwarded: a placeholder installed in the thread (under
    # ptrace, by injected calls) while the signals come.
    with signalled_opener(tv, wrapped=True) as (t, pid, sender, stop):
        time.sleep(1.5)
        report = signalled_opens_report(t, sender, stop)
        assert report["home"] == report["opens"], report
        assert t.proc.wait(timeout=20) == 7


def test_signals_during_the_attach_injection_are_all_delivered(tv):
    with signalled_opener(tv, wrapped=False) as (t, pid, sender, stop):
        time.sleep(0.3)
        w = attach(tv, pid)
        wait_attached(pid, w)
        time.sleep(1.0)
        report = signalled_opens_report(t, sender, stop)
        assert 0 < report["home"] < report["opens"], report
        _, err = w.communicate(timeout=20)
        assert w.returncode == 7, err


def test_attached_process_killed_amid_its_calls_gives_its_signal_status(tv):
    # SIGKILL lands while calls are injected into the thread (under ptrace,
    # a placeholder install, whose waits take the thread's exit): the exit
    # is still the process's, 128+9, every time.
    exe = compile_c(tv, "signalled", SIGNALLED_OPENS_C)
    tv.both("data.txt", HOME + "\n", DECOY + "\n")
    for _ in range(10):
        t = Tracee([str(exe), tv.p("data.txt"), str(tv.local / "stop")], stderr=subprocess.DEVNULL)
        try:
            pid = int(t.wait_for(lambda l: l.startswith("pid ")).split()[1])
            w = attach(tv, pid)
            wait_attached(pid, w)
            time.sleep(0.2)
            os.kill(pid, signal.SIGKILL)
            _, err = w.communicate(timeout=20)
            assert w.returncode == 128 + signal.SIGKILL, err
        finally:
            t.kill()
