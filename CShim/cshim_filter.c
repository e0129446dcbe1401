// CShim: building the tracee's seccomp filter with libseccomp.
#include "CShim.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <stddef.h>
#include <string.h>
#include <sys/syscall.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <seccomp.h>

// One rule; several libseccomp rules for one syscall are OR-ed. The
// descriptor and command arguments are C ints: compare their low 32 bits.
// The action is USER_NOTIF or, for the
// ptrace engine, TRACE: the same program either way.
static int add_rule(scmp_filter_ctx ctx, const cshim_filter_rule *r, uint32_t action)
{
    int rc;
    switch (r->when) {
    case CSHIM_WHEN_ALWAYS:
        rc = seccomp_rule_add(ctx, action, r->nr, 0);
        break;
    case CSHIM_WHEN_FD_RANGE:
    case CSHIM_WHEN_FD_OR_TARGET_RANGE:
        rc = seccomp_rule_add(ctx, action, r->nr, 1, SCMP_A0_32(SCMP_CMP_LE, 2));
        if (rc >= 0)
            rc = seccomp_rule_add(ctx, action, r->nr, 1, SCMP_A0_32(SCMP_CMP_GE, r->fd_base));
        if (rc >= 0 && r->when == CSHIM_WHEN_FD_OR_TARGET_RANGE)
            rc = seccomp_rule_add(ctx, action, r->nr, 1, SCMP_A1_32(SCMP_CMP_GE, r->fd_base));
        break;
    case CSHIM_WHEN_ARG1_IN:
        if (r->nvalues == 0 || r->nvalues > CSHIM_FILTER_MAX_VALUES)
            return -EINVAL;
        rc = 0;
        for (uint32_t v = 0; v < r->nvalues && rc >= 0; v++)
            rc = seccomp_rule_add(ctx, action, r->nr, 1,
                                  SCMP_A1_32(SCMP_CMP_EQ, (uint32_t)r->values[v]));
        break;
    case CSHIM_WHEN_ARG1_TYPE_IN:
        if (r->nvalues == 0 || r->nvalues > CSHIM_FILTER_MAX_VALUES)
            return -EINVAL;
        rc = 0;
        for (uint32_t v = 0; v < r->nvalues && rc >= 0; v++)
            rc = seccomp_rule_add(ctx, action, r->nr, 1,
                                  SCMP_A1_32(SCMP_CMP_MASKED_EQ, 0xff00, ((uint32_t)r->values[v] & 0xff) << 8));
        break;
    case CSHIM_WHEN_MMAP_FD_RANGE:
        rc = seccomp_rule_add(ctx, action, r->nr, 2, SCMP_A3(SCMP_CMP_MASKED_EQ, MAP_ANONYMOUS, 0),
                              SCMP_A4_32(SCMP_CMP_LE, 2));
        if (rc >= 0)
            rc = seccomp_rule_add(ctx, action, r->nr, 2, SCMP_A3(SCMP_CMP_MASKED_EQ, MAP_ANONYMOUS, 0),
                                  SCMP_A4_32(SCMP_CMP_GE, r->fd_base));
        break;
    default:
        return -EINVAL;
    }
    return rc == -EEXIST ? 0 : rc;   // a duplicate rule is harmless
}

int cshim_filter_build(const cshim_filter_rule *rules, size_t count, cshim_filter *out)
{
    return cshim_filter_build_action(rules, count, 0, out);
}

// The ptrace filter starts here: recvmsg, dup3 and close made from the
// install stub's page (cshim_ptrace_stub.c) run, from its second half are
// traced, and from anywhere else go on to the table's rules. Only those
// three numbers load the instruction pointer, so the kernel still caches
// every other syscall's constant ALLOW.
#define STUB_HI ((uint32_t)(CSHIM_PTRACE_STUB >> 32))
#define STUB_LO ((uint32_t)CSHIM_PTRACE_STUB)
static const struct sock_filter stub_prologue[] = {
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_recvmsg, 3, 0),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_dup3, 2, 0),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_close, 1, 0),
    BPF_STMT(BPF_JMP | BPF_JA | BPF_K, 8),
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, instruction_pointer) + 4),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, STUB_HI, 0, 6),
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, instruction_pointer)),
    BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, STUB_LO, 0, 4),
    BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, STUB_LO + CSHIM_PTRACE_STUB_TRAP, 1, 0),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, STUB_LO + 4096, 1, 0),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRACE),
};
_Static_assert(CSHIM_PTRACE_STUB % 4096 == 0 && (uint32_t)CSHIM_PTRACE_STUB <= UINT32_MAX - 4096, "one page, no carry");

int cshim_filter_build_action(const cshim_filter_rule *rules, size_t count, int trace, cshim_filter *out)
{
    uint32_t action = trace ? SCMP_ACT_TRACE(0) : SCMP_ACT_NOTIFY;
    out->filter = NULL;
    out->len = 0;

    // seccomp_init adds the native arch (x86_64) and nothing else. Every other
    // AUDIT_ARCH (i386 via int 0x80) gets the bad-arch action; x32 numbers
    // (nr | 0x40000000) on AUDIT_ARCH_X86_64 also jump to the bad-arch action,
    // because libseccomp emits "nr >= X32_SYSCALL_BIT -> bad arch" for x86_64
    // filters that do not include the x32 arch.
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (ctx == NULL)
        return -ENOMEM;

    int memfd = -1;
    void *buf = NULL;
    int rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_ERRNO(ENOSYS));
    if (rc < 0)
        goto out;
    // A chain ordered by priority rather than a binary tree: syscalls the
    // table does not list never run the program at all (the kernel caches
    // their constant ALLOW), so only listed ones pay for it, and the hot
    // data calls, tested first, pay least.
    (void)seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 1);

    for (size_t i = 0; i < count && rc >= 0; i++) {
        if (rules[i].priority > 0)
            (void)seccomp_syscall_priority(ctx, rules[i].nr, rules[i].priority);
        rc = add_rule(ctx, &rules[i], action);
    }
    if (rc < 0)
        goto out;

    // libseccomp 2.5 can only export to an fd; round-trip through a memfd.
    memfd = memfd_create("cshim-bpf", MFD_CLOEXEC);
    if (memfd < 0) {
        rc = -errno;
        goto out;
    }
    rc = seccomp_export_bpf(ctx, memfd);
    if (rc < 0)
        goto out;
    off_t size = lseek(memfd, 0, SEEK_END);
    if (size < 0) {
        rc = -errno;
        goto out;
    }
    if (size == 0 || size % sizeof(struct sock_filter) != 0 ||
        size / sizeof(struct sock_filter) > UINT16_MAX) {
        rc = -E2BIG;   // cannot happen for a sane table; BPF_MAXINSNS is 4096
        goto out;
    }
    size_t before = trace ? sizeof stub_prologue : 0;
    buf = malloc(before + (size_t)size);
    if (buf == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    memcpy(buf, stub_prologue, before);
    for (off_t done = 0; done < size;) {
        ssize_t n = pread(memfd, (char *)buf + before + done, (size_t)(size - done), done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? -errno : -EIO;
            goto out;
        }
        done += n;
    }
    out->filter = buf;
    out->len = (uint16_t)((before + (size_t)size) / sizeof(struct sock_filter));
    buf = NULL;
    rc = 0;
out:
    free(buf);
    if (memfd >= 0)
        close(memfd);
    seccomp_release(ctx);
    return rc;
}

void cshim_filter_free(cshim_filter *f)
{
    free(f->filter);
    f->filter = NULL;
    f->len = 0;
}
