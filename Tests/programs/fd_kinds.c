/*
 * fd_kinds.c - FIFOs, eventfd, timerfd, signalfd and epoll (with its
 * interest list) survive checkpoint/restart, shared between two processes.
 *
 * Before "ready" (parent and a forked child):
 *   - a FIFO in the working directory: the parent holds the read end, the
 *     child wrote 2000 bytes into it that nobody has read;
 *   - eventfds: counter 5 with EFD_SEMAPHORE|EFD_NONBLOCK, and 2^40+3;
 *   - timerfds: armed 1000 s with a 250 ms period; a 1 ms one-shot that has
 *     expired once, unread; one never armed;
 *   - a signalfd for SIGUSR1|SIGUSR2 with SIGUSR2 pending;
 *   - an epoll watching the first eventfd (EPOLLET), a pipe with data, a
 *     socket (EPOLLONESHOT, already fired), the timer, and an eventfd only
 *     the child has (added by the child).
 * After the release line each object is checked: same data, counters,
 * timer settings, mask; the epoll's fdinfo lists the same entries; it
 * reports the same ready set; the child can still EPOLL_CTL_MOD its entry.
 */
#include "common.h"
#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>

/* The "tfd: N events: E data: D" part of each entry of an epoll's fdinfo,
 * sorted (the kernel lists them in the order of its file pointers). A
 * fired one-shot entry comes back with EPOLLERR|EPOLLHUP, which epoll_ctl
 * always adds: those two bits are not compared for it. */
struct entry { int tfd; unsigned events; unsigned long long data; };
static int cmp_entry(const void *a, const void *b) {
    const struct entry *x = a, *y = b;
    return x->tfd != y->tfd ? x->tfd - y->tfd : (x->data > y->data) - (x->data < y->data);
}
static void epoll_entries(int ep, char *out, size_t len) {
    char path[64], line[256];
    struct entry e[32];
    int n = 0;
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", ep);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "open %s", path);
    while (n < 32 && fgets(line, sizeof line, f)) {
        if (sscanf(line, "tfd: %d events: %x data: %llx", &e[n].tfd, &e[n].events, &e[n].data) == 3) {
            if ((e[n].events & EPOLLONESHOT) && !(e[n].events & (EPOLLIN | EPOLLOUT | EPOLLPRI | EPOLLRDHUP)))
                e[n].events &= ~(unsigned)(EPOLLERR | EPOLLHUP);
            n++;
        }
    }
    fclose(f);
    qsort(e, (size_t)n, sizeof e[0], cmp_entry);
    out[0] = 0;
    for (int i = 0; i < n; i++) {
        size_t k = strlen(out);
        snprintf(out + k, len - k, "[%d %x %llx]", e[i].tfd, e[i].events, e[i].data);
    }
}

static int ready_set(int ep) {
    struct epoll_event ev[8];
    int n = epoll_wait(ep, ev, 8, 0), mask = 0;
    CHECK(n >= 0, "epoll_wait: %s", strerror(errno));
    for (int i = 0; i < n; i++) {
        switch (ev[i].data.u64) {
        case 111: mask |= 1; break;
        case 222: mask |= 2; break;
        case 333: mask |= 4; break;
        case 444: mask |= 8; break;
        case 556: mask |= 16; break;
        default: fail("epoll reported unknown data %llu", (unsigned long long)ev[i].data.u64);
        }
    }
    return mask;
}

static void add(int ep, int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev = { .events = events, .data.u64 = data };
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0, "epoll_ctl add %d: %s", fd, strerror(errno));
}

int main(void)
{
    char fifo[64];
    snprintf(fifo, sizeof fifo, "fifo-%d", (int)getpid());
    unlink(fifo);
    CHECK(mkfifo(fifo, 0600) == 0, "mkfifo: %s", strerror(errno));
    int rd = open(fifo, O_RDONLY | O_NONBLOCK);
    CHECK(rd >= 0, "open fifo");

    int e1 = eventfd(5, EFD_SEMAPHORE | EFD_NONBLOCK), e2 = eventfd(0, 0);
    uint64_t big = (1ULL << 40) + 3;
    CHECK(e1 >= 0 && e2 >= 0 && write(e2, &big, 8) == 8, "eventfd");

    int t1 = timerfd_create(CLOCK_MONOTONIC, 0), t2 = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK),
        t3 = timerfd_create(CLOCK_REALTIME, 0);
    struct itimerspec a1 = { .it_interval = { 0, 250000000 }, .it_value = { 1000, 0 } };
    struct itimerspec a2 = { .it_value = { 0, 1000000 } };
    CHECK(t1 >= 0 && t2 >= 0 && t3 >= 0 && timerfd_settime(t1, 0, &a1, NULL) == 0 && timerfd_settime(t2, 0, &a2, NULL) == 0, "timerfd");
    struct timespec pause = { 0, 30000000 };
    nanosleep(&pause, NULL);

    sigset_t set;
    sigemptyset(&set); sigaddset(&set, SIGUSR1); sigaddset(&set, SIGUSR2);
    CHECK(sigprocmask(SIG_BLOCK, &set, NULL) == 0, "sigprocmask");
    int sfd = signalfd(-1, &set, SFD_NONBLOCK);
    CHECK(sfd >= 0, "signalfd");
    raise(SIGUSR2);

    int p[2], so[2], sync1[2], sync2[2], sync3[2];
    CHECK(pipe(p) == 0 && write(p[1], "abc", 3) == 3, "pipe");
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, so) == 0 && write(so[1], "s", 1) == 1, "socketpair");
    CHECK(pipe(sync1) == 0 && pipe(sync2) == 0 && pipe(sync3) == 0, "pipes");
    int ep = epoll_create1(0);
    CHECK(ep >= 0, "epoll_create1");
    add(ep, so[0], EPOLLIN | EPOLLONESHOT, 333);
    CHECK(ready_set(ep) == 4, "one-shot entry did not fire");   /* now disarmed */
    add(ep, p[0], EPOLLIN, 222);
    add(ep, e1, EPOLLIN | EPOLLET, 111);
    add(ep, t1, EPOLLIN, 444);

    pid_t child = fork();
    CHECK(child >= 0, "fork");
    if (child == 0) {
        int wr = open(fifo, O_WRONLY);
        CHECK(wr >= 0, "child: open fifo for writing");
        unsigned char buf[2000];
        for (int i = 0; i < 2000; i++) buf[i] = (unsigned char)(i * 7 + 1);
        CHECK(write(wr, buf, sizeof buf) == (ssize_t)sizeof buf, "child: write fifo");
        int e3 = eventfd(0, 0);
        add(ep, e3, EPOLLIN, 555);
        char c;
        CHECK(write(sync1[1], "w", 1) == 1 && read(sync2[0], &c, 1) == 1, "child: sync");
        /* After the restart: the entry is still keyed by this fd. */
        struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 556 };
        CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, e3, &ev) == 0, "child: EPOLL_CTL_MOD of its own entry: %s", strerror(errno));
        uint64_t one = 1;
        CHECK(write(e3, &one, 8) == 8, "child: write eventfd");
        CHECK(write(sync1[1], "m", 1) == 1 && read(sync3[0], &c, 1) == 1, "child: sync 2");
        exit(0);
    }
    char c;
    CHECK(read(sync1[0], &c, 1) == 1, "parent: sync");
    char before[1024], after[1024];
    epoll_entries(ep, before, sizeof before);

    ready();
    wait_release();

    /* FIFO: the 2000 bytes, once. */
    unsigned char got[4096];
    ssize_t n = read(rd, got, sizeof got);
    CHECK(n == 2000, "fifo gave %zd bytes, expected 2000 (%s)", n, n < 0 ? strerror(errno) : "");
    for (int i = 0; i < 2000; i++) CHECK(got[i] == (unsigned char)(i * 7 + 1), "fifo byte %d differs", i);
    CHECK(read(rd, got, 1) < 0 && errno == EAGAIN, "fifo holds more than was written");

    /* epoll: same interest list, same ready set. */
    epoll_entries(ep, after, sizeof after);
    CHECK(strcmp(before, after) == 0, "epoll entries %s, were %s", after, before);
    int r = ready_set(ep);
    CHECK(r == 3, "epoll ready set %#x, expected eventfd and pipe (0x3)", r);

    /* eventfds. */
    uint64_t v;
    for (int i = 0; i < 5; i++) CHECK(read(e1, &v, 8) == 8 && v == 1, "semaphore eventfd read %d gave %llu", i, (unsigned long long)v);
    CHECK(read(e1, &v, 8) < 0 && errno == EAGAIN, "semaphore eventfd counter was more than 5, or it blocks");
    CHECK(read(e2, &v, 8) == 8 && v == big, "eventfd counter %llu, expected %llu", (unsigned long long)v, (unsigned long long)big);

    /* timerfds. */
    struct itimerspec cur;
    CHECK(timerfd_gettime(t1, &cur) == 0 && cur.it_interval.tv_sec == 0 && cur.it_interval.tv_nsec == 250000000
          && cur.it_value.tv_sec <= 1000 && (cur.it_value.tv_sec > 0 || cur.it_value.tv_nsec > 0), "periodic timerfd changed");
    CHECK(read(t2, &v, 8) == 8 && v == 1, "expired timerfd: %llu unread expirations, expected 1", (unsigned long long)v);
    CHECK(timerfd_gettime(t3, &cur) == 0 && cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec == 0, "unarmed timerfd is armed");
    CHECK((fcntl(t2, F_GETFL) & O_NONBLOCK) && !(fcntl(t1, F_GETFL) & O_NONBLOCK), "timerfd O_NONBLOCK flags changed");

    /* signalfd. */
    struct signalfd_siginfo si;
    CHECK(read(sfd, &si, sizeof si) == (ssize_t)sizeof si && si.ssi_signo == SIGUSR2, "signalfd did not give the pending SIGUSR2");
    CHECK(read(sfd, &si, sizeof si) < 0 && errno == EAGAIN, "signalfd gave a second signal");
    kill(getpid(), SIGUSR1);
    CHECK(read(sfd, &si, sizeof si) == (ssize_t)sizeof si && si.ssi_signo == SIGUSR1, "signalfd does not take SIGUSR1");

    /* The child's entry, changed by the child. */
    CHECK(write(sync2[1], "g", 1) == 1 && read(sync1[0], &c, 1) == 1, "parent: sync 2");
    r = ready_set(ep);
    CHECK(r & 16, "epoll missed the child's modified entry (ready set %#x)", r);
    CHECK(write(sync3[1], "x", 1) == 1, "release child");
    int status;
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed (%d)", status);
    unlink(fifo);
    ok("fifo, eventfd, timerfd, signalfd and epoll intact");
}
