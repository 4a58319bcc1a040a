/*
 * dontfork_reserve.c - a large address-space reservation that holds no page,
 * as language runtimes make (V8's pointer cage, Java's heap reservation):
 * 256 MiB PROT_NONE, MAP_NORESERVE, marked MADV_DONTFORK; beside it 64 MiB
 * of ordinary memory, written, so that ghost arms write tracking ahead of
 * the freeze. A checkpoint must store (and read) only the written memory.
 *
 * prints "ready", waits for the release line, checks its memory, prints
 * "ok reserve intact" (and the reservation is still PROT_NONE: a write to
 * it would fault; not tried).
 */
#include "common.h"
#include <sys/mman.h>

#define MIB (1024UL * 1024UL)

int main(void)
{
    size_t reserve = 256 * MIB, data = 64 * MIB;
    char *r = mmap(NULL, reserve, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    CHECK(r != MAP_FAILED, "mmap reserve: %s", strerror(errno));
    CHECK(madvise(r, reserve, MADV_DONTFORK) == 0, "madvise: %s", strerror(errno));
    unsigned char *d = mmap(NULL, data, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(d != MAP_FAILED, "mmap data: %s", strerror(errno));
    for (size_t i = 0; i < data; i += 4096) d[i] = (unsigned char)(i >> 12);
    ready();
    wait_release();
    for (size_t i = 0; i < data; i += 4096)
        CHECK(d[i] == (unsigned char)(i >> 12), "data page %zu holds %u", i >> 12, d[i]);
    printf("ok reserve intact\n");
    return 0;
}
