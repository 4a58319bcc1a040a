#define _GNU_SOURCE
#include "ghost_ns.h"
#include "ghost_child.h"
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/sched.h>

// Everything below the fork points runs in a child: async-signal-safe calls
// only, no Swift, no malloc.

struct report { int index, step, err, hold, ready; };

static void fail_report(int fd, int index, int step, int err) {
    struct report r = { index, step, err, -1, -1 };
    ssize_t w = write(fd, &r, sizeof r);
    (void)w;
    _exit(127);
}

static int write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = write(fd, text, strlen(text));
    int e = errno;
    close(fd);
    errno = e;
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

// Maps our uid and gid to themselves in the child's new user namespace.
static int map_ids(pid_t pid) {
    char path[64], line[64];
    snprintf(path, sizeof path, "/proc/%d/setgroups", pid);
    if (write_file(path, "deny") != 0 && errno != ENOENT) return -1;
    snprintf(path, sizeof path, "/proc/%d/uid_map", pid);
    snprintf(line, sizeof line, "%u %u 1\n", (unsigned)geteuid(), (unsigned)geteuid());
    if (write_file(path, line) != 0) return -1;
    snprintf(path, sizeof path, "/proc/%d/gid_map", pid);
    snprintf(line, sizeof line, "%u %u 1\n", (unsigned)getegid(), (unsigned)getegid());
    return write_file(path, line);
}

// Private mounts, and a /proc that shows the namespace's own PIDs.
static int mount_proc(void) {
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) return -1;
    return mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
}

// PID 1: reap everything; when the job's main process ends, end with its
// status (the kernel then kills whatever is left in the namespace).
static void init_loop(pid_t job) {
    for (;;) {
        int st;
        pid_t r = waitpid(-1, &st, __WALL);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) _exit(0);
        if (r == job) {
            if (WIFEXITED(st)) _exit(WEXITSTATUS(st));
            if (WIFSIGNALED(st)) _exit(128 + WTERMSIG(st));
        }
    }
}

// clone(NEWUSER|NEWPID|NEWNS) as a fork; the child waits on `go` for its id maps.
static pid_t clone_namespaces(int go_read, int go_write, int rep_read, int rep_write, int *err_errno, int *err_step) {
    pid_t pid = (pid_t)syscall(SYS_clone, CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0);
    if (pid < 0) { *err_errno = errno; *err_step = 1; return -1; }
    if (pid == 0) {
        close(go_write);
        close(rep_read);
        char c;
        if (read(go_read, &c, 1) != 1) _exit(127);
        close(go_read);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        prctl(PR_SET_NAME, "ghost-init");
        if (mount_proc() != 0) fail_report(rep_write, -1, 3, errno);
        return 0;
    }
    close(go_read);
    if (map_ids(pid) != 0) {
        *err_errno = errno; *err_step = 2;
        kill(pid, SIGKILL);
        waitpid(pid, NULL, __WALL);
        close(go_write);
        return -1;
    }
    char c = 1;
    if (write(go_write, &c, 1) != 1) { *err_errno = errno; *err_step = 2; }
    close(go_write);
    return pid;
}

static pid_t wait_reports(pid_t init, int rep_read, int expected, int *err_errno, int *err_step, int *holds) {
    int got = 0;
    for (;;) {
        struct report r;
        ssize_t n = read(rep_read, &r, sizeof r);
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) break;
        if (n != (ssize_t)sizeof r) { *err_errno = EIO; *err_step = 4; goto fail; }
        if (r.step != 0) { *err_errno = r.err; *err_step = r.step; goto fail; }
        if (holds && r.index >= 0) { holds[2 * r.index] = r.hold; holds[2 * r.index + 1] = r.ready; }
        if (++got == expected) break;
    }
    if (got < expected) { *err_errno = ECHILD; *err_step = 4; goto fail; }
    close(rep_read);
    return init;
fail:
    close(rep_read);
    kill(init, SIGKILL);
    waitpid(init, NULL, __WALL);
    return -1;
}

// The first child of `pid` as we see it (from /proc/PID/task/PID/children), or 0.
static pid_t first_child(pid_t pid) {
    char path[80], buf[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", pid, pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    return (pid_t)atoi(buf);
}

pid_t ghost_spawn_ns(const char *path, char *const argv[], char *const envp[],
                     pid_t *job_out, int *err_errno, int *err_step) {
    int go[2], rep[2], start[2];
    if (pipe2(go, O_CLOEXEC) != 0) { *err_errno = errno; *err_step = 1; return -1; }
    if (pipe2(rep, O_CLOEXEC) != 0) { *err_errno = errno; *err_step = 1; close(go[0]); close(go[1]); return -1; }
    if (pipe2(start, O_CLOEXEC) != 0) { *err_errno = errno; *err_step = 1; close(go[0]); close(go[1]); close(rep[0]); close(rep[1]); return -1; }
    pid_t init = clone_namespaces(go[0], go[1], rep[0], rep[1], err_errno, err_step);
    if (init < 0) { close(rep[0]); close(rep[1]); close(start[0]); close(start[1]); return -1; }
    if (init == 0) {
        close(start[1]);
        pid_t job = fork();
        if (job < 0) fail_report(rep[1], -1, 4, errno);
        if (job == 0) {
            ghost_job_signals();
            // Wait until ghost knows our PID: a job that ends at once must
            // not be gone before it is found.
            char c;
            if (read(start[0], &c, 1) != 1) _exit(127);
            execve(path, argv, envp);
            fail_report(rep[1], -1, 5, errno);
        }
        close(rep[1]);
        // ghost-init holds nothing of ghost's: a pipe end or a lock kept open
        // here would change what the job sees.
        syscall(SYS_close_range, 3U, ~0U, 0);
        init_loop(job);
    }
    close(rep[1]);
    close(start[0]);
    pid_t job = 0;
    for (int i = 0; i < 5000 && job == 0; i++) {
        job = first_child(init);
        if (job == 0) usleep(1000);
    }
    *job_out = job;
    char c = 1;
    ssize_t w = write(start[1], &c, 1);
    (void)w;
    close(start[1]);
    // EOF on the report pipe = the job's exec closed the last copy: success.
    return wait_reports(init, rep[0], 0, err_errno, err_step, NULL);
}

// ---- restore: a tree of husks with their old PIDs ----

static pid_t clone_with_pid(pid_t want) {
    struct clone_args a;
    memset(&a, 0, sizeof a);
    a.exit_signal = SIGCHLD;
    a.set_tid = (uint64_t)(uintptr_t)&want;
    a.set_tid_size = 1;
    return (pid_t)syscall(SYS_clone3, &a, sizeof a);
}

static void husk(const struct ghost_tree *t, int i);

static pid_t spawn_husk(const struct ghost_tree *t, int j) {
    pid_t r = clone_with_pid(t->procs[j].pid);
    if (r < 0) fail_report(t->ready_fd, j, 4, errno);
    if (r == 0) { husk(t, j); _exit(0); }
    return r;
}

// Installs the husk's descriptors; keeps `ready` and `hold` above them.
static void husk_fds(const struct ghost_tree *t, int i, int *hold_out, int *ready_out) {
    const struct ghost_tree_proc *p = &t->procs[i];
    int keep[2] = { t->ready_fd, t->hold_fd };
    if (ghost_place_fds(2, keep, p->nfds, p->fd_src, p->fd_dst) != 0) fail_report(keep[0], i, 3, errno);
    *ready_out = keep[0];
    *hold_out = keep[1];
}

static void husk(const struct ghost_tree *t, int i) {
    const struct ghost_tree_proc *p = &t->procs[i];
    if (p->sid == p->pid && setsid() < 0) fail_report(t->ready_fd, i, 6, errno);
    // A group leader makes its group first (a zombie too: it stays a member
    // until reaped), so the members, rebuilt concurrently, can join it.
    if (p->pgid == p->pid && getpgid(0) != p->pid && setpgid(0, 0) != 0) fail_report(t->ready_fd, i, 7, errno);
    if (p->zombie) {
        int st = p->exit_status;
        if (p->comm) prctl(PR_SET_NAME, p->comm, 0, 0, 0);
        if (WIFSIGNALED(st)) {
            signal(WTERMSIG(st), SIG_DFL);
            sigset_t all; sigemptyset(&all); sigprocmask(SIG_SETMASK, &all, NULL);
            kill(getpid(), WTERMSIG(st));
        }
        _exit(WEXITSTATUS(st));
    }
    int pgid_done = (p->pgid == 0 || getpgid(0) == p->pgid);
    if (!pgid_done && setpgid(0, p->pgid) == 0) pgid_done = 1;
    for (int j = 0; j < t->n; j++)
        if (t->procs[j].parent == i) spawn_husk(t, j);
    // The leader may be a sibling or a cousin, rebuilt at the same time:
    // until it has made the group, joining fails with EPERM. Wait for it (2 s at most).
    for (int tries = 0; !pgid_done && tries < 2000; tries++) {
        if (setpgid(0, p->pgid) == 0) { pgid_done = 1; break; }
        if (errno != EPERM && errno != ESRCH) break;
        struct timespec ms = { 0, 1000000 };
        nanosleep(&ms, NULL);
    }
    if (!pgid_done) fail_report(t->ready_fd, i, 7, errno);
    int hold, ready;
    husk_fds(t, i, &hold, &ready);
    if (p->cwd && chdir(p->cwd) != 0) fail_report(ready, i, 1, errno);
    umask((mode_t)p->umask);
    for (int k = 0; k < p->nlimits; k++) {
        struct rlimit rl = { p->limit_cur[k], p->limit_max[k] };
        if (setrlimit(p->limit_resources[k], &rl) != 0) fail_report(ready, i, 2, errno);
    }
    if (p->pdeathsig) prctl(PR_SET_PDEATHSIG, p->pdeathsig);
    struct report r = { i, 0, 0, hold, ready };
    if (write(ready, &r, sizeof r) != (ssize_t)sizeof r) _exit(127);
    close(ready);
    for (;;) {
        char c;
        ssize_t n = read(hold, &c, 1);
        if (n == 0) _exit(1);   // the restorer gave up before seizing us
    }
}

pid_t ghost_spawn_tree_ns(const struct ghost_tree *t, int *holds, int *err_errno, int *err_step) {
    int go[2], rep[2];
    if (pipe2(go, O_CLOEXEC) != 0) { *err_errno = errno; *err_step = 1; return -1; }
    if (pipe2(rep, O_CLOEXEC) != 0) { *err_errno = errno; *err_step = 1; close(go[0]); close(go[1]); return -1; }
    // The husks report through `rep`; the caller's ready_fd is replaced by it.
    struct ghost_tree tt = *t;
    tt.ready_fd = rep[1];
    pid_t init = clone_namespaces(go[0], go[1], rep[0], rep[1], err_errno, err_step);
    if (init < 0) { close(rep[0]); close(rep[1]); return -1; }
    if (init == 0) {
        ghost_reset_signals();
        pid_t root = -1;
        for (int j = 0; j < tt.n; j++)
            if (tt.procs[j].parent == -1) {
                pid_t r = spawn_husk(&tt, j);
                if (j == tt.root) root = r;
            }
        close(rep[1]);
        close(tt.hold_fd);
        syscall(SYS_close_range, 3U, ~0U, 0);
        init_loop(root);
    }
    close(rep[1]);
    int expected = 0;
    for (int j = 0; j < t->n; j++) if (!t->procs[j].zombie) expected++;
    return wait_reports(init, rep[0], expected, err_errno, err_step, holds);
}

static int probed = -1;
int ghost_namespaces_available(void) {
    if (probed >= 0) return probed;
    int go[2], rep[2];
    int e = 0, s = 0;
    if (pipe2(go, O_CLOEXEC) != 0 || pipe2(rep, O_CLOEXEC) != 0) return probed = 0;
    pid_t pid = clone_namespaces(go[0], go[1], rep[0], rep[1], &e, &s);
    if (pid == 0) _exit(0);
    close(rep[1]);
    if (pid < 0) { close(rep[0]); return probed = 0; }
    struct report r;
    ssize_t n = read(rep[0], &r, sizeof r);
    close(rep[0]);
    int st = 0;
    waitpid(pid, &st, __WALL);
    probed = (n == 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0) ? 1 : 0;
    return probed;
}
