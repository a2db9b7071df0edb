/*
 * fuzz_agg.c - libFuzzer target: the aggregator fed with parsed samples.
 * Each input line is parsed as the server does (metric, event or service
 * check) and handed to a real aggregator (uncompressed payloads, a fixed
 * clock, a context limit of 256 so the cap is reached); agg_stop then makes
 * the final flush. Invariants:
 *   - counts are conserved exactly: every value fed is counted once, as a
 *     sample or as one kind of drop;
 *   - every series and sketch payload passes the strict decoder (protobuf-c,
 *     no unknown field, valid UTF-8, finite doubles), every JSON payload
 *     loads with jansson (which refuses invalid UTF-8);
 *   - the counter named "k" (no tags, no timestamp, every line of it a
 *     rate-1 counter) is sent as exactly its sum / 10, or not at all when
 *     the sum is not finite.
 */
#include <math.h>
#include <string.h>

#include "aggregator.h"
#include "dogstatsd.h"
#include "fuzz.h"
#include "intake.h"

#define T0 1700000000.5

struct state {
    bool stopped;
    bool k_ok; /* every "k" line so far is a rate-1 counter */
    bool k_seen;
    bool k_finite; /* a finite "k" value came: only then is there a context
                      (a line of NaN/Inf values alone is refused whole) */
    double k_sum;  /* what the aggregator must have summed */
    size_t k_points;
    double k_value; /* what was sent */
};

static double fixed_clock(void *data)
{
    (void)data;
    return T0;
}

static void find_k(struct state *st, const struct fwd_payload *p)
{
    Datadog__Agentpayload__MetricPayload *mp =
        datadog__agentpayload__metric_payload__unpack(NULL, p->len, p->body);
    FUZZ_CHECK(mp != NULL);
    for (size_t i = 0; i < mp->n_series; i++) {
        const Datadog__Agentpayload__MetricPayload__MetricSeries *s =
            mp->series[i];
        if (strcmp(s->metric, "k") != 0 || s->n_tags != 0)
            continue;
        for (size_t k = 0; k < s->n_points; k++) {
            st->k_points++;
            st->k_value = s->points[k]->value;
        }
    }
    datadog__agentpayload__metric_payload__free_unpacked(mp, NULL);
}

static void submit(void *data, struct fwd_payload *p)
{
    struct state *st = data;
    char why[200];
    FUZZ_CHECK(strcmp(p->content_encoding, "identity") == 0);
    if (p->kind == FWD_KIND_SERIES) {
        if (ti_strict_series(p->body, p->len, why, sizeof(why)) != 0) {
            fprintf(stderr, "series payload: %s\n", why);
            abort();
        }
        find_k(st, p);
    } else if (p->kind == FWD_KIND_SKETCHES) {
        if (ti_strict_sketches(p->body, p->len, why, sizeof(why)) != 0) {
            fprintf(stderr, "sketch payload: %s\n", why);
            abort();
        }
    } else {
        json_error_t e;
        json_t *j =
            json_loadb((const char *)p->body, p->len, JSON_ALLOW_NUL, &e);
        /* a NUL in an object key (events are keyed by source type) is
         * valid JSON that jansson alone refuses to load */
        if (j == NULL && json_error_code(&e) != json_error_null_byte_in_key) {
            fprintf(stderr, "JSON payload: %s: %.*s\n", e.text,
                    (int)(p->len > 2000 ? 2000 : p->len), p->body);
            abort();
        }
        json_decref(j);
    }
    fwd_payload_free(p);
}

static void on_stopped(void *data)
{
    ((struct state *)data)->stopped = true;
}

/* Feeds one metric line; returns the number of values it carries. */
static uint64_t feed_metric(struct agg *a, struct state *st, const char *p,
                            size_t n, double *vals, size_t max)
{
    struct dsd_metric m;
    if (dsd_parse_metric(p, n, NULL, &m, vals, max) != DSD_OK)
        return 0;
    if (m.m.name.len > 1 && m.m.name.p[0] == 'k' &&
        strnlen(m.m.name.p, m.m.name.len) == 1)
        st->k_ok = false; /* "k\0...": protobuf-c's C string reads "k" */
    if (m.m.name.len == 1 && m.m.name.p[0] == 'k') {
        st->k_seen = true;
        if (m.m.type != AGG_COUNTER || m.m.rate != 1 || m.m.tags.len != 0 ||
            m.m.timestamp != 0)
            st->k_ok = false; /* another series could be named "k" */
        for (size_t i = 0; st->k_ok && i < m.m.nvalues; i++) {
            if (isfinite(m.m.values[i])) {
                st->k_sum += m.m.values[i] * (1 / m.m.rate);
                st->k_finite = true;
            }
        }
    }
    (void)agg_add_metric(a, &m.m);
    return m.m.type == AGG_SET ? 1 : m.m.nvalues;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0)
        return 0;
    struct agg_config cfg;
    agg_config_defaults(&cfg);
    cfg.compressor = AGG_COMPRESS_NONE;
    cfg.flush_incomplete_buckets = true;
    cfg.context_limit = 256;
    cfg.no_agg_batch_size = 16;
    struct state st = {.k_ok = true};
    struct agg *a = NULL;
    FUZZ_CHECK(agg_create(&loop, &cfg, submit, &st, &a) == 0);
    agg_set_clock(a, fixed_clock, NULL);

    char *text = malloc(size ? size : 1);
    char *scratch = malloc(size ? size : 1);
    double vals[64];
    uint64_t fed = 0;
    FUZZ_CHECK(text != NULL && scratch != NULL);
    memcpy(text, data, size);
    for (size_t off = 0; off < size;) {
        const char *p = text + off;
        const char *nl = memchr(p, '\n', size - off);
        size_t n = nl ? (size_t)(nl - p) : size - off;
        off += n + 1;
        switch (dsd_msg_type(p, n)) {
        case DSD_MSG_EVENT: {
            struct agg_event ev;
            if (dsd_parse_event(p, n, &ev, scratch, size) == DSD_OK)
                (void)agg_add_event(a, &ev);
            break;
        }
        case DSD_MSG_SERVICE_CHECK: {
            struct agg_service_check sc;
            if (dsd_parse_service_check(p, n, &sc) == DSD_OK)
                (void)agg_add_service_check(a, &sc);
            break;
        }
        default:
            fed += feed_metric(a, &st, p, n, vals, 64);
        }
    }
    agg_stop(a, CMN_NO_DEADLINE, on_stopped, &st);
    while (!st.stopped)
        uv_run(&loop, UV_RUN_ONCE);

    struct agg_stats s;
    agg_get_stats(a, &s);
    uint64_t counted = s.samples + s.samples_nan + s.samples_no_agg +
                       s.samples_no_agg_unsupported + s.contexts_dropped +
                       s.samples_dropped_oom + s.samples_dropped_cap +
                       s.samples_rate_refused;
    if (counted != fed) {
        fprintf(stderr, "fed %llu values, counted %llu\n",
                (unsigned long long)fed, (unsigned long long)counted);
        abort();
    }
    if (st.k_seen && st.k_ok && s.contexts_dropped == 0 &&
        s.samples_dropped_oom == 0) {
        if (st.k_finite && isfinite(st.k_sum)) {
            FUZZ_CHECK(st.k_points == 1);
            FUZZ_CHECK(st.k_value == st.k_sum / 10);
        } else {
            FUZZ_CHECK(st.k_points == 0);
        }
    }
    agg_destroy(a);
    agg_config_free(&cfg);
    free(text);
    free(scratch);
    FUZZ_CHECK(uv_loop_close(&loop) == 0);
    return 0;
}
