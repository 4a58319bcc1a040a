/*
 * signals_handler.c - signal dispositions and the blocked mask survive
 * checkpoint/restart.
 *
 * Before "ready": SIGUSR2 gets an SA_SIGINFO|SA_RESTART handler whose
 * sa_mask blocks SIGWINCH; SIGHUP a plain handler with SA_RESETHAND; SIGINT
 * is ignored; SIGTTIN and SIGRTMIN+3 are blocked with sigprocmask. After the
 * release line: sigaction() reports the same handlers, flags and masks,
 * the blocked mask is the same, raising SIGUSR2 runs its handler (with
 * siginfo from tgkill, SIGWINCH blocked inside), raising SIGHUP runs its
 * handler once and resets it to SIG_DFL, and SIGINT is still ignored.
 */
#include "common.h"
#include <signal.h>

static volatile sig_atomic_t usr2_runs, usr2_code_ok, usr2_mask_ok, hup_runs;

static void on_usr2(int sig, siginfo_t *si, void *ctx)
{
    (void)ctx;
    sigset_t cur;
    sigprocmask(SIG_BLOCK, NULL, &cur);
    usr2_runs++;
    usr2_code_ok = sig == SIGUSR2 && si->si_signo == SIGUSR2 && si->si_code == SI_TKILL && si->si_pid == getpid();
    usr2_mask_ok = sigismember(&cur, SIGWINCH) && sigismember(&cur, SIGUSR2);
}

static void on_hup(int sig) { (void)sig; hup_runs++; }

/* Flags as the kernel reports them, less SA_RESTORER which libc adds. */
static int flags_of(const struct sigaction *sa) { return sa->sa_flags & ~0x04000000; }

int main(void)
{
    struct sigaction usr2, hup, ign, cur;
    memset(&usr2, 0, sizeof usr2);
    usr2.sa_sigaction = on_usr2;
    usr2.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&usr2.sa_mask);
    sigaddset(&usr2.sa_mask, SIGWINCH);
    CHECK(sigaction(SIGUSR2, &usr2, NULL) == 0, "sigaction USR2");
    memset(&hup, 0, sizeof hup);
    hup.sa_handler = on_hup;
    hup.sa_flags = SA_RESETHAND;
    sigemptyset(&hup.sa_mask);
    CHECK(sigaction(SIGHUP, &hup, NULL) == 0, "sigaction HUP");
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    CHECK(sigaction(SIGINT, &ign, NULL) == 0, "sigaction INT");
    sigset_t block, mask0;
    sigemptyset(&block);
    sigaddset(&block, SIGTTIN);
    sigaddset(&block, SIGRTMIN + 3);
    CHECK(sigprocmask(SIG_BLOCK, &block, NULL) == 0, "sigprocmask");
    CHECK(sigprocmask(SIG_BLOCK, NULL, &mask0) == 0, "sigprocmask get");
    struct sigaction usr2_0, hup_0;
    sigaction(SIGUSR2, NULL, &usr2_0);
    sigaction(SIGHUP, NULL, &hup_0);

    ready();
    wait_release();

    sigset_t mask1;
    CHECK(sigprocmask(SIG_BLOCK, NULL, &mask1) == 0, "sigprocmask get after resume");
    for (int s = 1; s < NSIG; s++)
        CHECK(sigismember(&mask0, s) == sigismember(&mask1, s), "signal %d is %sblocked after resume, was not",
              s, sigismember(&mask1, s) ? "" : "not ");
    CHECK(sigismember(&mask1, SIGTTIN) && sigismember(&mask1, SIGRTMIN + 3), "blocked signals lost");

    CHECK(sigaction(SIGUSR2, NULL, &cur) == 0, "sigaction get USR2");
    CHECK(cur.sa_sigaction == on_usr2, "SIGUSR2 handler is %p, expected %p", (void *)cur.sa_sigaction, (void *)on_usr2);
    CHECK(flags_of(&cur) == flags_of(&usr2_0), "SIGUSR2 flags %#x, were %#x", flags_of(&cur), flags_of(&usr2_0));
    CHECK(cur.sa_restorer == usr2_0.sa_restorer, "SIGUSR2 sa_restorer changed");
    CHECK(sigismember(&cur.sa_mask, SIGWINCH) && !sigismember(&cur.sa_mask, SIGTERM), "SIGUSR2 sa_mask changed");
    CHECK(sigaction(SIGHUP, NULL, &cur) == 0, "sigaction get HUP");
    CHECK(cur.sa_handler == on_hup, "SIGHUP handler changed");
    CHECK(flags_of(&cur) == flags_of(&hup_0), "SIGHUP flags %#x, were %#x", flags_of(&cur), flags_of(&hup_0));
    CHECK(sigaction(SIGINT, NULL, &cur) == 0 && cur.sa_handler == SIG_IGN, "SIGINT no longer ignored");
    CHECK(sigaction(SIGQUIT, NULL, &cur) == 0 && cur.sa_handler == SIG_DFL, "SIGQUIT not default");

    CHECK(raise(SIGUSR2) == 0, "raise USR2");
    CHECK(usr2_runs == 1, "SIGUSR2 handler ran %d times, expected 1", usr2_runs);
    CHECK(usr2_code_ok, "SIGUSR2 handler got a wrong siginfo");
    CHECK(usr2_mask_ok, "SIGUSR2 handler ran without its sa_mask (SIGWINCH) applied");
    CHECK(raise(SIGINT) == 0, "raise INT");
    CHECK(raise(SIGHUP) == 0, "raise HUP");
    CHECK(hup_runs == 1, "SIGHUP handler ran %d times", hup_runs);
    CHECK(sigaction(SIGHUP, NULL, &cur) == 0 && cur.sa_handler == SIG_DFL, "SA_RESETHAND did not reset SIGHUP");
    ok("handlers, flags, sa_mask and blocked mask intact; handlers run after resume");
}
