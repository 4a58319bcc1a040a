// Small C layer for what Swift cannot call directly: variadic ptrace/syscall,
// wait-status macros, and fork+exec paths that must not run Swift code in the child.
#ifndef GHOST_SYS_H
#define GHOST_SYS_H
#include <stdint.h>
#include <sys/types.h>
#include <sys/user.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/uio.h>
#include "ghost_ns.h"

typedef struct user_regs_struct ghost_regs_t;

long ghost_ptrace(int request, pid_t pid, unsigned long addr, unsigned long data);
int ghost_getregs(pid_t pid, ghost_regs_t *regs);
int ghost_setregs(pid_t pid, const ghost_regs_t *regs);
/// NT_X86_XSTATE: returns the number of bytes filled, or -1.
long ghost_get_xstate(pid_t pid, void *buf, size_t len);
int ghost_set_xstate(pid_t pid, const void *buf, size_t len);
int ghost_get_sigmask(pid_t pid, uint64_t *mask);
int ghost_set_sigmask(pid_t pid, uint64_t mask);
/// PTRACE_PEEKSIGINFO: copies up to max siginfos (128 bytes each) from the
/// private (shared=0) or shared queue. Returns count or -1.
int ghost_peek_siginfo(pid_t pid, int shared, void *out, int max);

/// PTRACE_GET_RSEQ_CONFIGURATION. Returns 0 and fills the fields, or -1.
int ghost_get_rseq(pid_t pid, uint64_t *abi, uint32_t *len, uint32_t *flags, uint32_t *sig);

long ghost_syscall6(long nr, long a1, long a2, long a3, long a4, long a5, long a6);

int ghost_wifexited(int status);
int ghost_wexitstatus(int status);
int ghost_wifsignaled(int status);
int ghost_wtermsig(int status);
int ghost_wifstopped(int status);
int ghost_wstopsig(int status);
/// status >> 16: the PTRACE_EVENT_* of a ptrace-event stop.
int ghost_wptrace_event(int status);

uint64_t ghost_xgetbv0(void);

ssize_t ghost_process_vm_readv(pid_t pid, const struct iovec *local, unsigned long nlocal,
                               const struct iovec *remote, unsigned long nremote);
ssize_t ghost_process_vm_writev(pid_t pid, const struct iovec *local, unsigned long nlocal,
                                const struct iovec *remote, unsigned long nremote);
/// A duplicate, in this process, of descriptor `fd` of process `pid`
/// (pidfd_open + pidfd_getfd). -1 with errno on failure.
int ghost_grab_fd(pid_t pid, int fd);
/// Copies up to `len` bytes buffered in pipe `in` into pipe `out` without
/// consuming them (tee, non-blocking). Returns bytes copied or -1.
long ghost_tee(int in, int out, size_t len);
int ghost_pipe2(int fds[2], int flags);
/// statfs(2) f_type of the filesystem holding `path` (e.g. TMPFS_MAGIC), or -1.
long ghost_fs_type(const char *path);
/// memfd_create(2) (glibc hides it behind _GNU_SOURCE).
int ghost_memfd_create(const char *name, unsigned flags);
/// F_GETPIPE_SZ / F_SETPIPE_SZ.
int ghost_pipe_size(int fd);
int ghost_set_pipe_size(int fd, int size);

/// CPUs this process may run on (sched_getaffinity).
int ghost_cpu_count(void);
/// prctl(PR_SET_CHILD_SUBREAPER, 1).
int ghost_set_child_subreaper(void);

/// kcmp(KCMP_FILE): 0 when both descriptors are the same open file description.
int ghost_kcmp(pid_t p1, pid_t p2, int fd1, int fd2);

/// fork + exec for ghost-run's job. The child gets an empty signal mask and
/// default dispositions, PR_SET_PDEATHSIG(pdeathsig) if non-zero, and the fds
/// it inherited minus the ones with FD_CLOEXEC. argv/envp NULL-terminated.
/// If exec fails the errno is reported through *exec_errno and -1 returned.
pid_t ghost_spawn(const char *path, char *const argv[], char *const envp[],
                  int pdeathsig, int *exec_errno);

/// A husk: a child that sets up cwd, umask, rlimits and descriptors, asks to
/// be traced (PTRACE_TRACEME), and execs `path`; it stops at its first
/// instruction (SIGTRAP) for the restorer to fill.
struct ghost_husk_config {
    const char *path;
    char *const *argv;
    char *const *envp;
    const char *cwd;
    int umask;
    int pdeathsig;
    int nlimits;
    const int *limit_resources;
    const uint64_t *limit_cur;
    const uint64_t *limit_max;
    int nfds;
    const int *fd_src;   // open in the parent
    const int *fd_dst;   // number the job expects
};
/// Returns pid, or -1 with *err_errno and *err_step (1 chdir, 2 rlimit, 3 fds, 4 traceme, 5 exec).
pid_t ghost_husk_spawn(const struct ghost_husk_config *cfg, int *err_errno, int *err_step);

/// PAGEMAP_SCAN ioctl on an open /proc/PID/pagemap. Fills regions (start,end,categories
/// triples of uint64) for pages in [start,end) that have any of `anyof` categories.
/// Returns number of regions or -1 (errno ENOTTY/EINVAL when unsupported). *walk_end is
/// where the walk stopped (== end when complete).
#define GHOST_PAGE_IS_FILE    (1 << 2)
#define GHOST_PAGE_IS_PRESENT (1 << 3)
#define GHOST_PAGE_IS_SWAPPED (1 << 4)
#define GHOST_PAGE_IS_PFNZERO (1 << 5)
long ghost_pagemap_scan(int fd, uint64_t start, uint64_t end, uint64_t anyof, uint64_t return_mask,
                        uint64_t *regions, uint64_t max_regions, uint64_t *walk_end);

/// What ghost needs to know of a file, from statx (without following a final
/// symlink): birth time is -1 where the file system does not report it.
struct ghost_file_info {
    uint32_t mode;
    uint32_t uid;
    int64_t size;
    int64_t mtime_ns;
    int64_t btime_ns;
};
/// 0, or -1 with errno.
int ghost_file_info(int dirfd, const char *name, struct ghost_file_info *out);

/// Records which signals this process inherited as ignored (call before
/// changing any disposition); the job is started with them ignored too.
/// Returns them, bit s-1 for signal s.
uint64_t ghost_record_ignored_signals(void);

#endif
