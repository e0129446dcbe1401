"""The ptrace engine's install stub answers a forwarded open itself and
returns to the program (README, Engines): everything the kernel keeps across
a syscall must come back as it was. A C program opens a home file with a raw
`syscall` instruction thousands of times while SIGALRM fires every 50 us
(a signal frame may land on the stack at any moment after the stub's last
syscall), and checks every register a syscall keeps, the 128-byte red zone
below its stack pointer, and the file each descriptor reads. Under both
engines, through TETHER_ENGINE."""

import os
import pathlib
import shutil
import subprocess
import tempfile

import pytest

from conftest import describe
from test_files import ok

REGS_C = r"""
// Forwarded opens made with a raw syscall instruction, many thousands of
// times while SIGALRM fires every 50 us: every register the kernel keeps
// across a syscall must come back unchanged, the 128-byte red zone below
// the stack pointer must be untouched, and each descriptor must read the
// right file. Prints "ok N SIGNALS" or what went wrong; exit 1 on failure.
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

static volatile sig_atomic_t signals;
static void on_alarm(int sig) { (void)sig; signals++; }

struct seen { uint64_t rdi, rsi, rdx, r10, r8, r9, r12, r13, r14, r15, rbx, rbp, zone[3]; long rax; };

static void raw_open(const char *path, struct seen *o)
{
    __asm__ volatile(
        "pushq %%rbx\n\t"
        "pushq %%rbp\n\t"
        "pushq %%rax\n\t"                   // the results' address
        "movq $257, %%rax\n\t"              // openat(AT_FDCWD, path, O_RDONLY): path is in rsi
        "movq $-100, %%rdi\n\t"
        "xorl %%edx, %%edx\n\t"
        "xorl %%r10d, %%r10d\n\t"
        "movq $0x1111, %%r8\n\t"
        "movq $0x2222, %%r9\n\t"
        "movq $0x3333, %%r12\n\t"
        "movq $0x4444, %%r13\n\t"
        "movq $0x5555, %%r14\n\t"
        "movq $0x6666, %%r15\n\t"
        "movq $0x7777, %%rbx\n\t"
        "movq $0x8888, %%rbp\n\t"
        "movq $0xa1a1, -16(%%rsp)\n\t"      // the red zone
        "movq $0xb2b2, -64(%%rsp)\n\t"
        "movq $0xc3c3, -120(%%rsp)\n\t"
        "syscall\n\t"
        "movq (%%rsp), %%rcx\n\t"           // rcx and r11 are the syscall's
        "movq %%rax, 120(%%rcx)\n\t"
        "movq %%rdi, 0(%%rcx)\n\t"
        "movq %%rsi, 8(%%rcx)\n\t"
        "movq %%rdx, 16(%%rcx)\n\t"
        "movq %%r10, 24(%%rcx)\n\t"
        "movq %%r8, 32(%%rcx)\n\t"
        "movq %%r9, 40(%%rcx)\n\t"
        "movq %%r12, 48(%%rcx)\n\t"
        "movq %%r13, 56(%%rcx)\n\t"
        "movq %%r14, 64(%%rcx)\n\t"
        "movq %%r15, 72(%%rcx)\n\t"
        "movq %%rbx, 80(%%rcx)\n\t"
        "movq %%rbp, 88(%%rcx)\n\t"
        "movq -16(%%rsp), %%rax\n\t"
        "movq %%rax, 96(%%rcx)\n\t"
        "movq -64(%%rsp), %%rax\n\t"
        "movq %%rax, 104(%%rcx)\n\t"
        "movq -120(%%rsp), %%rax\n\t"
        "movq %%rax, 112(%%rcx)\n\t"
        "popq %%rax\n\t"
        "popq %%rbp\n\t"
        "popq %%rbx\n\t"
        : "+a"(o), "+S"(path)
        :
        : "rcx", "rdx", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "memory", "cc");
}

int main(int argc, char **argv)
{
    if (argc < 4) return 2;
    const char *path = argv[1], *want = argv[2];
    int n = atoi(argv[3]);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval every = {{0, 50}, {0, 50}};
    setitimer(ITIMER_REAL, &every, NULL);
    for (int i = 0; i < n; i++) {
        struct seen o;
        memset(&o, 0, sizeof o);
        raw_open(path, &o);
        if (o.rax < 0) { printf("open %d: %ld\n", i, o.rax); return 1; }
        uint64_t expect[] = {(uint64_t)-100, (uint64_t)(uintptr_t)path, 0, 0, 0x1111, 0x2222, 0x3333, 0x4444, 0x5555, 0x6666, 0x7777, 0x8888, 0xa1a1, 0xb2b2, 0xc3c3};
        const char *names[] = {"rdi", "rsi", "rdx", "r10", "r8", "r9", "r12", "r13", "r14", "r15", "rbx", "rbp", "red zone -16", "red zone -64", "red zone -120"};
        for (int k = 0; k < 15; k++) {
            uint64_t got = ((uint64_t *)&o)[k];
            if (got != expect[k]) { printf("open %d: %s is %#llx, not %#llx\n", i, names[k], (unsigned long long)got, (unsigned long long)expect[k]); return 1; }
        }
        char buf[64] = {0};
        ssize_t r = read((int)o.rax, buf, sizeof buf - 1);
        if (r < 0 || strcmp(buf, want) != 0) { printf("open %d: fd %ld read %zd \"%s\"\n", i, o.rax, r, buf); return 1; }
        close((int)o.rax);
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    printf("ok %d %s\n", n, signals > 0 ? "signals" : "NO-SIGNALS");
    return 0;
}
"""


@pytest.fixture(scope="module")
def regs_program():
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc")
    d = pathlib.Path(tempfile.mkdtemp(prefix="tether-regs-", dir="/dev/shm"))   # local by default
    (d / "regs.c").write_text(REGS_C)
    subprocess.run(["gcc", "-O1", "-o", str(d / "regs"), str(d / "regs.c")], check=True)
    yield d / "regs"
    shutil.rmtree(d, ignore_errors=True)


def test_a_forwarded_open_keeps_every_register_and_the_red_zone_under_signals(tv, regs_program):
    tv.both("f.txt", "home data\n")
    r = ok(tv.run([str(regs_program), tv.p("f.txt"), "home data\n", "3000"], timeout=120))
    assert r.stdout == "ok 3000 signals\n", describe(r)
