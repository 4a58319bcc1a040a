/*
 * stack_deep.c - a deep stack survives checkpoint/restart and can still grow.
 *
 * Recurses 4000 levels, each frame holding a 256-byte local array derived
 * from its depth (about 2 MiB of stack). At the deepest level it prints
 * "ready" and waits for the release line. After the release it recurses
 * 3000 levels further (into stack pages that did not exist at checkpoint
 * time: the stack must still grow down), then unwinds checking every frame
 * and the return-value chain.
 */
#include "common.h"

#define DEPTH 4000
#define MORE 3000
#define WORDS 32

static uint64_t descend(int depth, int limit, int at_bottom_wait);

static uint64_t __attribute__((noinline)) frame(int depth, int limit, int wait_here)
{
    volatile uint64_t local[WORDS];
    for (int i = 0; i < WORDS; i++)
        local[i] = pattern64((uint64_t)depth, (uint64_t)i);
    uint64_t below = descend(depth + 1, limit, wait_here);
    for (int i = 0; i < WORDS; i++)
        if (local[i] != pattern64((uint64_t)depth, (uint64_t)i))
            fail("stack frame at depth %d word %d differs", depth, i);
    return below * 31 + (uint64_t)depth;
}

static uint64_t __attribute__((noinline)) descend(int depth, int limit, int wait_here)
{
    if (depth < limit)
        return frame(depth, limit, wait_here);
    if (wait_here) {
        ready();
        wait_release();
        /* Grow the stack beyond what it was at checkpoint time. */
        return frame(depth, limit + MORE, 0);
    }
    return 7;
}

static uint64_t expected(void)
{
    uint64_t v = 7;
    for (int d = DEPTH + MORE - 1; d >= 0; d--)
        v = v * 31 + (uint64_t)d;
    return v;
}

int main(void)
{
    uint64_t got = descend(0, DEPTH, 1);
    uint64_t want = expected();
    CHECK(got == want, "recursion result %llu, expected %llu", (unsigned long long)got, (unsigned long long)want);
    ok("stack of %d frames intact, grew %d more frames after resume, result %llu",
       DEPTH, MORE, (unsigned long long)got);
}
