/*
 * ghost-spank-exec - the last hop from slurmstepd to ghost-run (mode=argv0).
 *
 * ghost_spank.so replaces a task's argv[0] by this program and leaves the
 * rest of the argv as it was; slurmstepd then finishes setting the task up
 * (task prolog, TMPDIR, the user's resource limits) and execs us. We exec
 *
 *   GHOST_SPANK_GHOST_RUN [--checkpoint-interval GHOST_SPANK_INTERVAL]
 *       --image-dir GHOST_IMAGE_DIR --resume-if-present [--FLAG ...] -- GHOST_SPANK_PROGRAM ARGS...
 *
 * where ARGS are our own arguments and the flags come from GHOST_SPANK_OPTS
 * ("a,b=c" -> --a --b=c). The GHOST_SPANK_* variables are removed from the
 * environment first; GHOST_IMAGE_DIR and GHOST_CHECKPOINT_INTERVAL stay, for
 * the job to read. Not meant to be run by hand.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *take(const char *name)
{
    const char *v = getenv(name);
    char *copy = v ? strdup(v) : NULL;
    unsetenv(name);
    return copy;
}

int main(int argc, char **argv)
{
    char *ghost_run = take("GHOST_SPANK_GHOST_RUN");
    char *program = take("GHOST_SPANK_PROGRAM");
    char *interval = take("GHOST_SPANK_INTERVAL");
    char *opts = take("GHOST_SPANK_OPTS");
    const char *dir = getenv("GHOST_IMAGE_DIR");

    if (!ghost_run || !program) {
        fprintf(stderr, "ghost-spank-exec: GHOST_SPANK_GHOST_RUN and GHOST_SPANK_PROGRAM must be set; "
                "this helper is started by the ghost SPANK plugin, not by hand\n");
        return 125;
    }

    int nopts = 0;
    if (opts)
        for (const char *p = opts, *q = opts; ; p++) {
            if (*p == ',' || *p == '\0') {
                nopts += p > q;
                q = p + 1;
            }
            if (!*p)
                break;
        }
    char **nargv = calloc((size_t)argc + (size_t)nopts + 10, sizeof *nargv);
    if (!nargv) {
        fprintf(stderr, "ghost-spank-exec: out of memory\n");
        return 125;
    }
    int n = 0;
    nargv[n++] = ghost_run;
    if (interval && *interval) {
        nargv[n++] = "--checkpoint-interval";
        nargv[n++] = interval;
    }
    if (dir && *dir) {
        nargv[n++] = "--image-dir";
        nargv[n++] = (char *)dir;
    }
    nargv[n++] = "--resume-if-present";
    if (opts) {
        char *save = NULL;
        for (char *item = strtok_r(opts, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
            char *flag;
            if (asprintf(&flag, "--%s", item) < 0) {
                fprintf(stderr, "ghost-spank-exec: out of memory\n");
                return 125;
            }
            nargv[n++] = flag;
        }
    }
    nargv[n++] = "--";
    nargv[n++] = program;
    for (int i = 1; i < argc; i++)
        nargv[n++] = argv[i];
    nargv[n] = NULL;

    execv(ghost_run, nargv);
    int e = errno;
    fprintf(stderr, "ghost-spank-exec: cannot run %s: %s\n", ghost_run, strerror(e));
    return e == ENOENT ? 127 : 126;
}
