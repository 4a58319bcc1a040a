/*
 * clear_child_tid.c - the thread's clear_child_tid address (set by glibc to
 * its thread descriptor's tid field; what pthread_join relies on) is the
 * same after restart. Read with prctl(PR_GET_TID_ADDRESS).
 */
#include "common.h"
#include <sys/prctl.h>

int main(void)
{
    int *before = NULL, *after = NULL;
    CHECK(prctl(PR_GET_TID_ADDRESS, &before, 0, 0, 0) == 0, "PR_GET_TID_ADDRESS: %s", strerror(errno));
    CHECK(before != NULL, "clear_child_tid not set by libc before checkpoint");

    ready();
    wait_release();

    CHECK(prctl(PR_GET_TID_ADDRESS, &after, 0, 0, 0) == 0, "PR_GET_TID_ADDRESS after resume: %s", strerror(errno));
    CHECK(after == before, "clear_child_tid is %p after resume, was %p", (void *)after, (void *)before);
    ok("clear_child_tid %p preserved", (void *)before);
}
