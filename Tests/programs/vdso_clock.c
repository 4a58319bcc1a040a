/*
 * vdso_clock.c - clocks read through the vDSO work after restart.
 *
 * Before "ready": reads CLOCK_MONOTONIC, CLOCK_REALTIME, gettimeofday, time
 * and remembers where the vDSO is (getauxval(AT_SYSINFO_EHDR), which glibc
 * also caches). After the release line: the same calls work, time has moved
 * forward (the test runs on one machine), successive readings do not go
 * backwards, and [vdso] in /proc/self/maps is still at the address glibc
 * uses.
 */
#include "common.h"
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>

static double ts(struct timespec t) { return (double)t.tv_sec + t.tv_nsec / 1e9; }

static unsigned long vdso_in_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    unsigned long lo = 0, hi;
    while (f && fgets(line, sizeof line, f))
        if (strstr(line, "[vdso]")) {
            sscanf(line, "%lx-%lx", &lo, &hi);
            break;
        }
    if (f)
        fclose(f);
    return lo;
}

int main(void)
{
    struct timespec mono0, real0, mono1, real1;
    struct timeval tv0, tv1;
    CHECK(clock_gettime(CLOCK_MONOTONIC, &mono0) == 0, "clock_gettime MONOTONIC");
    CHECK(clock_gettime(CLOCK_REALTIME, &real0) == 0, "clock_gettime REALTIME");
    CHECK(gettimeofday(&tv0, NULL) == 0, "gettimeofday");
    time_t t0 = time(NULL);
    unsigned long vdso_aux = getauxval(AT_SYSINFO_EHDR);
    unsigned long vdso_map0 = vdso_in_maps();
    CHECK(vdso_aux != 0 && vdso_aux == vdso_map0, "vDSO at %#lx in auxv, %#lx in maps before checkpoint", vdso_aux, vdso_map0);

    ready();
    wait_release();

    unsigned long vdso_map1 = vdso_in_maps();
    CHECK(vdso_map1 == vdso_aux, "[vdso] is at %#lx after resume, glibc uses %#lx", vdso_map1, vdso_aux);
    CHECK(clock_gettime(CLOCK_MONOTONIC, &mono1) == 0, "clock_gettime MONOTONIC after resume: %s", strerror(errno));
    CHECK(clock_gettime(CLOCK_REALTIME, &real1) == 0, "clock_gettime REALTIME after resume: %s", strerror(errno));
    CHECK(gettimeofday(&tv1, NULL) == 0, "gettimeofday after resume");
    time_t t1 = time(NULL);

    CHECK(ts(real1) > ts(real0), "CLOCK_REALTIME went backwards: %.6f -> %.6f", ts(real0), ts(real1));
    CHECK(ts(mono1) > ts(mono0), "CLOCK_MONOTONIC went backwards: %.6f -> %.6f", ts(mono0), ts(mono1));
    CHECK(tv1.tv_sec > tv0.tv_sec || (tv1.tv_sec == tv0.tv_sec && tv1.tv_usec > tv0.tv_usec), "gettimeofday went backwards");
    CHECK(t1 >= t0, "time() went backwards");
    CHECK(ts(real1) - ts(real0) < 3600, "CLOCK_REALTIME jumped by %.0f s", ts(real1) - ts(real0));
    /* The realtime clock agrees with the kernel's (a syscall, not the vDSO page). */
    struct timespec sys;
    CHECK(syscall(SYS_clock_gettime, CLOCK_REALTIME, &sys) == 0, "raw clock_gettime");
    CHECK(ts(sys) - ts(real1) > -0.001 && ts(sys) - ts(real1) < 5, "vDSO realtime %.6f and syscall realtime %.6f disagree", ts(real1), ts(sys));

    struct timespec prev = mono1, now;
    for (int i = 0; i < 100000; i++) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        CHECK(ts(now) >= ts(prev), "CLOCK_MONOTONIC not monotonic after resume");
        prev = now;
    }
    ok("clocks work after resume: realtime +%.3f s, monotonic +%.3f s, vDSO at %#lx",
       ts(real1) - ts(real0), ts(mono1) - ts(mono0), vdso_aux);
}
