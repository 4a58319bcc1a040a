/*
 * forker.c - a job with two processes (checkpointing process trees is not
 * supported yet: ghost must refuse the checkpoint, not break the job).
 *
 * Forks a child that waits on a pipe; prints "ready"; waits for the release
 * line; then closes the pipe, reaps the child (which exits 5 on end of file)
 * and prints "ok".
 */
#include "common.h"
#include <sys/wait.h>

int main(void)
{
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    pid_t child = fork();
    CHECK(child >= 0, "fork: %s", strerror(errno));
    if (child == 0) {
        close(p[1]);
        char c;
        while (read(p[0], &c, 1) > 0)
            ;
        _exit(5);
    }
    close(p[0]);
    ready();
    wait_release();
    close(p[1]);
    int status = 0;
    CHECK(waitpid(child, &status, 0) == child, "waitpid: %s", strerror(errno));
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 5, "child status %#x", status);
    ok("parent and child finished normally");
}
