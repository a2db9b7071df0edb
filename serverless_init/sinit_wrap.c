/*
 * sinit_wrap.c - the wrapped command as the run sees it: spawning it (with
 * the bound port and without the API key when asked), reaping it and
 * mapping its end to our exit code, and what each signal read from the
 * signalfd does (sinit_child.c holds the signalfd and posix_spawn
 * themselves).
 *
 * Signals: SIGCHLD reaps the child first, then orphans (we are PID 1 or a
 * subreaper), and starts the drain when the child ended. SIGTERM/SIGINT
 * start the budget; while the child runs every signal but SIGPIPE is
 * forwarded to it (it decides when to end), without a child they start
 * the drain, and a second one during the drain forces the exit.
 */
#include "sinit_app.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>

/* Makes the child see the bound port when DD_DOGSTATSD_PORT=__random__. */
static void export_random_port(struct sinit_app *a)
{
    const char *v = getenv("DD_DOGSTATSD_PORT");
    if (a->p == NULL || v == NULL || strcmp(v, "__random__") != 0)
        return;
    struct dp_info info;
    if (dp_get_info(a->p, &info, sizeof(info)) != 0 || info.udp_port == 0)
        return;
    int port = info.udp_port;
    char buf[16];
    snprintf(buf, sizeof(buf), "%d", port);
    (void)setenv("DD_DOGSTATSD_PORT", buf, 1);
}

/* Runs the child. Returns 0, or sets the exit code (127) and returns the
 * spawn error. */
int sinit__spawn_child(struct sinit_app *a)
{
    export_random_port(a);
    if (a->strip_key)
        (void)unsetenv("DD_API_KEY"); /* the forwarder has its copy */
    uint64_t t0 = cmn_mono_ns();
    int err = sinit_spawn(a->cli.argv, &a->child_pid);
    a->spawned_ns = cmn_mono_ns();
    if (err != 0) {
        fprintf(stderr, "serverless-init: cannot run \"%s\": %s\n",
                a->cli.argv[0], strerror(-err));
        a->exit_code = SINIT_EXIT_NOT_FOUND;
        return err;
    }
    a->child_alive = true;
    sinit_checkpoint("spawn", "child", t0);
    if (cmn_log_enabled(CMN_LOG_DEBUG)) {
        /* CPU time includes the dynamic loader's work before main */
        struct timespec cpu;
        struct rusage ru;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
        getrusage(RUSAGE_SELF, &ru); /* a first touch: ~14 us on a VM */
        CMN_LOGD(SINIT_COMP,
                 "child spawned: %.3f ms CPU since exec, %.3f ms wall since "
                 "main, %ld page faults",
                 (double)cpu.tv_sec * 1e3 + (double)cpu.tv_nsec / 1e6,
                 (double)(a->spawned_ns - a->start_ns) / 1e6,
                 ru.ru_minflt + ru.ru_majflt);
    }
    return 0;
}

/* Reaps the child if it exited; returns true then. */
static bool reap_child(struct sinit_app *a)
{
    int st;
    pid_t r;
    if (!a->child_alive)
        return false;
    do {
        r = waitpid(a->child_pid, &st, WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r != a->child_pid)
        return false;
    a->child_alive = false;
    int sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
    a->exit_code = sinit_exit_code(WIFEXITED(st) ? WEXITSTATUS(st) : 0, sig);
    sinit_checkpoint("exit", "child", a->spawned_ns);
    if (sig > 0)
        CMN_LOGI(SINIT_COMP, "child killed by signal %d: exit code %d", sig,
                 a->exit_code);
    else
        CMN_LOGD(SINIT_COMP, "child exited with code %d", a->exit_code);
    return true;
}

void sinit__on_signal(void *data, int signum)
{
    struct sinit_app *a = data;
    bool term = signum == SIGTERM || signum == SIGINT;
    if (signum == SIGCHLD) {
        /* the child first: orphans queued behind it wait for its reap */
        bool ended = reap_child(a);
        (void)sinit_reap_orphans(a->child_alive ? a->child_pid : 0);
        if (ended)
            sinit__begin_drain(a);
        return;
    }
    if (term && a->state != SINIT_ST_RUNNING)
        sinit__force_exit(a, "second termination signal during the drain");
    if (term)
        sinit__start_budget(a);
    if (a->child_alive) {
        /* SIGPIPE is ours (a write to a closed socket), not the child's */
        if (signum != SIGPIPE && kill(a->child_pid, signum) != 0)
            CMN_LOGD(SINIT_COMP, "forwarding signal %d: %s", signum,
                     uv_strerror(-errno));
        return;
    }
    if (term)
        sinit__begin_drain(a);
}
