"""Descriptor numbers and the filter's fast path.

Placeholders live on 0-2 (if free) or in the upper half of the tracee's
descriptor limit, where the filter watches data calls; the tracee's own
descriptors in between are never sent to the supervisor. A copy of a
placeholder onto a number in between (dup2(fd, 40), a shell's `exec 3<f`)
becomes a stream view whose data is pumped, with the file offset kept
exact whenever another descriptor of the same file uses it.
"""

from conftest import SH, describe, py
from test_files import ok

PLACEMENT = r'''
import os, sys, resource, fcntl
soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
fd = os.open(sys.argv[1], os.O_RDONLY)
print("high", fd >= soft // 2)
os.close(0)
print("zero", os.open(sys.argv[1], os.O_RDONLY))
d = os.dup(fd)
print("dup high", d >= soft // 2, d != fd)
f = fcntl.fcntl(fd, fcntl.F_DUPFD, 5)
print("dupfd high", f >= soft // 2)
os.read(fd, 2); print(os.read(d, 2).decode(), os.read(f, 2).decode())
local = os.open("/etc/hostname", os.O_RDONLY)
print("local low", local < soft // 2)
'''


def test_placeholders_use_free_0_to_2_else_the_upper_range_and_dups_share_the_offset(tv):
    tv.both("f.txt", "AABBCCDD\n", "aabbccdd\n")
    r = ok(tv.run(py(PLACEMENT, tv.p("f.txt"))))
    assert r.stdout.split("\n") == ["high True", "zero 0", "dup high True True", "dupfd high True",
                                    "BB CC", "local low True", ""], describe(r)


VIEW_WRITES = r'''
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.dup2(fd, 40)
os.write(40, b"a1 "); os.write(fd, b"b2 "); os.write(40, b"c3 "); os.write(fd, b"d4\n")
os.close(40); os.close(fd)
'''


def test_writes_through_a_view_and_the_original_interleave_in_order_at_home(tv):
    tv.both("w.txt", "old\n", "decoy\n")
    ok(tv.run(py(VIEW_WRITES, tv.p("w.txt"))))
    assert (tv.homedata / "w.txt").read_text() == "a1 b2 c3 d4\n"
    assert (tv.view / "w.txt").read_text() == "decoy\n"


VIEW_READS = r'''
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.dup2(fd, 41)
out = [os.read(41, 2), os.read(fd, 2), os.read(41, 2), os.lseek(fd, 0, os.SEEK_CUR), os.read(41, 100)]
os.lseek(fd, 1, os.SEEK_SET)
out.append(os.read(41, 3))
print(out)
'''


def test_reads_through_a_view_share_the_offset_with_the_original(tv):
    tv.both("r.txt", "0123456789\n", "abcdefghij\n")
    r = ok(tv.run(py(VIEW_READS, tv.p("r.txt"))))
    assert r.stdout == "[b'01', b'23', b'45', 6, b'6789\\n', b'123']\n", describe(r)


def test_shell_exec_fd_reads_line_by_line(tv):
    tv.both("lines.txt", "one\ntwo\nthree\n", "uno\ndos\ntres\n")
    r = ok(tv.run([SH, "-c", f"exec 3<{tv.p('lines.txt')}; read a <&3; read b <&3; cat <&3; echo \"$a-$b\""]))
    assert r.stdout == "three\none-two\n", describe(r)


def test_shell_exec_fd_writes_from_builtins_and_programs(tv):
    r = ok(tv.run([SH, "-c", f"exec 4>{tv.p('log.txt')}; echo first >&4; /usr/bin/printf 'second\\n' >&4; "
                             f"/usr/bin/python3 -c 'import os; os.write(4, b\"third\\n\")'; exec 4>&-"]))
    assert (tv.homedata / "log.txt").read_text() == "first\nsecond\nthird\n", describe(r)
    assert not (tv.view / "log.txt").exists()


LOCAL_READS = r'''
import os
fd = os.open("/etc/hostname", os.O_RDONLY)
for _ in range(2000):
    os.pread(fd, 16, 0)
    os.read(fd, 1); os.lseek(fd, 0, 0)
print("done")
'''


def test_data_calls_on_the_tracees_own_descriptors_never_reach_the_supervisor(tv):
    r = ok(tv.run(py(LOCAL_READS), extra_wrap_args=["--stats"]))
    assert r.stdout == "done\n", describe(r)
    counts = {}
    for line in r.stderr.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            counts[parts[0]] = int(parts[1]) + int(parts[2])
    # lseek is intercepted for every descriptor (seek-type calls take the slow path);
    # read and pread64 on a low local descriptor must not be.
    assert counts.get("lseek", 0) >= 2000, describe(r)
    assert counts.get("pread64", 0) < 50 and counts.get("read", 0) < 200, describe(r)
