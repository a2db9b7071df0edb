/*
 * sinit_child.c - the child process and the signals of the wrapper: one
 * signalfd watched by one uv_poll_t, and posix_spawn.
 *
 * Why not uv_signal_t + uv_spawn: a uv_signal_t per signal is a sigaction
 * plus a pipe round-trip each (about 60 of them), and uv_spawn forks. Both
 * sat on the path between exec and the child's first instruction. Here the
 * signals are blocked once (sigprocmask) at the top of main and read from
 * one signalfd, and the child is started with posix_spawn, which glibc
 * implements with clone(CLONE_VM | CLONE_VFORK): no page tables copied.
 *
 * Invariants: the handled signals are blocked in every thread of the
 * wrapper (they are blocked before any thread exists, and threads inherit
 * the mask), so each is queued for the signalfd and never runs a default
 * action; the child gets an empty mask and default dispositions, as
 * uv_spawn gave it. The synchronous fault signals (SIGSEGV, SIGBUS,
 * SIGFPE, SIGILL, SIGTRAP, SIGSYS), SIGKILL and SIGSTOP are never blocked.
 * Several instances of a signal pending at once are read as one (SIGCHLD
 * included, so the reaper loops until nothing is left).
 */
#include "sinit.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

extern char **environ;

struct sinit_sig {
    uv_poll_t poll;
    int fd;
    sinit_sig_cb cb;
    void *data;
};

/* Signals that cannot be handled from the loop, or at all. */
static bool never_blocked(int s)
{
    switch (s) {
    case SIGKILL:
    case SIGSTOP:
    case SIGSEGV:
    case SIGBUS:
    case SIGFPE:
    case SIGILL:
    case SIGTRAP:
    case SIGSYS:
        return true;
    default:
        return false;
    }
}

void sinit_sig_set(bool sidecar, sigset_t *set)
{
    sigemptyset(set);
    if (sidecar) {
        /* a sidecar has no child: only stop, reap, and our own writes */
        sigaddset(set, SIGTERM);
        sigaddset(set, SIGINT);
        sigaddset(set, SIGCHLD);
        sigaddset(set, SIGPIPE);
        return;
    }
    for (int s = 1; s <= SIGRTMAX; s++) {
        if (s > 31 && s < SIGRTMIN)
            continue; /* reserved by the C library (NPTL) */
        if (!never_blocked(s))
            sigaddset(set, s);
    }
}

void sinit_sig_block(bool sidecar)
{
    sigset_t set;
    sinit_sig_set(sidecar, &set);
    (void)sigprocmask(SIG_BLOCK, &set, NULL);
}

static void on_readable(uv_poll_t *h, int status, int events)
{
    struct sinit_sig *s = h->data;
    (void)events;
    if (status < 0) {
        CMN_LOGE("sinit", "signal fd: %s", uv_strerror(status));
        (void)uv_poll_stop(h);
        return;
    }
    /* a bounded batch per wakeup; the fd stays readable for the rest */
    for (int i = 0; i < 32; i++) {
        struct signalfd_siginfo si;
        ssize_t n = read(s->fd, &si, sizeof(si));
        if (n != (ssize_t)sizeof(si))
            return; /* EAGAIN: nothing left (EINTR cannot happen) */
        s->cb(s->data, (int)si.ssi_signo);
    }
}

int sinit_sig_open(uv_loop_t *loop, bool sidecar, sinit_sig_cb cb, void *data,
                   struct sinit_sig **out)
{
    sigset_t set;
    sinit_sig_set(sidecar, &set);
    struct sinit_sig *s = cmn_calloc(1, sizeof(*s));
    if (s == NULL)
        return UV_ENOMEM;
    s->cb = cb;
    s->data = data;
    s->fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (s->fd < 0) {
        int err = -errno;
        cmn_free(s);
        return err;
    }
    int rc = uv_poll_init(loop, &s->poll, s->fd);
    if (rc != 0) {
        close(s->fd);
        cmn_free(s);
        return rc;
    }
    s->poll.data = s;
    rc = uv_poll_start(&s->poll, UV_READABLE, on_readable);
    *out = s;
    return rc; /* on error the handle still needs sinit_sig_close */
}

int sinit_sig_wait(const struct sinit_sig *s, int ms)
{
    struct pollfd p = {.fd = s->fd, .events = POLLIN};
    /* every handled signal is blocked: no EINTR but from a stop signal
     * (SIGSTOP/SIGCONT), which ends the wait early, harmlessly */
    return poll(&p, 1, ms) > 0 ? 1 : 0;
}

static void on_closed(uv_handle_t *h)
{
    struct sinit_sig *s = h->data;
    close(s->fd);
    cmn_free(s);
}

void sinit_sig_close(struct sinit_sig *s)
{
    if (s == NULL)
        return;
    uv_close((uv_handle_t *)&s->poll, on_closed);
}

int sinit_spawn(char *const *argv, int *pid)
{
    posix_spawnattr_t at;
    int err = posix_spawnattr_init(&at);
    if (err != 0)
        return -err;
    /* What uv_spawn gave the child: an empty mask and every disposition
     * at its default (an ignored SIGPIPE inherited from our parent would
     * otherwise reach it). */
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    sigdelset(&all, SIGKILL);
    sigdelset(&all, SIGSTOP);
    (void)posix_spawnattr_setsigmask(&at, &none);
    (void)posix_spawnattr_setsigdefault(&at, &all);
    (void)posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK |
                                            POSIX_SPAWN_SETSIGDEF);
    pid_t p;
    /* PATH search as execvp; exec errors (ENOENT, EACCES) come back here */
    err = posix_spawnp(&p, argv[0], NULL, &at, argv, environ);
    posix_spawnattr_destroy(&at);
    if (err != 0)
        return -err;
    *pid = (int)p;
    return 0;
}
