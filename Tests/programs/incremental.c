/*
 * incremental.c - memory that changes between checkpoints, in known ways,
 * for incremental checkpoints (write tracking, page overlays).
 *
 * Reads commands from stdin, one per line:
 *   step   generation += 1 and change memory as that generation says:
 *          scattered pages of area A rewritten, some set to zero, some
 *          dropped with MADV_DONTNEED; pages of F (a private mapping of a
 *          file) written (copied on write) or dropped with MADV_DONTNEED,
 *          which gives them the file's bytes again; gen 1 maps a new area B; gen 2 unmaps
 *          B, maps C and forks a child that execs this program ("child"),
 *          which holds its own pattern and answers over pipes; gen 3+ only
 *          rewrite pages. Every step also unmaps area M and maps it again
 *          at the same address with new bytes (a new area where ghost
 *          tracked an old one). Prints "stepped G sum=S".
 *   check  verifies every page of every area (and the child's) against what
 *          replaying generations 0..G gives, prints "ok gen=G sum=S" or FAIL.
 *   quit   ends (and the child).
 * S is a checksum of the whole expected state, so a test can compare the
 * state of a resumed checkpoint with the state printed when it was taken.
 */
#include "common.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define PAGE 4096
#define APAGES 600      /* not a multiple of 64: a partial last block */
#define BPAGES 70
#define CPAGES 130
#define KIDPAGES 200
#define FPAGES 150      /* F: private mapping of incremental.dat (in the cwd) */
#define MPAGES 40       /* M: unmapped and mapped again at the same address at every step */
#define RPAGES 16500    /* R: a big sparse area (over 64 MiB: ghost arms it ahead of the freeze) */

static uint64_t mix(uint64_t x) {
    x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ULL; x ^= x >> 33;
    return x;
}

/* What generation g does to page p of area A: 0 keep, 1 rewrite, 2 zero, 3 DONTNEED. */
static int action(int g, int p) {
    if (g == 0) return (p % 3 == 0) ? 0 : 1;   /* gen 0: two thirds written, one third never touched */
    uint64_t h = mix((uint64_t)g * 1000003 + (uint64_t)p);
    if (h % 100 < 6) return 1;                  /* ~6% scattered rewrites */
    if (h % 100 == 6) return 2;
    if (h % 100 == 7) return 3;
    return 0;
}

/* Value page p of A holds after generation g wrote it: a word per 8 bytes. */
static void fill(uint64_t *w, uint64_t seed) { for (int i = 0; i < PAGE / 8; i++) w[i] = mix(seed + (uint64_t)i); }

static int pageMatches(const uint64_t *w, uint64_t seed, int zero) {
    for (int i = 0; i < PAGE / 8; i++) if (w[i] != (zero ? 0 : mix(seed + (uint64_t)i))) return 0;
    return 1;
}

/* Expected content of page p of A after generation gen: seed, or zero (-> *zero). */
static uint64_t expectedA(int gen, int p, int *zero) {
    uint64_t seed = 0; *zero = 1;
    for (int g = 0; g <= gen; g++) {
        int a = action(g, p);
        if (a == 1) { seed = ((uint64_t)g << 32) + (uint64_t)p + 1; *zero = 0; }
        if (a == 2 || a == 3) { seed = 0; *zero = 1; }
    }
    return seed;
}

/* What generation g does to page p of F: 0 keep, 1 write (copy on write), 3 DONTNEED. */
static int actionF(int g, int p) {
    if (g == 0) return (p % 2 == 0) ? 1 : 0;
    uint64_t h = mix((uint64_t)g * 7919 + (uint64_t)p + 77);
    if (h % 10 == 0) return 3;
    if (h % 10 == 1) return 1;
    return 0;
}

static uint64_t fileSeed(int p) { return 0xF0000ULL + (uint64_t)p; }

/* Expected seed of page p of F after generation gen: the file's, or the last write's. */
static uint64_t expectedF(int gen, int p) {
    uint64_t seed = fileSeed(p);
    for (int g = 0; g <= gen; g++) {
        int a = actionF(g, p);
        if (a == 1) seed = ((uint64_t)(g + 1) << 40) + (uint64_t)p;
        if (a == 3) seed = fileSeed(p);
    }
    return seed;
}

/* Pages of R written by generation g (every 1000th at gen 0, a few after), with their seed. */
static int writesR(int g, int p) { return g == 0 ? p % 1000 == 0 : (p % 1000 == 0 && (p / 1000 + g) % 3 == 0); }
static uint64_t expectedR(int gen, int p) {   /* 0 = never written (zero) */
    uint64_t seed = 0;
    for (int g = 0; g <= gen; g++) if (writesR(g, p)) seed = 0x52000000ULL + ((uint64_t)g << 20) + (uint64_t)p;
    return seed;
}

static int gen = 0;
static char *A, *B, *C, *F, *R, *M;

static uint64_t seedM(int g, int p) { return 0x4D000000ULL + ((uint64_t)g << 16) + (uint64_t)p; }
static pid_t kid = 0;
static int toKid = -1, fromKid = -1;

static void apply(int g) {
    if (g > 0) {
        munmap(M, (size_t)MPAGES * PAGE);
        if (mmap(M, (size_t)MPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != M)
            fail("mmap M again: %s", strerror(errno));
    }
    for (int p = 0; p < MPAGES; p++) fill((uint64_t *)(M + (size_t)p * PAGE), seedM(g, p));
    for (int p = 0; p < RPAGES; p++)
        if (writesR(g, p)) fill((uint64_t *)(R + (size_t)p * PAGE), 0x52000000ULL + ((uint64_t)g << 20) + (uint64_t)p);
    for (int p = 0; p < FPAGES; p++) {
        char *pg = F + (size_t)p * PAGE;
        switch (actionF(g, p)) {
        case 1: fill((uint64_t *)pg, ((uint64_t)(g + 1) << 40) + (uint64_t)p); break;
        case 3: madvise(pg, PAGE, MADV_DONTNEED); break;
        }
    }
    for (int p = 0; p < APAGES; p++) {
        char *pg = A + (size_t)p * PAGE;
        switch (action(g, p)) {
        case 1: fill((uint64_t *)pg, ((uint64_t)g << 32) + (uint64_t)p + 1); break;
        case 2: memset(pg, 0, PAGE); break;
        case 3: madvise(pg, PAGE, MADV_DONTNEED); break;
        }
    }
}

static uint64_t checksum(void) {
    uint64_t s = (uint64_t)gen;
    for (int p = 0; p < APAGES; p++) { int z; uint64_t seed = expectedA(gen, p, &z); s = mix(s ^ (z ? 0 : seed)); }
    for (int p = 0; p < FPAGES; p++) s = mix(s ^ expectedF(gen, p));
    for (int p = 0; p < RPAGES; p += 500) s = mix(s ^ expectedR(gen, p));
    if (gen >= 1) s = mix(s ^ 0xB);
    if (gen >= 2) s = mix(s ^ 0xC);
    return s;
}

static void childMain(void) {
    char *K = mmap(NULL, (size_t)KIDPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (K == MAP_FAILED) _exit(2);
    for (int p = 0; p < KIDPAGES; p++) fill((uint64_t *)(K + (size_t)p * PAGE), 0x4B0000ULL + (uint64_t)p);
    char c = 'r';
    if (write(1, &c, 1) != 1) _exit(3);   /* ready: the parent reports the step done only now */
    while (read(0, &c, 1) == 1) {
        int good = 1;
        for (int p = 0; p < KIDPAGES; p++) good &= pageMatches((uint64_t *)(K + (size_t)p * PAGE), 0x4B0000ULL + (uint64_t)p, 0);
        char r = good ? 'k' : 'F';
        if (write(1, &r, 1) != 1) _exit(3);
    }
    _exit(0);
}

static void step(const char *self) {
    gen++;
    apply(gen);
    if (gen == 1) {
        B = mmap(NULL, (size_t)BPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (B == MAP_FAILED) fail("mmap B: %s", strerror(errno));
        for (int p = 0; p < BPAGES; p++) fill((uint64_t *)(B + (size_t)p * PAGE), 0xB0000ULL + (uint64_t)p);
    }
    if (gen == 2) {
        munmap(B, (size_t)BPAGES * PAGE);
        B = NULL;
        C = mmap(NULL, (size_t)CPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (C == MAP_FAILED) fail("mmap C: %s", strerror(errno));
        for (int p = 0; p < CPAGES; p++) fill((uint64_t *)(C + (size_t)p * PAGE), 0xC0000ULL + (uint64_t)p);
        int down[2], up[2];
        if (pipe(down) || pipe(up)) fail("pipe: %s", strerror(errno));
        kid = fork();
        if (kid < 0) fail("fork: %s", strerror(errno));
        if (kid == 0) {
            dup2(down[0], 0); dup2(up[1], 1);
            close(down[0]); close(down[1]); close(up[0]); close(up[1]);
            execl(self, self, "child", (char *)NULL);
            _exit(4);
        }
        close(down[0]); close(up[1]);
        toKid = down[1]; fromKid = up[0];
        char r = 0;
        if (read(fromKid, &r, 1) != 1 || r != 'r') fail("the child did not start");
    }
}

static void check(void) {
    for (int p = 0; p < MPAGES; p++)
        if (!pageMatches((uint64_t *)(M + (size_t)p * PAGE), seedM(gen, p), 0))
            fail("gen %d: page %d of M (mapped again at this step) holds the wrong bytes", gen, p);
    for (int p = 0; p < RPAGES; p += 250) {   /* the written pages and some never written */
        uint64_t seed = expectedR(gen, p);
        if (!pageMatches((uint64_t *)(R + (size_t)p * PAGE), seed, seed == 0))
            fail("gen %d: page %d of R holds the wrong bytes", gen, p);
    }
    for (int p = 0; p < FPAGES; p++)
        if (!pageMatches((uint64_t *)(F + (size_t)p * PAGE), expectedF(gen, p), 0))
            fail("gen %d: page %d of F holds the wrong bytes (expected %s)", gen, p,
                 expectedF(gen, p) == fileSeed(p) ? "the file's" : "the program's own");
    for (int p = 0; p < APAGES; p++) {
        int z; uint64_t seed = expectedA(gen, p, &z);
        if (!pageMatches((uint64_t *)(A + (size_t)p * PAGE), seed, z))
            fail("gen %d: page %d of A holds the wrong bytes (expected %s)", gen, p, z ? "zero" : "pattern");
    }
    if (gen == 1)
        for (int p = 0; p < BPAGES; p++)
            if (!pageMatches((uint64_t *)(B + (size_t)p * PAGE), 0xB0000ULL + (uint64_t)p, 0)) fail("page %d of B", p);
    if (gen >= 2) {
        for (int p = 0; p < CPAGES; p++)
            if (!pageMatches((uint64_t *)(C + (size_t)p * PAGE), 0xC0000ULL + (uint64_t)p, 0)) fail("page %d of C", p);
        char c = 'c', r = 0;
        if (write(toKid, &c, 1) != 1 || read(fromKid, &r, 1) != 1) fail("no answer from the child: %s", strerror(errno));
        if (r != 'k') fail("the child's memory is wrong");
    }
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "child") == 0) childMain();
    A = mmap(NULL, (size_t)APAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (A == MAP_FAILED) fail("mmap A: %s", strerror(errno));
    M = mmap(NULL, (size_t)MPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (M == MAP_FAILED) fail("mmap M: %s", strerror(errno));
    R = mmap(NULL, (size_t)RPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (R == MAP_FAILED) fail("mmap R: %s", strerror(errno));
    int fd = open("incremental.dat", O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) fail("creating incremental.dat: %s", strerror(errno));
    uint64_t w[PAGE / 8];
    for (int p = 0; p < FPAGES; p++) {
        fill(w, fileSeed(p));
        if (write(fd, w, PAGE) != PAGE) fail("writing incremental.dat: %s", strerror(errno));
    }
    F = mmap(NULL, (size_t)FPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (F == MAP_FAILED) fail("mmap F: %s", strerror(errno));
    close(fd);
    apply(0);
    check();
    printf("ready sum=%llu\n", (unsigned long long)checksum());
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "step", 4) == 0) {
            step(argv[0]);
            printf("stepped %d sum=%llu\n", gen, (unsigned long long)checksum());
        } else if (strncmp(line, "check", 5) == 0) {
            check();
            printf("ok gen=%d sum=%llu\n", gen, (unsigned long long)checksum());
        } else if (strncmp(line, "quit", 4) == 0) {
            break;
        }
        fflush(stdout);
    }
    if (kid > 0) { close(toKid); waitpid(kid, NULL, 0); }
    return 0;
}
