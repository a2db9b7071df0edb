/*
 * throughput.c - runs the real drainpipe DogStatsD server and aggregator
 * in-process (dsd_create + agg_create, payloads freed by the submit
 * function), pinned to CPU 0, and drives it with bench_loadgen pinned to
 * CPU 1 over loopback UDP. One run per process (so RSS figures are clean).
 *
 *   bench_throughput [--workload a|b|c] [--rate LINES_PER_S] [--duration S]
 *                    [--rcvbuf BYTES] [--contexts N] [--once]
 *                    [--loadgen PATH] [--server-cpu N] [--loadgen-cpu N]
 *                    [--max-behind-ms M] [--udp-sockets N]
 *   bench_throughput --parse-only FILE [--sink null|agg] [--seconds S]
 *
 * A run prints one line of key=value figures:
 *   sent_lines / processed_lines / loss_lines: loadgen's count, the server's
 *     parsed metric lines, and the difference;
 *   snmp_in_errors / snmp_rcvbuf_errors: the delta of /proc/net/snmp Udp
 *     InErrors and RcvbufErrors over the run (whole network namespace: other
 *     programs' UDP drops would show up here too);
 *   window_s: from spawning the load generator to the last datagram read;
 *   lines_per_s = processed_lines / window_s;
 *   cpu_ns_per_line: this process's user+system CPU time (getrusage
 *     RUSAGE_SELF: the loop thread plus the libuv pool) over the run divided
 *     by processed_lines; capacity_lps = processed_lines / cpu_s, the rate
 *     one dedicated CPU would sustain (the loopback receive path's softirq
 *     work mostly runs on the sender's CPU and is not in these figures);
 *   idle_rss_kib: VmRSS after both components started, before any packet;
 *   rss_kib / hwm_kib: VmRSS and VmHWM after the run; contexts: live
 *     contexts in the aggregator.
 *
 * --parse-only feeds dsd_process_packet from memory with the packets of a
 * `bench_loadgen --dump` file, into a null sink (parsing and splitting
 * only) or into the aggregator, and reports CPU ns per line (thread CPU
 * clock).
 */
#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "aggregator.h"
#include "bench.h"
#include "common.h"
#include "dogstatsd.h"
#include "forwarder.h"

struct tp_opts {
    char workload;
    double rate;
    double duration;
    int64_t rcvbuf;
    uint64_t contexts; /* 0 = loadgen default */
    bool once;
    const char *loadgen;
    int server_cpu, loadgen_cpu;
    double max_behind_ms; /* bench_loadgen --max-behind-ms; < 0: unset */
    int udp_sockets;      /* dsd_config.udp_sockets; < 0: the default */
    const char *parse_only;
    const char *sink; /* null | agg */
    double seconds;
};

struct tp {
    struct tp_opts o;
    uv_loop_t loop;
    struct agg *agg;
    struct dsd *dsd;
    uv_process_t proc;
    uv_pipe_t out;
    uv_timer_t drain;
    char outbuf[4096];
    size_t outlen;
    bool child_exited, out_eof, finished;
    int64_t exit_status;
    uint64_t last_packets;
    int stable_ticks;
    double t_start, t_last_progress;
    struct rusage ru0;
    uint64_t snmp0[2];
    struct dsd_stats st0;
    uint64_t payloads;
    long idle_rss_kib;
};

static double now_s(void)
{
    return (double)cmn_mono_ns() / 1e9;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: bench_throughput [--workload a|b|c] [--rate L/s] "
            "[--duration S] [--rcvbuf BYTES] [--contexts N] [--once] "
            "[--loadgen PATH] [--server-cpu N] [--loadgen-cpu N] "
            "[--max-behind-ms M] [--udp-sockets N]\n"
            "       bench_throughput --parse-only FILE [--sink null|agg] "
            "[--seconds S]\n");
    exit(2);
}

static uint64_t arg_u64(const char *s, uint64_t max)
{
    uint64_t v;
    if (cmn_parse_u64(cmn_slice_cstr(s), max, &v) != 0)
        usage();
    return v;
}

static double arg_f64(const char *s)
{
    double v;
    if (cmn_parse_f64(cmn_slice_cstr(s), &v) != 0 || !(v >= 0))
        usage();
    return v;
}

/* Reads "Key:   123 kB" from /proc/self/status; -1 if absent. */
static long proc_status_kib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t kl = strlen(key);
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
            const char *p = line + kl + 1;
            while (*p == ' ' || *p == '\t')
                p++;
            size_t n = 0;
            while (p[n] >= '0' && p[n] <= '9')
                n++;
            uint64_t u;
            if (cmn_parse_u64(cmn_slice(p, n), INT64_MAX, &u) == 0)
                v = (long)u;
            break;
        }
    }
    fclose(f);
    return v;
}

/* Udp InErrors and RcvbufErrors from /proc/net/snmp (the second "Udp:"
 * line holds the values, in the order of the first). */
static void snmp_udp(uint64_t out[2])
{
    FILE *f = fopen("/proc/net/snmp", "r");
    char hdr[1024], val[1024], line[1024];
    out[0] = out[1] = 0;
    if (f == NULL)
        return;
    hdr[0] = val[0] = '\0';
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "Udp:", 4) != 0)
            continue;
        if (hdr[0] == '\0')
            snprintf(hdr, sizeof(hdr), "%s", line);
        else {
            snprintf(val, sizeof(val), "%s", line);
            break;
        }
    }
    fclose(f);
    /* walk both lines field by field */
    const char *h = hdr + 4, *v = val + 4;
    for (;;) {
        while (*h == ' ')
            h++;
        while (*v == ' ')
            v++;
        if (*h == '\0' || *h == '\n' || *v == '\0' || *v == '\n')
            break;
        size_t hn = strcspn(h, " \n"), vn = strcspn(v, " \n");
        uint64_t x = 0;
        if (cmn_parse_u64(cmn_slice(v, vn), UINT64_MAX, &x) != 0)
            x = 0;
        if (hn == 8 && memcmp(h, "InErrors", 8) == 0)
            out[0] = x;
        else if (hn == 12 && memcmp(h, "RcvbufErrors", 12) == 0)
            out[1] = x;
        h += hn;
        v += vn;
    }
}

static void submit_free(void *data, struct fwd_payload *p)
{
    struct tp *t = data;
    t->payloads++;
    fwd_payload_free(p);
}

/* ------------------------------------------------------------------------
 * Socket run
 */
static void on_closed(uv_handle_t *h)
{
    (void)h;
}

static void on_agg_stopped(void *data)
{
    struct tp *t = data;
    uv_close((uv_handle_t *)&t->drain, on_closed);
}

static void on_dsd_stopped(void *data)
{
    struct tp *t = data;
    agg_stop(t->agg, CMN_NO_DEADLINE, on_agg_stopped, t);
}

static uint64_t parse_kv(const char *s, const char *key)
{
    const char *p = strstr(s, key);
    uint64_t v = 0;
    if (p == NULL)
        return 0;
    p += strlen(key);
    size_t n = strspn(p, "0123456789");
    if (cmn_parse_u64(cmn_slice(p, n), UINT64_MAX, &v) != 0)
        return 0;
    return v;
}

static void report(struct tp *t)
{
    struct rusage ru1;
    uint64_t snmp1[2];
    struct dsd_stats st;
    struct agg_stats as;

    getrusage(RUSAGE_SELF, &ru1);
    snmp_udp(snmp1);
    dsd_get_stats(t->dsd, &st);
    agg_get_stats(t->agg, &as);

    t->outbuf[t->outlen < sizeof(t->outbuf) ? t->outlen
                                            : sizeof(t->outbuf) - 1] = '\0';
    uint64_t sent = parse_kv(t->outbuf, "loadgen lines=");
    uint64_t sent_pk = parse_kv(t->outbuf, " packets=");
    uint64_t lines = st.metric_lines - t->st0.metric_lines;
    uint64_t packets = st.packets - t->st0.packets;
    uint64_t perr = 0;
    for (int i = 0; i < DSD_ERR_MAX; i++)
        perr += st.parse_errors[i] - t->st0.parse_errors[i];
    double cpu =
        (double)(ru1.ru_utime.tv_sec - t->ru0.ru_utime.tv_sec) +
        (double)(ru1.ru_stime.tv_sec - t->ru0.ru_stime.tv_sec) +
        (double)(ru1.ru_utime.tv_usec - t->ru0.ru_utime.tv_usec) / 1e6 +
        (double)(ru1.ru_stime.tv_usec - t->ru0.ru_stime.tv_usec) / 1e6;
    double window = t->t_last_progress - t->t_start;
    if (window <= 0)
        window = 1e-9;
    int64_t loss = (int64_t)sent - (int64_t)lines;
    printf("throughput workload=%c rate_target=%.0f rcvbuf=%lld "
           "sent_lines=%llu sent_packets=%llu processed_lines=%llu "
           "processed_packets=%llu parse_errors=%llu agg_rejected=%llu "
           "loss_lines=%lld loss_pct=%.3f snmp_in_errors=%llu "
           "snmp_rcvbuf_errors=%llu window_s=%.3f lines_per_s=%.0f "
           "cpu_s=%.3f cpu_ns_per_line=%.2f capacity_lps=%.0f idle_rss_kib=%ld "
           "rss_kib=%ld "
           "hwm_kib=%ld contexts=%llu payloads=%llu loadgen_exit=%lld\n",
           t->o.workload, t->o.rate, (long long)t->o.rcvbuf,
           (unsigned long long)sent, (unsigned long long)sent_pk,
           (unsigned long long)lines, (unsigned long long)packets,
           (unsigned long long)perr, (unsigned long long)st.agg_rejected,
           (long long)loss, sent ? 100.0 * (double)loss / (double)sent : 0,
           (unsigned long long)(snmp1[0] - t->snmp0[0]),
           (unsigned long long)(snmp1[1] - t->snmp0[1]), window,
           (double)lines / window, cpu, lines ? cpu * 1e9 / (double)lines : 0,
           cpu > 0 ? (double)lines / cpu : 0, t->idle_rss_kib,
           proc_status_kib("VmRSS"), proc_status_kib("VmHWM"),
           (unsigned long long)as.contexts, (unsigned long long)t->payloads,
           (long long)t->exit_status);
    /* where a loss came from: the receive thread's view */
    printf("receive ring_full=%llu ring_full_ms=%.3f max_gap_ms=%.3f "
           "asleep_drops=%llu kernel_drops=%llu budget_refused=%llu naps=%llu "
           "sender_max_behind_ms=%.3f\n",
           (unsigned long long)(st.ring_full - t->st0.ring_full),
           (double)(st.ring_full_ns - t->st0.ring_full_ns) / 1e6,
           (double)st.rx_max_gap_ns_udp / 1e6,
           (unsigned long long)st.rx_asleep_drops_udp,
           (unsigned long long)st.kernel_drops_udp,
           (unsigned long long)st.ring_budget_refused,
           (unsigned long long)(st.rx_naps - t->st0.rx_naps),
           (double)parse_kv(t->outbuf, " max_behind_us=") / 1e3);
    fflush(stdout);
}

static void on_drain_tick(uv_timer_t *tm)
{
    struct tp *t = tm->data;
    struct dsd_stats st;
    dsd_get_stats(t->dsd, &st);
    if (st.packets != t->last_packets) {
        t->last_packets = st.packets;
        t->t_last_progress = now_s();
        t->stable_ticks = 0;
        return;
    }
    if (!t->child_exited || !t->out_eof || t->finished)
        return;
    /* 200 ms with nothing read after the generator is gone: drained */
    if (++t->stable_ticks < 10)
        return;
    t->finished = true;
    uv_timer_stop(tm);
    report(t);
    dsd_stop(t->dsd, cmn_deadline_in_ms(2000), on_dsd_stopped, t);
}

static void on_exit_cb(uv_process_t *p, int64_t status, int sig)
{
    struct tp *t = p->data;
    t->child_exited = true;
    t->exit_status = sig ? -sig : status;
    uv_close((uv_handle_t *)p, on_closed);
}

static void on_alloc(uv_handle_t *h, size_t sz, uv_buf_t *buf)
{
    struct tp *t = h->data;
    (void)sz;
    size_t room = sizeof(t->outbuf) - 1 - t->outlen;
    if (room == 0) {
        /* keep the tail: the summary is the last line */
        memmove(t->outbuf, t->outbuf + sizeof(t->outbuf) / 2,
                sizeof(t->outbuf) / 2);
        t->outlen = sizeof(t->outbuf) / 2 - 1;
        room = sizeof(t->outbuf) - 1 - t->outlen;
    }
    *buf = uv_buf_init(t->outbuf + t->outlen, (unsigned)room);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct tp *t = s->data;
    (void)buf;
    if (n > 0) {
        t->outlen += (size_t)n;
        return;
    }
    if (n < 0) {
        t->out_eof = true;
        uv_close((uv_handle_t *)s, on_closed);
    }
}

static int run_socket(struct tp *t)
{
    struct agg_config acfg;
    struct dsd_config dcfg;
    struct dsd_sink sink;
    char port_s[16], rate_s[32], dur_s[32], ctx_s[32], cpu_s[16];
    char behind_s[32];
    int err;

    bench_pin_cpu(t->o.server_cpu);
    if (uv_loop_init(&t->loop) != 0)
        return 1;
    agg_config_defaults(&acfg);
    err = agg_create(&t->loop, &acfg, submit_free, t, &t->agg);
    agg_config_free(&acfg);
    if (err != 0) {
        fprintf(stderr, "agg_create: %s\n", cmn_strerror(err));
        return 1;
    }
    dsd_config_defaults(&dcfg);
    dcfg.port = -1;
    dcfg.so_rcvbuf = (int)t->o.rcvbuf;
    if (t->o.udp_sockets >= 0)
        dcfg.udp_sockets = t->o.udp_sockets;
    dsd_sink_from_agg(&sink, t->agg);
    err = dsd_create(&t->loop, &dcfg, &sink, &t->dsd);
    dsd_config_free(&dcfg);
    if (err != 0) {
        fprintf(stderr, "dsd_create: %s\n", cmn_strerror(err));
        return 1;
    }
    if ((err = agg_start(t->agg)) != 0 || (err = dsd_start(t->dsd)) != 0) {
        fprintf(stderr, "start: %s\n", cmn_strerror(err));
        return 1;
    }
    t->idle_rss_kib = proc_status_kib("VmRSS");

    snprintf(port_s, sizeof(port_s), "%d", dsd_udp_port(t->dsd));
    snprintf(rate_s, sizeof(rate_s), "%.0f", t->o.rate);
    snprintf(dur_s, sizeof(dur_s), "%g", t->o.duration);
    snprintf(ctx_s, sizeof(ctx_s), "%llu", (unsigned long long)t->o.contexts);
    snprintf(cpu_s, sizeof(cpu_s), "%d", t->o.loadgen_cpu);
    char wl[2] = {t->o.workload, '\0'};
    char *args[20];
    int na = 0;
    args[na++] = (char *)t->o.loadgen;
    args[na++] = "--port";
    args[na++] = port_s;
    args[na++] = "--workload";
    args[na++] = wl;
    args[na++] = "--rate";
    args[na++] = rate_s;
    args[na++] = "--duration";
    args[na++] = dur_s;
    args[na++] = "--cpu";
    args[na++] = cpu_s;
    if (t->o.contexts) {
        args[na++] = "--contexts";
        args[na++] = ctx_s;
    }
    if (t->o.once)
        args[na++] = "--once";
    if (t->o.max_behind_ms >= 0) {
        snprintf(behind_s, sizeof(behind_s), "%g", t->o.max_behind_ms);
        args[na++] = "--max-behind-ms";
        args[na++] = behind_s;
    }
    args[na] = NULL;

    uv_pipe_init(&t->loop, &t->out, 0);
    t->out.data = t;
    uv_stdio_container_t stdio[3];
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[1].data.stream = (uv_stream_t *)&t->out;
    stdio[2].flags = UV_INHERIT_FD;
    stdio[2].data.fd = 2;
    uv_process_options_t po;
    memset(&po, 0, sizeof(po));
    po.file = t->o.loadgen;
    po.args = args;
    po.exit_cb = on_exit_cb;
    po.stdio = stdio;
    po.stdio_count = 3;
    t->proc.data = t;

    uv_timer_init(&t->loop, &t->drain);
    t->drain.data = t;
    getrusage(RUSAGE_SELF, &t->ru0);
    snmp_udp(t->snmp0);
    dsd_get_stats(t->dsd, &t->st0);
    t->last_packets = t->st0.packets;
    t->t_start = t->t_last_progress = now_s();
    err = uv_spawn(&t->loop, &t->proc, &po);
    if (err != 0) {
        fprintf(stderr, "spawn %s: %s\n", t->o.loadgen, uv_strerror(err));
        return 1;
    }
    uv_read_start((uv_stream_t *)&t->out, on_alloc, on_read);
    uv_timer_start(&t->drain, on_drain_tick, 20, 20);

    uv_run(&t->loop, UV_RUN_DEFAULT);
    dsd_destroy(t->dsd);
    agg_destroy(t->agg);
    err = uv_loop_close(&t->loop);
    if (err != 0) {
        fprintf(stderr, "uv_loop_close: %s\n", uv_strerror(err));
        return 1;
    }
    return t->exit_status == 0 ? 0 : 1;
}

/* ------------------------------------------------------------------------
 * Parse-only micro-bench
 */
static uint64_t null_metrics;

static int null_metric(void *data, const struct agg_metric *m)
{
    (void)data;
    null_metrics += m->nvalues ? m->nvalues : 1;
    return 0;
}

static int null_event(void *data, const struct agg_event *e)
{
    (void)data;
    (void)e;
    return 0;
}

static int null_sc(void *data, const struct agg_service_check *sc)
{
    (void)data;
    (void)sc;
    return 0;
}

static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_agg_stopped_po(void *data)
{
    (void)data;
}

static int run_parse_only(struct tp *t)
{
    FILE *f = fopen(t->o.parse_only, "rb");
    if (f == NULL) {
        perror(t->o.parse_only);
        return 1;
    }
    size_t cap = 1024, n = 0;
    char **pk = malloc(cap * sizeof(*pk));
    uint32_t *len = malloc(cap * sizeof(*len));
    uint32_t l;
    while (pk && len && fread(&l, sizeof(l), 1, f) == 1) {
        if (n == cap) {
            cap *= 2;
            pk = realloc(pk, cap * sizeof(*pk));
            len = realloc(len, cap * sizeof(*len));
            if (pk == NULL || len == NULL)
                break;
        }
        pk[n] = malloc(l ? l : 1);
        if (pk[n] == NULL || fread(pk[n], 1, l, f) != l)
            break;
        len[n++] = l;
    }
    fclose(f);
    if (pk == NULL || len == NULL || n == 0) {
        fprintf(stderr, "no packets in %s\n", t->o.parse_only);
        return 1;
    }

    bench_pin_cpu(t->o.server_cpu);
    if (uv_loop_init(&t->loop) != 0)
        return 1;
    struct dsd_sink sink;
    bool use_agg = strcmp(t->o.sink, "agg") == 0;
    if (use_agg) {
        struct agg_config acfg;
        agg_config_defaults(&acfg);
        int err = agg_create(&t->loop, &acfg, submit_free, t, &t->agg);
        agg_config_free(&acfg);
        if (err != 0)
            return 1;
        dsd_sink_from_agg(&sink, t->agg);
    } else {
        sink.metric = null_metric;
        sink.event = null_event;
        sink.service_check = null_sc;
        sink.data = NULL;
    }
    struct dsd_config dcfg;
    dsd_config_defaults(&dcfg);
    dcfg.port = 0; /* no listener: packets come from memory */
    int err = dsd_create(&t->loop, &dcfg, &sink, &t->dsd);
    dsd_config_free(&dcfg);
    if (err != 0) {
        fprintf(stderr, "dsd_create: %s\n", cmn_strerror(err));
        return 1;
    }

    /* one warm-up pass (creates the contexts), then timed passes */
    for (size_t i = 0; i < n; i++)
        dsd_process_packet(t->dsd, pk[i], len[i], false);
    struct dsd_stats st0, st1;
    dsd_get_stats(t->dsd, &st0);
    double c0 = thread_cpu_s(), w0 = now_s();
    uint64_t passes = 0;
    do {
        for (size_t i = 0; i < n; i++)
            dsd_process_packet(t->dsd, pk[i], len[i], false);
        passes++;
    } while (thread_cpu_s() - c0 < t->o.seconds);
    double cpu = thread_cpu_s() - c0, wall = now_s() - w0;
    dsd_get_stats(t->dsd, &st1);
    uint64_t lines = st1.metric_lines - st0.metric_lines;
    uint64_t perr = 0;
    for (int i = 0; i < DSD_ERR_MAX; i++)
        perr += st1.parse_errors[i] - st0.parse_errors[i];
    struct agg_stats as;
    memset(&as, 0, sizeof(as));
    if (t->agg)
        agg_get_stats(t->agg, &as);
    printf("parse_only file=%s sink=%s packets=%zu passes=%llu lines=%llu "
           "parse_errors=%llu agg_rejected=%llu cpu_s=%.3f wall_s=%.3f "
           "cpu_ns_per_line=%.2f lines_per_cpu_s=%.0f contexts=%llu\n",
           t->o.parse_only, t->o.sink, n, (unsigned long long)passes,
           (unsigned long long)lines, (unsigned long long)perr,
           (unsigned long long)(st1.agg_rejected - st0.agg_rejected), cpu, wall,
           lines ? cpu * 1e9 / (double)lines : 0,
           cpu > 0 ? (double)lines / cpu : 0, (unsigned long long)as.contexts);
    fflush(stdout);

    dsd_destroy(t->dsd); /* never started: freed at once */
    if (t->agg) {
        agg_stop(t->agg, CMN_NO_DEADLINE, on_agg_stopped_po, t);
        uv_run(&t->loop, UV_RUN_DEFAULT);
        agg_destroy(t->agg);
    }
    uv_run(&t->loop, UV_RUN_DEFAULT);
    err = uv_loop_close(&t->loop);
    for (size_t i = 0; i < n; i++)
        free(pk[i]);
    free(pk);
    free(len);
    return err == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    static struct tp t;
    static char exe_dir[4096];
    static char lg_path[4200];
    struct tp_opts *o = &t.o;

    o->workload = 'a';
    o->duration = 5;
    o->rcvbuf = 4 << 20;
    o->server_cpu = 0;
    o->loadgen_cpu = 1;
    o->max_behind_ms = -1;
    o->udp_sockets = -1;
    o->sink = "null";
    o->seconds = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--once") == 0) {
            o->once = true;
            continue;
        }
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        if (strcmp(a, "--workload") == 0)
            o->workload = v[0];
        else if (strcmp(a, "--rate") == 0)
            o->rate = arg_f64(v);
        else if (strcmp(a, "--duration") == 0)
            o->duration = arg_f64(v);
        else if (strcmp(a, "--rcvbuf") == 0)
            o->rcvbuf = (int64_t)arg_u64(v, INT32_MAX);
        else if (strcmp(a, "--contexts") == 0)
            o->contexts = arg_u64(v, 100000000);
        else if (strcmp(a, "--loadgen") == 0)
            o->loadgen = v;
        else if (strcmp(a, "--server-cpu") == 0)
            o->server_cpu = (int)arg_u64(v, 1023);
        else if (strcmp(a, "--loadgen-cpu") == 0)
            o->loadgen_cpu = (int)arg_u64(v, 1023);
        else if (strcmp(a, "--max-behind-ms") == 0)
            o->max_behind_ms = arg_f64(v);
        else if (strcmp(a, "--udp-sockets") == 0)
            o->udp_sockets = (int)arg_u64(v, 16);
        else if (strcmp(a, "--parse-only") == 0)
            o->parse_only = v;
        else if (strcmp(a, "--sink") == 0)
            o->sink = v;
        else if (strcmp(a, "--seconds") == 0)
            o->seconds = arg_f64(v);
        else
            usage();
    }
    if (o->workload < 'a' || o->workload > 'c')
        usage();
    cmn_log_set_level(CMN_LOG_WARN);
    if (o->parse_only)
        return run_parse_only(&t);

    if (o->loadgen == NULL) {
        size_t sz = sizeof(exe_dir);
        if (uv_exepath(exe_dir, &sz) != 0)
            usage();
        char *slash = strrchr(exe_dir, '/');
        if (slash)
            *slash = '\0';
        snprintf(lg_path, sizeof(lg_path), "%s/bench_loadgen", exe_dir);
        o->loadgen = lg_path;
    }
    return run_socket(&t);
}
