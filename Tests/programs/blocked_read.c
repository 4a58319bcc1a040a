/*
 * blocked_read.c - a process frozen inside read(2) on its stdin gets the
 * release line after restart, where ghost-resume's stdin replaces
 * ghost-run's.
 *
 * Prints "ready" and blocks in one raw read(0) of a line; the test writes
 * "release <token>" only after the restart. The program checks that the whole
 * line arrived intact and that reading continues normally (a second line).
 */
#include "common.h"

int main(void)
{
    char first[256], second[256];
    ready();
    wait_release_line(first, sizeof first);
    CHECK(strncmp(first, "release ", 8) == 0, "first line is '%s', expected 'release <token>'", first);
    wait_release_line(second, sizeof second);
    CHECK(strcmp(second, "second line") == 0, "second line is '%s'", second);
    ok("read got '%s' then '%s'", first, second);
}
