/* coro_switch for aarch64 (AAPCS64).
 *
 * void coro_switch(void **save_sp, void *load_sp);
 *
 * Saves the callee-saved registers x19-x28, the frame pointer x29, the link
 * register x30, the low halves of v8-v15 (d8-d15) and FPCR in a 176-byte
 * frame on the current stack, stores sp in *save_sp, then loads the frame
 * found at load_sp and returns through its x30. */
        .text
        .globl  coro_switch
        .hidden coro_switch
        .type   coro_switch, %function
        .p2align 4
coro_switch:
        .cfi_startproc
        sub     sp, sp, #176
        stp     x19, x20, [sp, #0]
        stp     x21, x22, [sp, #16]
        stp     x23, x24, [sp, #32]
        stp     x25, x26, [sp, #48]
        stp     x27, x28, [sp, #64]
        stp     x29, x30, [sp, #80]
        stp     d8, d9, [sp, #96]
        stp     d10, d11, [sp, #112]
        stp     d12, d13, [sp, #128]
        stp     d14, d15, [sp, #144]
        mrs     x9, fpcr
        str     x9, [sp, #160]
        mov     x9, sp
        str     x9, [x0]
        mov     sp, x1
        ldp     x19, x20, [sp, #0]
        ldp     x21, x22, [sp, #16]
        ldp     x23, x24, [sp, #32]
        ldp     x25, x26, [sp, #48]
        ldp     x27, x28, [sp, #64]
        ldp     x29, x30, [sp, #80]
        ldp     d8, d9, [sp, #96]
        ldp     d10, d11, [sp, #112]
        ldp     d12, d13, [sp, #128]
        ldp     d14, d15, [sp, #144]
        ldr     x9, [sp, #160]
        msr     fpcr, x9
        add     sp, sp, #176
        ret
        .cfi_endproc
        .size   coro_switch, .-coro_switch

/* First return target of a new coroutine: coro_init leaves the entry function
 * in x19 and its argument in x20. The entry never returns. */
        .globl  coro_trampoline
        .hidden coro_trampoline
        .type   coro_trampoline, %function
        .p2align 4
coro_trampoline:
        .cfi_startproc
        .cfi_undefined x30
        mov     x0, x20
        blr     x19
        brk     #0
        .cfi_endproc
        .size   coro_trampoline, .-coro_trampoline

        .section .note.GNU-stack,"",%progbits
