/*
 * bigmem.c - a job whose memory grows from small to large, for the tests of
 * a checkpoint that is interrupted (ghost-run killed) or fails (disk full).
 *
 * Usage: bigmem SMALL_MB BIG_MB
 * Fills SMALL_MB of memory with a pattern that does not compress, prints
 * "ready small" and reads a command line:
 *   "check" -> verifies the small region, prints "ok small ..." and exits 0
 *   "grow"  -> fills BIG_MB more, prints "ready big", reads another line,
 *              verifies both regions, prints "ok big ..." and exits 0.
 */
#include "common.h"

#define MiB (1024UL * 1024UL)

int main(int argc, char **argv)
{
    CHECK(argc == 3, "usage: bigmem SMALL_MB BIG_MB");
    size_t small_n = (size_t)atol(argv[1]) * MiB / 8, big_n = (size_t)atol(argv[2]) * MiB / 8;
    uint64_t *small = malloc(small_n * 8);
    CHECK(small, "malloc small");
    fill_pattern(small, small_n, 11);
    say("ready small");
    char line[64];
    wait_release_line(line, sizeof line);
    size_t bad;
    if (strcmp(line, "check") == 0) {
        if ((bad = check_pattern(small, small_n, 11)) != small_n)
            fail("small region differs at word %zu", bad);
        ok("small %s MiB intact", argv[1]);
    }
    CHECK(strcmp(line, "grow") == 0, "unknown command '%s'", line);
    uint64_t *big = malloc(big_n * 8);
    CHECK(big, "malloc %s MiB", argv[2]);
    fill_pattern(big, big_n, 12);
    say("ready big");
    wait_release_line(line, sizeof line);
    if ((bad = check_pattern(small, small_n, 11)) != small_n)
        fail("small region differs at word %zu", bad);
    if ((bad = check_pattern(big, big_n, 12)) != big_n)
        fail("big region differs at word %zu", bad);
    ok("big: %s + %s MiB intact", argv[1], argv[2]);
}
