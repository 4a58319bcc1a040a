// Jobs in their own user + PID + mount namespaces, so that every process and
// thread can get its PID back on restore (clone3 set_tid), without privilege:
// the user's uid/gid are mapped to themselves, and /proc is remounted so the
// job sees its own PIDs there.
#ifndef GHOST_NS_H
#define GHOST_NS_H
#include <stdint.h>
#include <sys/types.h>

/// Starts "ghost-init" as PID 1 of new namespaces; it runs PROGRAM as its
/// child (PID 2) and exits with its status (128+N for signal N), killing the
/// rest of the namespace. Returns ghost-init's pid here, or -1 with *err_errno
/// and *err_step (1 clone, 2 uid/gid map, 3 mount /proc, 4 fork, 5 exec).
/// *job_out receives the job's pid as we see it.
pid_t ghost_spawn_ns(const char *path, char *const argv[], char *const envp[],
                     pid_t *job_out, int *err_errno, int *err_step);

/// One process to rebuild inside new namespaces.
struct ghost_tree_proc {
    pid_t pid;             // PID inside the namespace (clone3 set_tid)
    int parent;            // index of the parent, -1 for children of ghost-init
    pid_t sid, pgid;       // 0: inherited
    int zombie;            // 1: exits at once with exit_status (a raw wait status)
    int exit_status;
    const char *comm;      // a zombie's name (ps shows it until it is reaped)
    const char *cwd;
    int umask;
    int pdeathsig;
    int nlimits;
    const int *limit_resources;
    const uint64_t *limit_cur, *limit_max;
    int nfds;
    const int *fd_src;     // open in the caller, inherited
    const int *fd_dst;
};

struct ghost_tree {
    int n;
    const struct ghost_tree_proc *procs;
    int root;              // index of the job's main process: ghost-init exits with its status
    int ready_fd;          // internal (set by ghost_spawn_tree_ns)
    int hold_fd;           // read end of a pipe whose write end the caller keeps open:
                           // husks block reading it until they are seized
};

/// Builds the tree in new namespaces. Each husk ends blocked in read(hold)
/// with its descriptors, cwd, umask, limits, session and group set, and
/// full capabilities in the new user namespace (nothing was exec'ed), so the
/// restorer can give it its threads with set_tid and its executable with
/// PR_SET_MM_MAP, then drop them. holds[2i] and holds[2i+1] receive the
/// descriptor numbers at which husk i keeps its hold pipe and its report
/// pipe: the restorer closes both (the husk may be stopped before it closes
/// its report pipe itself). `holds` has 2 * t->n entries. Returns
/// ghost-init's pid or -1; steps: 1 clone/chdir, 2 ids/rlimit, 3 /proc/fds,
/// 4 fork, 6 setsid, 7 setpgid.
pid_t ghost_spawn_tree_ns(const struct ghost_tree *t, int *holds, int *err_errno, int *err_step);

/// Whether unprivileged user + PID namespaces work here (probe, cached).
int ghost_namespaces_available(void);
#endif
