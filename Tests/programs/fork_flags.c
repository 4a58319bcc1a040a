/*
 * fork_flags.c - areas with madvise() fork advice survive checkpoint/restart,
 * contents and advice both.
 *
 * Before "ready": 32 MiB of ordinary memory (so ghost reads memory from a
 * forked snapshot), 2 MiB with MADV_DONTFORK and 2 MiB with MADV_WIPEONFORK,
 * each filled with its own pattern. A forked snapshot does not hold the
 * last two as they are, so ghost must read them from the job itself.
 * After the release line: every byte is checked, /proc/self/smaps must show
 * the advice again (VmFlags dc / wf), and a forked child must see the
 * WIPEONFORK area zeroed and the DONTFORK area absent.
 */
#include "common.h"
#include <sys/mman.h>
#include <sys/wait.h>

#define MiB (1024UL * 1024UL)

/* Whether /proc/self/smaps shows VmFlags `flag` for the area holding addr. */
static int has_vmflag(const void *addr, const char *flag)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return -1;
    char line[512];
    int in = 0, found = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            in = lo <= (unsigned long)addr && (unsigned long)addr < hi;
        } else if (in && strncmp(line, "VmFlags:", 8) == 0) {
            char want[8];
            snprintf(want, sizeof want, " %s", flag);
            for (char *p = strstr(line, want); p; p = strstr(p + 1, want))
                if (p[strlen(want)] == ' ' || p[strlen(want)] == '\n')
                    found = 1;
            break;
        }
    }
    fclose(f);
    return found;
}

int main(void)
{
    size_t big_n = 32 * MiB / 8, n = 2 * MiB / 8;
    uint64_t *big = malloc(big_n * 8);
    CHECK(big, "malloc");
    fill_pattern(big, big_n, 11);

    uint64_t *dc = mmap(NULL, n * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint64_t *wf = mmap(NULL, n * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(dc != MAP_FAILED && wf != MAP_FAILED, "mmap: %s", strerror(errno));
    CHECK(madvise(dc, n * 8, MADV_DONTFORK) == 0, "MADV_DONTFORK: %s", strerror(errno));
    CHECK(madvise(wf, n * 8, MADV_WIPEONFORK) == 0, "MADV_WIPEONFORK: %s", strerror(errno));
    fill_pattern(dc, n, 12);
    fill_pattern(wf, n, 13);
    CHECK(has_vmflag(dc, "dc") == 1 && has_vmflag(wf, "wf") == 1, "VmFlags do not show the advice before the checkpoint");

    ready();
    wait_release();

    size_t bad;
    if ((bad = check_pattern(big, big_n, 11)) != big_n)
        fail("ordinary memory differs at word %zu", bad);
    if ((bad = check_pattern(dc, n, 12)) != n)
        fail("MADV_DONTFORK area differs at word %zu", bad);
    if ((bad = check_pattern(wf, n, 13)) != n)
        fail("MADV_WIPEONFORK area differs at word %zu", bad);
    if (has_vmflag(dc, "dc") != 1)
        fail("MADV_DONTFORK is gone after the restart");
    if (has_vmflag(wf, "wf") != 1)
        fail("MADV_WIPEONFORK is gone after the restart");

    pid_t child = fork();
    CHECK(child >= 0, "fork: %s", strerror(errno));
    if (child == 0) {
        for (size_t i = 0; i < n; i++)
            if (wf[i] != 0)
                _exit(2);       /* not wiped in the child */
        char perms[5];
        _exit(mapping_perms(dc, perms) == 0 ? 3 : 0);   /* the child must not have it */
    }
    int st = 0;
    CHECK(waitpid(child, &st, 0) == child, "waitpid: %s", strerror(errno));
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail("a child forked after the restart got %s", WEXITSTATUS(st) == 2 ? "the WIPEONFORK area unwiped"
             : WEXITSTATUS(st) == 3 ? "the DONTFORK area" : "killed");
    printf("ok fork advice intact\n");
    return 0;
}
