// CShim: the ptrace engine's install stub. A placeholder's install by
// injected syscalls (cshim_ptrace_install.c) costs recvmsg, dup3 and close,
// each a round of ptrace stops; the stub runs all three in one go. It is a
// page of code at a fixed address (CSHIM_PTRACE_STUB) in each traced
// address space, mapped at the first install after an exec (an injected
// mmap with MAP_FIXED_NOREPLACE, the code written through /proc/TID/mem)
// and inherited by forks. The ptrace filter (cshim_filter.c) lets those
// three syscalls run when made from the page's first half, and traces any
// made from its second half, where the stub ends: so the thread is sent
// there with its registers set, runs on (PTRACE_CONT) through the three
// calls and stops once, at a seccomp stop whose registers hold the
// results; then its own registers are put back, which leaves it exactly as
// at its own seccomp stop. Two stops in all instead of seven.
//
// The page shows in the program's /proc/self/maps, and any code there would
// skip the filter for those three calls: the price of the stub, as in
// gVisor's systrap. Where the address is taken (the mmap fails), that
// thread's installs go on by injection.
#include "CShim.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <unistd.h>

#define REG(regs, field) (((struct user_regs_struct *)(regs)->r)->field)

// Entered with rax = SYS_recvmsg, rdi/rsi/rdx its arguments, r12 the
// target, r13 dup3's flags, r14 the address of the received descriptor
// (-1 until one comes). Leaves recvmsg's result in r15, dup3's in r12.
static const unsigned char code[] = {
    0x0f, 0x05,                                // syscall             recvmsg
    0x49, 0x89, 0xc7,                          // mov r15, rax
    0x41, 0x8b, 0x3e,                          // mov edi, [r14]      the descriptor
    0x85, 0xff,                                // test edi, edi
    0x78, 0x1c,                                // js done             none came
    0x44, 0x39, 0xe7,                          // cmp edi, r12d
    0x74, 0x17,                                // je done             already there
    0x4c, 0x89, 0xe6,                          // mov rsi, r12
    0x4c, 0x89, 0xea,                          // mov rdx, r13
    0xb8, 0x24, 0x01, 0x00, 0x00,              // mov eax, 292
    0x0f, 0x05,                                // syscall             dup3
    0x49, 0x89, 0xc4,                          // mov r12, rax
    0xb8, 0x03, 0x00, 0x00, 0x00,              // mov eax, 3
    0x0f, 0x05,                                // syscall             close
    0x48, 0xc7, 0xc7, 0xff, 0xff, 0xff, 0xff,  // done: mov rdi, -1
    0xb8, 0x03, 0x00, 0x00, 0x00,              // mov eax, 3
    0xe9, 0xc7, 0x07, 0x00, 0x00,              // jmp trap (+0x800)
};
static const unsigned char trap[] = {
    0x0f, 0x05,   // syscall   close(-1): traced here, the stub's end
    0x0f, 0x0b,   // ud2
};
_Static_assert(sizeof code == 0x39, "the jump to the trap is from 0x39");

// Threads whose address space would not take the page (a mapping of the
// program's own is there): their installs inject. Tracer thread only.
enum { REFUSED = 64 };
static pid_t refused[REFUSED];
static unsigned refused_next;

static int present(pid_t tid)
{
    unsigned char a[sizeof code], b[sizeof trap];
    struct iovec local[2] = {{a, sizeof a}, {b, sizeof b}};
    struct iovec remote[2] = {{(void *)CSHIM_PTRACE_STUB, sizeof a},
                              {(void *)(CSHIM_PTRACE_STUB + CSHIM_PTRACE_STUB_TRAP), sizeof b}};
    return process_vm_readv(tid, local, 2, remote, 2, 0) == (ssize_t)(sizeof a + sizeof b) &&
           memcmp(a, code, sizeof a) == 0 && memcmp(b, trap, sizeof b) == 0;
}

static int write_page(pid_t tid)
{
    char path[32];
    snprintf(path, sizeof path, "/proc/%d/mem", (int)tid);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int ok = pwrite(fd, code, sizeof code, (off_t)CSHIM_PTRACE_STUB) == (ssize_t)sizeof code &&
             pwrite(fd, trap, sizeof trap, (off_t)(CSHIM_PTRACE_STUB + CSHIM_PTRACE_STUB_TRAP)) == (ssize_t)sizeof trap;
    close(fd);
    return ok ? 0 : -1;
}

// 1 when the stub is in `tid`'s address space (mapped now if need be), 0
// if it cannot be, -1 when the thread is gone.
static int ready(cshim_ptrace_stop *stop, int *at_exit, int *signal)
{
    pid_t tid = stop->tid;
    if (present(tid))
        return 1;
    for (unsigned i = 0; i < REFUSED; i++)
        if (refused[i] == tid)
            return 0;
    const uint64_t a[6] = {CSHIM_PTRACE_STUB, 4096, PROT_READ | PROT_EXEC,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, (uint64_t)-1, 0};
    int64_t at = cshim_ptrace_inject6(stop, at_exit, signal, SYS_mmap, a);
    if (at == INT64_MIN)
        return -1;
    if ((uint64_t)at == CSHIM_PTRACE_STUB && write_page(tid) == 0 && present(tid))
        return 1;
    if ((uint64_t)at == CSHIM_PTRACE_STUB) {
        const uint64_t b[6] = {CSHIM_PTRACE_STUB, 4096, 0, 0, 0, 0};
        (void)cshim_ptrace_inject6(stop, at_exit, signal, SYS_munmap, b);
    }
    refused[refused_next++ % REFUSED] = tid;
    return 0;
}

int cshim_ptrace_stub_install(cshim_ptrace_stop *stop, int *at_exit, int *signal, int channel, uint64_t msg,
                              uint64_t fd_at, int target, int cloexec, int64_t *recv, int64_t *moved)
{
    int r = ready(stop, at_exit, signal);
    if (r <= 0) {
        if (r < 0)
            errno = ESRCH;
        return r < 0 ? -1 : 1;
    }
    cshim_ptrace_regs regs = stop->regs;   // read by ready's caller
    REG(&regs, rip) = CSHIM_PTRACE_STUB;
    REG(&regs, orig_rax) = (uint64_t)-1;   // at a seccomp stop: the call is skipped
    REG(&regs, rax) = SYS_recvmsg;
    REG(&regs, rdi) = (uint64_t)channel;
    REG(&regs, rsi) = msg;
    REG(&regs, rdx) = MSG_CMSG_CLOEXEC;
    REG(&regs, r12) = (uint64_t)(int64_t)target;
    REG(&regs, r13) = cloexec ? O_CLOEXEC : 0;
    REG(&regs, r14) = fd_at;
    if (ptrace(PTRACE_SETREGS, stop->tid, 0, regs.r) != 0 || cshim_ptrace_run_to_trap(stop->tid, signal) != 0)
        goto failed;
    if (ptrace(PTRACE_GETREGS, stop->tid, 0, regs.r) != 0)
        goto failed;
    if (REG(&regs, rip) != CSHIM_PTRACE_STUB + CSHIM_PTRACE_STUB_TRAP + 2) {
        errno = EFAULT;   // stopped elsewhere: a seccomp stop the stub did not make
        goto failed;
    }
    *recv = (int64_t)REG(&regs, r15);
    *moved = (int64_t)REG(&regs, r12);
    if (ptrace(PTRACE_SETREGS, stop->tid, 0, stop->regs.r) != 0)
        return -1;
    *at_exit = 0;
    return 0;
failed:;
    int e = errno;
    // Put back as it was, if it still is; the caller learns it failed.
    if (e != ESRCH && ptrace(PTRACE_SETREGS, stop->tid, 0, stop->regs.r) == 0)
        *at_exit = 0;
    errno = e;
    return -1;
}
