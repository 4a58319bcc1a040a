/* halfrandom: the memory workload of the ghost speed benchmark (issue #5).
 *
 *   halfrandom SIZE_MIB [--seed S] [--dirty-rate PCT] [--change-pct P] [--stall-ms T]
 *   halfrandom SIZE_MIB [--seed S] --dump FILE
 *
 * Holds SIZE_MIB MiB of anonymous memory: about half of its pages random
 * bytes (xorshift64*, seeded), the other half zero pages it has written
 * (so they are resident, not the shared zero page). Warms up first (writes
 * every page, waits until its RSS is stable), then prints
 *     ready size_mib=N pages=N random_pages=N touch_ms=X real_ns=T
 * and idles in 1 ms sleeps. Whenever it wakes after having been stopped for
 * at least T ms (default 5: a checkpoint freeze, or the time between a kill
 * and a restore) it prints
 *     resumed-marker real_ns=<CLOCK_REALTIME ns> mono_ns=<CLOCK_MONOTONIC ns> gap_ms=X
 * so the benchmark can tell exactly when a restored job runs again.
 *
 * --dirty-rate PCT  rewrites PCT% of its pages per second (pages chosen at
 *                   random, new random contents), in 10 ms steps.
 * SIGUSR2           rewrites P% of the pages (default 5), chosen at random
 *                   (scattered), then prints "changed scattered pages=N ...".
 * SIGALRM           rewrites P% of the pages as one contiguous block at a
 *                   random place, then prints "changed contiguous pages=N ...".
 * SIGHUP            rewrites P% of the pages, scattered, each with new bytes
 *                   of its own kind: a random page gets new random bytes, a
 *                   zero page is written with zeros (as a program recomputing
 *                   its arrays in place); prints "changed samekind pages=N
 *                   random=R ..." (R = pages that got random bytes).
 * --dump FILE       writes the initial contents (same seed => same bytes) to
 *                   FILE and exits; used for the zstd and disk baselines.
 * All output is unbuffered write(2) on stdout. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include "fill.h"

static volatile sig_atomic_t want_scattered, want_contiguous, want_samekind;
static void on_usr2(int s) { (void)s; want_scattered = 1; }
static void on_alrm(int s) { (void)s; want_contiguous = 1; }
static void on_hup(int s) { (void)s; want_samekind = 1; }

static long long now_ns(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *m) { dprintf(2, "halfrandom: %s: %s\n", m, strerror(errno)); exit(2); }

static long resident_pages(void) {
    char buf[256];
    int fd = open("/proc/self/statm", O_RDONLY);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    long size, res;
    if (sscanf(buf, "%ld %ld", &size, &res) != 2) return -1;
    return res;
}

static int dump(const char *path, uint64_t npages, uint64_t seed) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) die(path);
    enum { BATCH = 256 };
    static unsigned char buf[BATCH * PAGE];
    for (uint64_t i = 0; i < npages; i += BATCH) {
        uint64_t n = npages - i < BATCH ? npages - i : BATCH;
        for (uint64_t k = 0; k < n; k++) fill_page(buf + k * PAGE, seed, i + k);
        size_t len = n * PAGE, off = 0;
        while (off < len) {
            ssize_t w = write(fd, buf + off, len - off);
            if (w < 0) { if (errno == EINTR) continue; die("write"); }
            off += (size_t)w;
        }
    }
    if (close(fd) != 0) die("close");
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        dprintf(2, "usage: halfrandom SIZE_MIB [--seed S] [--dirty-rate PCT] [--change-pct P] [--stall-ms T] [--dump FILE]\n");
        return 64;
    }
    uint64_t mib = strtoull(argv[1], NULL, 10);
    uint64_t seed = 42;
    double dirty_pct = 0, change_pct = 5, stall_ms = 5;
    const char *dump_path = NULL;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--dirty-rate") && i + 1 < argc) dirty_pct = atof(argv[++i]);
        else if (!strcmp(argv[i], "--change-pct") && i + 1 < argc) change_pct = atof(argv[++i]);
        else if (!strcmp(argv[i], "--stall-ms") && i + 1 < argc) stall_ms = atof(argv[++i]);
        else if (!strcmp(argv[i], "--dump") && i + 1 < argc) dump_path = argv[++i];
        else { dprintf(2, "halfrandom: unknown argument %s\n", argv[i]); return 64; }
    }
    if (mib == 0) { dprintf(2, "halfrandom: size must be > 0 MiB\n"); return 64; }
    uint64_t npages = mib * (1024 * 1024 / PAGE);
    if (dump_path) return dump(dump_path, npages, seed);

    size_t len = npages * PAGE;
    unsigned char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) die("mmap");

    /* warm-up: write every page (random bytes or zeros), then wait for a stable RSS */
    long long t0 = now_ns(CLOCK_MONOTONIC);
    uint64_t nrandom = 0;
    for (uint64_t i = 0; i < npages; i++) {
        unsigned char *p = mem + i * PAGE;
        if (page_is_random(seed, i)) { fill_random_page(p, seed, i, 0); nrandom++; }
        else memset(p, 0, PAGE);
        __asm__ volatile("" ::: "memory"); /* keep the zero stores */
    }
    double touch_ms = (now_ns(CLOCK_MONOTONIC) - t0) / 1e6;
    long prev = -1;
    int stable = 0;
    for (int tries = 0; tries < 1500 && stable < 3; tries++) { /* at most ~30 s */
        long r = resident_pages();
        if (r >= (long)npages && r == prev) stable++;
        else stable = 0;
        prev = r;
        usleep(20000);
    }
    if (stable < 3) dprintf(2, "halfrandom: warning: RSS did not settle (%ld pages resident, %llu expected)\n",
                            prev, (unsigned long long)npages);

    struct sigaction sa = {0};
    sa.sa_handler = on_usr2; sigaction(SIGUSR2, &sa, NULL);
    sa.sa_handler = on_alrm; sigaction(SIGALRM, &sa, NULL);
    sa.sa_handler = on_hup; sigaction(SIGHUP, &sa, NULL);

    dprintf(1, "ready size_mib=%llu pages=%llu random_pages=%llu touch_ms=%.1f real_ns=%lld\n",
            (unsigned long long)mib, (unsigned long long)npages, (unsigned long long)nrandom,
            touch_ms, now_ns(CLOCK_REALTIME));

    uint64_t rng = seed * 2654435761u + 1, version = 1;
    double dirty_per_step = npages * dirty_pct / 100.0 / 100.0, dirty_acc = 0; /* 10 ms steps */
    long long stall_ns = (long long)(stall_ms * 1e6);
    long long next_dirty = now_ns(CLOCK_MONOTONIC) + 10000000LL;
    long long last = now_ns(CLOCK_MONOTONIC);
    struct timespec one_ms = {0, 1000000};
    for (;;) {
        clock_nanosleep(CLOCK_MONOTONIC, 0, &one_ms, NULL);
        long long mono = now_ns(CLOCK_MONOTONIC);
        if (mono - last >= stall_ns)
            dprintf(1, "resumed-marker real_ns=%lld mono_ns=%lld gap_ms=%.3f\n",
                    now_ns(CLOCK_REALTIME), mono, (mono - last) / 1e6);
        if (want_scattered || want_contiguous) {
            int scattered = want_scattered;
            want_scattered = want_contiguous = 0;
            uint64_t n = (uint64_t)(npages * change_pct / 100.0);
            if (scattered) {
                for (uint64_t k = 0; k < n; k++) {
                    uint64_t i = xorshift64(&rng) % npages;
                    fill_random_page(mem + i * PAGE, seed, i, version++);
                }
            } else {
                uint64_t start = npages > n ? xorshift64(&rng) % (npages - n) : 0;
                for (uint64_t i = start; i < start + n; i++)
                    fill_random_page(mem + i * PAGE, seed, i, version++);
            }
            dprintf(1, "changed %s pages=%llu pct=%.2f real_ns=%lld\n", scattered ? "scattered" : "contiguous",
                    (unsigned long long)n, change_pct, now_ns(CLOCK_REALTIME));
        }
        if (want_samekind) {
            want_samekind = 0;
            uint64_t n = (uint64_t)(npages * change_pct / 100.0), nr = 0;
            for (uint64_t k = 0; k < n; k++) {
                uint64_t i = xorshift64(&rng) % npages;
                if (page_is_random(seed, i)) { fill_random_page(mem + i * PAGE, seed, i, version++); nr++; }
                else memset(mem + i * PAGE, 0, PAGE);
                __asm__ volatile("" ::: "memory"); /* keep the zero stores */
            }
            dprintf(1, "changed samekind pages=%llu random=%llu pct=%.2f real_ns=%lld\n",
                    (unsigned long long)n, (unsigned long long)nr, change_pct, now_ns(CLOCK_REALTIME));
        }
        if (dirty_pct > 0 && mono >= next_dirty) {
            while (mono >= next_dirty) { dirty_acc += dirty_per_step; next_dirty += 10000000LL; }
            while (dirty_acc >= 1) {
                uint64_t i = xorshift64(&rng) % npages;
                fill_random_page(mem + i * PAGE, seed, i, version++);
                dirty_acc -= 1;
            }
        }
        last = now_ns(CLOCK_MONOTONIC);
    }
}
