/*
 * e2e.h - helpers for the serverless-init end-to-end tests: run the real
 * binary ($DP_BIN_DIR/serverless-init) around the real child
 * ($DP_TEST_DIR/sinit_test_child) with a clean environment, capture its
 * stderr to a file, wait for it with a bound, and read what the loopback
 * intake received. Header-only (static functions).
 */
#ifndef SINIT_TEST_E2E_H
#define SINIT_TEST_E2E_H

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "intake.h"

#define E2E_MAX_ENV 64

struct e2e {
    char dir[64];      /* temp dir for sockets, files and stderr */
    char bin[1024];    /* serverless-init */
    char child[1024];  /* sinit_test_child */
    char errpath[128]; /* stderr of the wrapper */
    char *env[E2E_MAX_ENV];
    int nenv;
    char tags[512]; /* the local extra tags every metric carries */
};

static inline void e2e_env(struct e2e *e, const char *fmt, ...)
    CMN_PRINTF(2, 3);
static inline void e2e_env(struct e2e *e, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    /* a later setting of the same variable replaces the earlier one */
    size_t nl = strcspn(buf, "=");
    for (int i = 0; i < e->nenv; i++) {
        if (strncmp(e->env[i], buf, nl + 1) == 0) {
            free(e->env[i]);
            e->env[i] = strdup(buf);
            return;
        }
    }
    cr_assert_lt(e->nenv, E2E_MAX_ENV - 1);
    e->env[e->nenv++] = strdup(buf);
    e->env[e->nenv] = NULL;
}

/* Sets up paths and the base environment: UDP on an ephemeral port (the
 * child reads the bound port from DD_DOGSTATSD_PORT), warnings only. */
static inline void e2e_init(struct e2e *e)
{
    memset(e, 0, sizeof(*e));
    const char *bin = getenv("DP_BIN_DIR"), *td = getenv("DP_TEST_DIR");
    cr_assert_not_null(bin, "DP_BIN_DIR");
    cr_assert_not_null(td, "DP_TEST_DIR");
    snprintf(e->bin, sizeof(e->bin), "%s/serverless-init", bin);
    snprintf(e->child, sizeof(e->child), "%s/sinit_test_child", td);
    snprintf(e->dir, sizeof(e->dir), "/tmp/sinit-e2e-XXXXXX");
    cr_assert_not_null(mkdtemp(e->dir));
    snprintf(e->errpath, sizeof(e->errpath), "%s/stderr", e->dir);
    e2e_env(e, "PATH=/usr/bin:/bin");
    e2e_env(e, "DD_LOG_LEVEL=warn");
    e2e_env(e, "DD_DOGSTATSD_PORT=__random__");
    char host[256];
    cr_assert_eq(gethostname(host, sizeof(host)), 0);
    snprintf(e->tags, sizeof(e->tags),
             "instance:%s,local:true,datadog_init_version:%s", host,
             CMN_VERSION);
}

static inline void e2e_fini(struct e2e *e)
{
    for (int i = 0; i < e->nenv; i++)
        free(e->env[i]);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "%s/stderr", e->dir);
    unlink(cmd);
    rmdir(e->dir); /* fails (harmlessly) if a test left other files */
}

/* Starts the wrapper with args (NULL-terminated, without argv[0]). */
static inline pid_t e2e_start(struct e2e *e, const char *const *args)
{
    char *argv[64];
    int n = 0;
    argv[n++] = e->bin;
    for (; args && *args && n < 63; args++)
        argv[n++] = (char *)*args;
    argv[n] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, e->errpath,
                                     O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    /* never hold the test runner's output pipe (a stray wrapper would
     * keep ctest waiting) */
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int err = posix_spawn(&pid, e->bin, &fa, NULL, argv, e->env);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(err, 0, "posix_spawn: %s", strerror(err));
    return pid;
}

static inline uint64_t e2e_now_ms(void)
{
    return cmn_mono_ns() / 1000000u;
}

static inline void e2e_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Waits up to timeout_ms; returns the exit code, 128+N when killed by N,
 * or -1 after a timeout (the wrapper is then killed). ru (may be NULL)
 * gets the wrapper's resource usage (ru_maxrss: its peak RSS). */
static inline int e2e_wait_ru(pid_t pid, uint32_t timeout_ms, struct rusage *ru)
{
    uint64_t end = e2e_now_ms() + timeout_ms;
    for (;;) {
        int st;
        pid_t r = wait4(pid, &st, WNOHANG, ru);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (e2e_now_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        e2e_sleep_ms(2);
    }
}

static inline int e2e_wait(pid_t pid, uint32_t timeout_ms)
{
    return e2e_wait_ru(pid, timeout_ms, NULL);
}

static inline int e2e_run(struct e2e *e, const char *const *args,
                          uint32_t timeout_ms)
{
    return e2e_wait(e2e_start(e, args), timeout_ms);
}

/* Reads a whole (small) file; "" if missing. */
static inline void e2e_read(const char *path, char *buf, size_t cap)
{
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* Polls until path exists (up to timeout_ms). */
static inline bool e2e_wait_file(const char *path, uint32_t timeout_ms)
{
    uint64_t end = e2e_now_ms() + timeout_ms;
    struct stat sb;
    while (stat(path, &sb) != 0) {
        if (e2e_now_ms() > end)
            return false;
        e2e_sleep_ms(2);
    }
    return true;
}

/* Polls the wrapper's stderr until it contains needle. */
static inline bool e2e_wait_stderr(struct e2e *e, const char *needle,
                                   uint32_t timeout_ms, char *buf, size_t cap)
{
    uint64_t end = e2e_now_ms() + timeout_ms;
    for (;;) {
        e2e_read(e->errpath, buf, cap);
        if (strstr(buf, needle) != NULL)
            return true;
        if (e2e_now_ms() > end)
            return false;
        e2e_sleep_ms(5);
    }
}

/* Sums series points named name (any tags when tags == NULL, else exact
 * set) over the requests answered 2xx only: what was delivered. Returns
 * the number of points; *sum gets their sum, *last the last value. */
static inline size_t e2e_delivered_points(struct ti *ti, const char *name,
                                          double *sum, double *last)
{
    size_t n = 0, cnt = ti_request_count(ti);
    *sum = 0;
    if (last)
        *last = 0;
    for (size_t i = 0; i < cnt; i++) {
        const struct ti_request *r = ti_request_get(ti, i);
        if (r->answered < 200 || r->answered >= 300 ||
            strcmp(r->path, "/api/v2/series") != 0)
            continue;
        Datadog__Agentpayload__MetricPayload *p = ti_decode_series(r);
        cr_assert_not_null(p);
        for (size_t s = 0; s < p->n_series; s++) {
            if (strcmp(p->series[s]->metric, name) != 0)
                continue;
            for (size_t k = 0; k < p->series[s]->n_points; k++) {
                *sum += p->series[s]->points[k]->value;
                if (last)
                    *last = p->series[s]->points[k]->value;
                n++;
            }
        }
        datadog__agentpayload__metric_payload__free_unpacked(p, NULL);
    }
    return n;
}

/* The common start of an end-to-end test: a fresh loopback intake and an
 * environment pointing the wrapper at it with API key "test". */
static inline struct ti *e2e_with_intake(struct e2e *e)
{
    struct ti *ti;
    cr_assert_eq(ti_start(&ti), 0);
    e2e_init(e);
    e2e_env(e, "DD_API_KEY=test");
    e2e_env(e, "DD_DD_URL=%s", ti_url(ti));
    return ti;
}

#endif
