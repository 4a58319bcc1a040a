/*
 * heap_brk.c - the heap (brk) and malloc keep working after restart.
 *
 * Before "ready": 20000 small malloc blocks of varying sizes with contents,
 * the program break recorded. After the release line: the break is where it
 * was, every block is intact, half are freed, then 256 MiB more are allocated
 * in small (brk) and large (mmap) pieces, written and verified, and sbrk()
 * moves the break by hand.
 */
#include "common.h"

#define NBLOCKS 20000

static unsigned char *blocks[NBLOCKS];
static size_t sizes[NBLOCKS];

static unsigned char byte_of(size_t block, size_t i)
{
    return (unsigned char)(pattern64(block, i / 8) >> (8 * (i % 8)));
}

int main(void)
{
    for (size_t b = 0; b < NBLOCKS; b++) {
        sizes[b] = 16 + (pattern64(99, b) % 2000);
        blocks[b] = malloc(sizes[b]);
        CHECK(blocks[b], "malloc block %zu", b);
        for (size_t i = 0; i < sizes[b]; i++)
            blocks[b][i] = byte_of(b, i);
    }
    void *brk_before = sbrk(0);

    ready();
    wait_release();

    void *brk_after = sbrk(0);
    CHECK(brk_after == brk_before, "program break moved: %p -> %p", brk_before, brk_after);
    for (size_t b = 0; b < NBLOCKS; b++)
        for (size_t i = 0; i < sizes[b]; i++)
            if (blocks[b][i] != byte_of(b, i))
                fail("heap block %zu byte %zu differs", b, i);
    for (size_t b = 0; b < NBLOCKS; b += 2)
        free(blocks[b]);

    /* 128 MiB in 64 KiB-ish pieces below the mmap threshold, through brk. */
    size_t nsmall = 128 * 1024 / 64;
    unsigned char **small = malloc(nsmall * sizeof *small);
    CHECK(small, "malloc pointer array");
    for (size_t k = 0; k < nsmall; k++) {
        small[k] = malloc(64 * 1000);
        CHECK(small[k], "malloc small piece %zu after resume", k);
        memset(small[k], (int)(k & 0xFF), 64 * 1000);
    }
    /* 128 MiB in 8 MiB pieces, which glibc takes from mmap. */
    unsigned char *large[16];
    for (size_t k = 0; k < 16; k++) {
        large[k] = malloc(8UL << 20);
        CHECK(large[k], "malloc large piece %zu after resume", k);
        memset(large[k], (int)(0xA0 + k), 8UL << 20);
    }
    for (size_t k = 0; k < nsmall; k++)
        CHECK(small[k][0] == (k & 0xFF) && small[k][64 * 1000 - 1] == (k & 0xFF), "small piece %zu", k);
    for (size_t k = 0; k < 16; k++)
        CHECK(large[k][0] == 0xA0 + k && large[k][(8UL << 20) - 1] == 0xA0 + k, "large piece %zu", k);
    void *brk_grown = sbrk(0);
    CHECK((char *)brk_grown > (char *)brk_before, "heap did not grow through brk after resume");

    /* Odd blocks are still intact after all that. */
    for (size_t b = 1; b < NBLOCKS; b += 2)
        for (size_t i = 0; i < sizes[b]; i++)
            if (blocks[b][i] != byte_of(b, i))
                fail("heap block %zu byte %zu differs after new allocations", b, i);

    /* Moving the break by hand works too. */
    char *top = sbrk(1 << 20);
    CHECK(top != (void *)-1, "sbrk(+1 MiB): %s", strerror(errno));
    memset(top, 0x77, 1 << 20);
    CHECK(sbrk(-(1 << 20)) != (void *)-1, "sbrk(-1 MiB): %s", strerror(errno));

    ok("heap intact (%d blocks), break unchanged at %p, grew by %ld KiB after resume",
       NBLOCKS, brk_before, (long)(((char *)brk_grown - (char *)brk_before) / 1024));
}
