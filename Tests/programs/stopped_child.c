/*
 * stopped_child.c - processes stopped by job control stay stopped.
 *
 * Two children count in shared memory; before "ready" one is stopped with
 * SIGSTOP and the other with SIGTSTP (default action), and the parent sees
 * both stops (waitpid WUNTRACED). After the release line both are still
 * stopped (state T, counters frozen), across a checkpoint and across a
 * resume; SIGCONT lets each count on.
 */
#include "common.h"
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

static volatile unsigned long *counters;

static char state_of(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return '?';
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *close = strrchr(buf, ')');
    return close && close[1] == ' ' ? close[2] : '?';
}

static pid_t start_counter(int i)
{
    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        for (;;)
            counters[i]++;
    }
    return pid;
}

int main(void)
{
    counters = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(counters != MAP_FAILED, "mmap");
    const int sigs[2] = {SIGSTOP, SIGTSTP};
    pid_t kids[2];
    for (int i = 0; i < 2; i++) {
        kids[i] = start_counter(i);
        while (counters[i] < 1000)
            usleep(1000);
        CHECK(kill(kids[i], sigs[i]) == 0, "kill");
        int st;
        CHECK(waitpid(kids[i], &st, WUNTRACED) == kids[i] && WIFSTOPPED(st) && WSTOPSIG(st) == sigs[i],
              "child %d did not stop with signal %d", i, sigs[i]);
    }
    unsigned long before[2] = {counters[0], counters[1]};

    ready();
    wait_release();

    usleep(300000);
    for (int i = 0; i < 2; i++) {
        char s = state_of(kids[i]);
        CHECK(s == 'T', "child stopped by signal %d is in state %c, not T (stopped)", sigs[i], s);
        CHECK(counters[i] == before[i], "child stopped by signal %d ran on: counter %lu -> %lu",
              sigs[i], before[i], counters[i]);
    }
    for (int i = 0; i < 2; i++) {
        CHECK(kill(kids[i], SIGCONT) == 0, "SIGCONT");
        for (int t = 0; t < 2000 && counters[i] == before[i]; t++)
            usleep(1000);
        CHECK(counters[i] > before[i], "child %d did not run after SIGCONT", i);
        kill(kids[i], SIGKILL);
        int st;
        CHECK(waitpid(kids[i], &st, 0) == kids[i] && WIFSIGNALED(st), "reaping child %d", i);
    }
    ok("children stopped by SIGSTOP and SIGTSTP stayed stopped (counters %lu, %lu) and ran after SIGCONT",
       before[0], before[1]);
}
