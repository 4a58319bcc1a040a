/*
 * sibling_pgrp.c - a process group led by one child and joined by its
 * siblings (as a shell with job control makes for a pipeline) comes back.
 *
 * Before "ready": three children; child 0 leads a new group, children 1
 * and 2 join it. After the release line each child is still in child 0's
 * group, which is not the parent's.
 */
#include "common.h"
#include <signal.h>
#include <sys/wait.h>

int main(void)
{
    pid_t kids[3];
    for (int i = 0; i < 3; i++) {
        kids[i] = fork();
        CHECK(kids[i] >= 0, "fork");
        if (kids[i] == 0) {
            for (;;)
                pause();
        }
        CHECK(setpgid(kids[i], i == 0 ? kids[i] : kids[0]) == 0, "setpgid: %s", strerror(errno));
    }
    ready();
    wait_release();
    for (int i = 0; i < 3; i++)
        CHECK(getpgid(kids[i]) == kids[0], "child %d is in group %d, not %d", i, getpgid(kids[i]), kids[0]);
    CHECK(getpgid(0) != kids[0], "the parent moved into the children's group");
    CHECK(kill(-kids[0], SIGKILL) == 0, "kill of the group");
    for (int i = 0; i < 3; i++)
        waitpid(kids[i], NULL, 0);
    ok("three siblings in the group led by the first");
}
