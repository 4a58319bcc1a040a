/*
 * threader.c - a job with a second thread (multi-threaded checkpoints are
 * not supported yet: ghost must refuse the checkpoint, not break the job).
 *
 * Starts a thread that blocks on a pipe; prints "ready"; waits for the
 * release line; then wakes the thread, joins it and prints "ok".
 */
#include "common.h"
#include <pthread.h>

static int p[2];

static void *worker(void *arg)
{
    (void)arg;
    char c = 0;
    if (read(p[0], &c, 1) != 1)
        return NULL;
    return (void *)(long)(c == 'w' ? 42 : 0);
}

int main(void)
{
    CHECK(pipe(p) == 0, "pipe");
    pthread_t t;
    CHECK(pthread_create(&t, NULL, worker, NULL) == 0, "pthread_create");
    ready();
    wait_release();
    CHECK(write(p[1], "w", 1) == 1, "wake thread");
    void *res = NULL;
    CHECK(pthread_join(t, &res) == 0, "pthread_join");
    CHECK(res == (void *)42L, "thread returned %p", res);
    ok("thread joined normally");
}
