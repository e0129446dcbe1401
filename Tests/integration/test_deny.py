"""`deny` rules: every path-taking call on a denied path fails with the
rule's errno, whichever way the name reaches it (absolute, relative with
`..`, relative to a directory descriptor, through a local symlink, through
/proc/self), while the rest of the tree works."""

import os
import shutil

from conftest import PY, PY_ERRNAME, describe, py, write
from test_files import ok
from test_policy_file import rule

# Runs each "op path [path2]" of argv and prints "op path: ok|ERRNAME".
OPS = PY_ERRNAME + r'''
import os, subprocess, sys
def run(op, a, b):
    if op == "open": os.close(os.open(a, os.O_RDONLY))
    elif op == "create": os.close(os.open(a, os.O_WRONLY | os.O_CREAT, 0o644))
    elif op == "stat": os.stat(a)
    elif op == "lstat": os.lstat(a)
    elif op == "access": assert os.access(a, os.R_OK) or True; os.stat(a)
    elif op == "listdir": os.listdir(a)
    elif op == "exec": subprocess.run([a], check=True)
    elif op == "unlink": os.unlink(a)
    elif op == "mkdir": os.mkdir(a)
    elif op == "rmdir": os.rmdir(a)
    elif op == "chdir": os.chdir(a)
    elif op == "rename": os.rename(a, b)
    elif op == "link": os.link(a, b)
    elif op == "symlink": os.symlink(b, a)
    elif op == "chmod": os.chmod(a, 0o600)
    elif op == "truncate": os.truncate(a, 0)
    elif op == "readlink": os.readlink(a)
    elif op == "utime": os.utime(a)
    elif op == "openat":
        d = os.open(b, os.O_RDONLY | os.O_DIRECTORY)
        try: os.close(os.open(a, os.O_RDONLY, dir_fd=d))
        finally: os.close(d)
    elif op == "cwdopen":
        os.chdir(b); os.close(os.open(a, os.O_RDONLY))
    else: raise SystemExit("unknown op " + op)
for spec in sys.argv[1:]:
    op, a, *rest = spec.split(" ")
    try:
        run(op, a, rest[0] if rest else None)
        print(spec, "ok", flush=True)
    except OSError as e:
        print(spec, ename(e), flush=True)
'''


def setup_local_tree(tv):
    """A local tree on the target: BASE/local/tree with a denied secret/."""
    tree = tv.local / "tree"
    for d in ("secret/sub", "open"):
        (tree / d).mkdir(parents=True)
    write(tree / "secret/file", "secret\n")
    write(tree / "open/file", "open\n")
    shutil.copy("/usr/bin/true", tree / "secret/true")
    shutil.copy("/usr/bin/true", tree / "open/true")
    os.symlink("../secret", tree / "open/dirlink")          # a directory link into the tree
    os.symlink(str(tree / "secret/file"), tree / "open/filelink")  # a file link into it
    os.symlink(str(tree / "secret/true"), tree / "open/truelink")
    os.symlink("file", tree / "open/plainlink")
    policy = write(tv.local / "deny.toml", rule(str(tree), "local") + rule(str(tree / "secret"), "deny", "EACCES"))
    return tree, ["--policy", str(policy)]


def run_ops(tv, wrap_args, specs, cwd=None):
    r = ok(tv.run(py(OPS, *specs), extra_wrap_args=wrap_args, cwd=cwd))
    got = dict(line.rsplit(" ", 1) for line in r.stdout.splitlines())
    assert list(got) == list(specs), describe(r)
    return got


def test_every_path_call_on_a_denied_local_path_fails_with_the_errno(tv):
    tree, args = setup_local_tree(tv)
    s, o = tree / "secret", tree / "open"
    denied = [f"open {s}/file", f"create {s}/new", f"stat {s}/file", f"lstat {s}", f"listdir {s}",
              f"exec {s}/true", f"unlink {s}/file", f"mkdir {s}/d", f"rmdir {s}/sub", f"chdir {s}",
              f"rename {o}/file {s}/moved", f"rename {s}/file {o}/moved", f"link {o}/file {s}/l",
              f"link {s}/file {o}/l", f"symlink {s}/newlink /etc/hostname", f"chmod {s}/file",
              f"truncate {s}/file", f"utime {s}/file", f"stat {s}/../secret/file",
              # A symlink into the tree is denied as a name too (README: deny).
              f"readlink {o}/filelink", f"lstat {o}/dirlink"]
    allowed = [f"open {o}/file", f"stat {tree}", f"exec {o}/true", f"listdir {o}", f"readlink {o}/plainlink"]
    got = run_ops(tv, args, denied + allowed)
    assert {k: v for k, v in got.items() if k in denied} == {k: "EACCES" for k in denied}
    assert {k: v for k, v in got.items() if k in allowed} == {k: "ok" for k in allowed}
    # Nothing in the denied tree changed.
    assert sorted(os.listdir(s)) == ["file", "sub", "true"] and (s / "file").read_text() == "secret\n"
    assert not (o / "moved").exists() and not (o / "l").exists()


def test_symlinks_relative_names_and_descriptors_into_a_denied_tree_are_denied(tv):
    tree, args = setup_local_tree(tv)
    o = tree / "open"
    via = [f"open /proc/self/cwd/secret/file", f"open {o}/dirlink/file", f"open {o}/filelink", f"exec {o}/truelink", f"exec {o}/dirlink/true",
           f"stat {o}/dirlink", f"listdir {o}/dirlink", f"chdir {o}/dirlink",
           f"cwdopen ../secret/file {o}", f"cwdopen dirlink/file {o}",
           f"openat secret/file {tree}", f"openat dirlink/file {o}", f"openat ../secret/file {o}",
           f"open /proc/thread-self/cwd/dirlink/file", f"open {o}/dirlink/../secret/file"]
    got = run_ops(tv, args, via, cwd=tree)
    assert got == {k: "EACCES" for k in via}
    # The same names without the deny rule reach the files: the test can fail.
    plain = write(tv.local / "plain.toml", rule(str(tree), "local"))
    got = run_ops(tv, ["--policy", str(plain)], via, cwd=tree)
    assert got == {k: "ok" for k in via}


def test_a_denied_forwarded_path_is_refused_without_asking_home(tv):
    tv.home_file("vault/key", "home secret\n")
    tv.home_file("pub/x", "home x\n")
    policy = write(tv.local / "p.toml", rule(tv.p("vault"), "deny", "EPERM"))
    specs = [f"open {tv.p('vault/key')}", f"stat {tv.p('vault')}", f"cwdopen ../vault/key {tv.p('pub')}",
             f"rename {tv.p('pub/x')} {tv.p('vault/x')}", f"open {tv.p('pub/x')}"]
    got = run_ops(tv, ["--policy", str(policy), "--stats"], specs)
    assert got == {**{k: "EPERM" for k in specs[:4]}, specs[4]: "ok"}
    assert (tv.homedata / "pub/x").exists() and not (tv.homedata / "vault/x").exists()


def test_the_rule_errno_is_the_one_given(tv):
    tree, _ = setup_local_tree(tv)
    policy = write(tv.local / "rofs.toml", rule(str(tree), "local") + rule(str(tree / "secret"), "deny", "EROFS"))
    got = run_ops(tv, ["--policy", str(policy)], [f"create {tree}/secret/n", f"open {tree}/open/file"])
    assert list(got.values()) == ["EROFS", "ok"]


def test_a_working_directory_in_a_denied_tree_refuses_to_start(tv):
    tree, args = setup_local_tree(tv)
    r = tv.run([PY, "-c", "print('ran')"], extra_wrap_args=args, cwd=tree / "secret")
    assert r.returncode == 125 and "denied" in r.stderr and "ran" not in r.stdout, describe(r)
