/*
 * counter.c - a job driven step by step from stdin, for the tests of
 * repeated checkpoints, chains of resumes, named checkpoints, retention and
 * damaged images.
 *
 * Keeps 4 MiB of state. Prints "ready" (step 0) and then, for each line read:
 *   "next" -> advances the state one step (every word of the 4 MiB changes,
 *             depending on the previous step) and prints "step K value V"
 *   "quit" -> prints "ok final step K value V" and exits 0.
 * V is a digest of the whole state, so it tells both which step the process
 * is at and whether its memory is intact: a resumed process must print the
 * same (K, V) sequence as an uninterrupted one fed the same lines.
 */
#include "common.h"

#define WORDS (4UL * 1024 * 1024 / 8)

static uint64_t digest(const uint64_t *s)
{
    uint64_t h = 0xCBF29CE484222325ULL;
    for (size_t i = 0; i < WORDS; i++)
        h = (h ^ s[i]) * 0x100000001B3ULL;
    return h;
}

int main(void)
{
    uint64_t *s = malloc(WORDS * 8);
    CHECK(s, "malloc");
    fill_pattern(s, WORDS, 77);
    long step = 0;
    ready();
    char line[64];
    for (;;) {
        wait_release_line(line, sizeof line);
        if (strcmp(line, "quit") == 0)
            ok("final step %ld value %016llx", step, (unsigned long long)digest(s));
        CHECK(strcmp(line, "next") == 0, "unknown command '%s'", line);
        step++;
        uint64_t carry = (uint64_t)step;
        for (size_t i = 0; i < WORDS; i++) {
            s[i] = s[i] * 6364136223846793005ULL + carry;
            carry = s[i] >> 17;
        }
        say("step %ld value %016llx", step, (unsigned long long)digest(s));
    }
}
