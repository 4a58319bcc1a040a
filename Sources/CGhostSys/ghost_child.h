// Helpers for code that runs in a freshly forked child (async-signal-safe only).
// Private to CGhostSys: not in include/, so Swift does not see it.
#ifndef GHOST_CHILD_H
#define GHOST_CHILD_H
/// Default dispositions for every signal and an empty mask, as after exec.
void ghost_reset_signals(void);
void ghost_job_signals(void);
/// Gives the child exactly the descriptors dst[i] = src[i] (i < n), plus the
/// `nkeep` descriptors in keep[], which are moved above all of them
/// (close-on-exec; their new numbers are written back). Sources are first
/// moved above every destination so no dup2 overwrites one still needed;
/// everything else is closed. Returns 0, or -1 with errno set.
int ghost_place_fds(int nkeep, int *keep, int n, const int *src, const int *dst);
#endif
