/*
 * closed_files.c - files the job created and closed come back if they were
 * deleted after the checkpoint.
 *
 * Before "ready" it writes and closes, in its working directory, stage1.o
 * (200000 pattern bytes), empty.flag (empty) and notes.txt, and in $TMPDIR
 * a mkstemp file of 50000 pattern bytes (its path is printed as "temp
 * PATH"), like a compiler driver between compiling and linking. After the
 * release line it reads them back and checks every byte.
 */
#include "common.h"
#include <fcntl.h>
#include <sys/stat.h>

static void write_file_pattern(int fd, size_t n, uint64_t seed)
{
    uint64_t *buf = malloc(n + 8);
    CHECK(buf != NULL, "malloc");
    fill_pattern(buf, n / 8 + 1, seed);
    CHECK(write(fd, buf, n) == (ssize_t)n, "write: %s", strerror(errno));
    free(buf);
}

static void check_file(const char *path, size_t n, uint64_t seed)
{
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0, "%s is gone after resume: %s", path, strerror(errno));
    uint64_t *want = malloc(n + 8), *got = malloc(n + 8);
    CHECK(want && got, "malloc");
    fill_pattern(want, n / 8 + 1, seed);
    ssize_t r = read(fd, got, n + 8);
    CHECK(r == (ssize_t)n, "%s holds %zd bytes, expected %zu", path, r, n);
    CHECK(memcmp(want, got, n) == 0, "%s has other bytes than the job wrote", path);
    close(fd);
    free(want);
    free(got);
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    CHECK(tmp != NULL, "TMPDIR is not set");
    int fd = open("stage1.o", O_WRONLY | O_CREAT | O_TRUNC, 0640);
    CHECK(fd >= 0, "create stage1.o");
    write_file_pattern(fd, 200000, 1);
    close(fd);
    fd = open("empty.flag", O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0, "create empty.flag");
    close(fd);
    fd = open("notes.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0 && write(fd, "job notes\n", 10) == 10, "write notes.txt");
    close(fd);
    char temp[4096];
    snprintf(temp, sizeof temp, "%s/ccXXXXXX", tmp);
    fd = mkstemp(temp);
    CHECK(fd >= 0, "mkstemp: %s", strerror(errno));
    write_file_pattern(fd, 50000, 2);
    close(fd);
    say("temp %s", temp);

    ready();
    wait_release();

    check_file("stage1.o", 200000, 1);
    check_file(temp, 50000, 2);
    struct stat st;
    CHECK(stat("empty.flag", &st) == 0 && st.st_size == 0, "empty.flag is gone or not empty");
    CHECK(stat("stage1.o", &st) == 0 && (st.st_mode & 07777) == 0640, "stage1.o lost its mode (%o)", st.st_mode & 07777);
    ok("closed files in the working directory and TMPDIR are there with their bytes");
}
