/*
 * file_mapping.c - written pages of a private file mapping, and the global
 * data of the executable, survive checkpoint/restart.
 *
 * Usage: file_mapping DIR
 * Before "ready": writes DIR/mapped.bin (1 MiB of pattern), maps it
 * MAP_PRIVATE read-write and overwrites some of its pages (copy-on-write:
 * the file itself is not changed), leaving the others untouched; modifies
 * an initialised global array (.data) and a zero-initialised one (.bss).
 * After the release line: written pages hold the new bytes, unwritten pages
 * still show the file, the file on disk is unchanged, both globals are right.
 */
#include "common.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define FILE_LEN (1024 * 1024)
#define PAGE 4096
#define NPAGES (FILE_LEN / PAGE)

/* .data: initialised, 256 KiB, so some of its pages are only read. */
static uint32_t data_array[65536] = { 1, 2, 3, 4, 5, 6, 7, 8, [65535] = 0xDEADBEEF };
/* .bss */
static uint64_t bss_array[32768];

static unsigned char file_byte(size_t off) { return (unsigned char)(pattern64(42, off / 8) >> (8 * (off % 8))); }
static unsigned char new_byte(size_t off) { return (unsigned char)(file_byte(off) ^ 0xA5 ^ (off >> 12)); }
static int page_written(size_t page) { return page % 3 == 0 || page == NPAGES - 1; }

int main(int argc, char **argv)
{
    CHECK(argc == 2, "usage: file_mapping DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/mapped.bin", argv[1]);

    unsigned char *buf = malloc(FILE_LEN);
    CHECK(buf, "malloc");
    for (size_t i = 0; i < FILE_LEN; i++)
        buf[i] = file_byte(i);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
    CHECK(write(fd, buf, FILE_LEN) == FILE_LEN, "write %s: %s", path, strerror(errno));
    CHECK(fsync(fd) == 0, "fsync");

    unsigned char *map = mmap(NULL, FILE_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    CHECK(map != MAP_FAILED, "mmap %s: %s", path, strerror(errno));
    close(fd); /* the mapping keeps the file */
    for (size_t p = 0; p < NPAGES; p++) {
        if (page_written(p)) {
            for (size_t i = p * PAGE; i < (p + 1) * PAGE; i++)
                map[i] = new_byte(i);
        } else {
            volatile unsigned char c = map[p * PAGE]; /* read only: page cached, not copied */
            (void)c;
        }
    }
    for (size_t i = 0; i < 65536; i += 2)
        data_array[i] = (uint32_t)(i * 2654435761u);
    for (size_t i = 0; i < 32768; i++)
        bss_array[i] = pattern64(7, i);

    ready();
    wait_release();

    for (size_t i = 0; i < FILE_LEN; i++) {
        unsigned char want = page_written(i / PAGE) ? new_byte(i) : file_byte(i);
        if (map[i] != want)
            fail("private mapping byte %zu (page %zu, %s) is 0x%02x, expected 0x%02x",
                 i, i / PAGE, page_written(i / PAGE) ? "written" : "unwritten", map[i], want);
    }
    fd = open(path, O_RDONLY);
    CHECK(fd >= 0, "reopen %s: %s", path, strerror(errno));
    CHECK(read(fd, buf, FILE_LEN) == FILE_LEN, "read back %s", path);
    close(fd);
    for (size_t i = 0; i < FILE_LEN; i++)
        CHECK(buf[i] == file_byte(i), "file %s changed on disk at byte %zu (private mapping leaked)", path, i);

    for (size_t i = 0; i < 65536; i++) {
        uint32_t want = (i % 2 == 0) ? (uint32_t)(i * 2654435761u)
                      : (i < 8 ? (uint32_t)(i + 1) : (i == 65535 ? 0xDEADBEEF : 0));
        if (data_array[i] != want)
            fail("global .data array[%zu] = 0x%x, expected 0x%x", i, data_array[i], want);
    }
    for (size_t i = 0; i < 32768; i++)
        CHECK(bss_array[i] == pattern64(7, i), "global .bss array[%zu] differs", i);

    /* The private mapping is still private and writable. */
    map[1] ^= 0xFF;
    CHECK(map[1] == (unsigned char)(new_byte(1) ^ 0xFF), "write to private mapping after resume lost");

    ok("private file mapping (%d of %d pages written) and global .data/.bss intact",
       (NPAGES + 2) / 3 + 1, NPAGES);
}
