/*
 * guard_page.c - a PROT_NONE guard page between two read-write regions is
 * still a guard after restart.
 *
 * One 3-page mapping: page 0 and 2 read-write with contents, page 1
 * PROT_NONE. Before "ready" the program checks that touching the guard
 * faults (SIGSEGV handler + sigsetjmp). After the release line: contents of
 * pages 0 and 2 intact, /proc/self/maps shows ---p for the guard, and
 * touching it (read and write) still raises SIGSEGV at the guard address.
 */
#include "common.h"
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>

#define PAGE 4096

static sigjmp_buf jump;
static volatile void *fault_addr;
static volatile int faults;

static void on_segv(int sig, siginfo_t *si, void *ctx)
{
    (void)sig; (void)ctx;
    fault_addr = si->si_addr;
    faults++;
    siglongjmp(jump, 1);
}

/* Returns 1 if accessing p faulted (and at p). */
static int touch_faults(volatile unsigned char *p, int write)
{
    fault_addr = NULL;
    if (sigsetjmp(jump, 1) == 0) {
        if (write)
            *p = 1;
        else
            (void)*p;
        return 0;
    }
    return fault_addr == (void *)p;
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGSEGV, &sa, NULL) == 0, "sigaction");

    unsigned char *m = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED, "mmap");
    for (int i = 0; i < PAGE; i++) {
        m[i] = (unsigned char)(i * 7);
        m[2 * PAGE + i] = (unsigned char)(i * 13);
    }
    CHECK(mprotect(m + PAGE, PAGE, PROT_NONE) == 0, "mprotect guard");
    CHECK(touch_faults(m + PAGE + 100, 0), "guard page did not fault before checkpoint");

    ready();
    wait_release();

    for (int i = 0; i < PAGE; i++) {
        CHECK(m[i] == (unsigned char)(i * 7), "page before the guard differs at %d", i);
        CHECK(m[2 * PAGE + i] == (unsigned char)(i * 13), "page after the guard differs at %d", i);
    }
    char perms[5];
    CHECK(mapping_perms(m + PAGE, perms) == 0, "guard page is not in /proc/self/maps");
    CHECK(strcmp(perms, "---p") == 0, "guard page perms are %s, expected ---p", perms);
    CHECK(mapping_perms(m, perms) == 0 && strcmp(perms, "rw-p") == 0, "page before the guard is not rw-p");
    CHECK(mapping_perms(m + 2 * PAGE, perms) == 0 && strcmp(perms, "rw-p") == 0, "page after the guard is not rw-p");
    int before = faults;
    CHECK(touch_faults(m + PAGE + 5, 0), "reading the guard page did not SIGSEGV at its address after resume");
    CHECK(touch_faults(m + 2 * PAGE - 1, 1), "writing the guard page did not SIGSEGV at its address after resume");
    CHECK(faults == before + 2, "expected 2 faults, got %d", faults - before);
    m[0] = 1;
    m[2 * PAGE] = 2;
    ok("guard page still faults after resume; neighbours intact and writable");
}
