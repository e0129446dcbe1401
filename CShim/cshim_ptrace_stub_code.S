// The ptrace engine's install stub (see cshim_ptrace_stub.c). Not run in
// wrap-and-run: these bytes are copied to a page in each traced address
// space. Entered with rax = SYS_recvmsg, rdi, rsi, rdx its arguments, r12
// the frame (cshim_ptrace_stub.h) and rsp = r12, so the frame is above the
// stack pointer and a signal frame never lands on it.
#include "cshim_ptrace_stub.h"

    .intel_syntax noprefix
    .section .rodata.cshim_ptrace_stub, "a"
    .globl cshim_ptrace_stub_code
cshim_ptrace_stub_code:
    syscall                                     // recvmsg(channel, &frame.msg, flags)
    mov edi, dword ptr [r12 + STUB_FRAME_FD]
    test edi, edi
    js none
    cmp edi, dword ptr [r12 + STUB_FRAME_TARGET]
    je same
    mov esi, dword ptr [r12 + STUB_FRAME_TARGET]
    mov edx, dword ptr [r12 + STUB_FRAME_DUPFLAGS]
    mov eax, 292
    syscall                                     // dup3(got, target, flags)
    mov qword ptr [r12 + STUB_FRAME_RESULT], rax
    mov edi, dword ptr [r12 + STUB_FRAME_FD]
    mov eax, 3
    syscall                                     // close(got)
    jmp finish
same:
    mov qword ptr [r12 + STUB_FRAME_RESULT], rdi   // it came at the target itself
    jmp finish
none:
    test rax, rax
    jns finish                                  // no descriptor: the result stays -EMFILE
    mov qword ptr [r12 + STUB_FRAME_RESULT], rax
finish:
    cmp dword ptr [r12 + STUB_FRAME_MODE], 0
    je to_trap
    // Back to the program: its signal mask, then its registers, the
    // result in rax as its syscall's, and its stack pointer last (the
    // frame is below it from then on). rcx and r11 are a syscall's to clobber.
    mov eax, 14
    mov edi, 2
    lea rsi, [r12 + STUB_FRAME_MASK]
    xor edx, edx
    mov r10d, 8
    syscall                                     // rt_sigprocmask(SIG_SETMASK, &mask, NULL, 8)
    mov rax, qword ptr [r12 + STUB_FRAME_RESULT]
    mov rdi, qword ptr [r12 + STUB_FRAME_RDI]
    mov rsi, qword ptr [r12 + STUB_FRAME_RSI]
    mov rdx, qword ptr [r12 + STUB_FRAME_RDX]
    mov r10, qword ptr [r12 + STUB_FRAME_R10]
    mov r11, qword ptr [r12 + STUB_FRAME_RIP]
    mov rcx, qword ptr [r12 + STUB_FRAME_RSP]
    mov r12, qword ptr [r12 + STUB_FRAME_R12]
    mov rsp, rcx
    jmp r11
to_trap:
    mov rdi, -1
    mov eax, 3
    jmp trap
    .globl cshim_ptrace_stub_code_end
cshim_ptrace_stub_code_end:
    .org cshim_ptrace_stub_code + STUB_CODE_SIZE   // an error if the code outgrew it
    .org cshim_ptrace_stub_code + STUB_TRAP
trap:
    syscall                                     // close(-1): traced from here, the stub's end
    ud2
    .globl cshim_ptrace_stub_end
cshim_ptrace_stub_end:
    .section .note.GNU-stack, "", @progbits
