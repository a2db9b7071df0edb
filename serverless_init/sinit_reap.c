/*
 * sinit_reap.c - reaping orphaned grandchildren when we are PID 1 or a
 * child subreaper, without stealing the main child's exit status.
 *
 * libuv reaps only the pids it spawned (waitpid(pid) per process handle);
 * a waitpid(-1) here would take the main child's status and libuv would
 * never call its exit callback. So we peek with waitid(WNOWAIT), which
 * leaves the child waitable, and reap only pids that are not `keep`.
 * waitid(P_ALL) shows one exited child at a time: when it shows `keep`, the
 * others wait until libuv has reaped keep and we are called again with
 * keep = 0 (the exit callback does that).
 */
#include "sinit.h"

#include <errno.h>
#include <string.h>
#include <sys/wait.h>

int sinit_reap_orphans(int keep)
{
    int n = 0;
    for (;;) {
        siginfo_t si;
        memset(&si, 0, sizeof(si));
        if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) != 0) {
            if (errno == EINTR)
                continue;
            break; /* ECHILD: no children at all */
        }
        if (si.si_pid == 0 || si.si_pid == keep)
            break; /* nothing exited, or only libuv's child is first */
        pid_t r;
        do {
            r = waitpid(si.si_pid, NULL, WNOHANG);
        } while (r < 0 && errno == EINTR);
        if (r <= 0)
            break;
        n++;
    }
    return n;
}
