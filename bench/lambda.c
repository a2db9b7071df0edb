/*
 * lambda.c - Lambda extension benchmarks (issue 10), against the fake
 * Runtime API and the loopback intake of tests/support:
 *
 *   1. extension ready: exec of serverless-init (no command,
 *      AWS_LAMBDA_RUNTIME_API set) to the arrival of its first /next at the
 *      fake, median of --runs; and the extension's own init from its debug
 *      checkpoints: "extension ready in N ms" minus the wait for
 *      register's answer left after the set-up done meanwhile
 *      (register_ready) and the subscribe (a loopback round-trip plus its
 *      request); writing register's request (register_sent) counts as own
 *      work.
 *   2. post-runtime duration with DD_SERVERLESS_FLUSH_STRATEGY=end: from
 *      the moment the fake POSTs platform.runtimeDone to the arrival of the
 *      next /next, with --contexts contexts sent during the invocation and
 *      delivered to the loopback intake in between; median of --runs.
 *   3. peak RSS (VmHWM) and RSS over --invocations invocations of one
 *      extension process, printed at 10%, 50% and 100%.
 *
 *   Also the exec floor: posix_spawn of /bin/true to its exit, the part of
 *   "extension ready" that any program pays on this machine.
 *
 *   bench_lambda [--bin PATH] [--runs 50] [--invocations 1000]
 *                [--contexts 100] [--no-pin]
 *
 * With two CPUs or more the extension runs on CPU 0 and this program (the
 * fake Runtime API and the intake, which in Lambda run outside the
 * sandbox) on CPU 1: unpinned, the fake's threads preempted the extension
 * on its own CPU, e.g. for 0.24 ms between its connect and its register
 * request (perf sched), which the figures counted as the extension's.
 * A Lambda function of up to 1 769 MB has at most one vCPU anyway.
 *
 * A benchmark, not a test: it prints figures, it asserts nothing.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "common.h"
#include "fake_lambda.h"
#include "intake.h"

struct opts {
    char bin[1024];
    int runs, invocations, contexts;
    int ext_cpu, bench_cpu; /* -1: not pinned (--no-pin, or one CPU) */
};

struct ext {
    struct fl *fl;
    struct ti *ti;
    pid_t pid;
    int udp_port;
    int udp_fd;
    char errpath[64];
};

static int free_udp_port(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sa);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0)
        return 0;
    close(fd);
    return ntohs(sa.sin_port);
}

static int start_ext(const struct opts *o, struct ext *x, const char *strategy,
                     bool debug)
{
    memset(x, 0, sizeof(*x));
    if (fl_start(0, &x->fl) != 0 || ti_start(&x->ti) != 0)
        return -1;
    x->udp_port = free_udp_port();
    x->udp_fd = socket(AF_INET, SOCK_DGRAM, 0);
    snprintf(x->errpath, sizeof(x->errpath), "/tmp/bench_lambda.%d.err",
             (int)getpid());
    char env[12][256];
    int n = 0;
    snprintf(env[n++], 256, "AWS_LAMBDA_RUNTIME_API=%s", fl_addr(x->fl));
    snprintf(env[n++], 256, "DD_API_KEY=bench");
    snprintf(env[n++], 256, "DD_DD_URL=%s", ti_url(x->ti));
    snprintf(env[n++], 256, "DD_DOGSTATSD_PORT=%d", x->udp_port);
    snprintf(env[n++], 256, "DRAINPIPE_TELEMETRY_PORT=0");
    snprintf(env[n++], 256, "DD_LOG_LEVEL=%s", debug ? "debug" : "warn");
    snprintf(env[n++], 256, "AWS_LAMBDA_FUNCTION_NAME=bench");
    snprintf(env[n++], 256, "AWS_REGION=eu-west-1");
    snprintf(env[n++], 256, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=512");
    snprintf(env[n++], 256, "DD_SERVERLESS_FLUSH_STRATEGY=%s", strategy);
    snprintf(env[n++], 256, "PATH=/usr/bin:/bin");
    char *envp[13];
    for (int i = 0; i < n; i++)
        envp[i] = env[i];
    envp[n] = NULL;
    char *argv[] = {(char *)o->bin, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, x->errpath,
                                     O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    /* the extension inherits the CPU this thread has at the spawn */
    bench_pin_cpu(o->ext_cpu);
    int err = posix_spawn(&x->pid, o->bin, &fa, NULL, argv, envp);
    bench_pin_cpu(o->bench_cpu);
    posix_spawn_file_actions_destroy(&fa);
    return err == 0 ? 0 : -1;
}

static void stop_ext(struct ext *x)
{
    fl_push_shutdown(x->fl, 2000);
    int st;
    for (int i = 0; i < 4000; i++) {
        if (waitpid(x->pid, &st, WNOHANG) == x->pid)
            goto out;
        usleep(1000);
    }
    kill(x->pid, SIGKILL);
    waitpid(x->pid, &st, 0);
out:
    close(x->udp_fd);
    fl_stop(x->fl);
    ti_stop(x->ti);
    unlink(x->errpath);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Value in ms after `key` in the debug log (e.g. "register_ready: took "). */
static double log_ms(const char *log, const char *key)
{
    const char *p = strstr(log, key);
    double v = -1;
    if (p != NULL &&
        cmn_parse_f64(
            cmn_slice(p + strlen(key), strspn(p + strlen(key), "0123456789.")),
            &v) != 0)
        v = -1;
    return v;
}

/* The floor any extension pays on this machine: posix_spawn of /bin/true
 * (exec, dynamic loader, exit) to its wait, on the extension's CPU. */
static double exec_floor_ms(const struct opts *o)
{
    double *v = calloc((size_t)o->runs, sizeof(double));
    char *argv[] = {"/bin/true", NULL}, *envp[] = {NULL};
    int n = 0;
    for (int r = 0; r < o->runs; r++) {
        pid_t pid;
        int st;
        uint64_t t0 = cmn_mono_ns();
        bench_pin_cpu(o->ext_cpu);
        int err = posix_spawn(&pid, argv[0], NULL, NULL, argv, envp);
        bench_pin_cpu(o->bench_cpu);
        if (err == 0 && waitpid(pid, &st, 0) == pid)
            v[n++] = (double)(cmn_mono_ns() - t0) / 1e6;
    }
    double m = median(v, n);
    free(v);
    return m;
}

/* Ready time at the default log level (warn), then the own-init figure
 * from separate runs at debug level (the checkpoint lines cost time). */
static void bench_ready(const struct opts *o)
{
    double *ready = calloc((size_t)o->runs, sizeof(double));
    double *own = calloc((size_t)o->runs, sizeof(double));
    double *cpu = calloc((size_t)o->runs, sizeof(double));
    int n = 0, m = 0;
    for (int r = 0; r < 2 * o->runs; r++) {
        bool debug = r >= o->runs;
        struct ext x;
        uint64_t t0 = cmn_mono_ns();
        if (start_ext(o, &x, "end", debug) != 0 ||
            fl_wait_next(x.fl, 1, 5000) != 1) {
            fprintf(stderr, "run %d: no first /next\n", r);
            stop_ext(&x);
            continue;
        }
        if (!debug) {
            ready[n++] = (double)(fl_next_ns(x.fl, 0) - t0) / 1e6;
            stop_ext(&x);
            continue;
        }
        /* the checkpoints are logged right after /next was sent */
        char log[16384] = "";
        for (int tries = 0; tries < 1000 && !strstr(log, "extension ready");
             tries++) {
            usleep(tries ? 1000 : 0);
            FILE *f = fopen(x.errpath, "r");
            if (f == NULL)
                continue;
            size_t got = fread(log, 1, sizeof(log) - 1, f);
            log[got] = '\0';
            fclose(f);
        }
        const char *show = getenv("BENCH_LAMBDA_SHOW_LOG");
        if (show != NULL && (r == 2 * o->runs - 1 || strcmp(show, "all") == 0))
            fputs(log, stdout); /* the checkpoints of the last run (all:
                                   of every debug run) */
        double total = log_ms(log, "extension ready in ");
        /* the round-trips: what is left of register's wait once the
         * configuration and the listeners are set up (register_ready),
         * and the subscribe. register_sent (main up to the request
         * written: the log, the Runtime API address, the connect and the
         * write) is the extension's own work and stays in. */
        double reg = log_ms(log, "checkpoint register_ready: took ");
        double sub = log_ms(log, "checkpoint telemetry_subscribed: took ");
        if (total >= 0 && reg >= 0 && sub >= 0) {
            cpu[m] = log_ms(log, "CPU since exec: ");
            own[m++] = total - reg - sub;
        }
        stop_ext(&x);
    }
    double floor = exec_floor_ms(o);
    double r = median(ready, n);
    printf("extension ready (exec -> first /next at the fake), median of "
           "%d: %.3f ms\n",
           n, r);
    printf("exec floor (posix_spawn of /bin/true to its exit), median of "
           "%d: %.3f ms; extension ready beyond it: %.3f ms\n",
           o->runs, floor, r - floor);
    printf("extension's own init (main -> first /next minus the wait for "
           "register's answer and the subscribe, debug runs), median of "
           "%d: %.3f ms\n",
           m, median(own, m));
    printf("extension's CPU time from exec to the first /next (dynamic "
           "loader included, debug runs), median of %d: %.3f ms\n",
           m, median(cpu, m));
    free(cpu);
    free(ready);
    free(own);
}

static void send_contexts(struct ext *x, int inv, int contexts)
{
    char pkt[65000];
    size_t off = 0;
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)x->udp_port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int c = 0; c < contexts; c++) {
        int w = snprintf(pkt + off, sizeof(pkt) - off,
                         "bench.metric.%d:%d|c|#ctx:%d\n", c, inv, c);
        if (w <= 0 || off + (size_t)w + 64 > 1400) {
            sendto(x->udp_fd, pkt, off, 0, (struct sockaddr *)&sa, sizeof(sa));
            off = 0;
            c--;
            continue;
        }
        off += (size_t)w;
    }
    if (off > 0)
        sendto(x->udp_fd, pkt, off, 0, (struct sockaddr *)&sa, sizeof(sa));
}

static void bench_invocations(const struct opts *o)
{
    struct ext x;
    if (start_ext(o, &x, "end", false) != 0 ||
        fl_wait_next(x.fl, 1, 5000) != 1) {
        fprintf(stderr, "no first /next\n");
        return;
    }
    int total = o->invocations > o->runs ? o->invocations : o->runs;
    double *post = calloc((size_t)o->runs, sizeof(double));
    for (int i = 0; i < total; i++) {
        char id[32], batch[1024];
        snprintf(id, sizeof(id), "req-%d", i);
        fl_push_invoke(x.fl, id, 30000);
        while (fl_next_answered_ns(x.fl, (size_t)i) == 0)
            usleep(50);
        send_contexts(&x, i, o->contexts);
        snprintf(batch, sizeof(batch),
                 "[{\"time\":\"2026-01-01T00:00:00.000Z\",\"type\":"
                 "\"platform.runtimeDone\",\"record\":{\"requestId\":\"%s\","
                 "\"status\":\"success\",\"metrics\":{\"durationMs\":10}}}]",
                 id);
        uint64_t t0 = cmn_mono_ns();
        if (fl_post_telemetry(x.fl, batch) != 200)
            fprintf(stderr, "telemetry POST refused\n");
        if (fl_wait_next(x.fl, (size_t)i + 2, 10000) != (size_t)i + 2) {
            fprintf(stderr, "invocation %d: no /next\n", i);
            break;
        }
        if (i < o->runs)
            post[i] = (double)(fl_next_ns(x.fl, (size_t)i + 1) - t0) / 1e6;
        if (i + 1 == total / 10 || i + 1 == total / 2 || i + 1 == total)
            printf("after %d invocations: VmHWM %ld KiB, VmRSS %ld KiB\n",
                   i + 1, ti_proc_status_kib(x.pid, "VmHWM:"),
                   ti_proc_status_kib(x.pid, "VmRSS:"));
    }
    printf("post-runtime duration with end (runtimeDone POST -> next /next), "
           "%d contexts, median of %d: %.3f ms\n",
           o->contexts, o->runs, median(post, o->runs));
    printf("intake requests: %zu\n", ti_request_count(x.ti));
    free(post);
    stop_ext(&x);
}

int main(int argc, char **argv)
{
    struct opts o = {.runs = 50,
                     .invocations = 1000,
                     .contexts = 100,
                     .ext_cpu = 0,
                     .bench_cpu = 1};
    const char *dir = getenv("DP_BIN_DIR");
    snprintf(o.bin, sizeof(o.bin), "%s/serverless-init", dir ? dir : "bin");
    bool pinned = true;
    for (int i = 1; i < argc && strcmp(argv[i], "--no-pin") == 0; i++) {
        pinned = false;
        memmove(&argv[i], &argv[i + 1], (size_t)(argc - i) * sizeof(*argv));
        argc--;
    }
    for (int i = 1; i + 1 < argc; i += 2) {
        uint64_t v = 0;
        bool num = cmn_parse_u64(cmn_slice_cstr(argv[i + 1]), 1000000, &v) == 0;
        if (strcmp(argv[i], "--bin") == 0)
            snprintf(o.bin, sizeof(o.bin), "%s", argv[i + 1]);
        else if (strcmp(argv[i], "--runs") == 0 && num && v > 0)
            o.runs = (int)v;
        else if (strcmp(argv[i], "--invocations") == 0 && num)
            o.invocations = (int)v;
        else if (strcmp(argv[i], "--contexts") == 0 && num)
            o.contexts = (int)v;
        else {
            fprintf(stderr, "usage: bench_lambda [--bin PATH] [--runs N] "
                            "[--invocations N] [--contexts N] [--no-pin]\n");
            return 2;
        }
    }
    cpu_set_t all;
    if (!pinned || sched_getaffinity(0, sizeof(all), &all) != 0 ||
        !CPU_ISSET(0, &all) || !CPU_ISSET(1, &all))
        o.ext_cpu = o.bench_cpu = -1;
    /* before any thread: the fake Runtime API and the intake (which in
     * Lambda run outside the sandbox) get CPU 1, the extension CPU 0 */
    bench_pin_cpu(o.bench_cpu);
    printf("extension on CPU %d, fake Runtime API and intake on CPU %d (-1: "
           "not pinned)\n",
           o.ext_cpu, o.bench_cpu);
    bench_ready(&o);
    bench_invocations(&o);
    return 0;
}
