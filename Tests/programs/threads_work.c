/*
 * threads_work.c - a multi-threaded job: 3 threads computing, 1 blocked on a
 * condition variable, 1 in a barrier with the main thread. After restart:
 * every thread continues, thread IDs (gettid) are unchanged, thread-local
 * values and per-thread signal masks are intact, pthread_join returns, and
 * the results equal an uninterrupted run's (deterministic arithmetic).
 */
#include "common.h"
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>

#define N 5
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static pthread_barrier_t bar;
static volatile int go, started;
static __thread long tls;
static pid_t tids[N];
static long results[N];

static long compute(long id) {
    unsigned long x = 88172645463325252UL + (unsigned long)id;
    for (long i = 0; i < 20000000L; i++) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; }
    return (long)(x % 1000003);
}

static void *worker(void *arg) {
    long id = (long)arg;
    tls = id * 1000 + 7;
    tids[id] = (pid_t)syscall(SYS_gettid);
    sigset_t m; sigemptyset(&m); sigaddset(&m, SIGRTMIN + (int)id); pthread_sigmask(SIG_BLOCK, &m, NULL);
    __sync_fetch_and_add(&started, 1);
    long r = 0;
    if (id == 3) {
        pthread_mutex_lock(&mu);
        while (!go) pthread_cond_wait(&cv, &mu);
        pthread_mutex_unlock(&mu);
    } else if (id == 4) {
        pthread_barrier_wait(&bar);
    } else {
        for (int k = 0; k < 20; k++) r += compute(id + 10 * k) % 7;   /* busy across the checkpoint */
        r += compute(id);
    }
    sigset_t now; pthread_sigmask(SIG_BLOCK, NULL, &now);
    if (!sigismember(&now, SIGRTMIN + (int)id)) fail("thread %ld lost its signal mask", id);
    if (tls != id * 1000 + 7) fail("thread %ld lost its TLS value (%ld)", id, tls);
    if (tids[id] != (pid_t)syscall(SYS_gettid)) fail("thread %ld changed tid %d -> %ld", id, tids[id], syscall(SYS_gettid));
    results[id] = r + tls;
    return NULL;
}

int main(void) {
    pthread_t t[N];
    pthread_barrier_init(&bar, NULL, 2);
    for (long i = 0; i < N; i++) CHECK(pthread_create(&t[i], NULL, worker, (void *)i) == 0, "pthread_create");
    while (started < N) usleep(1000);
    ready();
    wait_release();
    pthread_mutex_lock(&mu); go = 1; pthread_cond_broadcast(&cv); pthread_mutex_unlock(&mu);
    pthread_barrier_wait(&bar);
    long sum = 0;
    for (int i = 0; i < N; i++) { CHECK(pthread_join(t[i], NULL) == 0, "pthread_join %d", i); sum += results[i]; }
    ok("%d threads joined, same tids, sum %ld", N, sum);
}
