// libslurm, loaded at run time with dlopen: ghost works on machines without
// Slurm, and says so clearly only when a Slurm feature is asked for.
#ifndef GHOST_SLURM_H
#define GHOST_SLURM_H
#include <stdint.h>

/// 0 when libslurm is loaded and initialised; otherwise -1 and a message in err.
int ghost_slurm_load(char *err, int errlen);
/// Requeues job `job_id` (same job id, runs again later). 0 or -1 + message.
int ghost_slurm_requeue(uint32_t job_id, char *err, int errlen);
/// The job's expected end time (seconds since the epoch) into *end. 0 or -1 + message.
int ghost_slurm_end_time(uint32_t job_id, int64_t *end, char *err, int errlen);
#endif
