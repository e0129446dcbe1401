"""The policy file (`wrap-and-run --policy FILE`): rules that take effect in
a run, `--print-policy` output that reads back to the same policy,
`--explain` naming the deciding rule, and bad files refused with a position
and status 125 before anything runs."""

import os
import re
import subprocess

import pytest

from conftest import CAT, MIN_ENV, WRAP, describe, write
from test_files import ok


def wrap(*args, cwd="/"):
    return subprocess.run([str(WRAP), *map(str, args)], capture_output=True, text=True, timeout=30,
                          env=dict(MIN_ENV), cwd=cwd)


def rule(prefix, strategy, errno=None, reason=None):
    text = f'[[rule]]\nprefix = "{prefix}"\nstrategy = "{strategy}"\n'
    if errno:
        text += f'errno = "{errno}"\n'
    if reason:
        text += "reason = " + '"' + reason.replace('"', '\\"') + '"\n'
    return text + "\n"


def test_file_rules_route_a_real_run_and_the_command_line_adds_on_top(tv):
    tv.both("kept/a.txt", "home a\n", "decoy a\n")
    tv.both("kept/fwd/b.txt", "home b\n", "decoy b\n")
    tv.both("c.txt", "home c\n", "decoy c\n")
    policy = write(tv.local / "p.toml", rule(tv.p("kept"), "local") + rule(tv.p("kept/fwd"), "forward"))
    r = ok(tv.run([CAT, tv.p("kept/a.txt"), tv.p("kept/fwd/b.txt"), tv.p("c.txt")],
                  extra_wrap_args=["--policy", policy]))
    assert r.stdout == "decoy a\nhome b\nhome c\n", describe(r)
    # --local on the command line beats the file's rule of the same prefix.
    r = ok(tv.run([CAT, tv.p("kept/fwd/b.txt")], extra_wrap_args=["--policy", policy, "--local", tv.p("kept/fwd")]))
    assert r.stdout == "decoy b\n", describe(r)


def test_print_policy_reads_back_to_the_same_policy(scratch, bins):
    first = write(scratch / "first.toml", rule("/srv/data", "local", reason='kept "here"')
                  + rule("/srv/data/secret", "deny", "EPERM") + rule("/usr/local*", "forward")
                  + rule("/etc", "forward"))
    r1 = wrap("--policy", first, "--forward", "/opt/x", "--print-policy")
    assert r1.returncode == 0, describe(r1)
    printed = write(scratch / "printed.toml", r1.stdout)
    r2 = wrap("--policy", printed, "--print-policy")
    assert r2.returncode == 0, describe(r2)

    def rules(text):  # without the comments naming where each rule came from
        return [line for line in text.splitlines() if not line.startswith("#")]
    assert rules(r2.stdout) == rules(r1.stdout)
    # The defaults are in it, with their reasons, and the file's rules.
    assert 'prefix = "/proc"' in r1.stdout and "rebind by type" in r1.stdout
    assert 'errno = "EPERM"' in r1.stdout and 'reason = "kept \\"here\\""' in r1.stdout
    paths = ["/srv/data/x", "/srv/data/secret/y", "/usr/local/bin/z", "/usr/localx", "/usr/bin/cat", "/etc/passwd",
             "/opt/x/y", "/home/u", "/lib64/ld.so", "/"]
    explain = lambda f: wrap("--policy", f, *[a for p in paths for a in ("--explain", p)]).stdout
    decisions = lambda out: [re.sub(r" \(.*", "", line) for line in out.splitlines()]
    assert decisions(explain(printed)) == decisions(wrap("--policy", first, "--forward", "/opt/x",
                                                        *[a for p in paths for a in ("--explain", p)]).stdout)
    assert "/srv/data/secret/y: deny EPERM by rule /srv/data/secret" in explain(printed)


def test_explain_names_the_deciding_rule_and_its_origin(scratch, bins):
    f = write(scratch / "p.toml", rule("/srv", "local", reason="scratch on the target") + rule("/srv/keep", "deny", "EROFS"))
    r = wrap("--policy", f, "--explain", "/srv/a/b", "--explain", "/srv/keep/c", "--explain", "/usr/bin/ls",
             "--explain", "/home/u")
    assert r.returncode == 0, describe(r)
    assert r.stdout.splitlines() == [
        f"/srv/a/b: local by rule /srv ({f}:1): scratch on the target",
        f"/srv/keep/c: deny EROFS by rule /srv/keep ({f}:6)",
        "/usr/bin/ls: local by rule /usr (default): rebind by type: the target's system programs and libraries",
        "/home/u: forward by rule / (default): global reference: the user's files and state live at home",
    ]


BAD_FILES = [
    ("syntax", '[[rule]]\nprefix = "/x\nstrategy = "local"\n', 2, r"string"),
    ("unknown strategy", '[[rule]]\nprefix = "/x"\nstrategy = "forwrd"\n', 3, r'unknown strategy "forwrd"'),
    ("unknown errno", '[[rule]]\nprefix = "/x"\n  strategy = "deny"\n  errno = "EFOO"\n', 4, r'unknown errno name "EFOO"'),
    ("deny without errno", '\n[[rule]]\nprefix = "/x"\nstrategy = "deny"\n', 2, r"names its errno"),
    ("errno on a local rule", '[[rule]]\nprefix = "/x"\nstrategy = "local"\nerrno = "EIO"\n', 4, r"deny rule only"),
    ("relative prefix", '[[rule]]\nprefix = "x/y"\nstrategy = "local"\n', 2, r'prefix "x/y" is relative'),
    ("unknown key in a rule", '[[rule]]\nprefix = "/x"\nstrategy = "local"\ncolour = "red"\n', 4, r'unknown key "colour"'),
    ("unknown top-level key", 'version = 2\n[[rule]]\nprefix = "/x"\nstrategy = "local"\n', 1, r'unknown key "version"'),
    ("rule not an array", '[rule]\nprefix = "/x"\nstrategy = "local"\n', 1, r"array of tables"),
    ("star inside", '[[rule]]\nprefix = "/a*/b"\nstrategy = "local"\n', 2, r"may only end"),
]


@pytest.mark.parametrize("what,text,line,message", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_a_bad_policy_file_is_refused_with_its_position_before_anything_runs(scratch, bins, what, text, line, message):
    f = write(scratch / "bad.toml", text)
    marker = scratch / "ran"
    r = wrap("--policy", f, "--", "/usr/bin/touch", marker)
    assert r.returncode == 125, describe(r)
    assert not marker.exists()
    m = re.search(rf"policy: {re.escape(str(f))}:(\d+):(\d+): (.*)", r.stderr)
    assert m, describe(r)
    assert int(m.group(1)) == line, describe(r)
    assert re.search(message, m.group(3)), describe(r)
    # The same refusal for --print-policy and --explain, and through the
    # ArgumentParser path (an option the fast parser does not take).
    for extra in (["--print-policy"], ["--explain", "/x"], ["--policy=" + str(f), "--", "/usr/bin/true"]):
        args = extra if extra[0].startswith("--policy=") else ["--policy", str(f), *extra]
        r = wrap(*args)
        assert r.returncode == 125 and f"{f}:{line}:" in r.stderr, describe(r)


def test_an_unreadable_policy_file_is_refused(scratch, bins):
    r = wrap("--policy", scratch / "missing.toml", "--", "/usr/bin/true")
    assert r.returncode == 125 and "No such file or directory" in r.stderr, describe(r)
