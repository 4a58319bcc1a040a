/*
 * sparse_reserve.c - huge sparse reservations, as AddressSanitizer, the JVM
 * and V8 make them: a 2 TiB read-write MAP_NORESERVE area with a few
 * scattered pages written (a sanitizer's shadow memory), and a 1 TiB
 * PROT_NONE reservation with a few pages made read-write inside (a heap
 * committed piece by piece).
 * Checkpointing must not cost in proportion to the reserved size (write
 * tracking must not arm them: its markers take page tables of 1/512 of the
 * area), and resuming must map them again without meeting the overcommit
 * limit. Prints its page-table size (VmPTE) on "ready" and after the
 * release; after the release checks every written page and the layout.
 */
#include "common.h"
#include <sys/mman.h>

#define PAGE 4096UL
#define SHADOW (2UL << 40)
#define RESERVE (1UL << 40)

static long vm_pte_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmPTE: %ld", &kb) == 1) break;
    if (f) fclose(f);
    return kb;
}

static unsigned char pattern(unsigned long i, unsigned long j) { return (unsigned char)(i * 131 + j * 7 + 1); }

int main(void) {
    unsigned char *shadow = mmap(NULL, SHADOW, PROT_READ | PROT_WRITE,
                                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    CHECK(shadow != MAP_FAILED, "mmap of the 2 TiB shadow: %s", strerror(errno));
    unsigned char *heap = mmap(NULL, RESERVE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    CHECK(heap != MAP_FAILED, "mmap of the 1 TiB reservation: %s", strerror(errno));
    /* 4096 pages spread over the whole shadow, 1 GiB apart, each with its own bytes. */
    for (unsigned long i = 0; i < 2048; i++)
        for (unsigned long j = 0; j < PAGE; j += 512) shadow[i * (1UL << 30) + j] = pattern(i, j);
    /* 16 MiB committed in the middle of the reservation. */
    unsigned char *piece = heap + RESERVE / 2;
    CHECK(mprotect(piece, 16UL << 20, PROT_READ | PROT_WRITE) == 0, "mprotect: %s", strerror(errno));
    for (unsigned long k = 0; k < (16UL << 20); k += PAGE) piece[k] = (unsigned char)(k >> 12);
    say("ready vmpte_kb=%ld", vm_pte_kb());
    wait_release();

    for (unsigned long i = 0; i < 2048; i++)
        for (unsigned long j = 0; j < PAGE; j += 512)
            CHECK(shadow[i * (1UL << 30) + j] == pattern(i, j), "shadow page %lu byte %lu differs", i, j);
    for (unsigned long k = 0; k < (16UL << 20); k += PAGE)
        CHECK(piece[k] == (unsigned char)(k >> 12), "committed page %lu differs", k / PAGE);
    char perms[5];
    CHECK(mapping_perms(heap, perms) == 0 && strcmp(perms, "---p") == 0, "the reservation's start is not ---p");
    CHECK(mapping_perms(piece, perms) == 0 && strcmp(perms, "rw-p") == 0, "the committed piece is not rw-p");
    CHECK(mapping_perms(shadow + SHADOW - PAGE, perms) == 0 && strcmp(perms, "rw-p") == 0, "the shadow's end is not rw-p");
    shadow[SHADOW - PAGE] = 1;   /* still writable, still not reserved */
    ok("sparse areas intact vmpte_kb=%ld", vm_pte_kb());
}
