/*
 * anon_memory.c - anonymous memory survives checkpoint/restart.
 *
 * Before "ready": a 64 MiB malloc'ed buffer filled with a pattern, a 16 MiB
 * private anonymous mmap filled with another one, a 32 MiB sparse mapping of
 * which only every 7th page was touched (the others must still read as zero),
 * and a 1 MiB region made read-only after filling. After the release line:
 * every byte is checked, protections are compared with /proc/self/maps, and
 * all regions must still be writable (except the read-only one) afterwards.
 */
#include "common.h"
#include <sys/mman.h>

#define MiB (1024UL * 1024UL)
#define PAGE 4096UL

int main(void)
{
    size_t big_n = 64 * MiB / 8, map_n = 16 * MiB / 8, ro_n = 1 * MiB / 8;
    size_t sparse_len = 32 * MiB;

    uint64_t *big = malloc(big_n * 8);
    CHECK(big, "malloc 64 MiB");
    fill_pattern(big, big_n, 1);

    uint64_t *map = mmap(NULL, map_n * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(map != MAP_FAILED, "mmap 16 MiB: %s", strerror(errno));
    fill_pattern(map, map_n, 2);

    unsigned char *sparse = mmap(NULL, sparse_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(sparse != MAP_FAILED, "mmap sparse: %s", strerror(errno));
    for (size_t off = 0; off < sparse_len; off += 7 * PAGE)
        sparse[off + (off / PAGE) % PAGE] = (unsigned char)(0x5A ^ (off / PAGE));

    uint64_t *ro = mmap(NULL, ro_n * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(ro != MAP_FAILED, "mmap ro: %s", strerror(errno));
    fill_pattern(ro, ro_n, 3);
    CHECK(mprotect(ro, ro_n * 8, PROT_READ) == 0, "mprotect: %s", strerror(errno));

    char perms_map[5], perms_ro[5], perms_sparse[5];
    CHECK(mapping_perms(map, perms_map) == 0, "mapping of map not in /proc/self/maps");
    CHECK(mapping_perms(ro, perms_ro) == 0, "mapping of ro not in /proc/self/maps");
    CHECK(mapping_perms(sparse, perms_sparse) == 0, "mapping of sparse not in /proc/self/maps");

    ready();
    wait_release();

    size_t bad;
    if ((bad = check_pattern(big, big_n, 1)) != big_n)
        fail("malloc buffer differs at word %zu", bad);
    if ((bad = check_pattern(map, map_n, 2)) != map_n)
        fail("mmap region differs at word %zu", bad);
    if ((bad = check_pattern(ro, ro_n, 3)) != ro_n)
        fail("read-only region differs at word %zu", bad);
    for (size_t off = 0; off < sparse_len; off++) {
        size_t page = off / PAGE;
        unsigned char want = 0;
        if (page % 7 == 0 && off % PAGE == page % PAGE)
            want = (unsigned char)(0x5A ^ page);
        if (sparse[off] != want)
            fail("sparse mapping byte %zu is %u, expected %u", off, sparse[off], want);
    }

    char p[5];
    CHECK(mapping_perms(map, p) == 0 && strcmp(p, perms_map) == 0, "mmap region perms changed (was %s)", perms_map);
    CHECK(mapping_perms(ro, p) == 0 && strcmp(p, perms_ro) == 0, "read-only region perms changed (was %s)", perms_ro);
    CHECK(mapping_perms(sparse, p) == 0 && strcmp(p, perms_sparse) == 0, "sparse region perms changed (was %s)", perms_sparse);

    /* Still writable, and writes stick. */
    for (size_t i = 0; i < big_n; i += 512)
        big[i] = ~big[i];
    for (size_t i = 0; i < map_n; i += 512)
        map[i] = ~map[i];
    for (size_t i = 0; i < big_n; i += 512)
        CHECK(big[i] == ~pattern64(1, i), "write to malloc buffer lost");
    for (size_t i = 0; i < map_n; i += 512)
        CHECK(map[i] == ~pattern64(2, i), "write to mmap region lost");
    memset(sparse, 0xEE, sparse_len);
    CHECK(sparse[sparse_len - 1] == 0xEE, "write to sparse region lost");

    ok("anonymous memory intact: 64 MiB malloc, 16 MiB mmap, sparse 32 MiB, read-only 1 MiB (%s)", perms_ro);
}
