/*
 * rseq_cpu.c - restartable sequences (rseq) are registered again after
 * restart, so sched_getcpu() (which glibc reads from the rseq area) is right.
 *
 * Before "ready": checks that glibc registered rseq for the thread (asking
 * the kernel to register the same area again must fail with EBUSY or
 * EINVAL). After the release line: the registration is still there (same
 * answer), and pinning the thread to each CPU in turn (sched_setaffinity)
 * makes sched_getcpu() and the rseq area's cpu_id report that CPU. A stale
 * rseq area (not registered after restore) keeps reporting the CPU of the
 * checkpoint and fails.
 */
#include "common.h"
#include <sched.h>
#include <sys/rseq.h>
#include <sys/syscall.h>

#define RSEQ_SIG_X86 0x53053053

static struct rseq *rseq_area(void)
{
    return (struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
}

/* Tries to register glibc's area again: returns errno (EBUSY/EINVAL = registered, 0 = was not). */
static int reregister(void)
{
    long r = syscall(SYS_rseq, rseq_area(), 32, 0, RSEQ_SIG_X86);
    if (r == 0) {
        /* Undo: we just registered it ourselves. */
        syscall(SYS_rseq, rseq_area(), 32, 1 /* RSEQ_FLAG_UNREGISTER */, RSEQ_SIG_X86);
        return 0;
    }
    return errno;
}

static int pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof set, &set);
}

int main(void)
{
    if (__rseq_size == 0) {
        ready();
        wait_release();
        ok("glibc did not register rseq here (__rseq_size 0): nothing to check");
    }
    cpu_set_t allowed;
    CHECK(sched_getaffinity(0, sizeof allowed, &allowed) == 0, "sched_getaffinity");
    int cpus[2], ncpus = 0;
    for (int c = 0; c < CPU_SETSIZE && ncpus < 2; c++)
        if (CPU_ISSET(c, &allowed))
            cpus[ncpus++] = c;
    int before = reregister();
    CHECK(before == EBUSY || before == EINVAL, "rseq not registered before checkpoint (errno %d)", before);
    /* Leave the thread on the last CPU, so a stale cpu_id is detectable. */
    CHECK(pin(cpus[ncpus - 1]) == 0, "pin to cpu %d", cpus[ncpus - 1]);
    CHECK(sched_getcpu() == cpus[ncpus - 1], "sched_getcpu before checkpoint");
    CPU_ZERO(&allowed);
    for (int i = 0; i < ncpus; i++)
        CPU_SET(cpus[i], &allowed);
    CHECK(sched_setaffinity(0, sizeof allowed, &allowed) == 0, "unpin");

    ready();
    wait_release();

    int after = reregister();
    CHECK(after == before, "rseq registration lost after resume: re-registering gave errno %d (%s), before checkpoint %d",
          after, after ? strerror(after) : "success: it was not registered", before);
    for (int round = 0; round < 3; round++)
        for (int i = ncpus - 1; i >= 0; i--) {
            CHECK(pin(cpus[i]) == 0, "pin to cpu %d: %s", cpus[i], strerror(errno));
            int got = sched_getcpu();
            CHECK(got == cpus[i], "pinned to cpu %d but sched_getcpu() = %d", cpus[i], got);
            int area = (int)rseq_area()->cpu_id;
            CHECK(area == cpus[i], "pinned to cpu %d but rseq cpu_id = %d", cpus[i], area);
        }
    ok("rseq registered (re-register errno %d), sched_getcpu follows pinning over %d cpu(s)", after, ncpus);
}
