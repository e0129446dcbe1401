// CShim: "can the tracee's execve run this natively?" with libelf.
#include "CShim.h"

#include <errno.h>
#include <gelf.h>
#include <libelf.h>
#include <pthread.h>
#include <unistd.h>

static pthread_once_t elf_once = PTHREAD_ONCE_INIT;
static int elf_ready;

static void elf_init(void)
{
    elf_ready = elf_version(EV_CURRENT) != EV_NONE;
}

int cshim_elf_check(int fd, int *machine_out)
{
    if (machine_out != NULL)
        *machine_out = 0;

    // Scripts first, with a plain read: libelf would only call them "not ELF".
    // This also surfaces read errors (EISDIR, EIO...) with a real errno.
    char head[2];
    ssize_t n;
    do {
        n = pread(fd, head, sizeof head, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return -1;
    if (n == 2 && head[0] == '#' && head[1] == '!')
        return CSHIM_ELF_SCRIPT;

    pthread_once(&elf_once, elf_init);
    if (!elf_ready) {
        errno = ENOSYS;
        return -1;
    }
    // libelf reads through pread at absolute offsets: the fd's position is
    // left alone.
    Elf *e = elf_begin(fd, ELF_C_READ, NULL);
    if (e == NULL)
        return CSHIM_ELF_NOT_ELF;   // the first bytes were readable: malformed
    int rc = CSHIM_ELF_NOT_ELF;
    GElf_Ehdr eh;
    if (elf_kind(e) == ELF_K_ELF && gelf_getehdr(e, &eh) != NULL) {
        if (machine_out != NULL)
            *machine_out = eh.e_machine;
        if (gelf_getclass(e) != ELFCLASS64)
            rc = CSHIM_ELF_WRONG_CLASS;
        else if (eh.e_machine != EM_X86_64)
            rc = CSHIM_ELF_WRONG_MACHINE;
        else
            rc = CSHIM_ELF_OK;
    }
    elf_end(e);
    return rc;
}
