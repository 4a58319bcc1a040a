/*
 * thread_attrs.c - threads with their own name, CPU affinity, nice value and
 * scheduling policy (as OpenMP runtimes and MPI progress threads set them).
 * Worker A: "worker-a", bound to CPU 0, nice 7. Worker B: "worker-b",
 * SCHED_BATCH, nice 3. "ready"; after the release line each thread checks its
 * own attributes, then "ok".
 */
#include "common.h"
#include <pthread.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>

static pthread_barrier_t start, check, done;
static int failures;

static void verify(const char *name, int cpu0_only, int nice, int policy)
{
    char got[16] = "";
    prctl(PR_GET_NAME, got);
    if (strcmp(got, name) != 0) { say("FAIL %s: name is %s", name, got); failures++; }
    cpu_set_t set;
    CPU_ZERO(&set);
    sched_getaffinity(0, sizeof set, &set);
    if (cpu0_only && (CPU_COUNT(&set) != 1 || !CPU_ISSET(0, &set))) { say("FAIL %s: affinity %d cpus", name, CPU_COUNT(&set)); failures++; }
    errno = 0;
    int prio = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
    if (prio != nice) { say("FAIL %s: nice %d, want %d", name, prio, nice); failures++; }
    if (sched_getscheduler(0) != policy) { say("FAIL %s: policy %d, want %d", name, sched_getscheduler(0), policy); failures++; }
}

static void *worker(void *arg)
{
    int a = arg != NULL;
    const char *name = a ? "worker-a" : "worker-b";
    prctl(PR_SET_NAME, name);
    if (a) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(0, &set);
        CHECK(sched_setaffinity(0, sizeof set, &set) == 0, "setaffinity");
    } else {
        struct sched_param p = { 0 };
        CHECK(sched_setscheduler(0, SCHED_BATCH, &p) == 0, "SCHED_BATCH: %s", strerror(errno));
    }
    CHECK(setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), a ? 7 : 3) == 0, "setpriority");
    pthread_barrier_wait(&start);
    pthread_barrier_wait(&check);
    verify(name, a, a ? 7 : 3, a ? SCHED_OTHER : SCHED_BATCH);
    pthread_barrier_wait(&done);
    return NULL;
}

int main(void)
{
    pthread_barrier_init(&start, NULL, 3);
    pthread_barrier_init(&check, NULL, 3);
    pthread_barrier_init(&done, NULL, 3);
    pthread_t ta, tb;
    pthread_create(&ta, NULL, worker, (void *)1);
    pthread_create(&tb, NULL, worker, NULL);
    pthread_barrier_wait(&start);
    ready();
    wait_release();
    pthread_barrier_wait(&check);
    pthread_barrier_wait(&done);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    char main_name[16];
    prctl(PR_GET_NAME, main_name);
    CHECK(failures == 0, "%d thread attribute(s) lost", failures);
    ok("threads kept names, CPUs, nice and policy (main is %s)", main_name);
}
