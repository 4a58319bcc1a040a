/*
 * traced_child.c - a job that traces one of its own processes, as a
 * debugger would: ghost cannot freeze a process that has another tracer.
 *
 * Forks a child that sleeps, prints "ready", then obeys lines on stdin:
 * "trace" PTRACE_SEIZEs the child and prints "tracing CHILD"; "still"
 * prints "still running"; "go" ends the child and prints "ok ...".
 */
#include "common.h"
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/wait.h>

int main(void)
{
    pid_t child = fork();
    CHECK(child >= 0, "fork: %s", strerror(errno));
    if (child == 0) {
        for (;;) pause();
    }
    ready();
    char line[64];
    for (;;) {
        const char *cmd = wait_release_line(line, sizeof line);
        if (strcmp(cmd, "trace") == 0) {
            CHECK(ptrace(PTRACE_SEIZE, child, 0, 0) == 0, "PTRACE_SEIZE %d: %s", child, strerror(errno));
            say("tracing %d", child);
        } else if (strcmp(cmd, "still") == 0) {
            say("still running");
        } else {
            break;
        }
    }
    kill(child, SIGKILL);
    int st;
    CHECK(waitpid(child, &st, 0) == child && WIFSIGNALED(st), "waitpid");
    ok("traced_child reaped %d", child);
}
