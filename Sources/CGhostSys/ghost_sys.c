#define _GNU_SOURCE
#include "ghost_sys.h"
#include "ghost_child.h"
#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <linux/elf.h>
#include <linux/fs.h>
#include <linux/ptrace.h>

long ghost_ptrace(int request, pid_t pid, unsigned long addr, unsigned long data) {
    return ptrace((enum __ptrace_request)request, pid, (void *)addr, (void *)data);
}

int ghost_getregs(pid_t pid, ghost_regs_t *regs) {
    return (int)ptrace(PTRACE_GETREGS, pid, 0, regs);
}

int ghost_setregs(pid_t pid, const ghost_regs_t *regs) {
    return (int)ptrace(PTRACE_SETREGS, pid, 0, (void *)regs);
}

long ghost_get_xstate(pid_t pid, void *buf, size_t len) {
    struct iovec iov = { buf, len };
    if (ptrace(PTRACE_GETREGSET, pid, (void *)NT_X86_XSTATE, &iov) != 0) return -1;
    return (long)iov.iov_len;
}

int ghost_set_xstate(pid_t pid, const void *buf, size_t len) {
    struct iovec iov = { (void *)buf, len };
    return (int)ptrace(PTRACE_SETREGSET, pid, (void *)NT_X86_XSTATE, &iov);
}

int ghost_get_sigmask(pid_t pid, uint64_t *mask) {
    return (int)ptrace(PTRACE_GETSIGMASK, pid, (void *)sizeof(uint64_t), mask);
}

int ghost_set_sigmask(pid_t pid, uint64_t mask) {
    return (int)ptrace(PTRACE_SETSIGMASK, pid, (void *)sizeof(uint64_t), &mask);
}

int ghost_peek_siginfo(pid_t pid, int shared, void *out, int max) {
    struct ptrace_peeksiginfo_args args = {
        .off = 0, .flags = shared ? PTRACE_PEEKSIGINFO_SHARED : 0, .nr = max };
    return (int)ptrace(PTRACE_PEEKSIGINFO, pid, &args, out);
}

int ghost_get_rseq(pid_t pid, uint64_t *abi, uint32_t *len, uint32_t *flags, uint32_t *sig) {
    struct ptrace_rseq_configuration conf;
    memset(&conf, 0, sizeof conf);
    if (ptrace(PTRACE_GET_RSEQ_CONFIGURATION, pid, (void *)sizeof conf, &conf) < 0) return -1;
    *abi = conf.rseq_abi_pointer; *len = conf.rseq_abi_size;
    *flags = conf.flags; *sig = conf.signature;
    return 0;
}

long ghost_syscall6(long nr, long a1, long a2, long a3, long a4, long a5, long a6) {
    return syscall(nr, a1, a2, a3, a4, a5, a6);
}

int ghost_wifexited(int s) { return WIFEXITED(s); }
int ghost_wexitstatus(int s) { return WEXITSTATUS(s); }
int ghost_wifsignaled(int s) { return WIFSIGNALED(s); }
int ghost_wtermsig(int s) { return WTERMSIG(s); }
int ghost_wifstopped(int s) { return WIFSTOPPED(s); }
int ghost_wstopsig(int s) { return WSTOPSIG(s); }
int ghost_wptrace_event(int s) { return (s >> 16) & 0xff; }

int ghost_kcmp(pid_t p1, pid_t p2, int fd1, int fd2) {
    return (int)syscall(SYS_kcmp, p1, p2, 0 /* KCMP_FILE */, fd1, fd2);
}

ssize_t ghost_process_vm_readv(pid_t pid, const struct iovec *local, unsigned long nlocal,
                               const struct iovec *remote, unsigned long nremote) {
    return process_vm_readv(pid, local, nlocal, remote, nremote, 0);
}

ssize_t ghost_process_vm_writev(pid_t pid, const struct iovec *local, unsigned long nlocal,
                                const struct iovec *remote, unsigned long nremote) {
    return process_vm_writev(pid, local, nlocal, remote, nremote, 0);
}

int ghost_grab_fd(pid_t pid, int fd) {
    int pidfd = (int)syscall(434 /* pidfd_open */, pid, 0);
    if (pidfd < 0) return -1;
    int r = (int)syscall(438 /* pidfd_getfd */, pidfd, fd, 0);
    int e = errno;
    close(pidfd);
    errno = e;
    return r;
}

long ghost_tee(int in, int out, size_t len) {
    return (long)tee(in, out, len, SPLICE_F_NONBLOCK);
}

int ghost_pipe2(int fds[2], int flags) { return pipe2(fds, flags); }
long ghost_fs_type(const char *path) { struct statfs fs; return statfs(path, &fs) == 0 ? (long)fs.f_type : -1; }
int ghost_memfd_create(const char *name, unsigned flags) { return (int)syscall(SYS_memfd_create, name, flags); }
int ghost_pipe_size(int fd) { return fcntl(fd, F_GETPIPE_SZ); }
int ghost_set_pipe_size(int fd, int size) { return fcntl(fd, F_SETPIPE_SZ, size); }

int ghost_cpu_count(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
    return CPU_COUNT(&set);
}

int ghost_set_child_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }

uint64_t ghost_xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

// Signals ignored by whoever started ghost (nohup: SIGHUP), bit s-1 for
// signal s: the job starts with them ignored too, as it would without ghost.
static uint64_t inherited_ignored;

uint64_t ghost_record_ignored_signals(void) {
    uint64_t mask = 0;
    for (int s = 1; s < 65; s++) {
        struct sigaction sa;
        if (s != SIGKILL && s != SIGSTOP && sigaction(s, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN)
            mask |= 1ULL << (s - 1);
    }
    inherited_ignored = mask;
    return mask;
}

// Child side of a fork that execs the job: defaults, then what the launcher ignored.
void ghost_job_signals(void) {
    ghost_reset_signals();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    for (int s = 1; s < 65; s++)
        if (inherited_ignored >> (s - 1) & 1) sigaction(s, &sa, NULL);
}

// Child side of a fork: only async-signal-safe calls from here on.
void ghost_reset_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    for (int s = 1; s < 65; s++) {
        if (s == SIGKILL || s == SIGSTOP) continue;
        sigaction(s, &sa, NULL);
    }
    sigset_t empty;
    sigemptyset(&empty);
    sigprocmask(SIG_SETMASK, &empty, NULL);
}

static void report_and_exit(int fd, int step, int err) {
    int msg[2] = { step, err };
    ssize_t r = write(fd, msg, sizeof msg);
    (void)r;
    _exit(127);
}

static pid_t wait_report(pid_t pid, int rfd, int *err_errno, int *err_step) {
    int msg[2];
    ssize_t n;
    do { n = read(rfd, msg, sizeof msg); } while (n < 0 && errno == EINTR);
    close(rfd);
    if (n == (ssize_t)sizeof msg) {
        int st;
        while (waitpid(pid, &st, __WALL) < 0 && errno == EINTR) {}
        if (err_step) *err_step = msg[0];
        *err_errno = msg[1];
        return -1;
    }
    return pid;
}

pid_t ghost_spawn(const char *path, char *const argv[], char *const envp[],
                  int pdeathsig, int *exec_errno) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) { *exec_errno = errno; return -1; }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) { *exec_errno = errno; close(p[0]); close(p[1]); return -1; }
    if (pid == 0) {
        close(p[0]);
        ghost_job_signals();
        if (pdeathsig) {
            prctl(PR_SET_PDEATHSIG, pdeathsig);
            if (getppid() != parent) _exit(128 + pdeathsig);
        }
        execve(path, argv, envp);
        report_and_exit(p[1], 5, errno);
    }
    close(p[1]);
    return wait_report(pid, p[0], exec_errno, NULL);
}

int ghost_place_fds(int nkeep, int *keep, int n, const int *src, const int *dst) {
    // Room for high descriptor numbers while they are moved.
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }
    int top = 2;
    for (int k = 0; k < nkeep; k++) if (keep[k] > top) top = keep[k];
    for (int i = 0; i < n; i++) {
        if (dst[i] > top) top = dst[i];
        if (src[i] > top) top = src[i];
    }
    for (int k = 0; k < nkeep; k++) {
        int moved = fcntl(keep[k], F_DUPFD_CLOEXEC, top + 1);
        if (moved < 0) return -1;
        keep[k] = top = moved;
    }
    int base = top + 1;
    int moved[n > 0 ? n : 1];
    for (int i = 0; i < n; i++) {
        moved[i] = fcntl(src[i], F_DUPFD, base);
        if (moved[i] < base) return -1;
    }
    // Everything below base that is neither kept nor a destination goes.
    for (int fd = 0; fd < base; fd++) {
        int wanted = 0;
        for (int k = 0; k < nkeep; k++) if (keep[k] == fd) wanted = 1;
        for (int i = 0; i < n; i++) if (dst[i] == fd) wanted = 1;
        if (!wanted) close(fd);
    }
    for (int i = 0; i < n; i++)
        if (dup2(moved[i], dst[i]) < 0) return -1;
    return (int)syscall(SYS_close_range, (unsigned)base, ~0U, 0) == 0 ? 0 : -1;
}

pid_t ghost_husk_spawn(const struct ghost_husk_config *c, int *err_errno, int *err_step) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) { *err_errno = errno; *err_step = 0; return -1; }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) { *err_errno = errno; *err_step = 0; close(p[0]); close(p[1]); return -1; }
    if (pid == 0) {
        close(p[0]);
        ghost_reset_signals();
        if (c->pdeathsig) {
            prctl(PR_SET_PDEATHSIG, c->pdeathsig);
            if (getppid() != parent) _exit(128 + c->pdeathsig);
        }
        if (c->cwd && chdir(c->cwd) != 0) report_and_exit(p[1], 1, errno);
        umask((mode_t)c->umask);
        int rp = p[1];
        if (ghost_place_fds(1, &rp, c->nfds, c->fd_src, c->fd_dst) != 0) report_and_exit(rp, 3, errno);
        // Limits last: a lowered RLIMIT_NOFILE must not stop the descriptor
        // moves above (the job may hold fds above its own soft limit).
        for (int i = 0; i < c->nlimits; i++) {
            struct rlimit rl = { c->limit_cur[i], c->limit_max[i] };
            if (setrlimit(c->limit_resources[i], &rl) != 0) report_and_exit(rp, 2, errno);
        }
        if (ptrace(PTRACE_TRACEME, 0, 0, 0) != 0) report_and_exit(rp, 4, errno);
        execve(c->path, c->argv, c->envp);
        report_and_exit(rp, 5, errno);
    }
    close(p[1]);
    return wait_report(pid, p[0], err_errno, err_step);
}

// PAGEMAP_SCAN (Linux 6.7); Debian 12's headers predate it, so declare it here.
struct ghost_pm_scan_arg {
    uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
    uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define GHOST_PAGEMAP_SCAN _IOWR('f', 16, struct ghost_pm_scan_arg)

long ghost_pagemap_scan(int fd, uint64_t start, uint64_t end, uint64_t anyof, uint64_t return_mask,
                        uint64_t *regions, uint64_t max_regions, uint64_t *walk_end) {
    struct ghost_pm_scan_arg arg;
    memset(&arg, 0, sizeof arg);
    arg.size = sizeof arg;
    arg.start = start;
    arg.end = end;
    arg.vec = (uint64_t)(uintptr_t)regions;
    arg.vec_len = max_regions;
    arg.category_anyof_mask = anyof;
    arg.return_mask = return_mask;
    long n = ioctl(fd, GHOST_PAGEMAP_SCAN, &arg);
    *walk_end = arg.walk_end;
    return n;
}

int ghost_file_info(int dirfd, const char *name, struct ghost_file_info *out) {
    struct statx sx;
    if (statx(dirfd, name, AT_SYMLINK_NOFOLLOW | AT_STATX_DONT_SYNC,
              STATX_TYPE | STATX_MODE | STATX_UID | STATX_SIZE | STATX_MTIME | STATX_BTIME, &sx) != 0)
        return -1;
    out->mode = sx.stx_mode;
    out->uid = sx.stx_uid;
    out->size = (int64_t)sx.stx_size;
    out->mtime_ns = (int64_t)sx.stx_mtime.tv_sec * 1000000000 + sx.stx_mtime.tv_nsec;
    out->btime_ns = (sx.stx_mask & STATX_BTIME)
        ? (int64_t)sx.stx_btime.tv_sec * 1000000000 + sx.stx_btime.tv_nsec : -1;
    return 0;
}
