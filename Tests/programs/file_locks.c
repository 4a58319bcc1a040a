/*
 * file_locks.c - advisory locks are held again after resume.
 *
 * Before "ready" the process takes an exclusive flock on locks.a (shared
 * with a forked child through the inherited descriptor), a POSIX write lock
 * on bytes 10-29 of locks.b and a POSIX read lock from byte 100 to the end,
 * and an OFD read lock on all of locks.c. After the release line a new
 * process (which does not share any of them) checks that each lock
 * conflicts as it should, names the right owner, and that unlocked ranges
 * are free.
 */
#include "common.h"
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>

static int lock_query(int fd, int cmd, short type, off_t start, off_t len, struct flock *out)
{
    memset(out, 0, sizeof *out);
    out->l_type = type;
    out->l_whence = SEEK_SET;
    out->l_start = start;
    out->l_len = len;
    return fcntl(fd, cmd, out);
}

/* Runs in a separate process: exits 0 if every lock of `owner` is seen. */
static void check_from_outside(pid_t owner)
{
    struct flock fl;
    int a = open("locks.a", O_RDWR);
    CHECK(a >= 0, "open locks.a");
    CHECK(flock(a, LOCK_SH | LOCK_NB) == -1 && errno == EWOULDBLOCK, "the flock on locks.a is not held");

    int b = open("locks.b", O_RDWR);
    CHECK(b >= 0, "open locks.b");
    CHECK(lock_query(b, F_GETLK, F_RDLCK, 15, 1, &fl) == 0, "F_GETLK");
    CHECK(fl.l_type == F_WRLCK && fl.l_start == 10 && fl.l_len == 20 && fl.l_pid == owner,
          "POSIX write lock on bytes 10-29 of locks.b: type %d start %ld len %ld pid %d (owner %d)",
          fl.l_type, (long)fl.l_start, (long)fl.l_len, fl.l_pid, owner);
    CHECK(lock_query(b, F_GETLK, F_WRLCK, 40, 10, &fl) == 0 && fl.l_type == F_UNLCK,
          "bytes 40-49 of locks.b are locked (type %d), they were not", fl.l_type);
    CHECK(lock_query(b, F_GETLK, F_RDLCK, 200, 10, &fl) == 0 && fl.l_type == F_UNLCK,
          "a read lock at byte 200 of locks.b conflicts; it is under a read lock only");
    CHECK(lock_query(b, F_GETLK, F_WRLCK, 5000, 1, &fl) == 0 && fl.l_type == F_RDLCK && fl.l_start == 100
          && fl.l_len == 0 && fl.l_pid == owner,
          "POSIX read lock from byte 100 to the end of locks.b: type %d start %ld len %ld pid %d",
          fl.l_type, (long)fl.l_start, (long)fl.l_len, fl.l_pid);

    int c = open("locks.c", O_RDWR);
    CHECK(c >= 0, "open locks.c");
    CHECK(lock_query(c, F_OFD_GETLK, F_WRLCK, 0, 0, &fl) == 0 && fl.l_type == F_RDLCK,
          "the OFD read lock on locks.c is not held (type %d)", fl.l_type);
    CHECK(lock_query(c, F_OFD_GETLK, F_RDLCK, 0, 0, &fl) == 0 && fl.l_type == F_UNLCK,
          "a read lock on locks.c conflicts with a read lock");
    exit(0);
}

int main(void)
{
    int a = open("locks.a", O_RDWR | O_CREAT | O_TRUNC, 0644);
    int b = open("locks.b", O_RDWR | O_CREAT | O_TRUNC, 0644);
    int c = open("locks.c", O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(a >= 0 && b >= 0 && c >= 0, "open: %s", strerror(errno));
    CHECK(flock(a, LOCK_EX | LOCK_NB) == 0, "flock: %s", strerror(errno));
    struct flock fl;
    CHECK(lock_query(b, F_SETLK, F_WRLCK, 10, 20, &fl) == 0, "F_SETLK write: %s", strerror(errno));
    CHECK(lock_query(b, F_SETLK, F_RDLCK, 100, 0, &fl) == 0, "F_SETLK read: %s", strerror(errno));
    CHECK(lock_query(c, F_OFD_SETLK, F_RDLCK, 0, 0, &fl) == 0, "F_OFD_SETLK: %s", strerror(errno));
    /* A child holding the flock'ed descriptor too (it shares the lock). */
    pid_t holder = fork();
    CHECK(holder >= 0, "fork");
    if (holder == 0) {
        for (;;)
            pause();
    }

    ready();
    wait_release();

    pid_t me = getpid();
    pid_t checker = fork();
    CHECK(checker >= 0, "fork");
    if (checker == 0)
        check_from_outside(me);
    int st;
    CHECK(waitpid(checker, &st, 0) == checker, "waitpid");
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "a lock was missing (see FAIL above)");
    kill(holder, SIGKILL);
    waitpid(holder, &st, 0);
    ok("flock, POSIX record locks and an OFD lock are held, with their ranges and owner");
}
