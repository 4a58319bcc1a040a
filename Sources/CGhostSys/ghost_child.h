// Helpers for code that runs in a freshly forked child (async-signal-safe only).
// Private to CGhostSys: not in include/, so Swift does not see it.
#ifndef GHOST_CHILD_H
#define GHOST_CHILD_H
/// Default dispositions for every signal and an empty mask, as after exec.
void ghost_reset_signals(void);
#endif
