/*
 * ghost_spank.c - SPANK plugin: run Slurm job steps under ghost-run.
 *
 * Adds to srun, sbatch and salloc (and to #SBATCH lines):
 *
 *   --checkpoint-interval=DURATION  checkpoint every DURATION (90s, 30m, 2h, 1h30m, 1.5h;
 *                                   a bare number is seconds)
 *   --ghost-image-dir=DIR           where the images go; %j job id, %s step id,
 *                                   %t task id, %u user name, %% a percent sign
 *   --ghost-opts=LIST               more ghost-run flags, comma-separated, without
 *                                   the dashes: checkpoint-on-term,requeue-before-end=2m
 *   --ghost[=on|off]                run under ghost-run with the defaults / not at all
 *
 * When any of them is in effect, every task of an srun step runs as
 *
 *   ghost-run [--checkpoint-interval D] --image-dir DIR --resume-if-present [FLAGS] -- PROGRAM ARGS...
 *
 * without the user writing ghost-run, so the same srun line starts the job
 * and, after a requeue, resumes it. The batch script itself (the batch
 * step) is not wrapped: it gets GHOST_CHECKPOINT_INTERVAL, GHOST_IMAGE_DIR
 * and GHOST_OPTS in its environment, and the srun steps it starts inherit
 * the options (sbatch passes them through the environment). A step whose
 * program already is ghost-run or ghost-resume is left alone.
 *
 * How the task ends up running ghost-run (mode=, see docs/SLURM.md):
 *   mode=argv0 (default)  slurm_spank_task_init replaces the task's argv[0]
 *                         by the small helper ghost-spank-exec and passes the
 *                         original program in the environment; slurmstepd
 *                         then does everything it does after task_init (task
 *                         prolog, TMPDIR, the user's resource limits) and
 *                         execs the helper, which execs ghost-run.
 *   mode=exec             slurm_spank_task_init execs ghost-run itself. What
 *                         slurmstepd would still have done is redone here
 *                         (resource limits from SLURM_RLIMIT_*, TMPDIR), but
 *                         TaskProlog and the task_init of plugins listed after
 *                         this one are skipped.
 *
 * plugstack.conf line (arguments optional):
 *   optional /usr/lib/x86_64-linux-gnu/slurm-wlm/ghost_spank.so ghost_run=/usr/local/bin/ghost-run
 *            helper=/usr/local/libexec/ghost/ghost-spank-exec mode=argv0 image_dir=ghost-images/%j.%s
 *
 * Built against /usr/include/slurm/spank.h only (no -lslurm).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <slurm/slurm.h>
#include <slurm/spank.h>

SPANK_PLUGIN(ghost, 1);

#ifndef GHOST_RUN_DEFAULT
#define GHOST_RUN_DEFAULT "/usr/local/bin/ghost-run"
#endif
#ifndef GHOST_HELPER_DEFAULT
#define GHOST_HELPER_DEFAULT "/usr/local/libexec/ghost/ghost-spank-exec"
#endif

/* Step ids Slurm uses for steps that are not srun steps (slurm.h). */
#ifndef SLURM_BATCH_SCRIPT
#define SLURM_BATCH_SCRIPT 0xfffffffb
#endif

enum { OPT_INTERVAL = 1, OPT_IMAGE_DIR, OPT_OPTS, OPT_GHOST };

/* The user's choices (set by the option callbacks, in every context). */
static char *opt_interval;
static char *opt_image_dir;
static char *opt_opts;
static int opt_ghost = -1;      /* -1 not given, 0 off, 1 on */

/* The site's choices (plugstack.conf arguments). */
static char *cfg_ghost_run;
static char *cfg_helper;
static char *cfg_image_dir;
static int cfg_mode_exec;

/* ------------------------------------------------------------------ validation */

/* Durations as ghost-run takes them: "90s", "30m", "2h", "1d", "1h30m",
 * "1.5h"; a bare number is seconds. Returns seconds, or -1 if malformed. */
static double parse_duration(const char *s)
{
    if (!s || !*s)
        return -1;
    int bare = 1;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || *p == '.'))
            bare = 0;
    if (bare) {
        char *end;
        double v = strtod(s, &end);
        return (*end == '\0' && isfinite(v) && v > 0) ? v : -1;
    }
    double total = 0;
    const char *p = s;
    while (*p) {
        const char *start = p;
        while ((*p >= '0' && *p <= '9') || *p == '.')
            p++;
        if (p == start)
            return -1;
        char num[64];
        size_t len = (size_t)(p - start);
        if (len >= sizeof num)
            return -1;
        memcpy(num, start, len);
        num[len] = '\0';
        char *end;
        double v = strtod(num, &end);
        if (*end != '\0')
            return -1;
        double unit;
        switch (*p) {
        case 's': unit = 1; break;
        case 'm': unit = 60; break;
        case 'h': unit = 3600; break;
        case 'd': unit = 86400; break;
        default: return -1;
        }
        p++;
        total += v * unit;
    }
    return (isfinite(total) && total > 0) ? total : -1;
}

/* "flag" or "flag=value" items, comma-separated, flag = [a-z0-9-]+,
 * value without spaces or commas. */
static int valid_opts(const char *s)
{
    if (!s || !*s)
        return 0;
    const char *p = s;
    while (*p) {
        const char *start = p;
        while ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-')
            p++;
        if (p == start || *start == '-')
            return 0;
        if (*p == '=') {
            p++;
            const char *v = p;
            while (*p && *p != ',' && *p != ' ' && *p != '\t' && *p != '\n')
                p++;
            if (p == v)
                return 0;
        }
        if (*p == ',')
            p++;
        else if (*p)
            return 0;
        if (*p == '\0' && p[-1] == ',')
            return 0;
    }
    return 1;
}

static char *expand_dir(const char *pattern, uint32_t job, const char *step, const char *task, uid_t uid);

static void set_str(char **slot, const char *v)
{
    free(*slot);
    *slot = v ? strdup(v) : NULL;
}

/* ------------------------------------------------------------------ options */

static int opt_cb(int val, const char *optarg, int remote)
{
    (void)remote;
    switch (val) {
    case OPT_INTERVAL:
        if (parse_duration(optarg) < 0) {
            slurm_error("ghost: --checkpoint-interval='%s' is not a duration; "
                        "use e.g. 90s, 30m, 2h, 1h30m (a bare number is seconds)",
                        optarg ? optarg : "");
            return -1;
        }
        set_str(&opt_interval, optarg);
        return 0;
    case OPT_IMAGE_DIR:
        if (!optarg || !*optarg) {
            slurm_error("ghost: --ghost-image-dir needs a directory");
            return -1;
        }
        set_str(&opt_image_dir, optarg);
        return 0;
    case OPT_OPTS:
        if (!valid_opts(optarg)) {
            slurm_error("ghost: --ghost-opts='%s' is not a comma-separated list of ghost-run "
                        "flags without dashes, e.g. checkpoint-on-term,requeue-before-end=2m",
                        optarg ? optarg : "");
            return -1;
        }
        set_str(&opt_opts, optarg);
        return 0;
    case OPT_GHOST:
        if (!optarg || !*optarg || !strcmp(optarg, "on") || !strcmp(optarg, "yes") || !strcmp(optarg, "1"))
            opt_ghost = 1;
        else if (!strcmp(optarg, "off") || !strcmp(optarg, "no") || !strcmp(optarg, "0"))
            opt_ghost = 0;
        else {
            slurm_error("ghost: --ghost='%s': use --ghost, --ghost=on or --ghost=off", optarg);
            return -1;
        }
        return 0;
    }
    return -1;
}

static struct spank_option options[] = {
    { "checkpoint-interval", "DURATION",
      "ghost: run the tasks under ghost-run, checkpointing every DURATION (90s, 30m, 2h, 1h30m)",
      1, OPT_INTERVAL, opt_cb },
    { "ghost-image-dir", "DIR",
      "ghost: directory for the checkpoint images (%j job id, %s step id, %t task id, %u user)",
      1, OPT_IMAGE_DIR, opt_cb },
    { "ghost-opts", "LIST",
      "ghost: more ghost-run flags, comma-separated, without dashes (e.g. checkpoint-on-term,keep=2)",
      1, OPT_OPTS, opt_cb },
    { "ghost", "on|off",
      "ghost: run the tasks under ghost-run with the defaults (--ghost=off: not at all)",
      2, OPT_GHOST, opt_cb },
    SPANK_OPTIONS_TABLE_END
};

/* Is ghost wanted for this job? --ghost=off wins over everything. */
static int ghost_wanted(void)
{
    if (opt_ghost == 0)
        return 0;
    return opt_ghost == 1 || opt_interval || opt_image_dir || opt_opts;
}

int slurm_spank_init(spank_t sp, int ac, char **av)
{
    for (int i = 0; i < ac; i++) {
        if (!strncmp(av[i], "ghost_run=", 10))
            set_str(&cfg_ghost_run, av[i] + 10);
        else if (!strncmp(av[i], "helper=", 7))
            set_str(&cfg_helper, av[i] + 7);
        else if (!strncmp(av[i], "image_dir=", 10))
            set_str(&cfg_image_dir, av[i] + 10);
        else if (!strcmp(av[i], "mode=exec"))
            cfg_mode_exec = 1;
        else if (!strcmp(av[i], "mode=argv0"))
            cfg_mode_exec = 0;
        else {
            slurm_error("ghost: unknown argument '%s' in plugstack.conf "
                        "(known: ghost_run=PATH helper=PATH image_dir=PATTERN mode=argv0|exec)", av[i]);
            return -1;
        }
    }
    if (!cfg_ghost_run)
        cfg_ghost_run = strdup(GHOST_RUN_DEFAULT);
    if (!cfg_helper)
        cfg_helper = strdup(GHOST_HELPER_DEFAULT);

    /* spank_option_register is the only way that works in every context,
     * sbatch/salloc (allocator) included. */
    spank_context_t ctx = spank_context();
    int needed = ctx == S_CTX_LOCAL || ctx == S_CTX_REMOTE || ctx == S_CTX_ALLOCATOR;
    for (struct spank_option *o = options; o->name; o++) {
        spank_err_t rc = spank_option_register(sp, o);
        if (rc != ESPANK_SUCCESS && needed) {
            slurm_error("ghost: cannot register --%s: %s", o->name, spank_strerror(rc));
            return -1;
        }
    }
    return 0;
}

/* Local (srun) and allocator (sbatch/salloc) context: make the choices
 * visible to the prolog/epilog (as SPANK_GHOST_*). */
int slurm_spank_init_post_opt(spank_t sp, int ac, char **av)
{
    (void)ac; (void)av;
    spank_context_t ctx = spank_context();
    if (!ghost_wanted())
        return 0;
    if (ctx == S_CTX_LOCAL || ctx == S_CTX_ALLOCATOR) {
        spank_job_control_setenv(sp, "GHOST", "1", 1);
        if (opt_interval)
            spank_job_control_setenv(sp, "GHOST_CHECKPOINT_INTERVAL", opt_interval, 1);
        if (opt_image_dir)
            spank_job_control_setenv(sp, "GHOST_IMAGE_DIR", opt_image_dir, 1);
    }
    return 0;
}

/* Remote context, before the tasks: export the choices to the job's
 * environment (the batch script sees them too). */
int slurm_spank_user_init(spank_t sp, int ac, char **av)
{
    (void)ac; (void)av;
    if (!spank_remote(sp) || !ghost_wanted())
        return 0;
    if (opt_interval)
        spank_setenv(sp, "GHOST_CHECKPOINT_INTERVAL", opt_interval, 1);
    if (opt_image_dir) {
        /* The batch script sees the directory with %j and %u filled in
         * (%s is "batch"); srun steps get theirs in task_init. */
        uint32_t job = 0, step = 0;
        uid_t uid = getuid();
        char step_s[16];
        spank_get_item(sp, S_JOB_UID, &uid);
        spank_get_item(sp, S_JOB_ID, &job);
        spank_get_item(sp, S_JOB_STEPID, &step);
        if (step == SLURM_BATCH_SCRIPT)
            strcpy(step_s, "batch");
        else
            snprintf(step_s, sizeof step_s, "%u", step);
        char *dir = expand_dir(opt_image_dir, job, step_s, "0", uid);
        if (dir) {
            spank_setenv(sp, "GHOST_IMAGE_DIR", dir, 1);
            free(dir);
        }
    }
    if (opt_opts)
        spank_setenv(sp, "GHOST_OPTS", opt_opts, 1);
    return 0;
}

/* ------------------------------------------------------------------ task */

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* Expands %j %s %t %u %% in pattern. Returns malloc'd string or NULL. */
static char *expand_dir(const char *pattern, uint32_t job, const char *step, const char *task, uid_t uid)
{
    size_t cap = strlen(pattern) + 128, n = 0;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    for (const char *p = pattern; *p; p++) {
        char piece[64];
        const char *add = piece;
        if (*p == '%' && p[1]) {
            p++;
            switch (*p) {
            case 'j': snprintf(piece, sizeof piece, "%u", job); break;
            case 's': add = step; break;
            case 't': add = task; break;
            case 'u': {
                struct passwd *pw = getpwuid(uid);
                if (pw)
                    add = pw->pw_name;
                else
                    snprintf(piece, sizeof piece, "%u", (unsigned)uid);
                break;
            }
            case '%': strcpy(piece, "%"); break;
            default: snprintf(piece, sizeof piece, "%%%c", *p); break;
            }
        } else {
            piece[0] = *p;
            piece[1] = '\0';
        }
        size_t len = strlen(add);
        if (n + len + 1 > cap) {
            cap = (n + len + 1) * 2;
            char *bigger = realloc(out, cap);
            if (!bigger) {
                free(out);
                return NULL;
            }
            out = bigger;
        }
        memcpy(out + n, add, len);
        n += len;
    }
    out[n] = '\0';
    return out;
}

/* mode=exec only: what slurmstepd does after task_init and before execve. */
static void apply_user_limits(spank_t sp)
{
    static const struct { const char *name; int resource; } limits[] = {
        { "CPU", RLIMIT_CPU }, { "FSIZE", RLIMIT_FSIZE }, { "DATA", RLIMIT_DATA },
        { "STACK", RLIMIT_STACK }, { "CORE", RLIMIT_CORE }, { "RSS", RLIMIT_RSS },
        { "NPROC", RLIMIT_NPROC }, { "NOFILE", RLIMIT_NOFILE },
        { "MEMLOCK", RLIMIT_MEMLOCK }, { "AS", RLIMIT_AS },
    };
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        char var[64], buf[64];
        snprintf(var, sizeof var, "SLURM_RLIMIT_%s", limits[i].name);
        if (spank_getenv(sp, var, buf, sizeof buf) != ESPANK_SUCCESS)
            continue;
        const char *v = buf[0] == 'U' ? buf + 1 : buf;   /* U: --propagate asked for it */
        char *end;
        errno = 0;
        unsigned long long want = strtoull(v, &end, 10);
        if (errno || *end)
            continue;
        struct rlimit r;
        if (getrlimit(limits[i].resource, &r) == 0) {
            r.rlim_cur = (rlim_t)want;
            if (r.rlim_max != RLIM_INFINITY && r.rlim_cur > r.rlim_max)
                r.rlim_cur = r.rlim_max;
            setrlimit(limits[i].resource, &r);
        }
        spank_unsetenv(sp, var);
    }
    char tmp[PATH_MAX];
    if (spank_getenv(sp, "TMPDIR", tmp, sizeof tmp) != ESPANK_SUCCESS)
        spank_setenv(sp, "TMPDIR", "/tmp", 1);
}

/* The extra ghost-run flags from --ghost-opts: "a,b=c" -> --a --b=c. */
static int add_opts(char **argv, int n, const char *opts)
{
    if (!opts)
        return n;
    char *copy = strdup(opts), *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        char *flag;
        if (asprintf(&flag, "--%s", item) >= 0)
            argv[n++] = flag;
    }
    return n;       /* copy is kept: the strings live until exec */
}

static int count_opts(const char *opts)
{
    int n = 0;
    if (opts)
        for (n = 1; *opts; opts++)
            n += *opts == ',';
    return n;
}

int slurm_spank_task_init(spank_t sp, int ac, char **av)
{
    (void)ac; (void)av;
    if (!spank_remote(sp) || !ghost_wanted())
        return 0;

    uint32_t job = 0, step = 0;
    int task = 0, argc = 0;
    char **argv = NULL;
    uid_t uid = getuid();
    spank_get_item(sp, S_JOB_UID, &uid);
    spank_get_item(sp, S_JOB_ID, &job);
    spank_get_item(sp, S_JOB_STEPID, &step);
    spank_get_item(sp, S_TASK_ID, &task);
    if (spank_get_item(sp, S_JOB_ARGV, &argc, &argv) != ESPANK_SUCCESS || argc < 1 || !argv || !argv[0])
        return 0;

    /* The batch script (and the extern/interactive steps) run as they are:
     * they got the GHOST_* variables in user_init; the srun steps they
     * start inherit the options. */
    if (step >= SLURM_BATCH_SCRIPT)
        return 0;
    const char *prog = base_name(argv[0]);
    if (!strcmp(prog, "ghost-run") || !strcmp(prog, "ghost-resume"))
        return 0;

    if (access(cfg_ghost_run, X_OK) != 0) {
        fprintf(stderr, "ghost: cannot run the step under ghost: %s: %s "
                "(set ghost_run=PATH in plugstack.conf, or run without --checkpoint-interval/--ghost*)\n",
                cfg_ghost_run, strerror(errno));
        return -1;
    }

    uint32_t ntasks = 1;
    spank_get_item(sp, S_JOB_LOCAL_TASK_COUNT, &ntasks);
    const char *pattern = opt_image_dir ? opt_image_dir
                        : cfg_image_dir ? cfg_image_dir
                        : ntasks > 1 ? "ghost-images/%j.%s.%t" : "ghost-images/%j.%s";
    char step_s[16], task_s[16];
    snprintf(step_s, sizeof step_s, "%u", step);
    snprintf(task_s, sizeof task_s, "%d", task);
    char *dir = expand_dir(pattern, job, step_s, task_s, uid);
    if (!dir)
        return -1;
    /* Several tasks on one node need one directory each. */
    if (ntasks > 1 && !strstr(pattern, "%t")) {
        char *per_task;
        if (asprintf(&per_task, "%s.%d", dir, task) < 0)
            return -1;
        free(dir);
        dir = per_task;
    }
    spank_setenv(sp, "GHOST_IMAGE_DIR", dir, 1);
    if (opt_interval)
        spank_setenv(sp, "GHOST_CHECKPOINT_INTERVAL", opt_interval, 1);

    if (!cfg_mode_exec) {
        /* mode=argv0: slurmstepd's own execve runs the helper. argv is
         * the step's argv array, shared with the task. */
        if (access(cfg_helper, X_OK) != 0) {
            fprintf(stderr, "ghost: cannot run the step under ghost: helper %s: %s "
                    "(set helper=PATH in plugstack.conf, or mode=exec)\n", cfg_helper, strerror(errno));
            return -1;
        }
        spank_setenv(sp, "GHOST_SPANK_PROGRAM", argv[0], 1);
        spank_setenv(sp, "GHOST_SPANK_GHOST_RUN", cfg_ghost_run, 1);
        if (opt_opts)
            spank_setenv(sp, "GHOST_SPANK_OPTS", opt_opts, 1);
        else
            spank_unsetenv(sp, "GHOST_SPANK_OPTS");
        if (opt_interval)
            spank_setenv(sp, "GHOST_SPANK_INTERVAL", opt_interval, 1);
        else
            spank_unsetenv(sp, "GHOST_SPANK_INTERVAL");
        argv[0] = strdup(cfg_helper);
        return 0;
    }

    /* mode=exec: become ghost-run now. */
    apply_user_limits(sp);
    char **env = NULL;
    spank_get_item(sp, S_JOB_ENV, &env);
    int max = argc + 8 + count_opts(opt_opts);
    char **nargv = calloc((size_t)max + 1, sizeof *nargv);
    if (!nargv)
        return -1;
    int n = 0;
    nargv[n++] = cfg_ghost_run;
    if (opt_interval) {
        nargv[n++] = "--checkpoint-interval";
        nargv[n++] = opt_interval;
    }
    nargv[n++] = "--image-dir";
    nargv[n++] = dir;
    nargv[n++] = "--resume-if-present";
    n = add_opts(nargv, n, opt_opts);
    nargv[n++] = "--";
    for (int i = 0; i < argc; i++)
        nargv[n++] = argv[i];
    nargv[n] = NULL;
    execve(cfg_ghost_run, nargv, env);
    fprintf(stderr, "ghost: cannot exec %s: %s\n", cfg_ghost_run, strerror(errno));
    _exit(127);
}
