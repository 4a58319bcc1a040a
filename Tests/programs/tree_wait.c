/*
 * tree_wait.c - a process tree: a parent with three children, one of which
 * has a child of its own (a grandchild), one already exited and not reaped
 * (a zombie), one computing; a child that is its own process group leader.
 * After restart: waitpid() on the stored child PIDs returns those PIDs with
 * the right exit statuses, getppid()/getpgid() in the children are as before,
 * and the job's exit status (total of the statuses) is as without ghost.
 */
#include "common.h"
#include <sys/wait.h>

int main(void) {
    int rel[2];
    CHECK(pipe(rel) == 0, "pipe");
    pid_t self = getpid(), kids[3];
    for (int i = 0; i < 3; i++) {
        kids[i] = fork();
        CHECK(kids[i] >= 0, "fork");
        if (kids[i] == 0) {
            close(rel[1]);
            if (i == 1) _exit(7);   /* a zombie until the parent reaps it */
            if (i == 2) {
                setpgid(0, 0);
                pid_t g = fork();
                if (g == 0) { char c; while (read(rel[0], &c, 1) > 0) {} _exit(getppid() == getpgid(0) ? 42 : 1); }
                int st; waitpid(g, &st, 0);
                _exit(WIFEXITED(st) ? WEXITSTATUS(st) + 1 : 99);
            }
            char c; while (read(rel[0], &c, 1) > 0) {}
            _exit(getppid() == self ? 50 : 2);
        }
    }
    close(rel[0]);
    usleep(200000);
    ready();
    wait_release();
    /* The zombie keeps its name (a rebuilt one must not show as ghost's helper). */
    char path[64], mine[32] = "", its[32] = "";
    snprintf(path, sizeof path, "/proc/%d/comm", kids[1]);
    FILE *f = fopen(path, "r"); CHECK(f && fgets(its, sizeof its, f), "reading %s", path); fclose(f);
    f = fopen("/proc/self/comm", "r"); CHECK(f && fgets(mine, sizeof mine, f), "reading my comm"); fclose(f);
    CHECK(strcmp(its, mine) == 0, "the zombie is called %s, not %s", its, mine);
    close(rel[1]);   /* children see end of file */
    int total = 0;
    for (int i = 0; i < 3; i++) {
        int st;
        pid_t r = waitpid(kids[i], &st, 0);
        CHECK(r == kids[i], "waitpid(%d) returned %d: %s", kids[i], r, strerror(errno));
        CHECK(WIFEXITED(st), "child %d did not exit normally", i);
        total += WEXITSTATUS(st);
    }
    CHECK(total == 50 + 7 + 43, "children's statuses add to %d, not 100", total);
    ok("3 children reaped by their old pids, statuses add to %d", total);
}
