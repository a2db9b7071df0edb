/*
 * dsd_server.c - the DogStatsD server object: packet splitting
 * (spec/pipeline.md §1.2), dispatch of each line to its parser, the
 * enrichment of §1.5 (metric namespace, blocklist), error accounting
 * (§1.9), and the create/start/stop/destroy lifecycle that ties the
 * listeners of dsd_dgram.c and dsd_stream.c together.
 *
 * Invariants: nothing here allocates per packet or per line (the value
 * array, the event scratch and the namespaced-name buffer are fixed at
 * create time); a bad line is counted, logged (rate-limited) and skipped,
 * never spoiling the other lines of its packet; memory is freed only after
 * the last close callback (s->nlive == 0).
 */
#include "dsd_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* The Agent's StandardStatsdPrefixes: names starting with these are never
 * namespaced. */
static const char *const std_prefixes[] = {
    "datadog.agent.",
    "datadog.dogstatsd.",
    "datadog.process.",
    "datadog.trace_agent.",
    "datadog.tracer.",
    "activemq.",
    "activemq_58.",
    "airflow.",
    "cassandra.",
    "confluent.",
    "hazelcast.",
    "hive.",
    "ignite.",
    "jboss.",
    "jvm.",
    "kafka.",
    "presto.",
    "sidekiq.",
    "solr.",
    "tomcat.",
    "runtime.",
};
#define NSTD_PREFIXES (sizeof(std_prefixes) / sizeof(std_prefixes[0]))

const char *const *dsd_std_namespace_blacklist(size_t *n)
{
    *n = NSTD_PREFIXES;
    return std_prefixes;
}

static int slice_cmp(const void *a, const void *b)
{
    const struct cmn_slice *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = n ? memcmp(x->p, y->p, n) : 0;
    if (c != 0)
        return c;
    return (x->len > y->len) - (x->len < y->len);
}

/* Builds the namespace, blacklist and blocklist views of s->cfg. */
static int setup_enrichment(struct dsd *s)
{
    struct dsd_config *c = &s->cfg;
    if (c->metric_namespace != NULL && c->metric_namespace[0] != '\0') {
        size_t n = strlen(c->metric_namespace);
        if (c->metric_namespace[n - 1] != '.') {
            char *ns = cmn_malloc(n + 2);
            if (ns == NULL)
                return UV_ENOMEM;
            memcpy(ns, c->metric_namespace, n);
            ns[n] = '.';
            ns[n + 1] = '\0';
            cmn_free(c->metric_namespace);
            c->metric_namespace = ns;
            n++;
        }
        if (n >= DSD_NAME_MAX) {
            CMN_LOGE(DSD_COMP, "statsd_metric_namespace is over %d bytes",
                     DSD_NAME_MAX - 1);
            return UV_EINVAL;
        }
        s->ns_len = n;
        memcpy(s->name_buf, c->metric_namespace, n);
    }
    size_t nbl =
        c->namespace_blacklist ? c->nnamespace_blacklist : NSTD_PREFIXES;
    if (nbl > 0) {
        s->ns_blacklist = cmn_calloc(nbl, sizeof(*s->ns_blacklist));
        if (s->ns_blacklist == NULL)
            return UV_ENOMEM;
        for (size_t i = 0; i < nbl; i++)
            s->ns_blacklist[i] = cmn_slice_cstr(c->namespace_blacklist
                                                    ? c->namespace_blacklist[i]
                                                    : std_prefixes[i]);
        s->nns_blacklist = nbl;
    }
    if (c->nmetric_blocklist > 0) {
        s->blocklist = cmn_calloc(c->nmetric_blocklist, sizeof(*s->blocklist));
        if (s->blocklist == NULL)
            return UV_ENOMEM;
        for (size_t i = 0; i < c->nmetric_blocklist; i++)
            s->blocklist[i] = cmn_slice_cstr(c->metric_blocklist[i]);
        s->nblocklist = c->nmetric_blocklist;
        qsort(s->blocklist, s->nblocklist, sizeof(*s->blocklist), slice_cmp);
    }
    return 0;
}

static int alloc_buffers(struct dsd *s)
{
    s->vals = cmn_calloc(s->cfg.max_values_per_line, sizeof(double));
    s->ev_scratch = cmn_malloc(s->cfg.buffer_size);
    if (!s->vals || !s->ev_scratch)
        return UV_ENOMEM;
    return 0;
}

static void free_server(struct dsd *s)
{
    dsd_config_free(&s->cfg);
    cmn_free(s->ns_blacklist);
    cmn_free(s->blocklist);
    cmn_free(s->vals);
    cmn_free(s->ev_scratch);
    dsd__dgram_free(&s->udp);
    dsd__dgram_free(&s->uds);
    cmn_free(s);
}

int dsd_create(uv_loop_t *loop, const struct dsd_config *cfg,
               const struct dsd_sink *sink, struct dsd **out)
{
    if (cfg->buffer_size == 0 || cfg->max_values_per_line == 0) {
        CMN_LOGE(DSD_COMP, "buffer_size and max_values_per_line must be > 0");
        return UV_EINVAL;
    }
    struct dsd *s = cmn_calloc(1, sizeof(*s));
    if (s == NULL)
        return UV_ENOMEM;
    int rc = dsd__config_copy(&s->cfg, cfg);
    if (rc != 0)
        goto out_free;
    s->loop = loop;
    s->sink = *sink;
    s->parse = cfg->parse;
    s->stream_fd = -1;
    s->ring_size = cfg->ring_size ? cfg->ring_size : DSD_RING_SIZE_DEFAULT;
    struct dsd__dgram *dg[2] = {&s->udp, &s->uds};
    for (int i = 0; i < 2; i++) {
        dg[i]->s = s;
        dg[i]->fd = dg[i]->wake_fd = dg[i]->res_wake_fd = -1;
        dg[i]->kind = i == 0 ? "udp" : "uds";
        dg[i]->eol_required =
            i == 0 ? cfg->eol_required_udp : cfg->eol_required_uds;
    }
    s->rl_line = (struct cmn_ratelimit)CMN_RATELIMIT_INIT(1000, 10);
    s->rl_io = (struct cmn_ratelimit)CMN_RATELIMIT_INIT(1000, 10);
    if ((rc = setup_enrichment(s)) != 0 || (rc = alloc_buffers(s)) != 0)
        goto out_free;
    *out = s;
    return 0;
out_free:
    free_server(s);
    return rc;
}

/* ------------------------------------------------------------------------
 * Packet processing (the hot path)
 */

static void log_bad_line(struct dsd *s, enum dsd_err e, const char *line,
                         size_t len)
{
    s->stats.parse_errors[e]++;
    if (!cmn_log_enabled(CMN_LOG_ERROR))
        return;
    int n = len > DSD_LOG_LINE_MAX ? DSD_LOG_LINE_MAX : (int)len;
    cmn_log_rl(&s->rl_line, CMN_LOG_ERROR, DSD_COMP, "%s: \"%.*s\"%s",
               dsd_err_str(e), n, line, len > DSD_LOG_LINE_MAX ? "..." : "");
}

/* The aggregator refused a parsed line (a cap, memory, a rate): counted
 * and logged, rate-limited, with the cap's name, so that no line vanishes
 * unseen (docs/limits.md). */
static void log_rejected(struct dsd *s, int rc, const char *line, size_t len)
{
    s->stats.agg_rejected++;
    if (rc == CMN_ETOOBIG)
        s->stats.rejected_tags++;
    if (!cmn_log_enabled(CMN_LOG_WARN))
        return;
    const char *why = rc == CMN_ETOOBIG    ? "more tags than the per-line cap"
                      : rc == CMN_ECAP     ? "over a cap of the aggregator "
                                             "(contexts or per-bucket samples)"
                      : rc == CMN_EPARSE   ? "invalid sample rate"
                      : rc == UV_ENOMEM    ? "out of memory"
                      : rc == CMN_ESTOPPED ? "aggregator stopped"
                                           : uv_strerror(rc);
    int n = len > DSD_LOG_LINE_MAX ? DSD_LOG_LINE_MAX : (int)len;
    cmn_log_rl(&s->rl_line, CMN_LOG_WARN, DSD_COMP,
               "line dropped: %s (%zu bytes): \"%.*s\"%s", why, len, n, line,
               len > DSD_LOG_LINE_MAX ? "..." : "");
}

static bool ns_blacklisted(const struct dsd *s, struct cmn_slice name)
{
    for (size_t i = 0; i < s->nns_blacklist; i++) {
        const struct cmn_slice *b = &s->ns_blacklist[i];
        if (name.len >= b->len && memcmp(name.p, b->p, b->len) == 0)
            return true;
    }
    return false;
}

static bool blocked(const struct dsd *s, struct cmn_slice name)
{
    if (!s->cfg.blocklist_match_prefix)
        return bsearch(&name, s->blocklist, s->nblocklist,
                       sizeof(*s->blocklist), slice_cmp) != NULL;
    for (size_t i = 0; i < s->nblocklist; i++) {
        const struct cmn_slice *b = &s->blocklist[i];
        if (name.len >= b->len && memcmp(name.p, b->p, b->len) == 0)
            return true;
    }
    return false;
}

/* Inlined, with process_line and the parser, into the packet loop (their
 * one call site): a call a line, with its frame and six saved registers,
 * was about a tenth of the parser's instructions on workload (a). */
static inline __attribute__((always_inline)) void
process_metric(struct dsd *s, const char *line, size_t len)
{
    struct dsd_metric dm;
    enum dsd_err e = dsd_parse_metric(line, len, &s->parse, &dm, s->vals,
                                      s->cfg.max_values_per_line);
    if (e != DSD_OK) {
        log_bad_line(s, e, line, len);
        return;
    }
    if (s->ns_len != 0 && !ns_blacklisted(s, dm.m.name)) {
        if (dm.m.name.len > DSD_NAME_MAX - s->ns_len) {
            log_bad_line(s, DSD_ERR_NAME_TOO_LONG, line, len);
            return;
        }
        memcpy(s->name_buf + s->ns_len, dm.m.name.p, dm.m.name.len);
        dm.m.name = cmn_slice(s->name_buf, s->ns_len + dm.m.name.len);
    }
    s->stats.metric_lines++;
    s->stats.metric_samples += dm.m.type == AGG_SET ? 1 : dm.m.nvalues;
    if (s->nblocklist != 0 && blocked(s, dm.m.name)) {
        s->stats.blocked++;
        return;
    }
    int rc = s->sink.metric(s->sink.data, &dm.m);
    if (rc != 0)
        log_rejected(s, rc, line, len);
}

static void process_event(struct dsd *s, const char *line, size_t len)
{
    struct agg_event ev;
    enum dsd_err e =
        dsd_parse_event(line, len, &ev, s->ev_scratch, s->cfg.buffer_size);
    if (e != DSD_OK) {
        log_bad_line(s, e, line, len);
        return;
    }
    s->stats.event_lines++;
    int rc = s->sink.event(s->sink.data, &ev);
    if (rc != 0)
        log_rejected(s, rc, line, len);
}

static void process_service_check(struct dsd *s, const char *line, size_t len)
{
    struct agg_service_check sc;
    enum dsd_err e = dsd_parse_service_check(line, len, &sc);
    if (e != DSD_OK) {
        log_bad_line(s, e, line, len);
        return;
    }
    s->stats.service_check_lines++;
    int rc = s->sink.service_check(s->sink.data, &sc);
    if (rc != 0)
        log_rejected(s, rc, line, len);
}

static inline __attribute__((always_inline)) void
process_line(struct dsd *s, const char *line, size_t len)
{
    if (len > 0 && line[len - 1] == '\r')
        len--;
    if (len == 0)
        return;
    /* no '_': no event or service check, and the sniffer is skipped */
    if (__builtin_expect(line[0] == '_', 0)) {
        switch (dsd_msg_type(line, len)) {
        case DSD_MSG_METRIC:
            break;
        case DSD_MSG_EVENT:
            process_event(s, line, len);
            return;
        case DSD_MSG_SERVICE_CHECK:
            process_service_check(s, line, len);
            return;
        }
    }
    process_metric(s, line, len);
}

/*
 * A packet is lines separated by '\n':
 *
 *     a:1|c\nb:2|g\r\n\nc:3|c
 *     ^     ^      ^ ^ ^
 *     |     |      | | last line, unterminated: processed unless
 *     |     |      | |   eol_required, then dropped and counted
 *     |     |      | empty line: skipped
 *     |     |      one trailing '\r' dropped
 *     lines
 */
/* The first '\n' in [p, end), or NULL; buf <= p is the packet's start.
 * Lines are short, so this beats a libc memchr call: 16 bytes at a time,
 * and a last partial block is read as the 16 bytes that end at end (inside
 * the packet when it is that long), the bytes before p masked off. */
static inline const char *find_nl(const char *buf, const char *p,
                                  const char *end)
{
#ifdef __SSE2__
    const __m128i vn = _mm_set1_epi8('\n');
    while (end - p >= 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
        unsigned m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, vn));
        if (m != 0)
            return p + __builtin_ctz(m);
        p += 16;
    }
    if (p < end && end - buf >= 16) {
        const char *q = end - 16;
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)q);
        unsigned m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, vn));
        m &= ~0u << (p - q); /* p - q is 1..15 here */
        return m != 0 ? q + __builtin_ctz(m) : NULL;
    }
#endif
    return p < end ? memchr(p, '\n', (size_t)(end - p)) : NULL;
}

void dsd_process_packet(struct dsd *s, const char *buf, size_t len,
                        bool eol_required)
{
    const char *p = buf, *end = buf + len;
    while (p < end) {
        const char *nl = find_nl(buf, p, end);
        if (nl == NULL && eol_required) {
            s->stats.unterminated++;
            cmn_log_rl(&s->rl_line, CMN_LOG_DEBUG, DSD_COMP,
                       "dropping unterminated line (eol required)");
            return;
        }
        /* one call site: the whole line path is inlined here once */
        process_line(s, p, (size_t)((nl ? nl : end) - p));
        if (nl == NULL)
            return;
        p = nl + 1;
    }
}

/* ------------------------------------------------------------------------
 * Lifecycle
 */

static void unlink_files(struct dsd *s)
{
    if (s->uds_created && unlink(s->cfg.socket_path) != 0)
        CMN_LOGW(DSD_COMP, "unlink %s: %s", s->cfg.socket_path,
                 uv_strerror(-errno));
    if (s->stream_created && unlink(s->cfg.stream_socket_path) != 0)
        CMN_LOGW(DSD_COMP, "unlink %s: %s", s->cfg.stream_socket_path,
                 uv_strerror(-errno));
    s->uds_created = s->stream_created = false;
}

/* Closes the sockets no handle owns yet, and unlinks the socket files
 * when nothing is live. */
static void close_unstarted(struct dsd *s)
{
    if (s->stream_fd >= 0)
        close(s->stream_fd);
    s->stream_fd = -1;
    if (!s->udp.live)
        dsd__dgram_close_fd(&s->udp);
    if (!s->uds.live)
        dsd__dgram_close_fd(&s->uds);
    if (s->nlive == 0) {
        unlink_files(s);
        s->bound = false;
    }
}

int dsd_bind(struct dsd *s)
{
    bool want_udp = s->cfg.port != 0;
    bool want_uds = s->cfg.socket_path && s->cfg.socket_path[0];
    bool want_stream =
        s->cfg.stream_socket_path && s->cfg.stream_socket_path[0];
    int rc;
    if (s->bound || s->started || s->stopping)
        return UV_EALREADY;
    if (!want_udp && !want_uds && !want_stream) {
        CMN_LOGE(DSD_COMP, "listening on neither udp nor socket");
        return UV_EINVAL;
    }
    /* Nothing here needs the loop, so a failure leaves no handle to
     * close. */
    if (want_udp && (rc = dsd__udp_open(s)) != 0)
        goto out_close;
    if (want_uds && (rc = dsd__uds_open(s)) != 0)
        goto out_close;
    if (want_stream && (rc = dsd__stream_open(s, &s->stream_fd)) != 0)
        goto out_close;
    s->bound = true;
    return 0;
out_close:
    close_unstarted(s);
    return rc;
}

int dsd_receive(struct dsd *s)
{
    int rc;
    if (!s->bound || s->stopping)
        return UV_EINVAL;
    if ((rc = dsd__dgram_receive(&s->udp)) != 0 ||
        (rc = dsd__dgram_receive(&s->uds)) != 0) {
        CMN_LOGE(DSD_COMP, "starting the receive threads: %s", uv_strerror(rc));
        return rc;
    }
    return 0;
}

/* "listening on" for each listener, at dsd_start rather than at the bind:
 * serverless-init binds before it spawns its child and starts after, and a
 * process's first formatted line costs ~0.1 ms on a VM (printf's cold
 * code), which the child's start would otherwise wait for. */
static void log_listening(const struct dsd *s)
{
    if (!cmn_log_enabled(CMN_LOG_INFO))
        return;
    if (s->udp.live) {
        char name[64] = "";
        if (s->udp_addr.ss_family == AF_INET)
            uv_ip4_name((const struct sockaddr_in *)&s->udp_addr, name,
                        sizeof(name));
        else
            uv_ip6_name((const struct sockaddr_in6 *)&s->udp_addr, name,
                        sizeof(name));
        CMN_LOGI(DSD_COMP, "listening on udp %s:%d", name, dsd_udp_port(s));
    }
    if (s->uds.live)
        CMN_LOGI(DSD_COMP, "listening on unix datagram socket %s",
                 s->cfg.socket_path);
    if (s->stream_live)
        CMN_LOGI(DSD_COMP, "listening on unix stream socket %s",
                 s->cfg.stream_socket_path);
}

int dsd_start(struct dsd *s)
{
    int rc;
    if (s->started || s->stopping)
        return UV_EALREADY;
    if (!s->bound && (rc = dsd_bind(s)) != 0)
        return rc;
    s->started = true;
    if (s->udp.fd >= 0 && (rc = dsd__dgram_start(&s->udp)) != 0)
        goto out_started;
    if (s->uds.fd >= 0 && (rc = dsd__dgram_start(&s->uds)) != 0)
        goto out_started;
    if (s->stream_fd >= 0) {
        rc = dsd__stream_start(s, s->stream_fd);
        s->stream_fd = -1; /* owned by the pipe handle (or closed) now */
        if (rc != 0)
            goto out_started;
    }
    log_listening(s);
    return 0;
out_started:
    /* A loop handle or a receive thread failed to start: close what
     * started; dsd_stop/dsd_destroy handle the rest. */
    CMN_LOGE(DSD_COMP, "starting listeners: %s", uv_strerror(rc));
    close_unstarted(s);
    if (s->nlive == 0)
        s->started = false;
    return rc;
}

int dsd_rcvbuf_min(const struct dsd *s)
{
    int m = INT_MAX;
    if ((s->udp.fd >= 0 || s->udp.live) && s->rcvbuf_udp < m)
        m = s->rcvbuf_udp;
    if ((s->uds.fd >= 0 || s->uds.live) && s->rcvbuf_uds < m)
        m = s->rcvbuf_uds;
    return m;
}

int dsd_set_sink(struct dsd *s, const struct dsd_sink *sink)
{
    if (s->started)
        return UV_EBUSY;
    s->sink = *sink;
    return 0;
}

int dsd_udp_port(const struct dsd *s)
{
    if (s->udp.fd < 0 && !s->udp.live)
        return 0;
    const struct sockaddr_storage *a = &s->udp_addr;
    return ntohs(a->ss_family == AF_INET
                     ? ((const struct sockaddr_in *)a)->sin_port
                     : ((const struct sockaddr_in6 *)a)->sin6_port);
}

void dsd__handle_closed(struct dsd *s)
{
    if (--s->nlive == 0 && s->stopping && s->stop_cb != NULL) {
        dsd_stopped_cb cb = s->stop_cb;
        s->stop_cb = NULL;
        cb(s->stop_data);
    }
}

static void idle_closed(uv_handle_t *h)
{
    dsd__handle_closed(h->data);
}

void dsd_stop(struct dsd *s, struct cmn_deadline dl, dsd_stopped_cb cb,
              void *data)
{
    if (s->stopping) {
        CMN_LOGW(DSD_COMP, "dsd_stop called twice: ignored");
        return;
    }
    s->stopping = true;
    s->stop_cb = cb;
    s->stop_data = data;
    /* Counted first so that no close callback can see nlive reach 0. */
    s->nlive++;
    /* one deadline for both listeners */
    dsd__dgram_stop(&s->udp, dl);
    dsd__dgram_stop(&s->uds, dl);
    dsd__stream_stop(s);
    unlink_files(s);
    dsd__sync_check(s); /* everything received is parsed now */
    if (cmn_log_enabled(CMN_LOG_DEBUG)) {
        struct dsd_stats st;
        dsd_get_stats(s, &st);
        CMN_LOGD(DSD_COMP,
                 "stopped: %llu packets, %llu metric lines, %llu truncated, "
                 "kernel drops udp %llu uds %llu, ring full %llu times "
                 "(%.3f ms), spun %.3f ms in bursts, %llu naps, longest "
                 "read pause "
                 "udp %.3f ms uds %.3f ms, dropped before the thread ran udp "
                 "%llu uds "
                 "%llu, the rescuer read udp %llu datagrams in %llu rescues",
                 (unsigned long long)st.packets,
                 (unsigned long long)st.metric_lines,
                 (unsigned long long)st.packets_truncated,
                 (unsigned long long)st.kernel_drops_udp,
                 (unsigned long long)st.kernel_drops_uds,
                 (unsigned long long)st.ring_full, st.ring_full_ns / 1e6,
                 st.rx_spin_ns / 1e6, (unsigned long long)st.rx_naps,
                 st.rx_max_gap_ns_udp / 1e6, st.rx_max_gap_ns_uds / 1e6,
                 (unsigned long long)st.rx_asleep_drops_udp,
                 (unsigned long long)st.rx_asleep_drops_uds,
                 (unsigned long long)st.rx_rescued,
                 (unsigned long long)st.rx_rescues);
    }
    uv_idle_init(s->loop, &s->stop_idle);
    s->stop_idle.data = s;
    uv_close((uv_handle_t *)&s->stop_idle, idle_closed);
}

void dsd_destroy(struct dsd *s)
{
    if (s == NULL)
        return;
    if (s->nlive != 0) {
        CMN_LOGE(DSD_COMP,
                 "dsd_destroy with %u handles open: leaking the "
                 "server (call dsd_stop and wait for its callback)",
                 s->nlive);
        return;
    }
    close_unstarted(s);
    free_server(s);
}

void dsd_get_stats(const struct dsd *s, struct dsd_stats *out)
{
    *out = s->stats;
    dsd__dgram_stats(&s->udp, out);
    dsd__dgram_stats(&s->uds, out);
    out->rcvbuf_udp = s->rcvbuf_udp;
    out->rcvbuf_uds = s->rcvbuf_uds;
    out->rx_realtime = s->rx_realtime;
}

void dsd__sync_check(struct dsd *s)
{
    if (s->sync_cb == NULL || !dsd__dgram_synced(&s->udp) ||
        !dsd__dgram_synced(&s->uds))
        return;
    dsd_synced_cb cb = s->sync_cb;
    s->sync_cb = NULL;
    cb(s->sync_data);
}

int dsd_sync(struct dsd *s, dsd_synced_cb cb, void *data)
{
    if (s->sync_cb != NULL)
        return UV_EBUSY;
    s->sync_cb = cb;
    s->sync_data = data;
    if (s->udp.thread_live)
        dsd__dgram_sync(&s->udp);
    if (s->uds.thread_live)
        dsd__dgram_sync(&s->uds);
    dsd__sync_check(s); /* nothing to wait for: at once */
    return 0;
}
