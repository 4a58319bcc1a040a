/*
 * tls.c - thread-local storage survives checkpoint/restart.
 *
 * Before "ready": an initialised __thread array (.tdata) and a zero one
 * (.tbss) are modified, errno (itself TLS) is set, and the fs base (the
 * thread pointer) is recorded. After the release line: fs base unchanged,
 * &variable unchanged, values intact, errno still works per call.
 */
#include "common.h"
#include <asm/prctl.h>
#include <sys/syscall.h>

static __thread uint64_t tdata[64] = { 11, 22, 33, 44 };
static __thread uint64_t tbss[512];
static __thread int counter = 1000;

static unsigned long fs_base(void)
{
    unsigned long fs = 0;
    if (syscall(SYS_arch_prctl, ARCH_GET_FS, &fs) != 0)
        fail("arch_prctl(ARCH_GET_FS): %s", strerror(errno));
    return fs;
}

int main(void)
{
    for (int i = 4; i < 64; i++)
        tdata[i] = pattern64(5, (uint64_t)i);
    for (int i = 0; i < 512; i++)
        tbss[i] = pattern64(6, (uint64_t)i);
    counter += 234;
    unsigned long fs0 = fs_base();
    void *addr_tdata = &tdata[0], *addr_tbss = &tbss[0];
    errno = 4242;

    ready();
    wait_release();

    CHECK(fs_base() == fs0, "fs base (thread pointer) %#lx after resume, was %#lx", fs_base(), fs0);
    CHECK((void *)&tdata[0] == addr_tdata && (void *)&tbss[0] == addr_tbss, "TLS addresses moved");
    CHECK(tdata[0] == 11 && tdata[1] == 22 && tdata[2] == 33 && tdata[3] == 44, "initialised TLS values changed");
    for (int i = 4; i < 64; i++)
        CHECK(tdata[i] == pattern64(5, (uint64_t)i), "tdata[%d] differs", i);
    for (int i = 0; i < 512; i++)
        CHECK(tbss[i] == pattern64(6, (uint64_t)i), "tbss[%d] differs", i);
    CHECK(counter == 1234, "TLS counter is %d, expected 1234", counter);
    errno = 0;
    CHECK(close(-1) == -1 && errno == EBADF, "errno (TLS) does not work after resume: %d", errno);
    counter++;
    CHECK(counter == 1235, "TLS write after resume lost");
    ok("TLS intact at fs base %#lx", fs0);
}
