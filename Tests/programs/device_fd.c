/*
 * device_fd.c - devices ghost reopens by path, and one it refuses.
 *
 * Holds /dev/null and /dev/urandom open, prints "ready", then obeys lines on
 * stdin: "ptmx" opens /dev/ptmx (a pseudo-terminal master, whose terminal a
 * reopen would not bring back) and prints "holding ptmx fd N"; "still"
 * prints "still running"; "close" closes it and prints "closed"; "go" reads /dev/urandom, writes /dev/null
 * and prints "ok ...".
 */
#include "common.h"
#include <fcntl.h>

int main(void)
{
    int null = open("/dev/null", O_WRONLY);
    int rnd = open("/dev/urandom", O_RDONLY);
    CHECK(null >= 0 && rnd >= 0, "open: %s", strerror(errno));
    ready();
    int ptmx = -1;
    char line[64];
    for (;;) {
        const char *cmd = wait_release_line(line, sizeof line);
        if (strcmp(cmd, "ptmx") == 0) {
            ptmx = open("/dev/ptmx", O_RDWR | O_NOCTTY);
            CHECK(ptmx >= 0, "open /dev/ptmx: %s", strerror(errno));
            say("holding ptmx fd %d", ptmx);
        } else if (strcmp(cmd, "still") == 0) {
            say("still running");
        } else if (strcmp(cmd, "close") == 0) {
            close(ptmx);
            say("closed");
        } else {
            break;
        }
    }
    unsigned char buf[16];
    CHECK(read(rnd, buf, sizeof buf) == sizeof buf, "read /dev/urandom: %s", strerror(errno));
    CHECK(write(null, buf, sizeof buf) == sizeof buf, "write /dev/null: %s", strerror(errno));
    ok("devices null=%d urandom=%d", null, rnd);
}
