/*
 * timers.c - interval timers and POSIX timers keep running across
 * checkpoint/restart, with their IDs, values and target threads.
 *
 * Before "ready": ITIMER_REAL fires SIGALRM every 10 ms; ITIMER_VIRTUAL is
 * armed for 1000 s; POSIX timers: a CLOCK_MONOTONIC periodic timer (20 ms,
 * SIGEV_SIGNAL SIGUSR1, value 0xabc), a deleted one (its ID stays a gap),
 * a one-shot CLOCK_MONOTONIC timer due in 5 s that signals SIGUSR2 to the
 * worker thread (SIGEV_THREAD_ID, value 0x5150), and a SIGEV_NONE
 * CLOCK_REALTIME timer armed for 1000 s.
 * After the release line: both periodic counters keep increasing, the
 * one-shot fires once, in the worker thread, with its value; timer_gettime
 * works on the old IDs and not on the gap; ITIMER_VIRTUAL is still armed.
 * With the argument "single" there is no worker: the one-shot targets the
 * main thread (for a job restored without namespaces, with a new TID).
 */
#include "common.h"
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>

static volatile int alrm, posix_ticks, posix_bad, oneshot, oneshot_tid, oneshot_bad;
static timer_t periodic, gap, once, none;

static void on_alrm(int sig) { (void)sig; __atomic_add_fetch(&alrm, 1, __ATOMIC_SEQ_CST); }

static void on_usr1(int sig, siginfo_t *si, void *ctx)
{
    (void)sig; (void)ctx;
    if (si->si_code != SI_TIMER || si->si_value.sival_int != 0xabc) posix_bad = 1;
    __atomic_add_fetch(&posix_ticks, 1, __ATOMIC_SEQ_CST);
}

static void on_usr2(int sig, siginfo_t *si, void *ctx)
{
    (void)sig; (void)ctx;
    if (si->si_code != SI_TIMER || si->si_value.sival_int != 0x5150) oneshot_bad = 1;
    oneshot_tid = (int)syscall(SYS_gettid);
    __atomic_add_fetch(&oneshot, 1, __ATOMIC_SEQ_CST);
}

static volatile int worker_tid;
static void *worker(void *arg)
{
    (void)arg;
    worker_tid = (int)syscall(SYS_gettid);
    for (;;) pause();
    return NULL;
}

static void handler(int sig, void (*fn)(int, siginfo_t *, void *))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = fn;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(sig, &sa, NULL) == 0, "sigaction %d", sig);
}

static timer_t make(clockid_t clock, int notify, int sig, int value, int tid)
{
    struct sigevent se;
    memset(&se, 0, sizeof se);
    se.sigev_notify = notify;
    se.sigev_signo = sig;
    se.sigev_value.sival_int = value;
    se._sigev_un._tid = tid;
    timer_t t;
    CHECK(timer_create(clock, &se, &t) == 0, "timer_create: %s", strerror(errno));
    return t;
}

static void arm(timer_t t, long value_ms, long interval_ms)
{
    struct itimerspec its = {{interval_ms / 1000, interval_ms % 1000 * 1000000}, {value_ms / 1000, value_ms % 1000 * 1000000}};
    CHECK(timer_settime(t, 0, &its, NULL) == 0, "timer_settime: %s", strerror(errno));
}

static void nap(void) { struct timespec ts = {0, 10 * 1000000}; nanosleep(&ts, NULL); }

int main(int argc, char **argv)
{
    int single = argc > 1 && strcmp(argv[1], "single") == 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alrm;
    sa.sa_flags = SA_RESTART;
    CHECK(sigaction(SIGALRM, &sa, NULL) == 0, "sigaction ALRM");
    handler(SIGUSR1, on_usr1);
    handler(SIGUSR2, on_usr2);
    /* SIGUSR2 only ever reaches the worker if the timer targets it. */
    sigset_t usr2;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    if (single) {
        worker_tid = (int)syscall(SYS_gettid);
    } else {
        pthread_t th;
        CHECK(pthread_create(&th, NULL, worker, NULL) == 0, "pthread_create");
        while (!worker_tid) nap();
        pthread_sigmask(SIG_BLOCK, &usr2, NULL);
    }

    struct itimerval real = {{0, 10000}, {0, 10000}}, virt = {{0, 0}, {1000, 0}};
    CHECK(setitimer(ITIMER_REAL, &real, NULL) == 0, "setitimer REAL");
    CHECK(setitimer(ITIMER_VIRTUAL, &virt, NULL) == 0, "setitimer VIRTUAL");
    periodic = make(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGUSR1, 0xabc, 0);
    gap = make(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGUSR1, 0, 0);
    once = make(CLOCK_MONOTONIC, SIGEV_THREAD_ID, SIGUSR2, 0x5150, worker_tid);
    none = make(CLOCK_REALTIME, SIGEV_NONE, 0, 0, 0);
    CHECK(timer_delete(gap) == 0, "timer_delete");
    arm(periodic, 20, 20);
    arm(once, 5000, 0);
    arm(none, 1000000, 0);
    while (alrm < 5 || posix_ticks < 5) nap();
    CHECK(!oneshot, "the one-shot timer fired early");
    say("ready alrm=%d posix=%d ids=%ld,%ld,%ld", alrm, posix_ticks, (long)periodic, (long)once, (long)none);
    wait_release();

    int a0 = alrm, p0 = posix_ticks;
    struct itimerspec its;
    CHECK(timer_gettime(periodic, &its) == 0, "timer_gettime(periodic %ld): %s", (long)periodic, strerror(errno));
    CHECK(its.it_interval.tv_sec == 0 && its.it_interval.tv_nsec == 20000000, "periodic interval %ld.%09ld",
          (long)its.it_interval.tv_sec, its.it_interval.tv_nsec);
    CHECK(timer_gettime(gap, &its) != 0 && errno == EINVAL, "the deleted timer's ID %ld exists after resume", (long)gap);
    CHECK(timer_gettime(none, &its) == 0, "timer_gettime(none): %s", strerror(errno));
    CHECK(its.it_value.tv_sec > 0 && its.it_value.tv_sec <= 1000, "SIGEV_NONE timer has %ld s left", (long)its.it_value.tv_sec);
    struct itimerval v;
    CHECK(getitimer(ITIMER_VIRTUAL, &v) == 0 && v.it_value.tv_sec > 0 && v.it_value.tv_sec <= 1000,
          "ITIMER_VIRTUAL has %ld s left", (long)v.it_value.tv_sec);
    CHECK(getitimer(ITIMER_REAL, &v) == 0 && v.it_interval.tv_usec == 10000, "ITIMER_REAL interval %ld us",
          (long)v.it_interval.tv_usec);
    /* Guard against a hang only: the timers are due long before this. */
    for (int i = 0; i < 6000 && (alrm < a0 + 5 || posix_ticks < p0 + 5 || !oneshot); i++) nap();
    CHECK(alrm >= a0 + 5, "ITIMER_REAL stopped: %d -> %d", a0, alrm);
    CHECK(posix_ticks >= p0 + 5, "periodic POSIX timer stopped: %d -> %d", p0, posix_ticks);
    CHECK(!posix_bad, "periodic timer signal with wrong si_code or value");
    CHECK(oneshot == 1, "one-shot timer fired %d times", oneshot);
    CHECK(!oneshot_bad, "one-shot signal with wrong si_code or value");
    if (single) worker_tid = (int)syscall(SYS_gettid);   /* a new TID without namespaces */
    CHECK(oneshot_tid == worker_tid, "one-shot delivered to thread %d, not the worker %d", oneshot_tid, worker_tid);
    ok("timers alrm %d->%d posix %d->%d oneshot in worker ids=%ld,%ld,%ld", a0, alrm, p0, posix_ticks,
       (long)periodic, (long)once, (long)none);
}
