/*
 * proc_attrs.c - per-process attributes survive checkpoint/restart:
 * current directory, umask, resource limits, and the command name.
 *
 * Usage: proc_attrs DIR
 * Before "ready": chdir(DIR), umask(027), RLIMIT_NOFILE soft limit lowered
 * to 200, RLIMIT_CORE soft limit 0, comm set to "ghostattr". After the
 * release line: getcwd() is DIR, umask is 027 (and a new file gets mode
 * 0640), the limits are unchanged, comm is "ghostattr", and a relative path
 * opens in DIR.
 */
#include "common.h"
#include <fcntl.h>
#include <limits.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>

int main(int argc, char **argv)
{
    CHECK(argc == 2, "usage: proc_attrs DIR");
    char dir[PATH_MAX];
    CHECK(realpath(argv[1], dir) != NULL, "realpath %s", argv[1]);
    CHECK(chdir(dir) == 0, "chdir %s: %s", dir, strerror(errno));
    umask(027);
    struct rlimit nofile, core;
    CHECK(getrlimit(RLIMIT_NOFILE, &nofile) == 0, "getrlimit");
    nofile.rlim_cur = 200;
    CHECK(setrlimit(RLIMIT_NOFILE, &nofile) == 0, "setrlimit NOFILE: %s", strerror(errno));
    CHECK(getrlimit(RLIMIT_CORE, &core) == 0, "getrlimit CORE");
    core.rlim_cur = 0;
    CHECK(setrlimit(RLIMIT_CORE, &core) == 0, "setrlimit CORE: %s", strerror(errno));
    CHECK(prctl(PR_SET_NAME, "ghostattr", 0, 0, 0) == 0, "PR_SET_NAME");
    struct rlimit nofile0, core0, stack0;
    getrlimit(RLIMIT_NOFILE, &nofile0);
    getrlimit(RLIMIT_CORE, &core0);
    getrlimit(RLIMIT_STACK, &stack0);

    ready();
    wait_release();

    char cwd[PATH_MAX];
    CHECK(getcwd(cwd, sizeof cwd) != NULL, "getcwd after resume: %s", strerror(errno));
    CHECK(strcmp(cwd, dir) == 0, "cwd is '%s' after resume, expected '%s'", cwd, dir);
    mode_t m = umask(022);
    CHECK(m == 027, "umask is %03o after resume, expected 027", (unsigned)m);
    umask(m);
    struct rlimit r;
    getrlimit(RLIMIT_NOFILE, &r);
    CHECK(r.rlim_cur == nofile0.rlim_cur && r.rlim_max == nofile0.rlim_max,
          "RLIMIT_NOFILE %llu/%llu after resume, was %llu/%llu", (unsigned long long)r.rlim_cur,
          (unsigned long long)r.rlim_max, (unsigned long long)nofile0.rlim_cur, (unsigned long long)nofile0.rlim_max);
    getrlimit(RLIMIT_CORE, &r);
    CHECK(r.rlim_cur == core0.rlim_cur && r.rlim_max == core0.rlim_max, "RLIMIT_CORE changed after resume");
    getrlimit(RLIMIT_STACK, &r);
    CHECK(r.rlim_cur == stack0.rlim_cur && r.rlim_max == stack0.rlim_max, "RLIMIT_STACK changed after resume");
    char comm[32] = "";
    CHECK(prctl(PR_GET_NAME, comm, 0, 0, 0) == 0, "PR_GET_NAME");
    CHECK(strcmp(comm, "ghostattr") == 0, "comm is '%s' after resume, expected 'ghostattr'", comm);

    int fd = open("created-after-resume", O_WRONLY | O_CREAT | O_TRUNC, 0666);
    CHECK(fd >= 0, "open relative file: %s", strerror(errno));
    close(fd);
    struct stat st;
    char full[PATH_MAX + 64];
    snprintf(full, sizeof full, "%s/created-after-resume", dir);
    CHECK(stat(full, &st) == 0, "relative file not created in %s", dir);
    CHECK((st.st_mode & 0777) == 0640, "new file mode %03o, expected 0640 (umask 027)", (unsigned)(st.st_mode & 0777));
    ok("cwd %s, umask 027, NOFILE soft 200, CORE soft 0, comm ghostattr", dir);
}
