"""Export root confinement: homestub --root DIR.

Layout (BASE = /tmp/tether-it-XXXX, B = BASE without the leading "/"):

    home view                                   target view
    BASE/view/secret.txt  = SECRET (outside R)  BASE/view/secret.txt = decoy
    R = BASE/view/export  (= BASE/homedata/export)
    R/B/view/             the tracee's cwd      BASE/view/ (decoys)
    R/B/view/inside.txt   = "inside the root"   BASE/view/inside.txt = decoy
    R/B/view/secret.txt   = in-root stand-in

With --root R the tracee path P means R/P at home, so the tracee runs with
cwd = BASE/view (which exists on the target) and that is R/B/view at home.
The secret lives at home at BASE/view/secret.txt: a path the target's own
view does not have (there it is a decoy), so even a target-local read
through /proc/self/root cannot produce it.  Every escape attempt must fail
(ENOENT, EXDEV, EACCES, EPERM or ELOOP) or resolve inside R (the stand-in);
the secret must never appear in any output.
"""

import ast
import os
import pathlib
import secrets

import pytest

from conftest import PY_ERRNAME, describe, py, require_binaries

ALLOWED_ERRORS = {"ENOENT", "EXDEV", "EACCES", "EPERM", "ELOOP"}
STAND_IN = "stand-in inside the root\n"

# Every script first reads the control path argv[1] ("inside.txt", which
# only exists inside the root at home) and prints it, so that an escape test
# cannot pass merely because nothing was forwarded.
CONTROL = PY_ERRNAME + r'''
import os, sys
def show(path):
    try:
        fd = os.open(path, os.O_RDONLY)
        data = os.read(fd, 4096).decode(errors="replace")
        os.close(fd)
        return "CONTENT:" + data
    except OSError as e:
        return ename(e)
print(repr(show(sys.argv[1])))
'''

READ = CONTROL + r'''
print(repr(show(sys.argv[2])))
'''

WRITE = CONTROL + r'''
try:
    fd = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, b"written\n")
    print(repr("WROTE"))
except OSError as e:
    print(repr(ename(e)))
'''

RENAME = CONTROL + r'''
try:
    os.rename(sys.argv[2], sys.argv[3])
    print(repr("RENAMED"))
except OSError as e:
    print(repr(ename(e)))
'''


class Rooted:
    def __init__(self, views):
        self.tv = views
        self.secret = f"TOP-SECRET-{secrets.token_hex(8)}\n"
        self.secret_home_path = str(views.view / "secret.txt")  # home-absolute path
        self.root = views.homedata / "export"                    # R, as homestub sees it too
        self.mirror = self.root / str(views.view).lstrip("/")    # R/B/view
        self.mirror.mkdir(parents=True)
        views.both("secret.txt", self.secret, "decoy secret\n")
        views.decoy("inside.txt", "decoy inside\n")
        (self.mirror / "inside.txt").write_text("inside the root\n")
        (self.mirror / "secret.txt").write_text(STAND_IN)
        # The root as homestub names it: BASE/view/export (inside the home's
        # mount namespace BASE/view is homedata).
        views.start_home(root=views.view / "export")

    def link(self, name, target):
        os.symlink(target, self.mirror / name)
        return self.tv.p(name)

    def run(self, script, *args):
        """Runs a CONTROL-prefixed script; returns the line after the control."""
        r = self.tv.run(py(script, "inside.txt", *args), cwd=self.tv.view)
        assert self.secret.strip() not in r.stdout + r.stderr, "SECRET LEAKED" + describe(r)
        assert r.returncode == 0, describe(r)
        lines = r.stdout.splitlines()
        assert len(lines) == 2, describe(r)
        assert lines[0] == repr("CONTENT:inside the root\n"), \
            "control read of inside.txt did not reach R/B/view at home" + describe(r)
        r.result = ast.literal_eval(lines[1])
        return r

    @staticmethod
    def assert_confined(r, allowed_contents=(STAND_IN,)):
        if r.result.startswith("CONTENT:"):
            assert r.result[len("CONTENT:"):] in allowed_contents, describe(r)
        else:
            assert r.result in ALLOWED_ERRORS, describe(r)


@pytest.fixture
def rt(views):
    require_binaries()
    return Rooted(views)


def test_root_maps_tracee_paths_under_export_root(rt):
    r = rt.run(READ, rt.tv.p("inside.txt"))  # relative (control) and absolute
    assert r.result == "CONTENT:inside the root\n", describe(r)


def test_root_absolute_path_of_secret_resolves_inside_root(rt):
    r = rt.run(READ, rt.secret_home_path)
    assert r.result == "CONTENT:" + STAND_IN, describe(r)


def test_root_dotdot_relative_escape_from_cwd_is_confined(rt):
    path = "../" * 20 + rt.secret_home_path.lstrip("/")
    r = rt.run(READ, path)
    rt.assert_confined(r)


def test_root_dotdot_exactly_one_level_above_root_is_confined(rt):
    # cwd is R/B/view at home; len(B/view) + 1 times ".." is R/.. = BASE/view
    # at home, where the secret is. Clamped at R it is R/secret.txt: absent.
    depth = len(pathlib.PurePath(rt.tv.p()).parts) - 1
    r = rt.run(READ, "../" * (depth + 1) + "secret.txt")
    assert r.result in ALLOWED_ERRORS, describe(r)


def test_root_absolute_symlink_to_secret_resolves_inside_root(rt):
    link = rt.link("abs_secret", rt.secret_home_path)
    r = rt.run(READ, link)
    rt.assert_confined(r)


def test_root_absolute_symlink_to_etc_passwd_does_not_reach_home_etc(rt):
    link = rt.link("abs_passwd", "/etc/passwd")
    r = rt.run(READ, link)
    assert "root:x:0:0" not in r.stdout, "read /etc/passwd outside the root" + describe(r)
    assert r.result in ALLOWED_ERRORS, describe(r)


def test_root_relative_symlink_one_level_above_root_is_confined(rt):
    # R/B/view/rel_up -> ../../../../secret.txt (one more ".." than the depth
    # of B/view inside R): without confinement that is BASE/view/secret.txt.
    depth = len(pathlib.PurePath(rt.tv.p()).parts) - 1
    link = rt.link("rel_up", "../" * (depth + 1) + "secret.txt")
    r = rt.run(READ, link)
    assert r.result in ALLOWED_ERRORS, describe(r)


def test_root_relative_symlink_with_many_dotdots_is_confined(rt):
    link = rt.link("rel_secret", "../" * 25 + rt.secret_home_path.lstrip("/"))
    r = rt.run(READ, link)
    rt.assert_confined(r)


def test_root_symlink_through_proc_self_root_is_confined(rt):
    link = rt.link("proc_secret", "/proc/self/root" + rt.secret_home_path)
    r = rt.run(READ, link)
    rt.assert_confined(r)


def test_root_proc_self_root_path_in_tracee_never_yields_home_secret(rt):
    # /proc is local: this resolves in the target's own root, where the file
    # is the decoy. It must never be the home secret.
    r = rt.run(READ, "/proc/self/root" + rt.secret_home_path)
    rt.assert_confined(r, allowed_contents=(STAND_IN, "decoy secret\n"))


def test_root_directory_symlink_escape_for_create_stays_inside_root(rt):
    # dirlink -> BASE/view, which at home is outside R (R's parent).
    rt.link("dirlink", str(rt.tv.view))
    r = rt.run(WRITE, rt.tv.p("dirlink/pwned.txt"))
    assert r.result in ALLOWED_ERRORS | {"WROTE"}, describe(r)
    assert not (rt.tv.homedata / "pwned.txt").exists(), "created a file outside the root"
    assert not (rt.tv.view / "pwned.txt").exists()
    if r.result == "WROTE":
        assert (rt.mirror / "pwned.txt").read_text() == "written\n"


def test_root_rename_with_dotdot_destination_stays_inside_root(rt):
    (rt.mirror / "movable.txt").write_text("movable\n")
    dest = "../" * 20 + rt.tv.p("escaped.txt").lstrip("/")
    r = rt.run(RENAME, "movable.txt", dest)
    assert r.result in ALLOWED_ERRORS | {"RENAMED"}, describe(r)
    assert not (rt.tv.homedata / "escaped.txt").exists(), "renamed a file outside the root"
    if r.result == "RENAMED":
        assert (rt.mirror / "escaped.txt").read_text() == "movable\n"


def test_root_cat_and_ls_never_show_secret(rt):
    for name, target in (("l1", rt.secret_home_path),
                         ("l2", "../" * 25 + rt.secret_home_path.lstrip("/")),
                         ("l3", "/proc/self/root" + rt.secret_home_path)):
        rt.link(name, target)
    r = rt.tv.run(["/bin/sh", "-c", "cat inside.txt; cat l1 l2 l3 secret.txt 2>&1; ls -la"],
                  cwd=rt.tv.view)
    assert rt.secret.strip() not in r.stdout + r.stderr, "SECRET LEAKED" + describe(r)
    assert r.stdout.startswith("inside the root\n"), describe(r)
