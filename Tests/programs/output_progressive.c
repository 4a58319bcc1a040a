/*
 * output_progressive.c - a file written progressively while the job runs.
 *
 * Usage: output_progressive FILE LINES DELAY_MS
 * Prints "ready", then appends LINES lines to FILE (fopen "w" at start,
 * fprintf + fflush each line, DELAY_MS between lines), and a few KiB through
 * a fully buffered second stream FILE.raw (setvbuf 4096, flushed only when
 * full and at exit). A run that is checkpointed, keeps writing, is killed
 * and resumed must leave both files byte-identical to an uninterrupted run's:
 * the files are brought back to their size at the checkpoint.
 */
#include "common.h"
#include <time.h>

int main(int argc, char **argv)
{
    CHECK(argc == 4, "usage: output_progressive FILE LINES DELAY_MS");
    int lines = atoi(argv[2]), delay = atoi(argv[3]);
    char raw_path[4096];
    snprintf(raw_path, sizeof raw_path, "%s.raw", argv[1]);
    FILE *out = fopen(argv[1], "w");
    CHECK(out, "fopen %s: %s", argv[1], strerror(errno));
    FILE *raw = fopen(raw_path, "w");
    CHECK(raw, "fopen %s: %s", raw_path, strerror(errno));
    static char rawbuf[4096];
    setvbuf(raw, rawbuf, _IOFBF, sizeof rawbuf);
    ready();
    uint64_t acc = 0;
    for (int i = 0; i < lines; i++) {
        acc = acc * 6364136223846793005ULL + pattern64(9, (uint64_t)i);
        fprintf(out, "line %d of %d value %016llx\n", i + 1, lines, (unsigned long long)acc);
        fflush(out);
        fprintf(raw, "%d:%llu;", i, (unsigned long long)(acc % 1000003));
        struct timespec d = { delay / 1000, (delay % 1000) * 1000000L };
        while (nanosleep(&d, &d) == -1 && errno == EINTR)
            ;
    }
    fprintf(out, "done %016llx\n", (unsigned long long)acc);
    CHECK(fclose(out) == 0 && fclose(raw) == 0, "fclose");
    ok("wrote %d lines, final %016llx", lines, (unsigned long long)acc);
}
