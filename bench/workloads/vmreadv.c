/* vmreadv: baseline for the ghost benchmark: how fast can this machine read
 * another process's memory with process_vm_readv?
 *
 *   vmreadv SIZE_MIB [REPS] [--seed S]
 *
 * Forks a child that holds SIZE_MIB MiB with the same contents as
 * halfrandom (same seed => same bytes, all pages resident), then reads the
 * child's whole region REPS times (default 5) with process_vm_readv, 64 MiB
 * per call (one large iovec each), into a reused buffer. Prints one line per
 * repetition and a summary:
 *     readv rep=1 ms=X gbps=Y
 *     readv median_ms=X median_gbps=Y min_ms=.. max_ms=..
 * The check sum of the bytes read is compared with the expected one. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "fill.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}
static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: vmreadv SIZE_MIB [REPS] [--seed S]\n"); return 64; }
    uint64_t mib = strtoull(argv[1], NULL, 10), seed = 42;
    int reps = 5;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 0);
        else reps = atoi(argv[i]);
    }
    if (mib == 0 || reps < 1 || reps > 100) { fprintf(stderr, "vmreadv: bad arguments\n"); return 64; }
    uint64_t npages = mib * (1024 * 1024 / PAGE);
    size_t len = npages * PAGE;
    unsigned char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) { perror("mmap"); return 2; }
    int pfd[2];
    if (pipe(pfd) != 0) { perror("pipe"); return 2; }
    pid_t child = fork();
    if (child < 0) { perror("fork"); return 2; }
    if (child == 0) {
        for (uint64_t i = 0; i < npages; i++) fill_page(mem + i * PAGE, seed, i);
        if (write(pfd[1], "r", 1) != 1) _exit(3);
        for (;;) pause();
    }
    char c;
    if (read(pfd[0], &c, 1) != 1) { fprintf(stderr, "vmreadv: child failed\n"); return 2; }

    size_t slice = 64u << 20;
    if (slice > len) slice = len;
    unsigned char *buf = mmap(NULL, slice, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED) { perror("mmap"); kill(child, SIGKILL); return 2; }
    memset(buf, 1, slice); /* fault the buffer in before timing */

    /* expected checksum (xor of the first word of every page) */
    uint64_t want = 0, got = 0;
    { unsigned char pg[PAGE]; for (uint64_t i = 0; i < npages; i++) { fill_page(pg, seed, i); want ^= *(uint64_t *)pg; } }

    double *ms = calloc((size_t)reps, sizeof *ms);
    int rc = 0;
    for (int r = 0; r < reps; r++) {
        got = 0;
        double t0 = now_s();
        for (size_t off = 0; off < len; off += slice) {
            size_t n = len - off < slice ? len - off : slice;
            struct iovec l = {buf, n}, rv = {mem + off, n};
            ssize_t got_n = process_vm_readv(child, &l, 1, &rv, 1, 0);
            if (got_n != (ssize_t)n) {
                fprintf(stderr, "vmreadv: process_vm_readv: %s (%zd of %zu bytes)\n", strerror(errno), got_n, n);
                rc = 2; goto out;
            }
            for (size_t k = 0; k < n; k += PAGE) got ^= *(uint64_t *)(buf + k);
        }
        ms[r] = (now_s() - t0) * 1e3;
        printf("readv rep=%d ms=%.2f gbps=%.2f\n", r + 1, ms[r], len / (ms[r] / 1e3) / 1e9);
        if (got != want) { fprintf(stderr, "vmreadv: checksum mismatch\n"); rc = 2; goto out; }
    }
    qsort(ms, (size_t)reps, sizeof *ms, cmp);
    double med = reps % 2 ? ms[reps / 2] : (ms[reps / 2 - 1] + ms[reps / 2]) / 2;
    printf("readv median_ms=%.2f median_gbps=%.2f min_ms=%.2f max_ms=%.2f\n", med, len / (med / 1e3) / 1e9, ms[0], ms[reps - 1]);
out:
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    return rc;
}
