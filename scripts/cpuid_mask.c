/*
 * An LD_PRELOAD library that hides AVX-512 from the process it is loaded into, so that
 * ONNX Runtime (which picks its kernels from CPUID and has no switch for it) runs its AVX2/FMA
 * kernels on an AVX-512 machine, for `scripts/compare_avx2.sh`.
 *
 * Linux's CPUID faulting (`arch_prctl(ARCH_SET_CPUID, 0)`, CPU flag `cpuid_fault`) makes every
 * CPUID instruction of this thread, and of the threads it creates later, raise SIGSEGV. The
 * handler below runs the real CPUID with faulting briefly off, clears the AVX-512 (and AMX)
 * feature bits of leaf 7, writes the result into the trapped registers and resumes after the
 * instruction. A CPUID trap is a kernel-sent SIGSEGV
 * (`si_code` SI_KERNEL) at a CPUID instruction; any other SIGSEGV gets the default action.
 * Libraries resolved before this one's constructor ran (glibc's string functions and hwcaps
 * directories) keep what they chose, for both engines alike. AVX10 (leaf 7.1 EDX bit 19) is
 * hidden too; leaf 0x24, which only AVX10 processors describe, is left alone. Rust's
 * stack-overflow message needs SIGSEGV at its default, so under this library a stack overflow
 * is a plain crash. Benchmarking aid only: build with `cc -O2 -shared -fPIC`.
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define BIT(n) (1u << (n))

static int cpuid_enabled(int enabled) { return (int)syscall(SYS_arch_prctl, ARCH_SET_CPUID, enabled); }

static void on_segv(int sig, siginfo_t *info, void *context) {
    greg_t *r = ((ucontext_t *)context)->uc_mcontext.gregs;
    /* Only a kernel-sent fault can be a CPUID trap; read the instruction only then. */
    const uint8_t *ip = (const uint8_t *)r[REG_RIP];
    if (info->si_code != SI_KERNEL || ip[0] != 0x0f || ip[1] != 0xa2) {
        /* Not a CPUID trap: a real fault re-runs with the default action when this returns; a
         * sent signal is delivered again with it. */
        signal(SIGSEGV, SIG_DFL);
        if (info->si_code <= 0)
            raise(sig);
        return;
    }
    uint32_t leaf = (uint32_t)r[REG_RAX], sub = (uint32_t)r[REG_RCX], a, b, c, d;
    cpuid_enabled(1);
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(leaf), "c"(sub));
    cpuid_enabled(0);
    if (leaf == 7 && sub == 0) {
        /* EBX: AVX512F, DQ, IFMA, PF, ER, CD, BW, VL. */
        b &= ~(BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) | BIT(30) | BIT(31));
        /* ECX: AVX512_VBMI, VBMI2, VNNI, BITALG, VPOPCNTDQ. */
        c &= ~(BIT(1) | BIT(6) | BIT(11) | BIT(12) | BIT(14));
        /* EDX: AVX512_4VNNIW, 4FMAPS, VP2INTERSECT, AMX-BF16, AVX512_FP16, AMX-TILE, AMX-INT8. */
        d &= ~(BIT(2) | BIT(3) | BIT(8) | BIT(22) | BIT(23) | BIT(24) | BIT(25));
    } else if (leaf == 7 && sub == 1) {
        a &= ~BIT(5);  /* EAX: AVX512_BF16 */
        d &= ~BIT(19); /* EDX: AVX10 */
    }
    r[REG_RAX] = a;
    r[REG_RBX] = b;
    r[REG_RCX] = c;
    r[REG_RDX] = d;
    r[REG_RIP] += 2;
}

__attribute__((constructor)) static void mask_avx512(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    /* Nothing else runs while CPUID is briefly real inside the handler. */
    sigfillset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, NULL) != 0 || cpuid_enabled(0) != 0) {
        perror("cpuid_mask: CPUID faulting unavailable (needs the cpuid_fault CPU flag)");
        exit(2);
    }
}
