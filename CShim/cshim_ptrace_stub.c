// CShim: the ptrace engine's install stub. A placeholder's install by
// injected syscalls (cshim_ptrace_install.c) costs recvmsg, dup3 and close,
// each a round of ptrace stops; the stub runs all three in one go. It is a
// page of code at a fixed address (CSHIM_PTRACE_STUB) in each traced
// address space, mapped at the first install after an exec (an injected
// mmap with MAP_FIXED_NOREPLACE, the code from cshim_ptrace_stub_code.S
// written through /proc/TID/mem) and inherited by forks. The ptrace filter
// (cshim_filter.c) lets those three syscalls run when made from the page's
// first half, and traces any made from its second half.
//
// The thread is sent to the page with its registers set and its stack
// pointer lowered past its red zone onto the stub's frame (the arguments,
// the results, and what it must put back), and runs on (PTRACE_CONT):
//  - answering its own call (the install that answers the call, an open):
//    it puts back its signal mask (all signals were blocked from the stop
//    on), then the registers it used, the result in rax as its syscall's,
//    and its stack pointer last, and jumps back after its syscall. The
//    call costs its seccomp stop alone, as a notification does. The frame
//    is above the stack pointer until the very end, so a signal delivered
//    once the mask is back cannot land on it; the red zone is never
//    touched. The tracer never learns how it went: if the descriptor did
//    not come, the channel's message is taken back before the next
//    install (closing the placeholder's last copy, as the program's close
//    would);
//  - or stopping at the page's second half (an install the caller answers
//    later): its registers hold where it was, the frame holds the result,
//    and its own registers are put back, which leaves it exactly as at its
//    own seccomp stop. Two stops in all instead of seven.
//
// The page shows in the program's /proc/self/maps, and any code there would
// skip the filter for those three calls: the price of the stub, as in
// gVisor's systrap. Where the address is taken (the mmap fails), or the
// thread's stack has no room below its red zone, installs go on by
// injection.
#include "CShim.h"
#include "cshim_ptrace_stub.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
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

// The stub's frame: written below the thread's red zone, where the stub
// runs with its stack pointer (cshim_ptrace_stub.h has the offsets).
struct frame {
    struct msghdr msg;
    struct iovec iov;
    union {
        char buf[24];   // CMSG_SPACE(sizeof(int)), as a constant (checked below)
        uint64_t align; // a cmsghdr's (its flexible array would make the union variable-sized)
    } ctl;
    int64_t result;
    int32_t target, dupflags;
    uint64_t mask;
    uint64_t rdi, rsi, rdx, r10, r12, rsp, rip;
    uint32_t mode;
    char byte[4];
};
_Static_assert(offsetof(struct frame, ctl) + CMSG_LEN(0) == STUB_FRAME_FD, "fd");
_Static_assert(sizeof(((struct frame *)0)->ctl.buf) == CMSG_SPACE(sizeof(int)), "one descriptor's control message");
_Static_assert(offsetof(struct frame, result) == STUB_FRAME_RESULT, "result");
_Static_assert(offsetof(struct frame, target) == STUB_FRAME_TARGET, "target");
_Static_assert(offsetof(struct frame, dupflags) == STUB_FRAME_DUPFLAGS, "dupflags");
_Static_assert(offsetof(struct frame, mask) == STUB_FRAME_MASK, "mask");
_Static_assert(offsetof(struct frame, rdi) == STUB_FRAME_RDI && offsetof(struct frame, rsi) == STUB_FRAME_RSI &&
               offsetof(struct frame, rdx) == STUB_FRAME_RDX && offsetof(struct frame, r10) == STUB_FRAME_R10 &&
               offsetof(struct frame, r12) == STUB_FRAME_R12 && offsetof(struct frame, rsp) == STUB_FRAME_RSP &&
               offsetof(struct frame, rip) == STUB_FRAME_RIP, "registers");
_Static_assert(offsetof(struct frame, mode) == STUB_FRAME_MODE && sizeof(struct frame) == STUB_FRAME_SIZE, "mode");

// cshim_ptrace_stub_code.S: the code, then (at STUB_TRAP) the trap.
extern const unsigned char cshim_ptrace_stub_code[], cshim_ptrace_stub_code_end[], cshim_ptrace_stub_end[];

// Threads whose address space would not take the page (a mapping of the
// program's own is there): their installs inject. Tracer thread only.
enum { REFUSED = 64 };
static pid_t refused[REFUSED];
static unsigned refused_next;

static int present(pid_t tid)
{
    unsigned char a[STUB_CODE_SIZE], b[4];
    struct iovec local[2] = {{a, sizeof a}, {b, sizeof b}};
    struct iovec remote[2] = {{(void *)CSHIM_PTRACE_STUB, sizeof a},
                              {(void *)(CSHIM_PTRACE_STUB + CSHIM_PTRACE_STUB_TRAP), sizeof b}};
    return process_vm_readv(tid, local, 2, remote, 2, 0) == (ssize_t)(sizeof a + sizeof b) &&
           memcmp(a, cshim_ptrace_stub_code, sizeof a) == 0 &&
           memcmp(b, cshim_ptrace_stub_code + CSHIM_PTRACE_STUB_TRAP, sizeof b) == 0;
}

static int write_page(pid_t tid)
{
    char path[32];
    snprintf(path, sizeof path, "/proc/%d/mem", (int)tid);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t size = (size_t)(cshim_ptrace_stub_end - cshim_ptrace_stub_code);
    int ok = pwrite(fd, cshim_ptrace_stub_code, size, (off_t)CSHIM_PTRACE_STUB) == (ssize_t)size;
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

int cshim_ptrace_stub_install(cshim_ptrace_stop *stop, int *at_exit, int *signal, int channel, int target,
                              int cloexec, int back, uint64_t mask, int64_t *result)
{
    int r = ready(stop, at_exit, signal);
    if (r <= 0) {
        if (r < 0)
            errno = ESRCH;
        return r < 0 ? -1 : 1;
    }
    pid_t tid = stop->tid;
    const cshim_ptrace_regs *own = &stop->regs;   // read at the stop
    uint64_t at = cshim_ptrace_below_red_zone(stop, sizeof(struct frame));
    struct frame f;
    memset(&f, 0, sizeof f);
    f.msg.msg_iov = (struct iovec *)(uintptr_t)(at + offsetof(struct frame, iov));
    f.msg.msg_iovlen = 1;
    f.msg.msg_control = (void *)(uintptr_t)(at + offsetof(struct frame, ctl));
    f.msg.msg_controllen = sizeof f.ctl.buf;
    f.iov.iov_base = (void *)(uintptr_t)(at + offsetof(struct frame, byte));
    f.iov.iov_len = 1;
    const int none = -1;
    memcpy(f.ctl.buf + CMSG_LEN(0), &none, sizeof none);
    f.result = -EMFILE;   // what a receive with no descriptor means: no free number
    f.target = target;
    f.dupflags = cloexec ? O_CLOEXEC : 0;
    f.mask = mask;
    f.rdi = REG(own, rdi), f.rsi = REG(own, rsi), f.rdx = REG(own, rdx), f.r10 = REG(own, r10);
    f.r12 = REG(own, r12), f.rsp = REG(own, rsp), f.rip = REG(own, rip);
    f.mode = back ? 1 : 0;
    if (cshim_tracee_io(tid, at, &f, sizeof f, 1) != 0)
        return 1;   // no room below its stack: the caller injects
    cshim_ptrace_regs regs = *own;
    REG(&regs, rip) = CSHIM_PTRACE_STUB;
    REG(&regs, rsp) = at;
    REG(&regs, r12) = at;
    REG(&regs, orig_rax) = (uint64_t)-1;   // at a seccomp stop: the call is skipped
    REG(&regs, rax) = SYS_recvmsg;
    REG(&regs, rdi) = (uint64_t)channel;
    REG(&regs, rsi) = at + offsetof(struct frame, msg);
    REG(&regs, rdx) = cloexec ? MSG_CMSG_CLOEXEC : 0;
    if (ptrace(PTRACE_SETREGS, tid, 0, regs.r) != 0)
        goto failed;
    if (back) {
        // It answers its own call: a signal held back meanwhile stays
        // pending (its mask is all signals until the stub's last syscall).
        if (*signal)
            (void)syscall(SYS_tkill, tid, *signal);
        *signal = 0;
        *result = target;
        return cshim_ptrace_resume(tid, 0) == 0 ? 0 : -1;
    }
    if (cshim_ptrace_run_to_trap(tid, signal) != 0 || ptrace(PTRACE_GETREGS, tid, 0, regs.r) != 0)
        goto failed;
    if (REG(&regs, rip) != CSHIM_PTRACE_STUB + CSHIM_PTRACE_STUB_TRAP + 2) {
        errno = EFAULT;   // stopped elsewhere: a seccomp stop the stub did not make
        goto failed;
    }
    if (cshim_tracee_io(tid, at + offsetof(struct frame, result), &f.result, sizeof f.result, 0) != 0)
        f.result = -EFAULT;
    *result = f.result;
    if (ptrace(PTRACE_SETREGS, tid, 0, own->r) != 0)
        return -1;
    *at_exit = 0;
    return 0;
failed:;
    int e = errno;
    // Put back as it was, if it still is; the caller learns it failed.
    if (e != ESRCH && ptrace(PTRACE_SETREGS, tid, 0, own->r) == 0)
        *at_exit = 0;
    errno = e;
    return -1;
}
