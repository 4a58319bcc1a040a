/*
 * common.h - shared helpers of the ghost end-to-end test programs.
 *
 * Protocol between a test program and the XCTest suite (Tests/GhostJobTests):
 *   - the program prints "ready" (flushed) on stdout once it has reached the
 *     state that the test checkpoints;
 *   - it then waits to be released: usually by reading one line from stdin
 *     (the test writes it to ghost-run's or ghost-resume's stdin, which is the
 *     job's stdin), sometimes by a signal or by the end of a sleep;
 *   - it verifies its state and prints "ok <details>" and exits 0, or prints
 *     "FAIL <why>" and exits 1.
 * Every program is deterministic and checks itself: the test only needs the
 * "ok" line and the exit status.
 */
#ifndef GHOST_TEST_COMMON_H
#define GHOST_TEST_COMMON_H

#define _GNU_SOURCE 1
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Prints "FAIL <message>" on stdout and stderr and exits 1. */
__attribute__((format(printf, 1, 2), noreturn, unused))
static void fail(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    printf("FAIL %s\n", buf);
    fflush(stdout);
    fprintf(stderr, "FAIL %s\n", buf);
    exit(1);
}

/* Fails with the message unless cond holds. */
#define CHECK(cond, ...) do { if (!(cond)) fail(__VA_ARGS__); } while (0)

/* Prints "ok <message>" and exits 0. */
__attribute__((format(printf, 1, 2), noreturn, unused))
static void ok(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    printf("ok %s\n", buf);
    fflush(stdout);
    exit(0);
}

/* Prints one line on stdout and flushes it. */
__attribute__((format(printf, 1, 2), unused))
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

/* Announces that the state to checkpoint has been reached. */
__attribute__((unused))
static void ready(void)
{
    say("ready");
}

/*
 * Waits for the release line on stdin with plain read(2) (no stdio buffer,
 * so nothing is read ahead) and returns it without its newline in buf.
 * Fails on end of file: the test always sends a line.
 */
__attribute__((unused))
static const char *wait_release_line(char *buf, size_t size)
{
    size_t n = 0;
    for (;;) {
        char c;
        ssize_t r = read(0, &c, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            fail("read(stdin) for the release line: %s", strerror(errno));
        if (r == 0)
            fail("stdin closed before the release line (got %zu bytes)", n);
        if (c == '\n')
            break;
        if (n + 1 < size)
            buf[n++] = c;
    }
    buf[n] = '\0';
    return buf;
}

/* Waits for any release line. */
__attribute__((unused))
static void wait_release(void)
{
    char line[256];
    wait_release_line(line, sizeof line);
}

/* Deterministic 64-bit pattern of index i under seed s (splitmix64 mix). */
__attribute__((unused))
static inline uint64_t pattern64(uint64_t s, uint64_t i)
{
    uint64_t z = s * 0x9E3779B97F4A7C15ULL + i * 0xBF58476D1CE4E5B9ULL + 0x632BE59BD9B4E019ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Fills words [0, n) of p with pattern64(seed, i). */
__attribute__((unused))
static void fill_pattern(uint64_t *p, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = pattern64(seed, i);
}

/* Returns the index of the first word that differs from the pattern, or n. */
__attribute__((unused))
static size_t check_pattern(const uint64_t *p, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != pattern64(seed, i))
            return i;
    return n;
}

/*
 * Finds the /proc/self/maps line of the mapping that contains addr and
 * copies its permission field ("rw-p") into perms[5]. Returns 0 if found.
 */
__attribute__((unused))
static int mapping_perms(const void *addr, char perms[5])
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return -1;
    char line[512];
    int found = -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        char p[5];
        if (sscanf(line, "%lx-%lx %4s", &lo, &hi, p) == 3 && lo <= (unsigned long)addr && (unsigned long)addr < hi) {
            memcpy(perms, p, 5);
            found = 0;
            break;
        }
    }
    fclose(f);
    return found;
}

#endif
