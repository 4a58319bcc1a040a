#define _GNU_SOURCE
#include "ghost_slurm.h"
#include <dlfcn.h>
#include <stdio.h>
#include <slurm/slurm.h>

static void *lib;
static void (*p_init)(const char *);
static int (*p_requeue)(uint32_t, uint32_t);
static int (*p_load_job)(job_info_msg_t **, uint32_t, uint16_t);
static void (*p_free_job)(job_info_msg_t *);
static int (*p_errno)(void);
static char *(*p_strerror)(int);

int ghost_slurm_load(char *err, int errlen) {
    if (lib) return 0;
    const char *names[] = { "libslurm.so", "libslurm.so.38", "libslurm.so.37", "libslurm.so.39", "libslurm.so.40", "libslurm.so.41", NULL };
    for (int i = 0; names[i] && !lib; i++) lib = dlopen(names[i], RTLD_NOW | RTLD_GLOBAL);
    if (!lib) {
        snprintf(err, errlen, "libslurm is not installed on this node (%s); install Slurm's client library or drop the Slurm options", dlerror());
        return -1;
    }
    p_init = dlsym(lib, "slurm_init");
    p_requeue = dlsym(lib, "slurm_requeue");
    p_load_job = dlsym(lib, "slurm_load_job");
    p_free_job = dlsym(lib, "slurm_free_job_info_msg");
    p_errno = dlsym(lib, "slurm_get_errno");
    p_strerror = dlsym(lib, "slurm_strerror");
    if (!p_requeue || !p_load_job || !p_free_job || !p_errno || !p_strerror) {
        snprintf(err, errlen, "libslurm lacks the functions ghost needs (an incompatible Slurm version?)");
        dlclose(lib); lib = NULL;
        return -1;
    }
    if (p_init) p_init(NULL);   // Slurm >= 22.05 wants this before any call
    return 0;
}

int ghost_slurm_requeue(uint32_t job_id, char *err, int errlen) {
    if (ghost_slurm_load(err, errlen) != 0) return -1;
    if (p_requeue(job_id, 0) != 0) {
        snprintf(err, errlen, "slurm_requeue(%u): %s", job_id, p_strerror(p_errno()));
        return -1;
    }
    return 0;
}

int ghost_slurm_end_time(uint32_t job_id, int64_t *end, char *err, int errlen) {
    if (ghost_slurm_load(err, errlen) != 0) return -1;
    job_info_msg_t *msg = NULL;
    if (p_load_job(&msg, job_id, SHOW_ALL) != 0 || !msg || msg->record_count < 1) {
        snprintf(err, errlen, "slurm_load_job(%u): %s", job_id, p_strerror(p_errno()));
        if (msg) p_free_job(msg);
        return -1;
    }
    *end = (int64_t)msg->job_array[0].end_time;
    p_free_job(msg);
    return 0;
}
