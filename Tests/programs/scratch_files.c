/*
 * scratch_files.c - small files a job has open, as a compiler's temporary
 * files: "scratch.tmp" (written, kept open read-write) and "partial.out"
 * (being written, kept open write-only). "ready"; after the release line
 * checks through the descriptors and by path that both hold exactly what
 * they held at the checkpoint (the test deletes one and scribbles on the
 * other in between), then "ok".
 */
#include "common.h"
#include <fcntl.h>
#include <sys/stat.h>

static void fill(int fd, uint64_t seed, size_t words)
{
    static uint64_t buf[4096];
    fill_pattern(buf, words, seed);
    CHECK(write(fd, buf, words * 8) == (ssize_t)(words * 8), "write");
}

int main(void)
{
    int a = open("scratch.tmp", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    int b = open("partial.out", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(a >= 0 && b >= 0, "open: %s", strerror(errno));
    fill(a, 1, 3000);
    fill(b, 2, 1000);
    ready();
    wait_release();
    static uint64_t buf[4096];
    CHECK(pread(a, buf, 3000 * 8, 0) == 3000 * 8 && check_pattern(buf, 3000, 1) == 3000, "scratch.tmp through its fd");
    int again = open("scratch.tmp", O_RDONLY);
    CHECK(again >= 0, "scratch.tmp is gone by path");
    CHECK(read(again, buf, sizeof buf) == 3000 * 8 && check_pattern(buf, 3000, 1) == 3000, "scratch.tmp by path");
    struct stat st;
    CHECK(fstat(again, &st) == 0 && (st.st_mode & 0777) == 0640, "mode %o", st.st_mode & 0777);
    fill(b, 3, 10);   /* appends where it left off */
    int p = open("partial.out", O_RDONLY);
    CHECK(p >= 0 && read(p, buf, sizeof buf) == 1010 * 8, "partial.out size");
    CHECK(check_pattern(buf, 1000, 2) == 1000, "partial.out was not put back");
    ok("scratch files as they were");
}
