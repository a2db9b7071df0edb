/*
 * test_localsink.c - the local sink on its own: records as the aggregator
 * hands them over (aggregator.h, struct agg_record_sink) become exact JSON
 * lines or an exact summary table; records before start or after stop, and
 * rows lost to memory, are counted. The aggregator's side (which records a
 * flush makes) is tested end to end in tests/lifecycle/test_pipeline.c.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ddsketch.h"
#include "localsink.h"
#include "ti_tmpdir.h"

TI_TMPDIR_FIXTURE("/tmp/ls_sink_XXXXXX", "out.jsonl");
static uv_loop_t loop; /* where the sinks report their stop */

static void suite_init(void)
{
    ti_tmpdir_setup();
    cr_assert_eq(uv_loop_init(&loop), 0);
}

static void suite_fini(void)
{
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&loop), 0, "a sink left a handle open");
    ti_tmpdir_teardown();
}

TestSuite(localsink, .init = suite_init, .fini = suite_fini);

#define MAXTAGS 16

/* A series record with up to MAXTAGS tags (C strings) and its points. */
struct series {
    struct agg_series_rec r;
    struct cmn_slice tags[MAXTAGS];
    struct agg_point pts[8];
};

static const struct agg_series_rec *
series(struct series *s, const char *name, const char *suffix,
       const char *const *tags, size_t ntags, enum agg_series_type type,
       const int64_t *ts, const double *v, size_t npts)
{
    cr_assert_leq(ntags, MAXTAGS);
    cr_assert_leq(npts, 8);
    for (size_t i = 0; i < ntags; i++)
        s->tags[i] = cmn_slice_cstr(tags[i]);
    for (size_t i = 0; i < npts; i++)
        s->pts[i] = (struct agg_point){ts[i], v[i]};
    s->r = (struct agg_series_rec){
        .name = cmn_slice_cstr(name),
        .suffix = suffix,
        .host = cmn_slice_cstr("myhost"),
        .tags = s->tags,
        .ntags = ntags,
        .type = type,
        .interval = 10,
        .points = s->pts,
        .npoints = npts,
    };
    return &s->r;
}

/* The summary of a real sketch of 1, 2 and 3, as the aggregator makes it. */
static struct agg_sketch_rec sketch_123(void)
{
    struct agg_sketch sk;
    agg_sketch_init(&sk);
    cr_assert_eq(agg_sketch_insert(&sk, 1, 1), 0);
    cr_assert_eq(agg_sketch_insert(&sk, 2, 1), 0);
    cr_assert_eq(agg_sketch_insert(&sk, 3, 1), 0);
    cr_assert_eq(agg_sketch_finish(&sk), 0);
    struct agg_sketch_rec r = {
        .name = cmn_slice_cstr("latency"),
        .host = cmn_slice_cstr(""),
        .ts = 1764072000,
        .cnt = sk.cnt,
        .min = sk.min,
        .max = sk.max,
        .sum = sk.sum,
        .avg = sk.avg,
        .p50 = agg_sketch_quantile(&sk, 0.5),
        .p99 = agg_sketch_quantile(&sk, 0.99),
    };
    agg_sketch_free(&sk);
    return r;
}

/* A started sink writing to path (NULL: a summary on summary) and the
 * record callbacks that feed it. */
static struct ls_sink *started(const char *path, FILE *summary,
                               struct agg_record_sink *rs)
{
    struct ls_sink *l;
    cr_assert_eq(ls_create(&loop, path, &l), 0);
    if (summary != NULL)
        ls_set_summary_stream(l, summary);
    cr_assert_eq(ls_start(l), 0);
    ls_record_sink(l, rs);
    return l;
}

static void stopped(void *arg)
{
    (*(int *)arg)++;
}

/* Stops l and runs the loop until it reported: never from inside
 * ls_stop. */
static void stop_sink(struct ls_sink *l, int *calls)
{
    int before = *calls;
    ls_stop(l, cmn_deadline_in_ms(1000), stopped, calls);
    cr_assert_eq(*calls, before, "ls_stop reported from inside the call");
    uv_run(&loop, UV_RUN_DEFAULT);
}

static char *read_stream(FILE *f)
{
    static char buf[8192];
    rewind(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

Test(localsink, series_to_json_lines)
{
    struct agg_record_sink rs;
    struct series s;
    struct ls_sink *l = started(outpath, NULL, &rs);
    const char *tags[] = {"env:dev", "team:a"};
    int64_t ts[] = {1764072000, 1764072010};
    double v[] = {0.5, 1e-7};
    rs.series(rs.data,
              series(&s, "jobs.done", "", tags, 2, AGG_SERIES_RATE, ts, v, 2));
    rs.series(rs.data,
              series(&s, "mem", ".max", NULL, 0, AGG_SERIES_GAUGE, ts, v, 1));
    rs.flushed(rs.data);
    int calls = 0;
    stop_sink(l, &calls);
    cr_assert_eq(calls, 1);
    cr_assert_str_eq(
        ti_read_file(outpath),
        "{\"type\":\"series\",\"metric\":\"jobs.done\",\"tags\":[\"env:dev\","
        "\"team:a\"],\"points\":[[1764072000,0.5]],\"kind\":\"rate\","
        "\"interval\":10}\n"
        "{\"type\":\"series\",\"metric\":\"jobs.done\",\"tags\":[\"env:dev\","
        "\"team:a\"],\"points\":[[1764072010,9.9999999999999995e-8]],"
        "\"kind\":\"rate\",\"interval\":10}\n"
        "{\"type\":\"series\",\"metric\":\"mem.max\",\"tags\":[],\"points\":[["
        "1764072000,0.5]],\"kind\":\"gauge\",\"interval\":10}\n");
    struct ls_stats st;
    ls_get_stats(l, &st);
    cr_assert_eq(st.batches, 1);
    cr_assert_eq(st.series_points, 3);
    cr_assert_eq(st.write_errors, 0);
    /* after stop: counted, nothing written */
    rs.series(rs.data,
              series(&s, "late", "", NULL, 0, AGG_SERIES_GAUGE, ts, v, 2));
    ls_get_stats(l, &st);
    cr_assert_eq(st.dropped_stopped, 2);
    cr_assert_eq(st.series_points, 3);
    ls_destroy(l);
}

Test(localsink, sketch_to_json_line)
{
    struct agg_record_sink rs;
    struct ls_sink *l = started(outpath, NULL, &rs);
    struct agg_sketch_rec sk = sketch_123();
    struct cmn_slice tag = cmn_slice_cstr("device:sda");
    sk.tags = &tag;
    sk.ntags = 1;
    rs.sketch(rs.data, &sk);
    int calls = 0;
    stop_sink(l, &calls);
    /* p50 is the bin value of 2 (within 1/128), p99 the max (3) */
    double p50 = agg_sketch_key_lower(agg_sketch_key(2.0));
    cr_assert(p50 > 2.0 * (1 - 1.0 / 128) && p50 < 2.0 * (1 + 1.0 / 128));
    char want[512];
    snprintf(want, sizeof(want),
             "{\"type\":\"sketch\",\"metric\":\"latency\",\"tags\":["
             "\"device:sda\"],\"ts\":1764072000,\"cnt\":3,\"min\":1.0,"
             "\"max\":3.0,\"sum\":6.0,\"avg\":2.0,\"p50\":%.17g,"
             "\"p99\":3.0}\n",
             p50);
    cr_assert_str_eq(ti_read_file(outpath), want);
    struct ls_stats st;
    ls_get_stats(l, &st);
    cr_assert_eq(st.sketch_points, 1);
    ls_destroy(l);
}

Test(localsink, events_and_service_checks_to_json_lines)
{
    struct agg_record_sink rs;
    struct ls_sink *l = started(outpath, NULL, &rs);
    struct cmn_slice tag = cmn_slice_cstr("env:dev");
    struct agg_event_rec ev = {
        .title = cmn_slice_cstr("deploy"),
        .text = cmn_slice_cstr("v2"),
        .host = cmn_slice_cstr(""),
        .ts = 1764072000,
        .tags = &tag,
        .ntags = 1,
    };
    rs.event(rs.data, &ev);
    /* every optional field set, in the intake's order */
    struct agg_event_rec full = {
        .title = cmn_slice_cstr("t"),
        .text = cmn_slice_cstr("x"),
        .host = cmn_slice_cstr("h"),
        .aggregation_key = cmn_slice_cstr("k"),
        .source_type_name = cmn_slice_cstr("jenkins"),
        .ts = 5,
        .priority = AGG_PRIO_LOW,
        .alert_type = AGG_ALERT_ERROR,
    };
    rs.event(rs.data, &full);
    struct agg_check_rec sc = {
        .name = cmn_slice_cstr("app.ok"),
        .host = cmn_slice_cstr(""),
        .message = cmn_slice_cstr("down"),
        .status = 2,
        .ts = 1764072000,
    };
    rs.check(rs.data, &sc);
    rs.flushed(rs.data);
    int calls = 0;
    stop_sink(l, &calls);
    cr_assert_str_eq(
        ti_read_file(outpath),
        "{\"type\":\"event\",\"msg_title\":\"deploy\",\"msg_text\":\"v2\","
        "\"timestamp\":1764072000,\"host\":\"\",\"tags\":[\"env:dev\"]}\n"
        "{\"type\":\"event\",\"msg_title\":\"t\",\"msg_text\":\"x\","
        "\"timestamp\":5,\"priority\":\"low\",\"host\":\"h\","
        "\"alert_type\":\"error\",\"aggregation_key\":\"k\","
        "\"source_type_name\":\"jenkins\"}\n"
        "{\"type\":\"service_check\",\"check\":\"app.ok\",\"host_name\":\"\","
        "\"timestamp\":1764072000,\"status\":2,\"message\":\"down\","
        "\"tags\":null}\n");
    struct ls_stats st;
    ls_get_stats(l, &st);
    cr_assert_eq(st.batches, 1);
    cr_assert_eq(st.events, 2);
    cr_assert_eq(st.service_checks, 1);
    ls_destroy(l);
}

Test(localsink, summary_table)
{
    struct agg_record_sink rs;
    struct series s;
    FILE *tab = tmpfile();
    cr_assert_not_null(tab);
    struct ls_sink *l = started(NULL, tab, &rs);
    const char *tags[] = {"env:dev", "team:a"};
    int64_t ts[] = {1764072000, 1764072010};
    double v[] = {0.5, 0.25};
    rs.series(rs.data,
              series(&s, "jobs.done", "", tags, 2, AGG_SERIES_RATE, ts, v, 2));
    struct agg_sketch_rec sk = sketch_123();
    rs.sketch(rs.data, &sk);
    const char *longtags[] = {"a-rather-long-tag:with-a-long-value", "x:y"};
    rs.series(rs.data,
              series(&s, "a.metric.name.that.is.far.too.long.for.its.column",
                     "", longtags, 2, AGG_SERIES_GAUGE, ts, v, 1));
    int calls = 0;
    stop_sink(l, &calls);
    cr_assert_eq(calls, 1);
    double p50 = agg_sketch_key_lower(agg_sketch_key(2.0));
    char want[2048];
    snprintf(want, sizeof(want),
             "drainpipe: no DD_API_KEY set, so nothing was sent. This is "
             "what would have been sent:\n"
             "\n"
             "a.metric.name.that.is.far.too.long.for.its.column (gauge)\n"
             "    tags:   a-rather-long-tag:with-a-long-value,x:y\n"
             "    points: 1, last 0.5\n"
             "\n"
             "jobs.done (rate)\n"
             "    tags:   env:dev,team:a\n"
             "    points: 2, last 0.25\n"
             "\n"
             "latency (distribution)\n"
             "    tags:   (none)\n"
             "    points: 1, last cnt=3 min=1 p50=%g max=3\n"
             "\n"
             "Totals: 3 metrics, 4 points, 0 events, 0 service checks\n"
             "Dropped: none\n",
             p50);
    cr_assert_str_eq(read_stream(tab), want);
    ls_destroy(l);
}

Test(localsink, unwritable_file_fails_start)
{
    struct ls_sink *l;
    char bad[400];
    snprintf(bad, sizeof(bad), "%s/no/such/dir/out.jsonl", tmpdir);
    cr_assert_eq(ls_create(&loop, bad, &l), 0);
    cr_assert_eq(ls_start(l), UV_ENOENT);
    ls_destroy(l);
}

/* OOM loop: a summary row that cannot be kept is a counted write error,
 * never a crash or a leak; every record is counted once. */
Test(localsink, rows_survive_allocation_failures)
{
    struct agg_record_sink rs;
    struct series s;
    FILE *tab = tmpfile();
    cr_assert_not_null(tab);
    struct ls_sink *l = started(NULL, tab, &rs);
    int64_t ts[] = {1764072000};
    double v[] = {0.5};
    uint64_t ok = 0, failed = 0;
    for (uint64_t n = 1; n < 8; n++) {
        char tag[32];
        snprintf(tag, sizeof(tag), "n:%llu", (unsigned long long)n);
        const char *tags[] = {tag};
        cmn_alloc_fail_after(n % 2 ? 0 : 1); /* every other row fails */
        rs.series(rs.data, series(&s, "jobs.done", "", tags, 1,
                                  AGG_SERIES_GAUGE, ts, v, 1));
        cmn_alloc_fail_reset();
        struct ls_stats st;
        ls_get_stats(l, &st);
        if (st.write_errors > failed)
            failed++;
        else
            ok++;
    }
    cr_assert_eq(failed, 3);
    cr_assert_eq(ok, 4);
    struct ls_stats st;
    ls_get_stats(l, &st);
    cr_assert_eq(st.series_points, 7);
    int calls = 0;
    stop_sink(l, &calls);
    const char *got = read_stream(tab);
    cr_assert_not_null(strstr(got, "Totals: 4 metrics, 7 points, 0 events, "
                                   "0 service checks\n"
                                   "Dropped:\n"
                                   "    3 lines or rows not written "
                                   "(memory, I/O)\n"),
                       "%s", got);
    ls_destroy(l);
}

Test(localsink, summary_with_nothing_received)
{
    struct agg_record_sink rs;
    FILE *tab = tmpfile();
    cr_assert_not_null(tab);
    struct ls_sink *l = started(NULL, tab, &rs);
    int calls = 0;
    stop_sink(l, &calls);
    ls_stop(l, cmn_deadline_in_ms(1000), stopped, &calls); /* ignored */
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(calls, 1, "a second stop reports nothing");
    cr_assert_str_eq(read_stream(tab),
                     "drainpipe: no DD_API_KEY set, so nothing was sent "
                     "(and no metrics were received).\n"
                     "\n"
                     "Totals: 0 metrics, 0 points, 0 events, 0 service "
                     "checks\n"
                     "Dropped: none\n");
    ls_destroy(l);
}

static size_t fake_drops(void *data, struct ls_drop *out, size_t max)
{
    (void)data;
    cr_assert_geq(max, 3);
    out[0] = (struct ls_drop){"lines not parsed: invalid metric type", 2};
    out[1] = (struct ls_drop){"NaN/Inf values", 0}; /* not printed */
    out[2] = (struct ls_drop){"samples over the context limit", 1};
    return 3;
}

/* Events and service checks are blocks of their own; a long tag list is
 * printed whole; the totals count them; every non-zero drop is listed by
 * cause, the pipeline's first, then the sink's own. */
Test(localsink, summary_lists_events_checks_and_drops_by_cause)
{
    struct ls_sink *l;
    struct agg_record_sink rs;
    struct series s;
    cr_assert_eq(ls_create(&loop, NULL, &l), 0);
    FILE *tab = tmpfile();
    cr_assert_not_null(tab);
    ls_set_summary_stream(l, tab);
    ls_set_drops_fn(l, fake_drops, NULL);
    ls_record_sink(l, &rs);
    int64_t ts[] = {1764072000};
    double v[] = {7};
    /* before start: counted as dropped */
    rs.series(rs.data,
              series(&s, "early", "", NULL, 0, AGG_SERIES_GAUGE, ts, v, 1));
    cr_assert_eq(ls_start(l), 0);
    const char *tags[12];
    char tagv[12][40];
    for (int i = 0; i < 12; i++) {
        snprintf(tagv[i], sizeof(tagv[i]), "gcrj.some_long_tag_%02d:value", i);
        tags[i] = tagv[i];
    }
    rs.series(rs.data,
              series(&s, "job.rows", "", tags, 12, AGG_SERIES_GAUGE, ts, v, 1));
    struct agg_event_rec ev = {
        .title = cmn_slice_cstr("batch failed"),
        .text = cmn_slice_cstr("3 rows"),
        .host = cmn_slice_cstr(""),
        .ts = 5,
    };
    rs.event(rs.data, &ev);
    struct cmn_slice ab = cmn_slice_cstr("a:b");
    struct agg_check_rec sc = {
        .name = cmn_slice_cstr("job.done"),
        .host = cmn_slice_cstr(""),
        .message = cmn_slice_cstr(""),
        .status = 2,
        .ts = 5,
        .tags = &ab,
        .ntags = 1,
    };
    rs.check(rs.data, &sc);
    int calls = 0;
    stop_sink(l, &calls);
    cr_assert_str_eq(
        read_stream(tab),
        "drainpipe: no DD_API_KEY set, so nothing was sent. This is what "
        "would have been sent:\n"
        "\n"
        "batch failed (event)\n"
        "    tags:   (none)\n"
        "    sent:   1, last 3 rows\n"
        "\n"
        "job.done (check)\n"
        "    tags:   a:b\n"
        "    sent:   1, last CRITICAL\n"
        "\n"
        "job.rows (gauge)\n"
        "    tags:   gcrj.some_long_tag_00:value,gcrj.some_long_tag_01:value,"
        "gcrj.some_long_tag_02:value,gcrj.some_long_tag_03:value,"
        "gcrj.some_long_tag_04:value,gcrj.some_long_tag_05:value,"
        "gcrj.some_long_tag_06:value,gcrj.some_long_tag_07:value,"
        "gcrj.some_long_tag_08:value,gcrj.some_long_tag_09:value,"
        "gcrj.some_long_tag_10:value,gcrj.some_long_tag_11:value\n"
        "    points: 1, last 7\n"
        "\n"
        "Totals: 1 metric, 1 point, 1 event, 1 service check\n"
        "Dropped:\n"
        "    2 lines not parsed: invalid metric type\n"
        "    1 samples over the context limit\n"
        "    1 records that arrived before start or after stop\n");
    ls_destroy(l);
}
