/*
 * pipe_buffer.c - data buffered in a pipe survives checkpoint/restart.
 *
 * Before "ready": creates a pipe, writes 3000 bytes into it (unread,
 * buffered in the kernel) and keeps both ends. After the release line: reads
 * exactly those bytes back, the pipe is then empty (O_NONBLOCK read gives
 * EAGAIN), and it still carries new data.
 */
#include "common.h"
#include <fcntl.h>

int main(void)
{
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    unsigned char buf[3000], got[4096];
    for (int i = 0; i < 3000; i++)
        buf[i] = (unsigned char)(i * 31 + 7);
    CHECK(write(p[1], buf, sizeof buf) == (ssize_t)sizeof buf, "write pipe");

    ready();
    wait_release();

    CHECK(fcntl(p[0], F_SETFL, O_NONBLOCK) == 0, "O_NONBLOCK");
    size_t n = 0;
    for (;;) {
        ssize_t r = read(p[0], got + n, sizeof got - n);
        if (r > 0) { n += (size_t)r; continue; }
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && errno == EAGAIN) break;
        fail("read pipe: %s", r == 0 ? "end of file" : strerror(errno));
    }
    CHECK(n == sizeof buf, "pipe held %zu bytes after resume, expected %zu", n, sizeof buf);
    CHECK(memcmp(got, buf, sizeof buf) == 0, "pipe data differs after resume");
    CHECK(write(p[1], "x", 1) == 1 && read(p[0], got, 1) == 1 && got[0] == 'x', "pipe does not carry new data");
    ok("3000 buffered pipe bytes intact");
}
