/*
 * sigaltstack.c - the alternate signal stack survives checkpoint/restart.
 *
 * Before "ready": a 64 KiB sigaltstack is installed and SIGUSR2 gets an
 * SA_ONSTACK handler. After the release line: sigaltstack() reports the same
 * stack, and the handler, run by raise(SIGUSR2), finds itself on it
 * (address of a local inside the stack, SS_ONSTACK reported).
 */
#include "common.h"
#include <signal.h>

#define ALT_SIZE (64 * 1024)

static char *alt;
static volatile sig_atomic_t runs, on_alt, flag_onstack;

static void on_usr2(int sig)
{
    (void)sig;
    char local;
    stack_t cur;
    runs++;
    on_alt = &local >= alt && &local < alt + ALT_SIZE;
    flag_onstack = sigaltstack(NULL, &cur) == 0 && (cur.ss_flags & SS_ONSTACK);
}

int main(void)
{
    alt = malloc(ALT_SIZE);
    CHECK(alt, "malloc");
    stack_t ss = { .ss_sp = alt, .ss_size = ALT_SIZE, .ss_flags = 0 };
    CHECK(sigaltstack(&ss, NULL) == 0, "sigaltstack: %s", strerror(errno));
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr2;
    sa.sa_flags = SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR2, &sa, NULL) == 0, "sigaction");
    raise(SIGUSR2);
    CHECK(runs == 1 && on_alt && flag_onstack, "handler not on the alternate stack before checkpoint");

    ready();
    wait_release();

    stack_t cur;
    CHECK(sigaltstack(NULL, &cur) == 0, "sigaltstack query: %s", strerror(errno));
    CHECK(cur.ss_sp == alt && cur.ss_size == ALT_SIZE, "alternate stack is %p+%zu after resume, was %p+%d",
          cur.ss_sp, cur.ss_size, (void *)alt, ALT_SIZE);
    CHECK(!(cur.ss_flags & SS_DISABLE), "alternate stack disabled after resume");
    raise(SIGUSR2);
    CHECK(runs == 2, "handler did not run after resume");
    CHECK(on_alt, "handler did not run on the alternate stack after resume");
    CHECK(flag_onstack, "SS_ONSTACK not reported inside the handler after resume");
    ok("sigaltstack %p+%d intact, handler runs on it", (void *)alt, ALT_SIZE);
}
