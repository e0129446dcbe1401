"""The trees the workloads run on, generated once per run with fixed seeds.

Everything is written natively into the export root before any server starts:
the same content every run (random.Random with a fixed seed), so runs compare.
"""

from __future__ import annotations

import os
import pathlib
import random
import shutil
import subprocess
from dataclasses import dataclass

# Set-up runs the system's tools, whatever PATH the bench was started with.
SETUP_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C", "LC_ALL": "C"}


@dataclass(frozen=True)
class Sizes:
    """How big each tree is; `quick` makes a self-check in seconds."""
    git_files: int
    c_files: int
    tar_random_mib: int
    tar_text_mib: int
    py_modules: int
    rsync_files: int

    @staticmethod
    def of(quick: bool) -> "Sizes":
        if quick:
            return Sizes(git_files=1_000, c_files=10, tar_random_mib=3, tar_text_mib=6,
                         py_modules=50, rsync_files=200)
        return Sizes(git_files=10_000, c_files=50, tar_random_mib=41, tar_text_mib=42,
                     py_modules=300, rsync_files=1_000)


WORDS = ("home target deputy supervisor forward local socket frame reply request "
         "descriptor offset cache inode directory listing stat open close read write "
         "session seal key export root path prefix rule policy kernel notify").split()


def _text(rng: random.Random, n: int) -> bytes:
    """About n bytes of word salad: compresses like source text (3-4x with gzip)."""
    out, size = [], 0
    while size < n:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14))) + f" {rng.randint(0, 99999)}\n"
        out.append(line)
        size += len(line)
    return "".join(out).encode()[:n]


def _write(path: pathlib.Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _run(argv: list, cwd: pathlib.Path, env: dict) -> None:
    r = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"setup: {' '.join(argv)} in {cwd} failed ({r.returncode}): {r.stderr.strip()[-2000:]}")


def git_repo(root: pathlib.Path, files: int, env: dict) -> None:
    """A committed repository of `files` small files, 100 per directory, packed."""
    rng = random.Random(1)
    for i in range(files):
        _write(root / f"d{i // 100:03d}" / f"f{i:05d}.txt", _text(rng, rng.randint(200, 3000)))
    for argv in (["git", "init", "-q", "-b", "main", "."], ["git", "add", "-A"],
                 ["git", "commit", "-q", "-m", "generated tree"], ["git", "gc", "-q"]):
        _run(argv, root, env)


C_HEADER = """#ifndef PROJ_H
#define PROJ_H
#include <stddef.h>
#include <stdint.h>
{decls}
#endif
"""

C_SOURCE = """#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <errno.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/stat.h>
#include "proj.h"

static double table_{i}[{n}];

uint64_t unit{i}_mix(uint64_t x) {{
    for (int r = 0; r < {rounds}; r++) {{
        x ^= x >> 31; x *= 0x7fb5d329728ea185ULL; x ^= x >> 27;
    }}
    return x + {i};
}}

double unit{i}_table(size_t k) {{
    for (size_t j = 0; j < {n}; j++) table_{i}[j] = sin((double)j * {i}) + sqrt((double)j);
    return table_{i}[k % {n}];
}}

int unit{i}_describe(char *buf, size_t len) {{
    struct stat st;
    int fd = open("/dev/null", O_RDONLY);
    if (fd >= 0) {{ fstat(fd, &st); close(fd); }}
    return snprintf(buf, len, "unit {i}: %s %d", strerror(EINVAL), (int)getpid() % 7);
}}
"""

C_MAIN = """#include <stdio.h>
#include "proj.h"

int main(void) {{
    uint64_t acc = 0;
    double d = 0;
    char buf[128];
{calls}
    printf("%llu %.3f %s\\n", (unsigned long long)acc, d, buf);
    return 0;
}}
"""

MAKEFILE = """CC = gcc
CFLAGS = -O1 -Wall
OBJS = {objs}

prog: $(OBJS)
\t$(CC) -o $@ $(OBJS) -lm

%.o: %.c proj.h
\t$(CC) $(CFLAGS) -c $< -o $@

clean:
\trm -f prog $(OBJS)
"""


def c_project(root: pathlib.Path, files: int) -> None:
    """`files` C files (files-1 units and main.c) with a local header and a
    Makefile; every unit includes a handful of the target's system headers."""
    rng = random.Random(2)
    decls = []
    for i in range(files - 1):
        n, rounds = rng.randint(64, 512), rng.randint(2, 9)
        _write(root / f"unit{i:02d}.c", C_SOURCE.format(i=i, n=n, rounds=rounds).encode())
        decls.append(f"uint64_t unit{i}_mix(uint64_t x);\ndouble unit{i}_table(size_t k);\n"
                     f"int unit{i}_describe(char *buf, size_t len);")
    _write(root / "proj.h", C_HEADER.format(decls="\n".join(decls)).encode())
    calls = "\n".join(f"    acc += unit{i}_mix({i}); d += unit{i}_table({i}); unit{i}_describe(buf, sizeof buf);"
                      for i in range(files - 1))
    _write(root / "main.c", C_MAIN.format(calls=calls).encode())
    objs = " ".join([f"unit{i:02d}.o" for i in range(files - 1)] + ["main.o"])
    _write(root / "Makefile", MAKEFILE.format(objs=objs).encode())


def tar_archive(path: pathlib.Path, staging: pathlib.Path, random_mib: int, text_mib: int) -> dict:
    """A .tar.gz of random files (incompressible) and text files (about 4:1),
    from a staging tree that is removed afterwards. Returns what it holds."""
    rng = random.Random(3)
    files, total, left = 0, 0, random_mib << 20
    while left > 0:
        n = min(left, rng.randint(64 << 10, 2 << 20))
        _write(staging / "bin" / f"blob{files:04d}.dat", rng.randbytes(n))
        files, total, left = files + 1, total + n, left - n
    left = text_mib << 20
    while left > 0:
        n = min(left, rng.randint(4 << 10, 512 << 10))
        _write(staging / "doc" / f"d{files // 50:02d}" / f"page{files:04d}.txt", _text(rng, n))
        files, total, left = files + 1, total + n, left - n
    _run(["tar", "czf", str(path), "--owner=0", "--group=0", "--sort=name", "--mtime=@1700000000", "."],
         staging, SETUP_ENV)
    shutil.rmtree(staging)
    return {"files": files, "bytes": total, "archive_bytes": path.stat().st_size}


def py_package(root: pathlib.Path, modules: int) -> list:
    """A package `pkg` of `modules` modules that import each other and a few
    standard modules, compiled to __pycache__ once; returns the module names."""
    rng = random.Random(4)
    pkg = root / "pkg"
    _write(pkg / "__init__.py", b'"""Generated package for the import workload."""\n')
    names = [f"m{i}" for i in range(modules)]
    stdlib = ["os", "re", "json", "collections", "functools", "itertools", "dataclasses", "typing"]
    for i, name in enumerate(names):
        deps = sorted({names[rng.randrange(i)] for _ in range(min(i, 2))}) if i else []
        body = [f'"""Module {i}."""', *(f"import {m}" for m in rng.sample(stdlib, 2)),
                *(f"from pkg import {d}" for d in deps), ""]
        for k in range(rng.randint(3, 8)):
            body += [f"def f{k}(x, y={k}):", f"    return [v * y + {i} for v in range(x)]", ""]
        body += [f"class C{i}:", "    def __init__(self, a):", "        self.a = a", "",
                 "    def __repr__(self):", f"        return 'C{i}(%r)' % (self.a,)", "",
                 f"TABLE = {{k: k * {i} for k in range(32)}}", ""]
        _write(pkg / f"{name}.py", "\n".join(body).encode())
    _run(["/usr/bin/python3", "-m", "compileall", "-q", str(pkg)], root, SETUP_ENV)
    return [f"pkg.{n}" for n in names]


def rsync_tree(root: pathlib.Path, files: int) -> None:
    """`files` files of 1-64 KiB, 100 per directory, half text and half random."""
    rng = random.Random(5)
    for i in range(files):
        n = rng.randint(1 << 10, 64 << 10)
        data = _text(rng, n) if i % 2 else rng.randbytes(n)
        _write(root / f"s{i // 100:02d}" / f"file{i:04d}", data)
