/* Deterministic memory contents for the ghost benchmark workloads.
 * Page i of a region is "random" or "zero" (about half each, chosen by a hash
 * of the seed and i); a random page holds xorshift64* bytes that depend on
 * (seed, i, version), so the same bytes can be regenerated anywhere (the
 * workload, the process_vm_readv baseline, the file given to zstd). */
#ifndef GHOST_BENCH_FILL_H
#define GHOST_BENCH_FILL_H
#include <stdint.h>
#include <string.h>

#define PAGE 4096u

static inline uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* is page i a random page (else a zero page)? */
static inline int page_is_random(uint64_t seed, uint64_t i) {
    return (int)(splitmix64(seed * 0x100000001b3ull ^ i) & 1);
}

/* fill one page with random bytes determined by (seed, i, version) */
static inline void fill_random_page(void *dst, uint64_t seed, uint64_t i, uint64_t version) {
    uint64_t s = splitmix64(seed ^ splitmix64(i ^ (version << 40)));
    if (s == 0) s = 1;
    uint64_t *p = dst;
    for (unsigned k = 0; k < PAGE / 8; k++) {
        s ^= s >> 12; s ^= s << 25; s ^= s >> 27;
        p[k] = s * 0x2545f4914f6cdd1dull;
    }
}

/* initial contents of page i (version 0) */
static inline void fill_page(void *dst, uint64_t seed, uint64_t i) {
    if (page_is_random(seed, i)) fill_random_page(dst, seed, i, 0);
    else memset(dst, 0, PAGE);
}

/* small fast PRNG for choosing pages */
static inline uint64_t xorshift64(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    return *s = x;
}
#endif
