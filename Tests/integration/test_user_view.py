"""The user's view (issue 13): set-up on a fresh machine, help, version and
completions, ssh:// homes against a real sshd, quiet homes and JSON logs,
and a working directory that home does not have.

Forwarding is proved as elsewhere with the two-view harness (`tv`, `views`):
a file only home has, read by the same absolute path the target sees a
decoy at. An ssh home runs sshd inside the home's namespace (it is the
"server" of `start_home`), so what its `homestub --stdio` sees is home.
"""

import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import (CAT, HOMESTUB, MIN_ENV, NOBODY_SETPRIV, REPO, SH, WRAP, describe,
                      run_bounded, write)
from test_spawn import Spawned

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = shutil.which("ssh-keygen", path="/usr/bin:/bin")
SSH = shutil.which("ssh", path="/usr/bin:/bin")


# --------------------------------------------------------------------------
# 1. Fresh machine
# --------------------------------------------------------------------------

def test_check_deps_passes_when_everything_is_installed():
    r = run_bounded(["bash", REPO / "scripts/check-deps", "test"], env=dict(MIN_ENV, SWIFT="true"))
    assert r.returncode == 0, describe(r)
    assert "missing" not in r.stderr, describe(r)


def test_check_deps_stops_at_once_with_the_command_to_run():
    """Without libseccomp-dev and libelf-dev (their headers hidden under an
    empty /usr/include) and not root: status 1, and the exact apt-get line."""
    script = ("mount -t tmpfs none /usr/include && exec " + shlex.join(
        NOBODY_SETPRIV + ["bash", str(REPO / "scripts/check-deps"), "build"]))
    r = run_bounded(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script],
                    env=dict(MIN_ENV, SWIFT="true"), timeout=30)
    assert r.returncode == 1, describe(r)
    assert "sudo apt-get install -y --no-install-recommends libseccomp-dev libelf-dev\n" in r.stderr, describe(r)


def test_check_deps_asks_for_swift_when_there_is_none():
    r = run_bounded(["bash", REPO / "scripts/check-deps", "build"], env=dict(MIN_ENV, SWIFT="/nonexistent/swift"))
    assert r.returncode == 1, describe(r)
    assert "swift.org/install" in r.stderr, describe(r)


def test_make_demo_and_test_check_packages_before_building():
    for target in ("demo", "test"):
        r = run_bounded(["make", "-n", "-C", REPO, target], env=dict(os.environ))
        assert r.returncode == 0, describe(r)
        lines = r.stdout.splitlines()
        check = next(i for i, l in enumerate(lines) if "scripts/check-deps" in l)
        build = next(i for i, l in enumerate(lines) if re.match(r"\S*swift build ", l))
        assert check < build, describe(r)


def test_readme_links_stay_inside_the_repository():
    readme = (REPO / "README.md").read_text()
    for target in re.findall(r"\]\(([^)]+)\)|`(\.\./[^`]*)`", readme):
        link = next(t for t in target if t)
        if re.match(r"[a-z]+://", link) or link.startswith("#"):
            continue
        assert (REPO / link.split("#")[0]).resolve().is_relative_to(REPO), f"README points outside: {link}"
    assert "../shared" not in readme


# --------------------------------------------------------------------------
# 2. Help, version, completions, PROGRAM without --
# --------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["--help"], ["-h"], ["--stats", "--help"], ["--home", "spawn", "-h"]])
def test_wrap_and_run_help_exits_0_with_usage(bins, argv):
    r = run_bounded([WRAP, *argv])
    assert r.returncode == 0, describe(r)
    assert "USAGE: wrap-and-run" in r.stdout and "Examples:" in r.stdout, describe(r)
    assert r.stderr == "", describe(r)


def test_version_of_both_tools_is_one_constant(bins):
    versions = []
    for tool in (WRAP, HOMESTUB):
        r = run_bounded([tool, "--version"])
        assert r.returncode == 0, describe(r)
        assert re.fullmatch(r"\d+\.\d+\.\d+ \(wire protocol \d+\)\n", r.stdout), describe(r)
        versions.append(r.stdout)
    assert versions[0] == versions[1]


def options_and_examples(tool) -> tuple:
    """The long options --help lists, and the text of its Examples."""
    r = run_bounded([tool, "--help"])
    assert r.returncode == 0, describe(r)
    text = r.stdout
    examples = text[text.index("Examples:"):text.index("OPTIONS:")]
    options = set(re.findall(r"^  (?:-\w, )?(--[a-z][a-z0-9-]*)", text[text.index("OPTIONS:"):], re.M))
    return options, examples


@pytest.mark.parametrize("tool", ["wrap-and-run", "homestub"])
def test_every_option_has_an_example_in_help(bins, tool):
    options, examples = options_and_examples(WRAP if tool == "wrap-and-run" else HOMESTUB)
    assert len(options) > 10, options
    missing = sorted(o for o in options - {"--help"} if not re.search(re.escape(o) + r"\b", examples))
    assert not missing, f"{tool} --help has no example of {missing}"


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_name_the_options(bins, shell):
    for tool, option in ((WRAP, "home-command"), (HOMESTUB, "max-handshakes")):  # fish: -l 'home-command'
        for argv in ([tool, "--generate-completion-script", shell], [tool, f"--generate-completion-script={shell}"]):
            r = run_bounded(argv)
            assert r.returncode == 0 and option in r.stdout, describe(r)


def test_bash_completion_completes_an_option(bins):
    """The script bash-completion would load (which turns extglob on), asked
    to complete `wrap-and-run --home-c` as bash does: function, command,
    word, previous word."""
    script = run_bounded([WRAP, "--generate-completion-script", "bash"]).stdout
    probe = ("shopt -s extglob; source /dev/stdin; COMP_WORDS=(wrap-and-run --home-c); COMP_CWORD=1;"
             " COMP_LINE='wrap-and-run --home-c'; COMP_POINT=${#COMP_LINE};"
             " f=$(complete -p wrap-and-run | sed 's/.*-F \\([^ ]*\\).*/\\1/');"
             " \"$f\" wrap-and-run --home-c wrap-and-run; printf '%s\\n' \"${COMPREPLY[@]}\"")
    r = run_bounded(["bash", "-c", probe], input=script)
    assert (r.returncode, r.stdout) == (0, "--home-command\n"), describe(r)


def test_make_install_puts_binaries_and_completions_under_prefix(bins, scratch):
    """make install PREFIX=/opt/tether DESTDIR=STAGE (the build itself is
    the suite's binaries: -o build, RELEASE_BIN=TETHER_BIN)."""
    stage = scratch / "stage"
    r = run_bounded(["make", "-s", "-C", REPO, "-o", "build", "-o", "deps", "install", f"RELEASE_BIN={WRAP.parent}",
                     "PREFIX=/opt/tether", f"DESTDIR={stage}"], env=dict(os.environ), timeout=120)
    assert r.returncode == 0, describe(r)
    root = stage / "opt/tether"
    for tool in ("homestub", "wrap-and-run"):
        assert os.access(root / "bin" / tool, os.X_OK)
        for path in (f"share/bash-completion/completions/{tool}", f"share/zsh/site-functions/_{tool}",
                     f"share/fish/vendor_completions.d/{tool}.fish"):
            assert (root / path).stat().st_size > 200, path
    r = run_bounded([root / "bin/wrap-and-run", "--version"])
    assert r.returncode == 0, describe(r)


def test_program_without_double_dash_fast_and_full_parser(bins, scratch):
    """`wrap-and-run [OPTIONS] PROGRAM ARGS`: the hand parser takes the
    plain form, ArgumentParser the `--opt=value` one; the program's own
    options stay its own (cat -n)."""
    sp = Spawned(scratch)
    path = sp.both("f.txt", "home f\n", "decoy f\n")
    for home in (["--home", "spawn"], ["--home=spawn"]):
        r = run_bounded([WRAP, *home, "--root", sp.root, CAT, "-n", path], cwd=sp.view)
        assert (r.returncode, r.stdout) == (0, "     1\thome f\n"), describe(r)


def test_unknown_option_is_a_usage_error(bins, scratch):
    r = run_bounded([WRAP, "--no-such-option", CAT, "/etc/hostname"], cwd=scratch)
    assert r.returncode == 125, describe(r)
    assert "unknown option --no-such-option" in r.stderr, describe(r)


def test_program_named_like_an_option_goes_after_double_dash(bins, scratch):
    r = run_bounded([WRAP, "--", "--help"], cwd=scratch)
    assert r.returncode == 127 and "--help: command not found" in r.stderr, describe(r)


# --------------------------------------------------------------------------
# 5. --home ssh://
# --------------------------------------------------------------------------

def fake_ssh(tv, record: pathlib.Path) -> pathlib.Path:
    """An ssh stand-in: records its arguments, then runs the remote command
    (its last argument) with sh inside the home's mount namespace, with
    homestub on PATH, as sshd would run it on the home node."""
    pid = tv.home.ns_init_pid()
    return write(tv.local / "fake-ssh", f"""#!/bin/sh
printf '%s\\n' "$@" > {shlex.quote(str(record))}
eval "remote=\\${{$#}}"
exec nsenter -t {pid} -m -- env PATH={shlex.quote(str(HOMESTUB.parent))}:/usr/bin:/bin sh -c "$remote"
""", mode=0o755)


def test_ssh_home_command_line_and_tether_ssh_command(tv):
    path = tv.both("f.txt", "home over ssh\n")
    record = tv.local / "args"
    ssh = fake_ssh(tv, record)
    env = dict(MIN_ENV, TETHER_SSH_COMMAND=f"{ssh} -o SomeOption=yes")
    r = run_bounded([WRAP, "--home", "ssh://me@node:2222", CAT, path], cwd=tv.view, env=env)
    assert (r.returncode, r.stdout, r.stderr) == (0, "home over ssh\n", ""), describe(r)
    assert record.read_text().splitlines() == ["-o", "SomeOption=yes", "-T", "-p", "2222", "me@node", "homestub --stdio"]

    # --remote-homestub, quoted for the remote shell; no user, no port.
    odd = tv.local / "odd dir's"
    odd.mkdir()
    (odd / "homestub").symlink_to(HOMESTUB)
    r = run_bounded([WRAP, "--home", "ssh://node", "--remote-homestub", odd / "homestub", "--", CAT, path],
                    cwd=tv.view, env=env)
    assert (r.returncode, r.stdout) == (0, "home over ssh\n"), describe(r)
    words = record.read_text().splitlines()
    assert words[-2] == "node" and shlex.split(words[-1]) == [str(odd / "homestub"), "--stdio"], words


@pytest.mark.parametrize("address,why", [
    ("ssh://", "not a host name"), ("ssh://-oProxyCommand=x", "not a host name"),
    ("ssh://@node", "not a user name"), ("ssh://node:0", "port"), ("ssh://node:65536", "port"),
    ("ssh://node/srv", "no path"), ("ssh://[::1", "unclosed"),
])
def test_bad_ssh_address_is_a_usage_error(bins, scratch, address, why):
    r = run_bounded([WRAP, "--home", address, "--", CAT, "/etc/hostname"], cwd=scratch)
    assert r.returncode == 125 and why in r.stderr, describe(r)


@pytest.fixture
def sshd_home(views):
    """A real OpenSSH server on a free loopback port, run as the home (in
    the home's namespace), with a throwaway host key and user key; the
    client's whole configuration is the test's own ssh_config (-F)."""
    missing = [p for p in (SSHD, SSH, SSH_KEYGEN) if not p or not os.access(p, os.X_OK)]
    if missing:
        pytest.skip(f"OpenSSH is not installed ({SSHD}, ssh, ssh-keygen): apt-get install openssh-server openssh-client")
    d = views.local / "ssh"
    d.mkdir(mode=0o700)
    for name in ("host_key", "user_key"):
        subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", "tether-test", "-f", d / name], check=True)
    shutil.copy(d / "user_key.pub", d / "authorized_keys")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    write(d / "sshd_config", f"""ListenAddress 127.0.0.1
HostKey {d}/host_key
AuthorizedKeysFile {d}/authorized_keys
PidFile none
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
AllowUsers root
SetEnv PATH={HOMESTUB.parent}:/usr/bin:/bin
""")
    home = views.start_home(server_argv=[SSHD, "-D", "-e", "-f", str(d / "sshd_config"), "-p", "{port}"])
    host_key = (d / "host_key.pub").read_text().split()
    write(d / "known_hosts", f"[127.0.0.1]:{home.port} {host_key[0]} {host_key[1]}\n")
    write(d / "ssh_config", f"""Host *
  IdentityFile {d}/user_key
  IdentitiesOnly yes
  UserKnownHostsFile {d}/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
  LogLevel ERROR
""")
    env = dict(MIN_ENV, TETHER_SSH_COMMAND=f"ssh -F {d}/ssh_config")
    return views, home, env


def test_ssh_home_against_a_real_sshd(sshd_home):
    tv, home, env = sshd_home
    path = tv.both("data.txt", "home data over a real ssh\n")
    r = run_bounded([WRAP, "--home", f"ssh://root@127.0.0.1:{home.port}", "--remote-homestub", HOMESTUB, "--",
                     SH, "-c", f"cat {path} && echo made > {tv.p('made.txt')}"], cwd=tv.view, env=env)
    assert (r.returncode, r.stdout) == (0, "home data over a real ssh\n"), describe(r) + home.log()
    assert r.stderr == "", "a successful run over ssh must print nothing on stderr" + describe(r)
    assert (tv.homedata / "made.txt").read_text() == "made\n"
    assert not (tv.view / "made.txt").exists()


def test_ssh_home_finds_homestub_on_the_remote_path(sshd_home):
    tv, home, env = sshd_home
    path = tv.both("data.txt", "found on PATH\n")
    r = run_bounded([WRAP, "--home", f"ssh://root@127.0.0.1:{home.port}", CAT, path], cwd=tv.view, env=env)
    assert (r.returncode, r.stdout, r.stderr) == (0, "found on PATH\n", ""), describe(r) + home.log()


def test_ssh_home_that_refuses_the_login_is_unreachable(sshd_home):
    tv, home, env = sshd_home
    r = run_bounded([WRAP, "--home", f"ssh://nobody@127.0.0.1:{home.port}", CAT, "/etc/hostname"], cwd=tv.view, env=env)
    assert r.returncode == 69, describe(r)
    assert "Permission denied" in r.stderr, describe(r)


# --------------------------------------------------------------------------
# 6. Quiet homes, log levels, JSON logs
# --------------------------------------------------------------------------

def stdio_home(sp, *home_args) -> str:
    return shlex.join([str(HOMESTUB), "--stdio", "--root", str(sp.root), *map(str, home_args)])


def test_stdio_home_is_quiet_unless_asked(bins, scratch):
    sp = Spawned(scratch)
    path = sp.both("f.txt", "home\n", "decoy\n")
    r = run_bounded([WRAP, "--home-command", stdio_home(sp), CAT, path], cwd=sp.view)
    assert (r.returncode, r.stdout, r.stderr) == (0, "home\n", ""), describe(r)

    r = run_bounded([WRAP, "--home-command", stdio_home(sp, "--log-level", "info"), CAT, path], cwd=sp.view)
    assert (r.returncode, r.stdout) == (0, "home\n"), describe(r)
    assert re.search(r"info homestub: .*session closed by peer", r.stderr), describe(r)


def test_stdio_home_json_log(bins, scratch):
    sp = Spawned(scratch)
    path = sp.both("f.txt", "home\n", "decoy\n")
    home = stdio_home(sp, "--log-level", "debug", "--log-format", "json")
    r = run_bounded([WRAP, "--home-command", home, CAT, path], cwd=sp.view)
    assert (r.returncode, r.stdout) == (0, "home\n"), describe(r)
    records = [json.loads(line) for line in r.stderr.splitlines()]
    assert records and records[-1]["message"] == "session closed by peer", describe(r)
    for rec in records:
        assert set(rec) == {"time", "level", "label", "message", "metadata"}, rec
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", rec["time"]), rec
        assert rec["label"] == "homestub"


def wait_for_log(home, needle, timeout=10.0) -> str:
    """The home's log once it holds `needle` (deputies log a session's end
    after wrap-and-run has gone)."""
    deadline = time.monotonic() + timeout
    while needle not in home.log() and time.monotonic() < deadline:
        time.sleep(0.02)
    return home.log()


def test_listening_home_logs_sessions_at_info(tv):
    path = tv.both("f.txt", "home\n")
    r = tv.run([CAT, path])
    assert (r.returncode, r.stdout) == (0, "home\n"), describe(r)
    log = wait_for_log(tv.home, "session closed by peer")
    assert re.search(r"info homestub: .*listening on", log), log
    assert re.search(r"info homestub: .*session 1 started", log), log
    assert re.search(r"info homestub: session=1 .*session closed by peer", log), log


def test_listening_home_json_log_and_level(views):
    loud = views.start_home(extra_args=["--log-format", "json"])
    path = views.both("f.txt", "home\n")
    r = views.run([CAT, path], home=loud)
    assert (r.returncode, r.stdout) == (0, "home\n"), describe(r)
    log = wait_for_log(loud, "session closed by peer")
    records = [json.loads(line) for line in log.splitlines()]
    by_message = {rec["message"].split(":")[0]: rec for rec in records}
    assert by_message["listening on 127.0.0.1"]["level"] == "info", records
    closed = next(rec for rec in records if rec["message"] == "session closed by peer")
    assert closed["metadata"] == {"session": "1"} and closed["level"] == "info", records

    # --log-level warning: the same run logs nothing, listener nor deputy.
    quiet = views.start_home(extra_args=["--log-level", "warning"])
    r = views.run([CAT, path], home=quiet)
    assert (r.returncode, r.stdout) == (0, "home\n"), describe(r)
    time.sleep(0.5)
    assert quiet.log() == "", quiet.log()


def test_bad_log_options_are_refused(bins):
    for args in (["--log-level", "loud"], ["--log-format", "xml"]):
        r = run_bounded([HOMESTUB, "--stdio", *args])
        assert r.returncode == 64 and args[0] in r.stderr, describe(r)


# --------------------------------------------------------------------------
# 7. Working directory missing at home, --cwd
# --------------------------------------------------------------------------

def test_missing_working_directory_warns_once_and_starts_at_home_root(tv):
    """BASE/view/onlyhere exists on the target only: the program still runs
    (it uses absolute paths), from / at home, after one warning."""
    path = tv.both("f.txt", "home f\n")
    here = tv.view / "onlyhere"
    here.mkdir()
    r = tv.run([SH, "-c", f"pwd; cat {path}; cat {path.relative_to('/')}"], cwd=here)
    assert (r.returncode, r.stdout) == (0, "/\nhome f\nhome f\n"), describe(r)
    warnings = [l for l in r.stderr.splitlines() if "warning" in l]
    assert len(warnings) == 1 and f"{here} is forwarded but does not exist at home" in warnings[0], describe(r)
    assert "home's root" in warnings[0], describe(r)


def test_cwd_option_starts_at_home(tv):
    tv.both("sub/f.txt", "home sub f\n")
    r = tv.run([SH, "-c", "pwd; cat f.txt"], cwd="/", extra_wrap_args=["--cwd", tv.p("sub")])
    assert (r.returncode, r.stdout, r.stderr) == (0, f"{tv.p('sub')}\nhome sub f\n", ""), describe(r)
    # Relative to where wrap-and-run runs.
    r = tv.run([SH, "-c", "pwd; cat f.txt"], extra_wrap_args=["--cwd", "sub"])
    assert (r.returncode, r.stdout) == (0, f"{tv.p('sub')}\nhome sub f\n"), describe(r)


def test_cwd_option_local_directory(tv):
    """A local DIR (under /dev/shm): the program starts there on the target."""
    local = pathlib.Path(tempfile.mkdtemp(prefix="tether-it-", dir="/dev/shm"))
    try:
        (local / "here.txt").write_text("local\n")
        r = tv.run([SH, "-c", "pwd; cat here.txt"], extra_wrap_args=["--cwd", local])
        assert (r.returncode, r.stdout) == (0, f"{local}\nlocal\n"), describe(r)
    finally:
        shutil.rmtree(local, ignore_errors=True)


def test_cwd_option_that_home_lacks_is_refused(tv):
    tv.decoy("decoydir/x", "decoy\n")
    r = tv.run([CAT, "x"], extra_wrap_args=["--cwd", tv.p("decoydir")])
    assert r.returncode == 125, describe(r)
    assert f"--cwd {tv.p('decoydir')} cannot be entered at home" in r.stderr, describe(r)
