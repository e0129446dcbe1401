"""The program's CPU affinity is its own under both engines (README,
Engines). The ptrace engine resumes a thread on the tracer's CPU by
narrowing its affinity for the PTRACE_CONT and putting it back; the thread
may run before it is back, so the filter traces sched_getaffinity,
sched_setaffinity, clone, clone3, fork and vfork (the fences), which then
wait for the tracer. Here a program reads its affinity, makes threads and
children, and pins itself, each right after a forwarded call, and must
never see the narrowed set or lose its own setting."""

from conftest import PY, describe
from test_files import ok

AFFINITY = r'''
import os, sys, threading
p = sys.argv[1]
cpus = sorted(os.sched_getaffinity(0))
full = set(cpus)
bad = []
read = 0

def forwarded():
    global read
    with open(p) as f:
        read += f.read() == "home only\n"

def check(what, want, got=None):
    got = os.sched_getaffinity(0) if got is None else got
    if got != want:
        bad.append(f"{what}: {sorted(got)}, not {sorted(want)}")

for i in range(400):
    forwarded()
    check("after a forwarded open", full)
for i in range(40):
    forwarded()
    seen = []
    t = threading.Thread(target=lambda: seen.append(os.sched_getaffinity(0)))
    t.start(); t.join()
    check("a thread made after it", full, seen[0])
    forwarded()
    pid = os.fork()
    if pid == 0:
        os._exit(0 if os.sched_getaffinity(0) == full else 3)
    if os.waitpid(pid, 0)[1] != 0:
        bad.append("a child made after it saw another set")
if len(cpus) > 1:
    for i in range(200):
        forwarded()
        want = {cpus[i % len(cpus)]}
        os.sched_setaffinity(0, want)
        forwarded()
        check("its own setting, after a forwarded open", want)
    os.sched_setaffinity(0, full)
print(f"cpus {len(cpus)} read {read} bad {len(bad)}")
print("\n".join(bad[:5]))
'''


def test_the_programs_affinity_is_never_the_narrowed_one_nor_lost(tv):
    tv.home_file("a.txt", "home only\n")
    r = ok(tv.run([PY, "-c", AFFINITY, tv.p("a.txt")]))
    first = r.stdout.splitlines()[0].split()
    cpus, read, bad = int(first[1]), int(first[3]), int(first[5])
    assert bad == 0, describe(r)
    expected_reads = 400 + 80 + (400 if cpus > 1 else 0)
    assert read == expected_reads, describe(r)
