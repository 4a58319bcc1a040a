/*
 * blocked_sleep.c - a process frozen inside a sleep finishes it after
 * restart, as if nothing happened.
 *
 * Usage: blocked_sleep sleep|nanosleep SECONDS
 *   sleep:     one sleep(SECONDS) call; it must return 0 (not cut short by
 *              the checkpoint/restart: glibc's sleep() does not retry).
 *   nanosleep: nanosleep() in the usual loop that resumes with the remaining
 *              time on EINTR.
 * Prints "ready" just before sleeping; no release line. After the sleep:
 * the wall-clock time since "ready" must be at least SECONDS (a sleep
 * restarted from scratch makes it longer; that is allowed) and less than
 * SECONDS + 120.
 */
#include "common.h"
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    CHECK(argc == 3, "usage: blocked_sleep sleep|nanosleep SECONDS");
    int secs = atoi(argv[2]);
    CHECK(secs > 0, "bad SECONDS");
    double t0 = now();
    ready();
    int interrupted = 0;
    if (strcmp(argv[1], "sleep") == 0) {
        unsigned left = sleep((unsigned)secs);
        CHECK(left == 0, "sleep(%d) returned %u: cut short", secs, left);
    } else {
        struct timespec req = { secs, 0 }, rem;
        while (nanosleep(&req, &rem) == -1) {
            CHECK(errno == EINTR, "nanosleep: %s", strerror(errno));
            interrupted++;
            req = rem;
        }
    }
    double slept = now() - t0;
    CHECK(slept >= secs - 0.01, "slept only %.3f s of %d", slept, secs);
    CHECK(slept < secs + 120, "slept %.3f s for %d", slept, secs);
    ok("%s(%d) finished after %.3f s (%d EINTR)", argv[1], secs, slept, interrupted);
}
