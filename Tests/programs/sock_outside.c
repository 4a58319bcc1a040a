/*
 * sock_outside.c - a socket ghost cannot checkpoint appears mid-run.
 *
 * "ready", then after a release line opens, depending on argv[1]:
 *   tcp        a TCP connection to a listener of its own on 127.0.0.1,
 *   unix PATH  a connection to the unix socket PATH (held outside the job),
 *   inotify    an inotify descriptor watching the working directory,
 *   pending    a unix connection to its own listener, not accepted yet,
 *   sqpoll     an io_uring with a kernel submission thread (IORING_SETUP_SQPOLL,
 *              as libuv makes with UV_USE_IO_URING=1): a thread no ptrace stops,
 * ("listen PATH" is that outside listener: it accepts one connection and
 * reads from it until it closes),
 * says "ready2", and after a second release line checks the connection
 * still carries data and prints "ok".
 */
#include "common.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <linux/io_uring.h>
#include <sys/inotify.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/un.h>

int main(int argc, char **argv)
{
    CHECK(argc >= 2, "usage: sock_outside tcp | unix PATH | listen PATH");
    if (strcmp(argv[1], "listen") == 0 && argc >= 3) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        strncpy(sa.sun_path, argv[2], sizeof sa.sun_path - 1);
        unlink(argv[2]);
        int l = socket(AF_UNIX, SOCK_STREAM, 0);
        CHECK(l >= 0 && bind(l, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(l, 1) == 0, "listen: %s", strerror(errno));
        say("listening");
        int c = accept(l, NULL, NULL);
        char buf[64];
        while (c >= 0 && read(c, buf, sizeof buf) > 0) {}
        ok("listener done");
    }
    ready();
    wait_release();
    int a, b;
    if (strcmp(argv[1], "pending") == 0) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path + 1, sizeof sa.sun_path - 1, "ghost-pending-%d", (int)getpid());
        int l = socket(AF_UNIX, SOCK_STREAM, 0);
        a = socket(AF_UNIX, SOCK_STREAM, 0);
        CHECK(bind(l, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(l, 4) == 0
              && connect(a, (struct sockaddr *)&sa, sizeof sa) == 0, "pending: %s", strerror(errno));
        say("ready2");
        wait_release();
        b = accept(l, NULL, NULL);
        char c;
        CHECK(b >= 0 && write(a, "q", 1) == 1 && read(b, &c, 1) == 1 && c == 'q', "pending connection broken");
        ok("socket still works");
    }
    if (strcmp(argv[1], "sqpoll") == 0) {
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        p.flags = IORING_SETUP_SQPOLL;
        p.sq_thread_idle = 10;
        a = b = (int)syscall(__NR_io_uring_setup, 8, &p);
        CHECK(a >= 0, "io_uring_setup: %s", strerror(errno));
        say("ready2");
        wait_release();
        ok("socket still works");
    }
    if (strcmp(argv[1], "inotify") == 0) {
        a = b = inotify_init1(0);
        CHECK(a >= 0 && inotify_add_watch(a, ".", IN_CREATE) >= 0, "inotify: %s", strerror(errno));
        say("ready2");
        wait_release();
        ok("socket still works");
    } else if (strcmp(argv[1], "tcp") == 0) {
        int l = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof sa;
        CHECK(l >= 0 && bind(l, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(l, 1) == 0, "tcp listen: %s", strerror(errno));
        CHECK(getsockname(l, (struct sockaddr *)&sa, &len) == 0, "getsockname");
        a = socket(AF_INET, SOCK_STREAM, 0);
        CHECK(connect(a, (struct sockaddr *)&sa, sizeof sa) == 0, "tcp connect: %s", strerror(errno));
        b = accept(l, NULL, NULL);
        CHECK(b >= 0, "accept");
        close(l);
    } else {
        CHECK(argc >= 3, "unix needs a path");
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        strncpy(sa.sun_path, argv[2], sizeof sa.sun_path - 1);
        a = b = socket(AF_UNIX, SOCK_STREAM, 0);
        CHECK(connect(a, (struct sockaddr *)&sa, sizeof sa) == 0, "unix connect to %s: %s", argv[2], strerror(errno));
    }
    say("ready2");
    wait_release();
    if (a != b) {
        char c;
        CHECK(write(a, "z", 1) == 1 && read(b, &c, 1) == 1 && c == 'z', "tcp connection broken");
    } else {
        CHECK(write(a, "z", 1) == 1, "unix connection broken");
    }
    ok("socket still works");
}
