/*
 * deleted_files.c - files deleted while the job uses them, which ghost must
 * store because nothing can reopen them:
 *   - tmpfile() (O_TMPFILE, never had a name) with data and an offset, shared
 *     with a forked child;
 *   - a file opened, mapped shared, then unlinked (descriptor kept): a write
 *     through the mapping is seen through the descriptor;
 *   - a file mapped shared, closed and unlinked (only the mapping is left);
 *   - a file mapped privately with one page copied on write, unlinked,
 *     descriptor kept.
 * "ready", wait for the release line, check everything, "ok".
 * With argument "private-only": only a private mapping of a deleted file and
 * no descriptor (ghost must refuse that checkpoint clearly).
 */
#include "common.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define PAGE 4096

static int make_file(const char *name, size_t pages, uint64_t seed)
{
    int fd = open(name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(fd >= 0, "open %s: %s", name, strerror(errno));
    static uint64_t buf[PAGE / 8];
    for (size_t p = 0; p < pages; p++) {
        fill_pattern(buf, PAGE / 8, seed + p);
        CHECK(write(fd, buf, PAGE) == PAGE, "write %s", name);
    }
    return fd;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "private-only") == 0) {
        int fd = make_file("private-only.dat", 2, 90);
        uint64_t *p = mmap(NULL, 2 * PAGE, PROT_READ, MAP_PRIVATE, fd, 0);
        CHECK(p != MAP_FAILED, "mmap");
        close(fd);
        unlink("private-only.dat");
        ready();
        wait_release();
        ok("still running, page %s", check_pattern(p, PAGE / 8, 90) == PAGE / 8 ? "intact" : "damaged");
        return 0;
    }
    FILE *tmp = tmpfile();
    CHECK(tmp != NULL, "tmpfile: %s", strerror(errno));
    int tfd = fileno(tmp);
    static uint64_t buf[PAGE / 8];
    for (int p = 0; p < 25; p++) {
        fill_pattern(buf, PAGE / 8, 10 + p);
        CHECK(write(tfd, buf, PAGE) == PAGE, "write tmpfile");
    }
    CHECK(lseek(tfd, 12345, SEEK_SET) == 12345, "lseek");

    int sfd = make_file("shared.dat", 3, 40);
    uint64_t *shared = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, sfd, 0);
    CHECK(shared != MAP_FAILED, "mmap shared");
    unlink("shared.dat");

    int ofd = make_file("only-mapped.dat", 2, 50);
    uint64_t *only = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, ofd, 0);
    CHECK(only != MAP_FAILED, "mmap only");
    close(ofd);
    unlink("only-mapped.dat");

    int pfd = make_file("private.dat", 2, 60);
    uint64_t *priv = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, pfd, 0);
    CHECK(priv != MAP_FAILED, "mmap private");
    fill_pattern(priv + PAGE / 8, PAGE / 8, 61000);     /* page 1 copied on write */
    unlink("private.dat");

    int hold[2];
    CHECK(pipe(hold) == 0, "pipe");
    pid_t child = fork();     /* shares the tmpfile and the mappings */
    CHECK(child >= 0, "fork");
    if (child == 0) {
        char c;
        close(hold[1]);
        while (read(hold[0], &c, 1) > 0) {}
        _exit(0);
    }
    close(hold[0]);
    ready();
    wait_release();

    CHECK(lseek(tfd, 0, SEEK_CUR) == 12345, "tmpfile offset %ld", (long)lseek(tfd, 0, SEEK_CUR));
    for (int p = 0; p < 25; p++) {
        CHECK(pread(tfd, buf, PAGE, (off_t)p * PAGE) == PAGE, "read tmpfile");
        CHECK(check_pattern(buf, PAGE / 8, 10 + p) == PAGE / 8, "tmpfile page %d", p);
    }
    for (int p = 0; p < 3; p++)
        CHECK(check_pattern(shared + p * PAGE / 8, PAGE / 8, 40 + p) == PAGE / 8, "shared mapping page %d", p);
    fill_pattern(shared + PAGE / 8, PAGE / 8, 4444);
    CHECK(pread(sfd, buf, PAGE, PAGE) == PAGE && check_pattern(buf, PAGE / 8, 4444) == PAGE / 8,
          "a write through the mapping is not seen through the descriptor");
    for (int p = 0; p < 2; p++)
        CHECK(check_pattern(only + p * PAGE / 8, PAGE / 8, 50 + p) == PAGE / 8, "mapped-only page %d", p);
    CHECK(check_pattern(priv, PAGE / 8, 60) == PAGE / 8, "private mapping, file page");
    CHECK(check_pattern(priv + PAGE / 8, PAGE / 8, 61000) == PAGE / 8, "private mapping, copied page");
    CHECK(pread(pfd, buf, PAGE, PAGE) == PAGE && check_pattern(buf, PAGE / 8, 61) == PAGE / 8,
          "the private copy leaked into the file");
    close(hold[1]);
    int st = 0;
    CHECK(waitpid(child, &st, 0) == child && WIFEXITED(st), "child");
    ok("deleted files came back");
}
