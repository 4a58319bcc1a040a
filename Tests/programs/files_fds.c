/*
 * files_fds.c - open regular files survive checkpoint/restart with their
 * descriptor numbers, offsets, status flags and close-on-exec flags.
 *
 * Usage: files_fds DIR
 * Before "ready" (all files in DIR):
 *   input.txt      100000 bytes of text, opened O_RDONLY, 12345 bytes read
 *   append.log     O_WRONLY|O_APPEND|O_CREAT, 1000 bytes written
 *   data.bin       O_RDWR|O_CREAT|O_CLOEXEC, 5000 bytes written, lseek to 2000
 *   input.txt dup  dup(input) moved to fd 100: shares the offset with input
 *   nocloexec      O_RDONLY on input.txt, separate open file (own offset 7)
 * After the release line: same fd numbers (same inodes), offsets, access
 * modes and O_APPEND, FD_CLOEXEC exactly where it was; reading continues
 * where it stopped; the dup still shares its offset; appends land at the
 * end; a write at offset 2000 of data.bin overwrites in place.
 */
#include "common.h"
#include <fcntl.h>
#include <sys/stat.h>

#define INPUT_LEN 100000

static char input_byte(size_t i) { return (char)('a' + (pattern64(3, i / 8) >> (8 * (i % 8))) % 26); }

static void path_of(char *out, size_t n, const char *dir, const char *name) { snprintf(out, n, "%s/%s", dir, name); }

struct fdstate { int fd; off_t pos; int fl; int fdfl; ino_t ino; };

static struct fdstate state_of(int fd)
{
    struct fdstate s;
    struct stat st;
    s.fd = fd;
    s.pos = lseek(fd, 0, SEEK_CUR);
    s.fl = fcntl(fd, F_GETFL);
    s.fdfl = fcntl(fd, F_GETFD);
    s.ino = fstat(fd, &st) == 0 ? st.st_ino : 0;
    CHECK(s.fl >= 0 && s.fdfl >= 0 && s.ino != 0, "fd %d is not open: %s", fd, strerror(errno));
    return s;
}

static void same_state(const char *what, struct fdstate a, struct fdstate b)
{
    CHECK(a.ino == b.ino, "%s: fd %d now refers to inode %lu, was %lu", what, a.fd, (unsigned long)b.ino, (unsigned long)a.ino);
    CHECK(a.pos == b.pos, "%s: fd %d offset %lld after resume, was %lld", what, a.fd, (long long)b.pos, (long long)a.pos);
    CHECK((a.fl & (O_ACCMODE | O_APPEND)) == (b.fl & (O_ACCMODE | O_APPEND)),
          "%s: fd %d status flags %#x after resume, were %#x", what, a.fd, b.fl, a.fl);
    CHECK(a.fdfl == b.fdfl, "%s: fd %d FD_CLOEXEC is %d after resume, was %d", what, a.fd, b.fdfl & FD_CLOEXEC,
          a.fdfl & FD_CLOEXEC);
}

int main(int argc, char **argv)
{
    CHECK(argc == 2, "usage: files_fds DIR");
    char p_in[4096], p_app[4096], p_data[4096];
    path_of(p_in, sizeof p_in, argv[1], "input.txt");
    path_of(p_app, sizeof p_app, argv[1], "append.log");
    path_of(p_data, sizeof p_data, argv[1], "data.bin");

    static char text[INPUT_LEN];
    for (size_t i = 0; i < INPUT_LEN; i++)
        text[i] = input_byte(i);
    int w = open(p_in, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(w >= 0 && write(w, text, INPUT_LEN) == INPUT_LEN && close(w) == 0, "create %s", p_in);

    int in = open(p_in, O_RDONLY);
    CHECK(in >= 0, "open %s", p_in);
    static char buf[INPUT_LEN];
    CHECK(read(in, buf, 12345) == 12345 && memcmp(buf, text, 12345) == 0, "first read of input");
    int app = open(p_app, O_WRONLY | O_APPEND | O_CREAT | O_TRUNC, 0644);
    CHECK(app >= 0, "open %s", p_app);
    memset(buf, 'A', 1000);
    CHECK(write(app, buf, 1000) == 1000, "write append");
    int data = open(p_data, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(data >= 0, "open %s", p_data);
    for (int i = 0; i < 5000; i++)
        buf[i] = (char)(i % 251);
    CHECK(write(data, buf, 5000) == 5000, "write data");
    CHECK(lseek(data, 2000, SEEK_SET) == 2000, "lseek data");
    CHECK(dup2(in, 100) == 100, "dup2 to 100");
    int own = open(p_in, O_RDONLY);
    CHECK(own >= 0 && lseek(own, 7, SEEK_SET) == 7, "second open of input");

    struct fdstate s_in = state_of(in), s_app = state_of(app), s_data = state_of(data),
                   s_dup = state_of(100), s_own = state_of(own);
    CHECK((s_data.fdfl & FD_CLOEXEC) && !(s_in.fdfl & FD_CLOEXEC), "cloexec setup");

    ready();
    wait_release();

    same_state("input (O_RDONLY)", s_in, state_of(in));
    same_state("append.log (O_WRONLY|O_APPEND)", s_app, state_of(app));
    same_state("data.bin (O_RDWR|O_CLOEXEC)", s_data, state_of(data));
    same_state("input dup at fd 100", s_dup, state_of(100));
    same_state("input, second open", s_own, state_of(own));

    /* Reading goes on where it stopped, and the dup shares the offset. */
    CHECK(read(in, buf, 1000) == 1000 && memcmp(buf, text + 12345, 1000) == 0, "input: next 1000 bytes differ");
    CHECK(lseek(100, 0, SEEK_CUR) == 13345, "fd 100 no longer shares the offset of fd %d (at %lld, expected 13345)",
          in, (long long)lseek(100, 0, SEEK_CUR));
    CHECK(read(100, buf, 10) == 10 && memcmp(buf, text + 13345, 10) == 0, "fd 100 read differs");
    CHECK(lseek(in, 0, SEEK_CUR) == 13355, "fd %d did not see the read on its dup", in);
    CHECK(read(own, buf, 5) == 5 && memcmp(buf, text + 7, 5) == 0, "second open did not keep its own offset");

    /* Appends go to the end, writes at the offset overwrite in place. */
    memset(buf, 'B', 500);
    CHECK(write(app, buf, 500) == 500, "append after resume: %s", strerror(errno));
    CHECK(write(data, "XYZ", 3) == 3, "write data after resume: %s", strerror(errno));
    struct stat st;
    CHECK(stat(p_app, &st) == 0 && st.st_size == 1500, "append.log is %lld bytes, expected 1500", (long long)st.st_size);
    CHECK(stat(p_data, &st) == 0 && st.st_size == 5000, "data.bin is %lld bytes, expected 5000", (long long)st.st_size);
    int r = open(p_data, O_RDONLY);
    CHECK(r >= 0 && pread(r, buf, 5000, 0) == 5000, "read back data.bin");
    for (int i = 0; i < 5000; i++) {
        char want = (i >= 2000 && i < 2003) ? "XYZ"[i - 2000] : (char)(i % 251);
        CHECK(buf[i] == want, "data.bin byte %d is %d, expected %d", i, buf[i], want);
    }
    close(r);
    r = open(p_app, O_RDONLY);
    CHECK(r >= 0 && pread(r, buf, 1500, 0) == 1500, "read back append.log");
    for (int i = 0; i < 1500; i++)
        CHECK(buf[i] == (i < 1000 ? 'A' : 'B'), "append.log byte %d is '%c'", i, buf[i]);
    close(r);
    ok("5 descriptors intact: fds %d %d %d 100 %d, offsets, O_APPEND, FD_CLOEXEC, shared offset of dup",
       in, app, data, own);
}
