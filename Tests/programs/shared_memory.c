/*
 * shared_memory.c - a parent and a forked child that share memory five ways:
 * MAP_SHARED|MAP_ANONYMOUS, a memfd kept open (sealed, partly mapped, with a
 * page written only through the descriptor), a memfd whose descriptor was
 * closed, POSIX shm (shm_open NAME, argv[1]) and a disk file mapped shared
 * (argv[2]). Plus a private mapping of the memfd with a copied-on-write page.
 *
 * Parent and child ping-pong through a counter in every region: a region that
 * stopped being shared makes the parent wait in vain and fail. Three rounds
 * before "ready", three after the release line; then the parent checks the
 * pages each side wrote (some touched only by the child), the memfd's seals,
 * size and shared descriptor offset, and prints "ok".
 */
#include "common.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#define PAGE 4096
enum { ANON, MEMFD, MEMFD_CLOSED, SHM, DISK, NREGIONS };
static const char *names[NREGIONS] = { "shared anonymous", "memfd", "memfd (closed)", "POSIX shm", "shared file" };
static volatile int *region[NREGIONS];

static void wait_value(volatile int *p, int want, const char *what)
{
    for (int i = 0; i < 20000; i++) {   /* 20 s */
        if (__atomic_load_n(p, __ATOMIC_SEQ_CST) == want)
            return;
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
    }
    fail("%s: waited in vain for %d (saw %d): not shared any more", what, want, *p);
}

static void child(void)
{
    /* Pages only the child touches. */
    fill_pattern((uint64_t *)((char *)region[ANON] + 10 * PAGE), PAGE / 8, 21);
    fill_pattern((uint64_t *)((char *)region[MEMFD_CLOSED] + 2 * PAGE), PAGE / 8, 22);
    for (int k = 1;; k++) {
        for (int r = 0; r < NREGIONS; r++) {
            int v;
            while ((v = __atomic_load_n(&region[r][0], __ATOMIC_SEQ_CST)) != k && v != -1) {
                struct timespec ts = { 0, 1000000 };
                nanosleep(&ts, NULL);
            }
            if (v == -1)
                _exit(0);
            __atomic_store_n(&region[r][1], k, __ATOMIC_SEQ_CST);
        }
    }
}

static void round_trip(int k)
{
    for (int r = 0; r < NREGIONS; r++) {
        __atomic_store_n(&region[r][0], k, __ATOMIC_SEQ_CST);
        wait_value(&region[r][1], k, names[r]);
    }
}

static void *map(int fd, size_t len, off_t off, int flags)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, flags, fd, off);
    CHECK(p != MAP_FAILED, "mmap: %s", strerror(errno));
    return p;
}

int main(int argc, char **argv)
{
    CHECK(argc == 3, "usage: shared_memory SHM_NAME DISK_FILE");
    region[ANON] = map(-1, 16 * PAGE, 0, MAP_SHARED | MAP_ANONYMOUS);
    fill_pattern((uint64_t *)((char *)region[ANON] + PAGE), 7 * PAGE / 8, 11);

    int mfd = memfd_create("ghost-test", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    CHECK(mfd >= 0, "memfd_create: %s", strerror(errno));
    CHECK(ftruncate(mfd, 16 * PAGE) == 0, "ftruncate");
    region[MEMFD] = map(mfd, 8 * PAGE, 0, MAP_SHARED);     /* pages 0-7 mapped, 8-15 not */
    fill_pattern((uint64_t *)((char *)region[MEMFD] + 3 * PAGE), PAGE / 8, 12);
    static uint64_t page12[PAGE / 8];
    fill_pattern(page12, PAGE / 8, 13);
    CHECK(pwrite(mfd, page12, PAGE, 12 * PAGE) == PAGE, "pwrite page 12");
    CHECK(fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) == 0, "seal: %s", strerror(errno));
    CHECK(lseek(mfd, 100, SEEK_SET) == 100, "lseek");
    /* A private copy of the memfd's first pages: page 1 copied on write. */
    uint64_t *priv = map(mfd, 4 * PAGE, 0, MAP_PRIVATE);
    fill_pattern(priv + PAGE / 8, PAGE / 8, 14);

    int cfd = memfd_create("closed", MFD_CLOEXEC);
    CHECK(cfd >= 0 && ftruncate(cfd, 4 * PAGE) == 0, "memfd 2");
    region[MEMFD_CLOSED] = map(cfd, 4 * PAGE, 0, MAP_SHARED);
    close(cfd);

    int sfd = shm_open(argv[1], O_RDWR | O_CREAT | O_EXCL, 0600);
    CHECK(sfd >= 0, "shm_open %s: %s", argv[1], strerror(errno));
    CHECK(ftruncate(sfd, 8 * PAGE) == 0, "ftruncate shm");
    region[SHM] = map(sfd, 8 * PAGE, 0, MAP_SHARED);
    fill_pattern((uint64_t *)((char *)region[SHM] + 5 * PAGE), PAGE / 8, 15);

    int dfd = open(argv[2], O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(dfd >= 0 && ftruncate(dfd, 4 * PAGE) == 0, "disk file %s", argv[2]);
    region[DISK] = map(dfd, 4 * PAGE, 0, MAP_SHARED);
    close(dfd);
    fill_pattern((uint64_t *)((char *)region[DISK] + 2 * PAGE), PAGE / 8, 16);

    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0)
        child();
    for (int k = 1; k <= 3; k++)
        round_trip(k);
    ready();
    wait_release();
    for (int k = 4; k <= 6; k++)
        round_trip(k);

    CHECK(check_pattern((uint64_t *)((char *)region[ANON] + PAGE), 7 * PAGE / 8, 11) == 7 * PAGE / 8, "anon pages");
    CHECK(check_pattern((uint64_t *)((char *)region[ANON] + 10 * PAGE), PAGE / 8, 21) == PAGE / 8, "anon page of the child");
    CHECK(check_pattern((uint64_t *)((char *)region[MEMFD] + 3 * PAGE), PAGE / 8, 12) == PAGE / 8, "memfd mapped page");
    static uint64_t back[PAGE / 8];
    CHECK(pread(mfd, back, PAGE, 12 * PAGE) == PAGE && check_pattern(back, PAGE / 8, 13) == PAGE / 8,
          "memfd page written only through the descriptor");
    CHECK(pread(mfd, back, PAGE, 3 * PAGE) == PAGE && check_pattern(back, PAGE / 8, 12) == PAGE / 8,
          "memfd descriptor and mapping disagree");
    CHECK(lseek(mfd, 0, SEEK_CUR) == 100, "memfd offset %ld", (long)lseek(mfd, 0, SEEK_CUR));
    CHECK(fcntl(mfd, F_GET_SEALS) == (F_SEAL_SHRINK | F_SEAL_GROW), "seals %#x", fcntl(mfd, F_GET_SEALS));
    CHECK(ftruncate(mfd, PAGE) != 0, "a sealed memfd shrank");
    CHECK(check_pattern(priv + PAGE / 8, PAGE / 8, 14) == PAGE / 8, "private copy of the memfd");
    CHECK(((volatile int *)priv)[0] == 6 && ((volatile int *)priv)[1] == 6, "private mapping no longer reads the memfd (%d %d)",
          ((volatile int *)priv)[0], ((volatile int *)priv)[1]);
    CHECK(check_pattern((uint64_t *)((char *)region[MEMFD_CLOSED] + 2 * PAGE), PAGE / 8, 22) == PAGE / 8, "closed memfd page of the child");
    CHECK(check_pattern((uint64_t *)((char *)region[SHM] + 5 * PAGE), PAGE / 8, 15) == PAGE / 8, "shm page");
    struct stat st;
    CHECK(fstat(sfd, &st) == 0 && st.st_size == 8 * PAGE, "shm size");
    CHECK(check_pattern((uint64_t *)((char *)region[DISK] + 2 * PAGE), PAGE / 8, 16) == PAGE / 8, "disk file page");

    for (int r = 0; r < NREGIONS; r++)
        __atomic_store_n(&region[r][0], -1, __ATOMIC_SEQ_CST);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
    shm_unlink(argv[1]);
    ok("memory shared five ways is still shared");
}
