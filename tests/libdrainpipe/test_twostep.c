/*
 * test_twostep.c - the two-step start on the host's loop (dp_bind_on_loop,
 * dp_start_bound), dp_set_tags, dp_get_info and the profiles: what
 * serverless-init is built on.
 *
 * Datagrams sent between the two steps wait in the receive rings and are
 * delivered once the pipeline starts; the tags of dp_set_tags are on the
 * series flushed after it; the bind report names the listener that could
 * not bind; a pipeline that is bound but never started stops cleanly; a
 * pipeline whose every listener failed still takes in-process lines.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "dp_test.h"

static void send_udp(int port, const char *text, int times)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < times; i++)
        cr_assert_eq(
            sendto(fd, text, strlen(text), 0, (struct sockaddr *)&a, sizeof(a)),
            (ssize_t)strlen(text));
    close(fd);
}

struct run {
    struct ti *ti;
    dp_pipeline *p;
    uv_timer_t timer;
    int flush_status;
    double before_at_flush, after_at_flush;
    int stop_status;
    struct dp_stats final;
    bool stopped;
};

static void on_stopped(int status, const struct dp_stats *final, void *arg)
{
    struct run *r = arg;
    r->stop_status = status;
    r->final = *final;
    r->stopped = true;
}

static void on_flushed(dp_pipeline *p, int status, void *arg)
{
    struct run *r = arg;
    r->flush_status = status;
    r->before_at_flush = dpt_sum(r->ti, "tw.before", "env:a,team:x");
    r->after_at_flush = dpt_sum(r->ti, "tw.after", "env:a,team:x");
    /* from now on the series carry the new tags */
    const char *t[] = {"env:b"};
    cr_assert_eq(dp_set_tags(p, t, 1), 0);
    cr_assert_eq(dp_count(p, "tw.later", 1, NULL, 0, 1), 0);
    cr_assert_eq(dp_stop_async(p, 5000, on_stopped, r), 0);
    cr_assert_eq(dp_set_tags(p, t, 1), DP_ESTOPPED);
}

static void closed(uv_handle_t *h)
{
    (void)h;
}

static void on_timer(uv_timer_t *t)
{
    struct run *r = t->data;
    cr_assert_eq(dp_count(r->p, "tw.after", 2, NULL, 0, 1), 0);
    cr_assert_eq(dp_flush_async(r->p, on_flushed, r), 0);
    uv_close((uv_handle_t *)t, closed);
}

Test(twostep, datagrams_between_the_steps_arrive_with_the_set_tags,
     .timeout = 60)
{
    struct run r = {0};
    uv_loop_t loop;
    cr_assert_eq(ti_start(&r.ti), 0);
    cr_assert_eq(uv_loop_init(&loop), 0);
    const char *extra[] = {"dogstatsd_port", "__random__", "bind_host",
                           "127.0.0.1", NULL};
    dp_config *c = dpt_config(r.ti, extra);
    struct dp_bind_report rep;
    cr_assert_eq(dp_bind_on_loop(c, &loop, 0, &rep, &r.p), 0);
    dp_config_free(c); /* the settings were read by the call */
    cr_assert_eq(rep.bound, 1);
    cr_assert_eq(rep.nfailed, 0);

    struct dp_info info;
    cr_assert_eq(dp_get_info(r.p, &info, sizeof(info)), 0);
    cr_assert_gt(info.udp_port, 0);
    cr_assert_eq(info.api_key, 1);
    cr_assert_eq(info.local_sink, 0);
    cr_assert_eq(info.started, 0);
    /* bound, not started: the receive threads hold what arrives */
    send_udp(info.udp_port, "tw.before:1|c", 3);
    cr_assert_eq(dp_count(r.p, "tw.early", 1, NULL, 0, 1), DP_ESTOPPED);
    cr_assert_eq(dp_flush_async(r.p, on_flushed, &r), DP_EINVAL);
    const char *tags[] = {"env:a", "team:x"};
    cr_assert_eq(dp_set_tags(r.p, tags, 2), 0);

    cr_assert_eq(dp_start_bound(r.p), 0);
    cr_assert_eq(dp_start_bound(r.p), DP_EBUSY);
    cr_assert_eq(dp_get_info(r.p, &info, sizeof(info)), 0);
    cr_assert_eq(info.started, 1);

    cr_assert_eq(uv_timer_init(&loop, &r.timer), 0);
    r.timer.data = &r;
    cr_assert_eq(uv_timer_start(&r.timer, on_timer, 0, 0), 0);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(uv_loop_close(&loop), 0);

    cr_assert_eq(r.flush_status, 0);
    cr_assert_eq(r.before_at_flush, 3.0);
    cr_assert_eq(r.after_at_flush, 2.0);
    cr_assert(r.stopped);
    cr_assert_eq(r.stop_status, 0);
    cr_assert_eq(dpt_sum(r.ti, "tw.later", "env:b"), 1.0);
    cr_assert_eq(dpt_sum(r.ti, "tw.later", "env:a,team:x"), 0.0);
    cr_assert_eq(r.final.packets, 3);
    cr_assert_eq(r.final.submitted, 2);
    cr_assert_eq(r.final.dropped_stopped, 1); /* tw.early */
    cr_assert_eq(r.final.dropped_payloads, 0);
    ti_stop(r.ti);
}

/* A UDP port of ours, bound on loop, and its number as text. */
static void take_port(uv_loop_t *loop, uv_udp_t *u, char *port, size_t cap)
{
    struct sockaddr_in a;
    struct sockaddr_storage got;
    int len = sizeof(got);
    cr_assert_eq(uv_udp_init(loop, u), 0);
    cr_assert_eq(uv_ip4_addr("127.0.0.1", 0, &a), 0);
    cr_assert_eq(uv_udp_bind(u, (const struct sockaddr *)&a, 0), 0);
    cr_assert_eq(uv_udp_getsockname(u, (struct sockaddr *)&got, &len), 0);
    snprintf(port, cap, "%d", ntohs(((struct sockaddr_in *)&got)->sin_port));
}

struct stop_only {
    int status;
    int calls;
};

static void stop_only_done(int status, const struct dp_stats *final, void *arg)
{
    struct stop_only *s = arg;
    (void) final;
    s->status = status;
    s->calls++;
}

Test(twostep, bind_report_names_the_listener_that_failed, .timeout = 60)
{
    uv_loop_t loop;
    uv_udp_t taken;
    char port[16], dir[] = "/tmp/dp-twostep-XXXXXX", path[64];
    cr_assert_eq(uv_loop_init(&loop), 0);
    take_port(&loop, &taken, port, sizeof(port));
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/dsd.sock", dir);

    dp_config *c;
    cr_assert_eq(dp_config_new(&c), 0);
    cr_assert_eq(dp_config_set(c, "bind_host", "127.0.0.1"), 0);
    cr_assert_eq(dp_config_set(c, "dogstatsd_port", port), 0);
    cr_assert_eq(dp_config_set(c, "dogstatsd_socket", path), 0);

    /* all or nothing: the port's error, nothing open */
    dp_pipeline *p = NULL;
    struct dp_bind_report rep;
    cr_assert_eq(dp_bind_on_loop(c, &loop, DP_BIND_ALL_OR_NOTHING, &rep, &p),
                 UV_EADDRINUSE);
    cr_assert_null(p);
    cr_assert_eq(dp_bind_on_loop(c, &loop, 4u, &rep, &p),
                 DP_EINVAL); /* unknown */

    /* the others run; the report names the one that did not bind */
    cr_assert_eq(dp_bind_on_loop(c, &loop, 0, &rep, &p), 0);
    cr_assert_not_null(p);
    cr_assert_eq(rep.bound, 1);
    cr_assert_eq(rep.nfailed, 1);
    cr_assert_str_eq(rep.failed[0].var, "DD_DOGSTATSD_PORT");
    cr_assert_str_eq(rep.failed[0].value, port);
    cr_assert_eq(rep.failed[0].err, UV_EADDRINUSE);
    struct dp_info info;
    cr_assert_eq(dp_get_info(p, &info, sizeof(info)), 0);
    cr_assert_eq(info.udp_port, 0);
    cr_assert_eq(info.api_key, 0);
    cr_assert_eq(info.local_sink, 1);
    dp_config_free(c);

    /* bound, never started: the stop closes it */
    struct stop_only s = {0, 0};
    cr_assert_eq(dp_stop_async(p, 1000, stop_only_done, &s), 0);
    cr_assert_eq(s.calls, 0); /* on a later iteration */
    uv_close((uv_handle_t *)&taken, NULL);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(uv_loop_close(&loop), 0);
    cr_assert_eq(s.calls, 1);
    cr_assert_eq(s.status, 0);
    cr_assert_eq(access(path, F_OK), -1); /* the socket file is gone */
    cr_assert_eq(rmdir(dir), 0);
}

struct lone {
    struct ti *ti;
    double at_flush;
    int stop_status;
};

static void lone_stopped(int status, const struct dp_stats *final, void *arg)
{
    struct lone *l = arg;
    (void) final;
    l->stop_status = status;
}

static void lone_flushed(dp_pipeline *p, int status, void *arg)
{
    struct lone *l = arg;
    cr_assert_eq(status, 0);
    l->at_flush = dpt_sum(l->ti, "tw.lone", "");
    cr_assert_eq(dp_stop_async(p, 5000, lone_stopped, l), 0);
}

/* No listener binds: the pipeline still runs, fed in-process. */
Test(twostep, no_listener_bound_still_takes_submissions, .timeout = 60)
{
    uv_loop_t loop;
    uv_udp_t taken;
    char port[16];
    struct lone l = {0};
    cr_assert_eq(ti_start(&l.ti), 0);
    cr_assert_eq(uv_loop_init(&loop), 0);
    take_port(&loop, &taken, port, sizeof(port));
    const char *extra[] = {"dogstatsd_port", port, "bind_host", "127.0.0.1",
                           NULL};
    dp_config *c = dpt_config(l.ti, extra);
    dp_pipeline *p;
    struct dp_bind_report rep;
    cr_assert_eq(dp_bind_on_loop(c, &loop, 0, &rep, &p), 0);
    dp_config_free(c);
    cr_assert_eq(rep.bound, 0);
    cr_assert_eq(rep.nfailed, 1);
    cr_assert_eq(dp_start_bound(p), 0);
    cr_assert_eq(dp_gauge(p, "tw.lone", 7, NULL, 0, 1), 0);
    cr_assert_eq(dp_flush_async(p, lone_flushed, &l), 0);
    uv_close((uv_handle_t *)&taken, NULL);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(uv_loop_close(&loop), 0);
    cr_assert_eq(l.at_flush, 7.0);
    cr_assert_eq(l.stop_status, 0);
    ti_stop(l.ti);
}

/* The host a series carries under a profile, with hostname "h1". */
static void host_under(const char *profile, char *host, size_t cap)
{
    struct ti *ti;
    cr_assert_eq(ti_start(&ti), 0);
    const char *extra[] = {"hostname", "h1", "drainpipe_profile", profile,
                           NULL};
    dp_pipeline *p = dpt_start(ti, extra);
    cr_assert_eq(dp_gauge(p, "tw.host", 1, NULL, 0, 1), 0);
    cr_assert_eq(dp_stop(p, 5000, NULL, 0), 0);
    struct ti_series_info info;
    cr_assert_eq(ti_series_points(ti, "tw.host", "", NULL, 0, &info), 1);
    snprintf(host, cap, "%s", info.host);
    ti_stop(ti);
}

Test(twostep, profiles_set_their_forced_values, .timeout = 60)
{
    char host[256];
    host_under("embedded", host, sizeof(host));
    cr_assert_str_eq(host, "h1");
    /* serverless-init's and the Lambda extension's: no host, whatever the
     * setting (spec/pipeline.md §5.2 step 5) */
    host_under("serverless", host, sizeof(host));
    cr_assert_str_eq(host, "");
    host_under("lambda", host, sizeof(host));
    cr_assert_str_eq(host, "");
    dp_config *c;
    cr_assert_eq(dp_config_new(&c), 0);
    cr_assert_eq(dp_config_set(c, "drainpipe_profile", "agent"), DP_EINVAL);
    dp_config_free(c);
}

/* Threads of this process. */
static int threads(void)
{
    DIR *d = opendir("/proc/self/task");
    cr_assert_not_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* The receive buffer the kernel gives a UDP socket that asks for bytes
 * the way the listeners do (SO_RCVBUFFORCE where permitted, then
 * SO_RCVBUF, which rmem_max caps). */
static int rcvbuf_for(int bytes)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0), eff = 0;
    cr_assert_geq(fd, 0);
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof(bytes)) != 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes));
    socklen_t l = sizeof(eff);
    cr_assert_eq(getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &eff, &l), 0);
    close(fd);
    return eff;
}

static void stop_now(uv_timer_t *t)
{
    struct run *r = t->data;
    cr_assert_eq(dp_stop_async(r->p, 5000, on_stopped, r), 0);
    uv_close((uv_handle_t *)t, closed);
}

/* DP_BIND_RECEIVE_LATE: with a receive buffer of 4 MiB or more the bind
 * starts no thread (the kernel holds the datagrams sent before the
 * start, and all arrive); with a small one the receive thread starts at
 * the bind, as without the flag. Which case a buffer falls in is decided
 * from what the kernel grants here (rmem_max, CAP_NET_ADMIN). */
Test(twostep, receive_late_starts_the_threads_with_the_pipeline, .timeout = 60)
{
    const char *asks[] = {"4194304", "65536"};
    const int ask_bytes[] = {4194304, 65536};
    int nlate = 0;
    for (size_t k = 0; k < 2; k++) {
        bool late = rcvbuf_for(ask_bytes[k]) >= DP_RECEIVE_LATE_MIN_RCVBUF;
        nlate += late;
        struct run r = {0};
        uv_loop_t loop;
        cr_assert_eq(ti_start(&r.ti), 0);
        cr_assert_eq(uv_loop_init(&loop), 0);
        const char *extra[] = {
            "dogstatsd_port",      "__random__", "bind_host", "127.0.0.1",
            "dogstatsd_so_rcvbuf", asks[k],      NULL};
        dp_config *c = dpt_config(r.ti, extra);
        int t0 = threads();
        cr_assert_eq(
            dp_bind_on_loop(c, &loop, DP_BIND_RECEIVE_LATE, NULL, &r.p), 0);
        dp_config_free(c);
        cr_assert_eq(threads(), late ? t0 : t0 + 1, "asked %s", asks[k]);
        struct dp_info info;
        cr_assert_eq(dp_get_info(r.p, &info, sizeof(info)), 0);
        send_udp(info.udp_port, "rl.x:1|c", 50);
        cr_assert_eq(dp_start_bound(r.p), 0);
        cr_assert_geq(threads(), t0 + 1, "the receive thread runs");
        cr_assert_eq(uv_timer_init(&loop, &r.timer), 0);
        r.timer.data = &r;
        cr_assert_eq(uv_timer_start(&r.timer, stop_now, 0, 0), 0);
        cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
        cr_assert_eq(uv_loop_close(&loop), 0);
        cr_assert(r.stopped);
        cr_assert_eq(r.stop_status, 0);
        cr_assert_eq(r.final.packets, 50, "asked %s", asks[k]);
        cr_assert_eq(dpt_sum(r.ti, "rl.x", ""), 50.0);
        ti_stop(r.ti);
    }
    /* 65536 asks for 128 KiB at most: the early case always ran */
    cr_assert_leq(nlate, 1);
}
