/* coro_switch for x86-64 System V.
 *
 * void coro_switch(void **save_sp, void *load_sp);
 *
 * Pushes the callee-saved registers (rbx, rbp, r12-r15) and the floating-point
 * control state (MXCSR, x87 control word) on the current stack, stores the
 * stack pointer in *save_sp, loads load_sp and pops the same frame from it.
 * Everything else is caller-saved under the ABI, so the compiler has already
 * spilled it. */
        .text
        .globl  coro_switch
        .hidden coro_switch
        .type   coro_switch, @function
        .p2align 4
coro_switch:
        .cfi_startproc
        pushq   %rbp
        pushq   %rbx
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        subq    $8, %rsp
        stmxcsr (%rsp)
        fnstcw  4(%rsp)
        movq    %rsp, (%rdi)
        movq    %rsi, %rsp
        ldmxcsr (%rsp)
        fldcw   4(%rsp)
        addq    $8, %rsp
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbx
        popq    %rbp
        ret
        .cfi_endproc
        .size   coro_switch, .-coro_switch

/* First return target of a new coroutine: coro_init leaves the entry function
 * in r12 and its argument in r13. The entry never returns. */
        .globl  coro_trampoline
        .hidden coro_trampoline
        .type   coro_trampoline, @function
        .p2align 4
coro_trampoline:
        .cfi_startproc
        .cfi_undefined rip
        movq    %r13, %rdi
        callq   *%r12
        ud2
        .cfi_endproc
        .size   coro_trampoline, .-coro_trampoline

        .section .note.GNU-stack,"",@progbits
