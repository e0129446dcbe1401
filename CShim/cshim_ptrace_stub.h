// The install stub's frame (cshim_ptrace_stub.c, cshim_ptrace_stub_code.S):
// where each field sits, for the assembly. The C side checks every offset
// against its struct with _Static_assert.
#ifndef CSHIM_PTRACE_STUB_H
#define CSHIM_PTRACE_STUB_H

#define STUB_FRAME_FD 88          // the received descriptor (cmsg data), -1 until one comes
#define STUB_FRAME_RESULT 96      // the install's result: the number, or -errno
#define STUB_FRAME_TARGET 104
#define STUB_FRAME_DUPFLAGS 108
#define STUB_FRAME_MASK 112       // the thread's own signal mask, put back at the end
#define STUB_FRAME_RDI 120        // the thread's registers the stub uses
#define STUB_FRAME_RSI 128
#define STUB_FRAME_RDX 136
#define STUB_FRAME_R10 144
#define STUB_FRAME_R12 152
#define STUB_FRAME_RSP 160
#define STUB_FRAME_RIP 168
#define STUB_FRAME_MODE 176       // 0: end at the trap; 1: return to the program
#define STUB_FRAME_SIZE 184

#define STUB_CODE_SIZE 0xbc       // the code before the trap (checked by cshim_ptrace_stub.c)
#define STUB_TRAP 0x800

#endif
