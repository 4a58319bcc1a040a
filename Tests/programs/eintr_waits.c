/*
 * eintr_waits.c - threads blocked in the calls Linux ends with EINTR when a
 * stop interrupts them, even with no signal handler (signal(7)): epoll_wait,
 * epoll_pwait, rt_sigtimedwait, and accept and recvmsg on sockets with a
 * receive timeout. A checkpoint (and a resume) must go unnoticed: after the
 * release line each call returns what it waited for, none fails with EINTR.
 */
#include "common.h"
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

static int wake[2], ep, listener, pair[2];
static char results[5][128];

static void report(int i, const char *name, long r) {
    if (r < 0) snprintf(results[i], sizeof results[i], "%s failed: %s", name, strerror(errno));
    else results[i][0] = 0;
}

static void *in_epoll_wait(void *a) {
    (void)a;
    struct epoll_event ev;
    report(0, "epoll_wait", epoll_wait(ep, &ev, 1, -1));
    return NULL;
}
static void *in_epoll_pwait(void *a) {
    (void)a;
    struct epoll_event ev;
    sigset_t none;
    sigemptyset(&none);
    sigaddset(&none, SIGUSR2);
    report(1, "epoll_pwait", epoll_pwait(ep, &ev, 1, 600000, &none));
    return NULL;
}
static void *in_sigtimedwait(void *a) {
    (void)a;
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR2);
    struct timespec ts = { 600, 0 };
    int r = sigtimedwait(&s, NULL, &ts);
    if (r >= 0 && r != SIGUSR2) { snprintf(results[2], sizeof results[2], "sigtimedwait got %d", r); return NULL; }
    report(2, "sigtimedwait", r);
    return NULL;
}
static void *in_accept(void *a) {
    (void)a;
    int c = accept(listener, NULL, NULL);
    report(3, "accept (SO_RCVTIMEO)", c);
    return NULL;
}
static void *in_recvmsg(void *a) {
    (void)a;
    char buf[16];
    struct iovec iov = { buf, sizeof buf };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
    report(4, "recvmsg (SO_RCVTIMEO)", recvmsg(pair[0], &mh, 0));
    return NULL;
}

int main(void) {
    CHECK(pipe(wake) == 0, "pipe");
    ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = wake[0] };
    CHECK(ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, wake[0], &ev) == 0, "epoll");
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &s, NULL);
    struct timeval tv = { 600, 0 };
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    snprintf(addr.sun_path, sizeof addr.sun_path, "eintr.sock");
    unlink(addr.sun_path);
    listener = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(listener >= 0 && bind(listener, (void *)&addr, sizeof addr) == 0 && listen(listener, 4) == 0, "listen");
    CHECK(setsockopt(listener, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0, "SO_RCVTIMEO");
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, pair) == 0, "socketpair");
    CHECK(setsockopt(pair[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0, "SO_RCVTIMEO");

    void *(*fns[5])(void *) = { in_epoll_wait, in_epoll_pwait, in_sigtimedwait, in_accept, in_recvmsg };
    pthread_t t[5];
    for (int i = 0; i < 5; i++) CHECK(pthread_create(&t[i], NULL, fns[i], NULL) == 0, "pthread_create");
    usleep(300000);   /* all of them blocked */
    ready();
    wait_release();

    CHECK(write(wake[1], "x", 1) == 1, "write");             /* both epoll waiters see it (level-triggered) */
    CHECK(kill(getpid(), SIGUSR2) == 0, "kill");
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(c >= 0 && connect(c, (void *)&addr, sizeof addr) == 0, "connect: %s", strerror(errno));
    CHECK(write(pair[1], "y", 1) == 1, "write pair");
    for (int i = 0; i < 5; i++) pthread_join(t[i], NULL);
    unlink(addr.sun_path);
    for (int i = 0; i < 5; i++) CHECK(results[i][0] == 0, "%s", results[i]);
    ok("5 waits ended as they would have without ghost");
}
