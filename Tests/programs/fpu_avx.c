/*
 * fpu_avx.c - live FPU/SSE/AVX register state survives checkpoint/restart.
 *
 * Usage: fpu_avx asm | series
 * The program spins without system calls until it receives SIGUSR2 (the
 * test sends it to the job's pid after resume), so the checkpoint catches it
 * in user mode with values that live only in registers.
 *
 *   asm:    an inline-assembly loop holds all 16 ymm registers (xmm on CPUs
 *           without AVX2): 8 integer accumulators and one double accumulator
 *           grow by a constant each iteration, the others hold constants.
 *           After the signal, every lane must equal init + count * increment.
 *   series: four chaotic logistic maps (doubles, rounding-sensitive: one
 *           wrong bit diverges) and one long double (x87) run in a tight
 *           loop. After the signal, the same function is run again for the
 *           same number of iterations and the results must match bit for bit.
 *
 * In both modes the rounding mode is FE_UPWARD and MXCSR has FTZ/DAZ set
 * before "ready"; both (and the x87 control word) must be unchanged after.
 */
#include "common.h"
#include <fenv.h>
#include <signal.h>

static volatile sig_atomic_t released;

static void on_usr2(int sig) { (void)sig; released = 1; }

static unsigned mxcsr(void) { unsigned v; __asm__ volatile("stmxcsr %0" : "=m"(v)); return v; }
static unsigned short x87cw(void) { unsigned short v; __asm__ volatile("fnstcw %0" : "=m"(v)); return v; }

typedef uint64_t lanes[4];

static uint64_t spin_avx2(lanes in[16], lanes out[16])
{
    uint64_t count;
    __asm__ volatile(
        "vmovdqu 0(%[in]), %%ymm0\n\t"   "vmovdqu 32(%[in]), %%ymm1\n\t"
        "vmovdqu 64(%[in]), %%ymm2\n\t"  "vmovdqu 96(%[in]), %%ymm3\n\t"
        "vmovdqu 128(%[in]), %%ymm4\n\t" "vmovdqu 160(%[in]), %%ymm5\n\t"
        "vmovdqu 192(%[in]), %%ymm6\n\t" "vmovdqu 224(%[in]), %%ymm7\n\t"
        "vmovdqu 256(%[in]), %%ymm8\n\t" "vmovdqu 288(%[in]), %%ymm9\n\t"
        "vmovdqu 320(%[in]), %%ymm10\n\t" "vmovdqu 352(%[in]), %%ymm11\n\t"
        "vmovdqu 384(%[in]), %%ymm12\n\t" "vmovdqu 416(%[in]), %%ymm13\n\t"
        "vmovdqu 448(%[in]), %%ymm14\n\t" "vmovdqu 480(%[in]), %%ymm15\n\t"
        "xorq %[cnt], %[cnt]\n"
        "1:\n\t"
        "vpaddq %%ymm15, %%ymm0, %%ymm0\n\t" "vpaddq %%ymm15, %%ymm1, %%ymm1\n\t"
        "vpaddq %%ymm15, %%ymm2, %%ymm2\n\t" "vpaddq %%ymm15, %%ymm3, %%ymm3\n\t"
        "vpaddq %%ymm15, %%ymm4, %%ymm4\n\t" "vpaddq %%ymm15, %%ymm5, %%ymm5\n\t"
        "vpaddq %%ymm15, %%ymm6, %%ymm6\n\t" "vpaddq %%ymm15, %%ymm7, %%ymm7\n\t"
        "vaddpd %%ymm14, %%ymm8, %%ymm8\n\t"
        "incq %[cnt]\n\t"
        "cmpl $0, %[flag]\n\t"
        "je 1b\n\t"
        "vmovdqu %%ymm0, 0(%[out])\n\t"   "vmovdqu %%ymm1, 32(%[out])\n\t"
        "vmovdqu %%ymm2, 64(%[out])\n\t"  "vmovdqu %%ymm3, 96(%[out])\n\t"
        "vmovdqu %%ymm4, 128(%[out])\n\t" "vmovdqu %%ymm5, 160(%[out])\n\t"
        "vmovdqu %%ymm6, 192(%[out])\n\t" "vmovdqu %%ymm7, 224(%[out])\n\t"
        "vmovdqu %%ymm8, 256(%[out])\n\t" "vmovdqu %%ymm9, 288(%[out])\n\t"
        "vmovdqu %%ymm10, 320(%[out])\n\t" "vmovdqu %%ymm11, 352(%[out])\n\t"
        "vmovdqu %%ymm12, 384(%[out])\n\t" "vmovdqu %%ymm13, 416(%[out])\n\t"
        "vmovdqu %%ymm14, 448(%[out])\n\t" "vmovdqu %%ymm15, 480(%[out])\n\t"
        "vzeroupper\n\t"
        : [cnt] "=&r"(count)
        : [in] "r"(in), [out] "r"(out), [flag] "m"(released)
        : "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
          "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
    return count;
}

/* SSE2 fallback: only the low two lanes of each register are used. */
static uint64_t spin_sse2(lanes in[16], lanes out[16])
{
    uint64_t count;
    __asm__ volatile(
        "movdqu 0(%[in]), %%xmm0\n\t"   "movdqu 32(%[in]), %%xmm1\n\t"
        "movdqu 64(%[in]), %%xmm2\n\t"  "movdqu 96(%[in]), %%xmm3\n\t"
        "movdqu 128(%[in]), %%xmm4\n\t" "movdqu 160(%[in]), %%xmm5\n\t"
        "movdqu 192(%[in]), %%xmm6\n\t" "movdqu 224(%[in]), %%xmm7\n\t"
        "movdqu 256(%[in]), %%xmm8\n\t" "movdqu 288(%[in]), %%xmm9\n\t"
        "movdqu 320(%[in]), %%xmm10\n\t" "movdqu 352(%[in]), %%xmm11\n\t"
        "movdqu 384(%[in]), %%xmm12\n\t" "movdqu 416(%[in]), %%xmm13\n\t"
        "movdqu 448(%[in]), %%xmm14\n\t" "movdqu 480(%[in]), %%xmm15\n\t"
        "xorq %[cnt], %[cnt]\n"
        "1:\n\t"
        "paddq %%xmm15, %%xmm0\n\t" "paddq %%xmm15, %%xmm1\n\t"
        "paddq %%xmm15, %%xmm2\n\t" "paddq %%xmm15, %%xmm3\n\t"
        "paddq %%xmm15, %%xmm4\n\t" "paddq %%xmm15, %%xmm5\n\t"
        "paddq %%xmm15, %%xmm6\n\t" "paddq %%xmm15, %%xmm7\n\t"
        "addpd %%xmm14, %%xmm8\n\t"
        "incq %[cnt]\n\t"
        "cmpl $0, %[flag]\n\t"
        "je 1b\n\t"
        "movdqu %%xmm0, 0(%[out])\n\t"   "movdqu %%xmm1, 32(%[out])\n\t"
        "movdqu %%xmm2, 64(%[out])\n\t"  "movdqu %%xmm3, 96(%[out])\n\t"
        "movdqu %%xmm4, 128(%[out])\n\t" "movdqu %%xmm5, 160(%[out])\n\t"
        "movdqu %%xmm6, 192(%[out])\n\t" "movdqu %%xmm7, 224(%[out])\n\t"
        "movdqu %%xmm8, 256(%[out])\n\t" "movdqu %%xmm9, 288(%[out])\n\t"
        "movdqu %%xmm10, 320(%[out])\n\t" "movdqu %%xmm11, 352(%[out])\n\t"
        "movdqu %%xmm12, 384(%[out])\n\t" "movdqu %%xmm13, 416(%[out])\n\t"
        "movdqu %%xmm14, 448(%[out])\n\t" "movdqu %%xmm15, 480(%[out])\n\t"
        : [cnt] "=&r"(count)
        : [in] "r"(in), [out] "r"(out), [flag] "m"(released)
        : "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
          "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
    return count;
}

static double as_double(uint64_t u) { double d; memcpy(&d, &u, 8); return d; }
static uint64_t as_bits(double d) { uint64_t u; memcpy(&u, &d, 8); return u; }

static void mode_asm(void)
{
    int avx2 = __builtin_cpu_supports("avx2");
    int nlanes = avx2 ? 4 : 2;
    static lanes in[16], out[16];
    for (int r = 0; r < 16; r++)
        for (int l = 0; l < 4; l++)
            in[r][l] = pattern64((uint64_t)r, (uint64_t)l);
    /* ymm8: doubles accumulating exactly; ymm14: their increments; ymm15: integer increments. */
    const double start[4] = { 1.0, -1000.0, 0.0, 12345.5 };
    const double step[4] = { 0.5, 0.25, 1.0, 2.0 };
    for (int l = 0; l < 4; l++) {
        in[8][l] = as_bits(start[l]);
        in[14][l] = as_bits(step[l]);
        in[15][l] = (uint64_t)(l + 1) * 0x10001ULL;
    }

    ready();
    uint64_t count = avx2 ? spin_avx2(in, out) : spin_sse2(in, out);

    for (int r = 0; r < 16; r++)
        for (int l = 0; l < nlanes; l++) {
            uint64_t want;
            if (r < 8)
                want = in[r][l] + count * in[15][l];
            else if (r == 8)
                want = as_bits(start[l] + (double)count * step[l]);
            else
                want = in[r][l];
            if (out[r][l] != want) {
                if (r == 8)
                    fail("%s%d lane %d = %.17g, expected %.17g after %llu iterations",
                         avx2 ? "ymm" : "xmm", r, l, as_double(out[r][l]), as_double(want), (unsigned long long)count);
                fail("%s%d lane %d = %#llx, expected %#llx after %llu iterations", avx2 ? "ymm" : "xmm", r, l,
                     (unsigned long long)out[r][l], (unsigned long long)want, (unsigned long long)count);
            }
        }
    say("asm: %d registers x %d lanes checked after %llu iterations", 16, nlanes, (unsigned long long)count);
}

struct series_result { double x[4], s[4]; long double e; };

/* Runs until `released` (limit == 0) or for exactly `limit` iterations. */
static uint64_t __attribute__((noinline)) series(uint64_t limit, struct series_result *r)
{
    double x0 = 0.123, x1 = 0.234, x2 = 0.345, x3 = 0.456;
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    long double e = 0.3141592653589793238L;
    uint64_t i = 0;
    for (;;) {
        if (limit ? i == limit : released != 0)
            break;
        x0 = 3.9 * x0 * (1.0 - x0);
        x1 = 3.91 * x1 * (1.0 - x1);
        x2 = 3.92 * x2 * (1.0 - x2);
        x3 = 3.93 * x3 * (1.0 - x3);
        s0 += x0; s1 += x1; s2 += x2; s3 += x3;
        e = 3.95L * e * (1.0L - e);
        i++;
    }
    r->x[0] = x0; r->x[1] = x1; r->x[2] = x2; r->x[3] = x3;
    r->s[0] = s0; r->s[1] = s1; r->s[2] = s2; r->s[3] = s3;
    r->e = e;
    return i;
}

static void mode_series(void)
{
    struct series_result live, again;
    memset(&live, 0, sizeof live);
    memset(&again, 0, sizeof again);
    ready();
    uint64_t n = series(0, &live);
    CHECK(n > 0, "no iterations before the signal");
    series(n, &again);
    for (int k = 0; k < 4; k++) {
        CHECK(as_bits(live.x[k]) == as_bits(again.x[k]), "x%d = %a live, %a recomputed after %llu iterations",
              k, live.x[k], again.x[k], (unsigned long long)n);
        CHECK(as_bits(live.s[k]) == as_bits(again.s[k]), "s%d = %a live, %a recomputed after %llu iterations",
              k, live.s[k], again.s[k], (unsigned long long)n);
    }
    CHECK(memcmp(&live.e, &again.e, 10) == 0, "x87 value %La live, %La recomputed after %llu iterations",
          live.e, again.e, (unsigned long long)n);
    say("series: %llu iterations bit-identical when recomputed (x0=%a, x87=%La)",
        (unsigned long long)n, live.x[0], live.e);
}

int main(int argc, char **argv)
{
    CHECK(argc == 2 && (strcmp(argv[1], "asm") == 0 || strcmp(argv[1], "series") == 0), "usage: fpu_avx asm|series");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr2;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR2, &sa, NULL) == 0, "sigaction");

    CHECK(fesetround(FE_UPWARD) == 0, "fesetround");
    unsigned csr = mxcsr() | 0x8040; /* FTZ | DAZ */
    __asm__ volatile("ldmxcsr %0" : : "m"(csr));
    unsigned csr0 = mxcsr();
    unsigned short cw0 = x87cw();

    if (strcmp(argv[1], "asm") == 0)
        mode_asm();
    else
        mode_series();

    CHECK(fegetround() == FE_UPWARD, "rounding mode is %#x after resume, expected FE_UPWARD", fegetround());
    /* Bits 0-5 are sticky exception flags set by the computation itself. */
    CHECK((mxcsr() & ~0x3Fu) == (csr0 & ~0x3Fu), "MXCSR control bits %#x after resume, were %#x",
          mxcsr() & ~0x3Fu, csr0 & ~0x3Fu);
    CHECK(x87cw() == cw0, "x87 control word %#x after resume, was %#x", x87cw(), cw0);
    volatile double one = 1.0, three = 3.0;
    double third = one / three;
    CHECK(third > 0.333333333333333314829616256247390992939472198486328125, "1/3 not rounded upward");
    ok("%s: registers, MXCSR %#x and x87 control word %#x intact", argv[1], csr0, cw0);
}
