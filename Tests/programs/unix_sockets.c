/*
 * unix_sockets.c - unix domain sockets between two processes of the job
 * survive checkpoint/restart with their queued data.
 *
 * The parent makes socketpairs (stream, datagram, seqpacket), a listener on
 * a path and one on an abstract name, then forks. Before "ready" each side
 * sends into every connection without reading: data is queued in both
 * directions. Options the job set (O_NONBLOCK, SO_RCVBUF, SO_PASSCRED) and a
 * shut-down stream are in there too. After the release line both sides read
 * everything back: same bytes, same datagram boundaries, nothing more (a
 * non-blocking read then gives EAGAIN); the listeners accept new connections;
 * a datagram socket bound to a path gets the datagrams the child's
 * connect()ed socket had sent it, and then new ones;
 * a datagram pair that both processes hold still carries data both ways;
 * a stream pair whose other end was closed gives its data, then end of file.
 */
#include "common.h"
#include <fcntl.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

static const int dsizes[] = { 1, 100, 2000, 7, 300, 65 };
#define ND (int)(sizeof dsizes / sizeof dsizes[0])

static unsigned char byte_of(int who, int i) { return (unsigned char)(i * 13 + who * 71 + 5); }

static void send_all(int fd, int who, int n) {
    unsigned char buf[8192];
    for (int i = 0; i < n; i++) buf[i] = byte_of(who, i);
    CHECK(write(fd, buf, (size_t)n) == n, "stream write (who %d): %s", who, strerror(errno));
}

static void expect_stream(int fd, int who, int n, const char *what) {
    unsigned char buf[8192];
    int got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, sizeof buf - (size_t)got);
        if (r < 0 && errno == EINTR) continue;
        CHECK(r > 0, "%s: read after %d of %d bytes: %s", what, got, n, r == 0 ? "end of file" : strerror(errno));
        got += (int)r;
    }
    CHECK(got == n, "%s: %d bytes, expected %d", what, got, n);
    for (int i = 0; i < n; i++) CHECK(buf[i] == byte_of(who, i), "%s: byte %d differs", what, i);
}

static void send_msgs(int fd, int who) {
    unsigned char buf[4096];
    for (int k = 0; k < ND; k++) {
        for (int i = 0; i < dsizes[k]; i++) buf[i] = byte_of(who + k, i);
        CHECK(send(fd, buf, (size_t)dsizes[k], 0) == dsizes[k], "send datagram %d: %s", k, strerror(errno));
    }
}

static void expect_msgs(int fd, int who, const char *what) {
    unsigned char buf[4096];
    for (int k = 0; k < ND; k++) {
        ssize_t r = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        CHECK(r == dsizes[k], "%s: message %d is %zd bytes, expected %d (%s)", what, k, r, dsizes[k], r < 0 ? strerror(errno) : "");
        for (int i = 0; i < dsizes[k]; i++) CHECK(buf[i] == byte_of(who + k, i), "%s: message %d byte %d differs", what, k, i);
    }
}

static void expect_empty(int fd, const char *what) {
    char c;
    ssize_t r = recv(fd, &c, 1, MSG_DONTWAIT);
    CHECK(r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK), "%s: more data than was sent (recv gave %zd)", what, r);
}

static socklen_t addr(struct sockaddr_un *a, const char *name, int abstract) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    size_t n = strlen(name);
    memcpy(a->sun_path + (abstract ? 1 : 0), name, n);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (abstract ? 1 : 0));
}

static int listen_on(const char *name, int abstract) {
    struct sockaddr_un a;
    socklen_t l = addr(&a, name, abstract);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&a, l) == 0 && listen(fd, 8) == 0, "listen on %s: %s", name, strerror(errno));
    return fd;
}

static int connect_to(const char *name, int abstract) {
    struct sockaddr_un a;
    socklen_t l = addr(&a, name, abstract);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(fd >= 0 && connect(fd, (struct sockaddr *)&a, l) == 0, "connect to %s: %s", name, strerror(errno));
    return fd;
}

static int getint(int fd, int opt) { int v = 0; socklen_t l = sizeof v; getsockopt(fd, SOL_SOCKET, opt, &v, &l); return v; }

int main(void)
{
    int st[2], dg[2], sp[2], shut[2], both[2], sync1[2], sync2[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, st) == 0, "socketpair stream");
    CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, dg) == 0, "socketpair dgram");
    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp) == 0, "socketpair seqpacket");
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, shut) == 0, "socketpair shut");
    CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, both) == 0, "socketpair both");
    CHECK(pipe(sync1) == 0 && pipe(sync2) == 0, "pipes");
    char path[64], abstract[64];
    snprintf(path, sizeof path, "sock-%d", (int)getpid());
    snprintf(abstract, sizeof abstract, "ghost-test-%d", (int)getpid());
    unlink(path);
    int lp = listen_on(path, 0), la = listen_on(abstract, 1);
    char dpath[64];
    snprintf(dpath, sizeof dpath, "dsock-%d", (int)getpid());
    unlink(dpath);
    struct sockaddr_un da;
    socklen_t dl = addr(&da, dpath, 0);
    int ds = socket(AF_UNIX, SOCK_DGRAM, 0);
    CHECK(ds >= 0 && bind(ds, (struct sockaddr *)&da, dl) == 0, "bind datagram socket: %s", strerror(errno));
    int rcvbuf = 50000;
    CHECK(setsockopt(dg[0], SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) == 0, "SO_RCVBUF");
    int rcv_before = getint(dg[0], SO_RCVBUF), one = 1;
    CHECK(setsockopt(sp[0], SOL_SOCKET, SO_PASSCRED, &one, sizeof one) == 0, "SO_PASSCRED");
    CHECK(fcntl(st[0], F_SETFL, O_NONBLOCK) == 0, "O_NONBLOCK");

    pid_t child = fork();
    CHECK(child >= 0, "fork");
    if (child == 0) {
        close(st[0]); close(dg[0]); close(sp[0]); close(shut[0]);
        int cp = connect_to(path, 0);
        send_all(st[1], 2, 3000);
        send_msgs(dg[1], 20);
        send_msgs(sp[1], 40);
        send_all(shut[1], 3, 700);
        CHECK(shutdown(shut[1], SHUT_WR) == 0, "shutdown");
        send_all(cp, 4, 1500);
        int dc = socket(AF_UNIX, SOCK_DGRAM, 0);
        CHECK(dc >= 0 && connect(dc, (struct sockaddr *)&da, dl) == 0, "connect datagram socket: %s", strerror(errno));
        CHECK(send(dc, "one", 3, 0) == 3 && send(dc, "second", 6, 0) == 6 && send(dc, "3", 1, 0) == 1, "send to bound");
        CHECK(write(sync1[1], "w", 1) == 1, "sync");
        char c;
        CHECK(read(sync2[0], &c, 1) == 1, "child: waiting for the parent");
        /* After the restart. */
        expect_stream(st[1], 1, 5000, "child stream");
        expect_empty(st[1], "child stream");
        expect_msgs(dg[1], 10, "child dgram");
        expect_empty(dg[1], "child dgram");
        expect_msgs(sp[1], 30, "child seqpacket");
        expect_empty(sp[1], "child seqpacket");
        expect_stream(cp, 5, 900, "child connection");
        expect_empty(cp, "child connection");
        /* The listeners are there again. */
        int c2 = connect_to(path, 0), c3 = connect_to(abstract, 1);
        send_all(c2, 6, 10); send_all(c3, 7, 11);
        /* A pair both processes hold: datagrams both ways. */
        CHECK(send(dc, "late", 4, 0) == 4, "child: send to the bound socket after resume: %s", strerror(errno));
        CHECK(send(both[0], "from-child", 10, 0) == 10, "child send both");
        char b[32];
        CHECK(recv(both[0], b, sizeof b, 0) == 11 && memcmp(b, "from-parent", 11) == 0, "child: pair held by both");
        exit(0);
    }
    close(st[1]); close(dg[1]); close(sp[1]); close(shut[1]);
    int ap = accept(lp, NULL, NULL);
    CHECK(ap >= 0, "accept");
    send_all(st[0], 1, 5000);
    send_msgs(dg[0], 10);
    send_msgs(sp[0], 30);
    send_all(ap, 5, 900);
    char c;
    CHECK(read(sync1[0], &c, 1) == 1, "parent: waiting for the child");
    /* A stream pair whose other end was closed after writing (the JVM keeps
     * one like this, without the data): the kernel no longer names its peer. */
    int widow[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, widow) == 0, "socketpair widow");
    send_all(widow[1], 8, 333);
    close(widow[1]);

    ready();
    wait_release();

    expect_stream(widow[0], 8, 333, "widowed pair");
    CHECK(read(widow[0], &c, 1) == 0, "widowed pair: no end of file after its data");
    CHECK(send(widow[0], "x", 1, MSG_NOSIGNAL) < 0 && errno == EPIPE, "widowed pair: sending did not fail with EPIPE");

    CHECK((fcntl(st[0], F_GETFL) & O_NONBLOCK) != 0, "O_NONBLOCK lost");
    CHECK(getint(dg[0], SO_RCVBUF) == rcv_before, "SO_RCVBUF %d, was %d", getint(dg[0], SO_RCVBUF), rcv_before);
    CHECK(getint(sp[0], SO_PASSCRED) == 1, "SO_PASSCRED lost");
    expect_stream(st[0], 2, 3000, "parent stream");
    expect_empty(st[0], "parent stream");
    expect_msgs(dg[0], 20, "parent dgram");
    expect_empty(dg[0], "parent dgram");
    expect_msgs(sp[0], 40, "parent seqpacket");
    expect_empty(sp[0], "parent seqpacket");
    expect_stream(shut[0], 3, 700, "shut-down stream");
    CHECK(read(shut[0], &c, 1) == 0, "shut-down stream: no end of file after the data");
    expect_stream(ap, 4, 1500, "parent connection");
    char d[16];
    CHECK(recv(ds, d, sizeof d, MSG_DONTWAIT) == 3 && memcmp(d, "one", 3) == 0, "bound datagram socket: first datagram");
    CHECK(recv(ds, d, sizeof d, MSG_DONTWAIT) == 6 && memcmp(d, "second", 6) == 0, "bound datagram socket: second datagram");
    CHECK(recv(ds, d, sizeof d, MSG_DONTWAIT) == 1 && d[0] == '3', "bound datagram socket: third datagram");
    expect_empty(ds, "bound datagram socket");
    CHECK(write(sync2[1], "g", 1) == 1, "release the child");
    int a2 = accept(lp, NULL, NULL), a3 = accept(la, NULL, NULL);
    CHECK(a2 >= 0 && a3 >= 0, "accept after resume: %s", strerror(errno));
    expect_stream(a2, 6, 10, "new path connection");
    expect_stream(a3, 7, 11, "new abstract connection");
    CHECK(recv(ds, d, sizeof d, 0) == 4 && memcmp(d, "late", 4) == 0, "bound datagram socket: datagram sent after resume");
    CHECK(send(both[1], "from-parent", 11, 0) == 11, "parent send both");
    char b[32];
    CHECK(recv(both[1], b, sizeof b, 0) == 10 && memcmp(b, "from-child", 10) == 0, "parent: pair held by both");
    int status;
    CHECK(waitpid(child, &status, 0) == child, "waitpid");
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed (status %d)", status);
    unlink(path);
    unlink(dpath);
    ok("unix sockets: stream, datagram, seqpacket, connection, listeners intact");
}
