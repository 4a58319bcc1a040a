/*
 * widowed_pipes.c - pipes with one side closed everywhere, as make's
 * jobserver or a reader whose writer finished leave them:
 *   - a pipe holding "leftover" whose write end is closed: after resume the
 *     reader gets "leftover" and then end of file (in parent and child);
 *   - a pipe whose read end is closed: a write fails with EPIPE.
 */
#include "common.h"
#include <signal.h>
#include <sys/wait.h>

int main(void)
{
    int r[2], w[2];
    CHECK(pipe(r) == 0 && pipe(w) == 0, "pipe");
    CHECK(write(r[1], "leftover", 8) == 8, "write");
    close(r[1]);
    close(w[0]);
    signal(SIGPIPE, SIG_IGN);
    pid_t child = fork();           /* holds the widowed read end too */
    CHECK(child >= 0, "fork");
    if (child == 0) {
        pause();
        _exit(0);
    }
    ready();
    wait_release();
    char buf[32];
    ssize_t n = read(r[0], buf, sizeof buf);
    CHECK(n == 8 && memcmp(buf, "leftover", 8) == 0, "buffered data: read %zd", n);
    CHECK(read(r[0], buf, sizeof buf) == 0, "no end of file after the data");
    CHECK(write(w[1], "x", 1) == -1 && errno == EPIPE, "write to a pipe without readers: %s", strerror(errno));
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    ok("widowed pipes behave as before");
}
