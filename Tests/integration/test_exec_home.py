"""Programs that live at home: execve of a forwarded path runs the home
file (fetched into the copy cache), for ELF binaries, `#!` scripts, PATH
lookups in a traced shell and wrap-and-run's own program; the ELF check
applies to the fetched file; set-id bits are said not to apply."""

import os
import re
import shutil
import subprocess

import pytest

from conftest import MIN_ENV, PY, PY_ERRNAME, SH, describe, py, run_bounded, write
from test_files import ok

HELLO_C = r'''
#include <stdio.h>
int main(int argc, char **argv) { printf("HOME-BUILT %s\n", argc > 1 ? argv[1] : "-"); return 0; }
'''


@pytest.fixture
def home_bin(tv):
    """BASE/view/bin at home: hello (an ELF built here, at home only), a
    #! script, and a decoy hello on the target at another path."""
    if shutil.which("cc") is None:
        pytest.skip("no C compiler")
    src = write(tv.local / "hello.c", HELLO_C)
    (tv.homedata / "bin").mkdir()
    subprocess.run(["cc", "-O0", "-o", str(tv.homedata / "bin/hello"), str(src)], check=True)
    write(tv.homedata / "bin/greet.sh", '#!/bin/sh\necho "HOME SCRIPT $1"\n', mode=0o755)
    return tv


def run(tv, args, extra=()):
    env = {**MIN_ENV, "XDG_CACHE_HOME": str(tv.local / "cache")}
    return run_bounded(tv.wrap_argv(args, extra_wrap_args=["--stats", *extra]), cwd=str(tv.view), env=env)


def fetched(r):
    m = re.search(r"copy cache: (\d+) fetched from home", r.stderr)
    assert m, describe(r)
    return int(m.group(1))


def test_a_binary_built_at_home_runs_from_a_traced_shell(home_bin):
    tv = home_bin
    assert not os.path.exists(tv.p("bin/hello"))  # home only
    r = ok(run(tv, [SH, "-c", f"{tv.p('bin/hello')} one; {tv.p('bin/hello')} two"]))
    assert r.stdout == "HOME-BUILT one\nHOME-BUILT two\n", describe(r)
    assert fetched(r) == 1
    # The next session finds it in the cache.
    r = ok(run(tv, [SH, "-c", f"{tv.p('bin/hello')} three"]))
    assert r.stdout == "HOME-BUILT three\n" and fetched(r) == 0, describe(r)


def test_the_home_file_runs_even_where_the_target_has_one_of_that_name(home_bin):
    tv = home_bin
    tv.decoy("bin/hello", "#!/bin/sh\necho TARGET DECOY\n", mode=0o755)
    r = ok(run(tv, [SH, "-c", f"{tv.p('bin/hello')} x"]))
    assert r.stdout == "HOME-BUILT x\n", describe(r)


def test_short_names_run_the_home_file_or_are_refused_with_a_reason(home_bin):
    """The name execve gets is replaced by /dev/fd/N in the program's
    memory: a 9-byte name holds it with a one-digit N; a shorter one
    (./hello, 7 bytes) cannot, and must not run the target's file of that
    name instead."""
    tv = home_bin
    tv.decoy("bin/hello", "#!/bin/sh\necho TARGET DECOY\n", mode=0o755)
    shutil.copy(tv.homedata / "bin/hello", tv.homedata / "bin/hello-9")
    r = run(tv, [SH, "-c", f"cd {tv.p('bin')} && ./hello-9 nine; ./hello short; echo status $?"])
    assert r.stdout == "HOME-BUILT nine\nstatus 126\n", describe(r)
    assert "TARGET DECOY" not in r.stdout
    assert r.stderr.count("cannot run") == 1 and "./hello" not in r.stderr.split("cannot run")[0], describe(r)
    assert f"cannot run {tv.p('bin/hello')} from home" in r.stderr and "full name" in r.stderr, describe(r)


def test_a_script_at_home_runs_with_its_argument(home_bin):
    tv = home_bin
    r = ok(run(tv, [SH, "-c", f"{tv.p('bin/greet.sh')} arg1"]))
    assert r.stdout == "HOME SCRIPT arg1\n", describe(r)


def test_path_lookups_in_a_traced_shell_find_home_programs(home_bin):
    tv = home_bin
    r = ok(run(tv, [SH, "-c", f"PATH={tv.p('bin')}:$PATH; hello viapath; greet.sh too"]))
    assert r.stdout == "HOME-BUILT viapath\nHOME SCRIPT too\n", describe(r)


def test_wrap_and_run_runs_a_program_that_only_home_has(home_bin):
    tv = home_bin
    r = ok(run(tv, [tv.p("bin/hello"), "direct"]))
    assert r.stdout == "HOME-BUILT direct\n", describe(r)
    r = ok(run(tv, ["bin/greet.sh", "relative"]))
    assert r.stdout == "HOME SCRIPT relative\n", describe(r)
    env = {**MIN_ENV, "XDG_CACHE_HOME": str(tv.local / "cache"), "PATH": f"{tv.p('bin')}:/usr/bin:/bin"}
    r = run_bounded(tv.wrap_argv(["hello", "bare"]), cwd=str(tv.view), env=env)
    assert r.returncode == 0 and r.stdout == "HOME-BUILT bare\n", describe(r)


EXEC = PY_ERRNAME + r'''
import subprocess, sys
for p in sys.argv[1:]:
    try:
        print(subprocess.run([p], capture_output=True).stdout.decode().strip() or "ran", flush=True)
    except OSError as e:
        print(ename(e), flush=True)
'''


def test_the_elf_check_and_the_mode_apply_to_the_home_file(home_bin):
    tv = home_bin
    # An aarch64 ELF header (EM_AARCH64 = 183), executable.
    header = bytearray(64)
    header[0:4] = b"\x7fELF"
    header[4], header[5], header[6] = 2, 1, 1  # 64-bit, little-endian, version 1
    header[16:18] = (2).to_bytes(2, "little")   # ET_EXEC
    header[18:20] = (183).to_bytes(2, "little")
    header[20:24] = (1).to_bytes(4, "little")
    header[52:54] = (64).to_bytes(2, "little")  # e_ehsize
    write(tv.homedata / "bin/arm", bytes(header), mode=0o755)
    shutil.copy(tv.homedata / "bin/hello", tv.homedata / "bin/noexec")
    os.chmod(tv.homedata / "bin/noexec", 0o644)
    r = ok(run(tv, py(EXEC, tv.p("bin/arm"), tv.p("bin/noexec"), tv.p("bin/missing"), tv.p("bin/hello"))))
    assert r.stdout.splitlines() == ["ENOEXEC", "EACCES", "ENOENT", "HOME-BUILT -"], describe(r)


def test_set_id_bits_at_home_are_said_not_to_apply_once(home_bin):
    tv = home_bin
    os.chmod(tv.homedata / "bin/hello", 0o4755)
    r = ok(run(tv, [SH, "-c", f"{tv.p('bin/hello')} a; {tv.p('bin/hello')} b"]))
    assert r.stdout == "HOME-BUILT a\nHOME-BUILT b\n", describe(r)
    assert r.stderr.count("set-user-ID or set-group-ID at home") == 1, describe(r)


def test_a_script_whose_interpreter_is_at_home_runs(home_bin):
    tv = home_bin
    shutil.copy(os.path.realpath("/bin/sh"), tv.homedata / "bin/homesh")   # at home only
    write(tv.homedata / "bin/viahome", f'#!{tv.p("bin/homesh")} -e\necho "HOME INTERP $1"\n', mode=0o755)
    assert not os.path.exists(tv.p("bin/homesh"))
    r = ok(run(tv, [SH, "-c", f"{tv.p('bin/viahome')} arg"]))
    assert r.stdout == "HOME INTERP arg\n", describe(r)


def test_a_home_program_loads_its_home_libraries_by_runpath_and_ld_library_path(home_bin):
    tv = home_bin
    lib = write(tv.local / "greet.c", 'const char *greeting(void) { return "HOME LIB"; }\n')
    main = write(tv.local / "main.c", '#include <stdio.h>\nconst char *greeting(void);\n'
                                      'int main(void) { puts(greeting()); return 0; }\n')
    (tv.homedata / "lib").mkdir()
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(tv.homedata / "lib/libgreet.so"), str(lib)], check=True)
    # The target has a library of that name too: the home one must be loaded.
    tv.decoy("lib/libgreet.so", "not a library\n")
    link = [str(main), "-L", str(tv.homedata / "lib"), "-lgreet"]
    subprocess.run(["cc", "-o", str(tv.homedata / "bin/uselib"), *link, f"-Wl,-rpath,{tv.p('lib')}"], check=True)
    subprocess.run(["cc", "-o", str(tv.homedata / "bin/uselib2"), *link], check=True)
    r = ok(run(tv, [SH, "-c", f"{tv.p('bin/uselib')}; LD_LIBRARY_PATH={tv.p('lib')} {tv.p('bin/uselib2')}"]))
    assert r.stdout == "HOME LIB\nHOME LIB\n", describe(r)
    assert fetched(r) == 3   # two programs and the library, once
    # The library is a copy too: the next session maps it from the cache.
    r = ok(run(tv, [SH, "-c", f"{tv.p('bin/uselib')}"]))
    assert r.stdout == "HOME LIB\n" and fetched(r) == 0, describe(r)
