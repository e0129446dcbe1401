"""Routing of relative names: `..` out of a forwarded working directory into
a local tree and back follows the binding rules, with each process's own
working directory across fork."""

import os

from conftest import SH, describe, py
from test_files import ok


def up_to_root(path: str) -> str:
    return "/".join([".."] * len(path.strip("/").split("/")))


def test_dotdot_from_a_home_directory_into_a_local_tree_and_back(tv):
    tv.both("f.txt", "home f\n", "decoy f\n")
    up = up_to_root(tv.p())                      # from BASE/view to /
    hostname = open("/etc/hostname").read()
    back = os.path.relpath(tv.p(), "/usr/share")  # from /usr/share to BASE/view
    r = ok(tv.run([SH, "-c", f"cat {up}/etc/hostname; cd {up}/usr/share && pwd && ls -d doc && cat {back}/f.txt"]))
    assert r.stdout == f"{hostname}/usr/share\ndoc\nhome f\n", describe(r)


def test_local_file_created_through_dotdot_lands_on_the_target(tv):
    target = "/dev/shm/tether-routing-%d" % os.getpid()
    up = up_to_root(tv.p())
    try:
        ok(tv.run([SH, "-c", f"echo made > {up}{target}"]))
        assert open(target).read() == "made\n"
        assert not (tv.homedata / os.path.basename(target)).exists()
    finally:
        if os.path.exists(target):
            os.unlink(target)


FORK_CWD = r'''
import os, sys
up = sys.argv[1]
pid = os.fork()
if pid == 0:
    os.chdir(up + "/usr")
    print("child", os.getcwd(), os.path.exists("bin/sh"), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
print("parent", os.getcwd(), open("f.txt").read(), end="")
'''


def test_each_process_keeps_its_own_working_directory_across_fork(tv):
    tv.both("f.txt", "home f\n", "decoy f\n")
    r = ok(tv.run(py(FORK_CWD, up_to_root(tv.p()))))
    assert r.stdout == f"child /usr True\nparent {tv.p()} home f\n", describe(r)


def test_metadata_calls_through_dotdot_reach_the_local_file(tv):
    target = "/dev/shm/tether-routing-times-%d" % os.getpid()
    open(target, "w").close()
    up = up_to_root(tv.p())
    try:
        ok(tv.run([SH, "-c", f"touch -d 2001-02-03T04:05:06 {up}{target} && chmod 640 {up}{target}"]))
        st = os.stat(target)
        assert (st.st_mode & 0o777, int(st.st_mtime)) == (0o640, 981173106)
    finally:
        os.unlink(target)
