/*
 * signal_pending.c - pending signals survive checkpoint/restart.
 *
 * Before "ready": SIGUSR2 and SIGRTMIN+1 are blocked; SIGUSR2 is raised
 * (thread-directed, via tgkill) and SIGRTMIN+1 is queued twice to the
 * process (sigqueue, shared queue) with values 111 and 222. After the
 * release line: sigpending() shows both; unblocking runs the SIGUSR2 handler
 * exactly once and the SIGRTMIN+1 handler twice, with values 111 then 222.
 */
#include "common.h"
#include <signal.h>

static volatile sig_atomic_t usr2_runs, rt_runs;
static volatile int rt_values[8];

static void on_usr2(int sig) { (void)sig; usr2_runs++; }

static void on_rt(int sig, siginfo_t *si, void *ctx)
{
    (void)sig; (void)ctx;
    if (rt_runs < 8)
        rt_values[rt_runs] = si->si_value.sival_int;
    rt_runs++;
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr2;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR2, &sa, NULL) == 0, "sigaction USR2");
    sa.sa_sigaction = on_rt;
    sa.sa_flags = SA_SIGINFO;
    CHECK(sigaction(SIGRTMIN + 1, &sa, NULL) == 0, "sigaction RT");
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR2);
    sigaddset(&block, SIGRTMIN + 1);
    CHECK(sigprocmask(SIG_BLOCK, &block, NULL) == 0, "sigprocmask");
    CHECK(raise(SIGUSR2) == 0, "raise");
    union sigval v;
    v.sival_int = 111;
    CHECK(sigqueue(getpid(), SIGRTMIN + 1, v) == 0, "sigqueue 111");
    v.sival_int = 222;
    CHECK(sigqueue(getpid(), SIGRTMIN + 1, v) == 0, "sigqueue 222");
    CHECK(usr2_runs == 0 && rt_runs == 0, "blocked signals delivered");

    ready();
    wait_release();

    sigset_t pend;
    CHECK(sigpending(&pend) == 0, "sigpending");
    CHECK(sigismember(&pend, SIGUSR2), "pending SIGUSR2 lost");
    CHECK(sigismember(&pend, SIGRTMIN + 1), "pending SIGRTMIN+1 lost");
    CHECK(usr2_runs == 0 && rt_runs == 0, "blocked signals delivered while blocked");
    CHECK(sigprocmask(SIG_UNBLOCK, &block, NULL) == 0, "unblock");
    CHECK(usr2_runs == 1, "SIGUSR2 handler ran %d times after unblocking, expected exactly 1", usr2_runs);
    CHECK(rt_runs == 2, "SIGRTMIN+1 handler ran %d times, expected 2 (queued twice)", rt_runs);
    CHECK(rt_values[0] == 111 && rt_values[1] == 222, "SIGRTMIN+1 values %d, %d; expected 111, 222",
          rt_values[0], rt_values[1]);
    CHECK(sigpending(&pend) == 0 && !sigismember(&pend, SIGUSR2) && !sigismember(&pend, SIGRTMIN + 1),
          "signals still pending after delivery");
    ok("pending SIGUSR2 delivered once, queued SIGRTMIN+1 delivered twice with values 111, 222");
}
