/*
 * exit_status.c - exit statuses and forwarded signals.
 *
 * Usage:
 *   exit_status exit N     prints "ready", waits for the release line, exits N
 *   exit_status wait       prints "ready", then waits in pause() with default
 *                          dispositions (a SIGTERM kills it: 128+15 expected)
 *   exit_status raise SIG  prints "ready", waits for the release line, then
 *                          kills itself with signal number SIG
 *   exit_status trap       SIGTERM handler prints "got SIGTERM" and exits 7;
 *                          prints "ready" and waits in pause()
 */
#include "common.h"
#include <signal.h>

static void on_term(int sig)
{
    (void)sig;
    static const char msg[] = "got SIGTERM\n";
    if (write(1, msg, sizeof msg - 1) < 0)
        _exit(8);
    _exit(7);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2, "usage: exit_status exit N | wait | raise SIG | trap");
    if (strcmp(argv[1], "exit") == 0 && argc == 3) {
        ready();
        wait_release();
        exit(atoi(argv[2]));
    }
    if (strcmp(argv[1], "raise") == 0 && argc == 3) {
        int sig = atoi(argv[2]);
        signal(sig, SIG_DFL);
        ready();
        wait_release();
        raise(sig);
        fail("still alive after raise(%d)", sig);
    }
    if (strcmp(argv[1], "wait") == 0) {
        ready();
        for (;;)
            pause();
    }
    if (strcmp(argv[1], "trap") == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_term;
        sigemptyset(&sa.sa_mask);
        CHECK(sigaction(SIGTERM, &sa, NULL) == 0, "sigaction");
        ready();
        for (;;)
            pause();
    }
    fail("bad arguments");
}
