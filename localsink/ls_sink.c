/*
 * ls_sink.c - the local sink (localsink.h): the aggregator's records as
 * JSON lines in a file, or as a summary table printed when it stops.
 *
 * Invariant: every record handed over is counted exactly once (written or
 * kept in a row, not kept for lack of memory or room, or dropped before
 * start / after stop). The summary table holds at most LS_ROWS_MAX rows;
 * rows past it are counted in dropped_cap, never grown. A name or a tag
 * list is shown in full up to LS_TEXT_MAX bytes.
 */
#include "localsink.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define COMP "local-sink"

#define LS_SLOTS 16384 /* hash slots, power of two > rows */
#define LS_VALUE_MAX 64
#define LS_TEXT_MAX 16384 /* bytes of one item's name or joined tags */

_Static_assert(LS_SLOTS > LS_ROWS_MAX, "the row table is never full");

struct row {
    char *key;        /* owned: type \0 metric \0 tags (NUL-joined) */
    const char *type; /* static */
    char *metric;     /* points into key */
    char *tags;       /* owned: "a:b,c:d" or "-" */
    uint64_t points;
    char value[LS_VALUE_MAX];
};

struct ls_sink {
    char *path;    /* owned or NULL */
    FILE *file;    /* open between start and stop */
    FILE *summary; /* borrowed; stderr by default */
    bool started, stopped;
    uv_loop_t *loop;  /* borrowed */
    uv_idle_t stop_h; /* closed to report the stop on a later iteration */
    ls_stopped_fn stop_cb;
    void *stop_data;
    struct row *rows; /* owned, LS_ROWS_MAX, insertion order */
    uint32_t nrows;
    int32_t *slots; /* owned, LS_SLOTS: row index + 1, 0 = empty */
    struct ls_stats stats;
    ls_drops_fn drops_fn; /* the pipeline's drop counters, or NULL */
    void *drops_data;
};

/* ------------------------------------------------------------------------
 * Summary rows
 */
static uint64_t fnv1a(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* The row for (type, metric, tags) or NULL when the table is full (counted)
 * or memory ran out. */
static struct row *row_get(struct ls_sink *l, const char *type,
                           const char *metric, const char *tags)
{
    size_t tl = strlen(type), ml = strlen(metric), gl = strlen(tags);
    size_t klen = tl + 1 + ml + 1 + gl;
    char *key = cmn_malloc(klen + 1);
    if (key == NULL) {
        l->stats.write_errors++;
        return NULL;
    }
    memcpy(key, type, tl + 1);
    memcpy(key + tl + 1, metric, ml + 1);
    memcpy(key + tl + 1 + ml + 1, tags, gl + 1);
    uint64_t h = fnv1a(key, klen);
    for (uint32_t i = 0; i < LS_SLOTS; i++) {
        uint32_t s = (uint32_t)((h + i) & (LS_SLOTS - 1));
        int32_t idx = l->slots[s] - 1;
        if (idx < 0) {
            if (l->nrows >= LS_ROWS_MAX) {
                l->stats.dropped_cap++;
                cmn_free(key);
                return NULL;
            }
            struct row *r = &l->rows[l->nrows];
            memset(r, 0, sizeof(*r));
            r->tags = cmn_strdup(gl ? tags : "-");
            if (r->tags == NULL) {
                l->stats.write_errors++;
                cmn_free(key);
                return NULL;
            }
            r->key = key;
            r->type = type;
            r->metric = key + tl + 1;
            l->slots[s] = (int32_t)++l->nrows;
            return r;
        }
        struct row *r = &l->rows[idx];
        if (memcmp(r->key, key, klen + 1) == 0) {
            cmn_free(key);
            return r;
        }
    }
    cmn_free(key);
    return NULL;
}

/* s as a C string into buf (truncated at its size). */
static const char *ls_cstr(char *buf, size_t size, struct cmn_slice s)
{
    size_t n = s.len < size - 1 ? s.len : size - 1;
    if (n > 0)
        memcpy(buf, s.p, n);
    buf[n] = '\0';
    return buf;
}

/* "a,b,c" from a tag array, into buf (truncated at its size). */
static void join_tags(char *buf, size_t size, const struct cmn_slice *tags,
                      size_t n)
{
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && off + 1 < size; i++) {
        int w = snprintf(buf + off, size - off, "%s%.*s", i ? "," : "",
                         (int)tags[i].len, tags[i].p ? tags[i].p : "");
        if (w < 0)
            break;
        off += (size_t)w;
    }
}

/* ------------------------------------------------------------------------
 * Output: one JSON line, or a summary row update
 */
/* Writes obj as one line and releases it. */
static void write_line(struct ls_sink *l, json_t *obj)
{
    char stackbuf[4096];
    size_t need = json_dumpb(obj, stackbuf, sizeof(stackbuf), JSON_COMPACT);
    char *heap = NULL;
    const char *out = stackbuf;
    if (need == 0)
        goto out_error;
    if (need > sizeof(stackbuf)) {
        heap = cmn_malloc(need);
        if (heap == NULL)
            goto out_error;
        (void)json_dumpb(obj, heap, need, JSON_COMPACT);
        out = heap;
    }
    if (fwrite(out, 1, need, l->file) != need || fputc('\n', l->file) == EOF)
        l->stats.write_errors++;
    cmn_free(heap);
    json_decref(obj);
    return;
out_error:
    l->stats.write_errors++;
    json_decref(obj);
}

static json_t *ls_jstr(struct cmn_slice s)
{
    return json_stringn(s.p ? s.p : "", s.len);
}

static json_t *tags_json(const struct cmn_slice *tags, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a != NULL && i < n; i++)
        json_array_append_new(a, ls_jstr(tags[i]));
    return a;
}

static const char *series_kind(enum agg_series_type t)
{
    switch (t) {
    case AGG_SERIES_COUNT:
        return "count";
    case AGG_SERIES_RATE:
        return "rate";
    case AGG_SERIES_GAUGE:
        return "gauge";
    default:
        return "unspecified";
    }
}

/* False (and counted) when a record comes before start or after stop. */
static bool ls_accepting(struct ls_sink *l)
{
    if (l->started && !l->stopped)
        return true;
    l->stats.dropped_stopped++;
    return false;
}

/* The summary row of (type, name, tags) with one more point, or NULL when
 * it cannot be kept (counted by row_get). */
static struct row *row_add(struct ls_sink *l, const char *type,
                           const char *name, const struct cmn_slice *tags,
                           size_t ntags)
{
    char tagbuf[LS_TEXT_MAX];
    join_tags(tagbuf, sizeof(tagbuf), tags, ntags);
    struct row *r = row_get(l, type, name, tagbuf);
    if (r != NULL)
        r->points++;
    return r;
}

/* One series point. */
static void emit_point(struct ls_sink *l, const char *metric,
                       const struct agg_series_rec *s, const char *kind,
                       const struct agg_point *p)
{
    l->stats.series_points++;
    if (l->file != NULL) {
        json_t *o = json_object();
        json_t *pt = json_array();
        json_array_append_new(pt, json_integer(p->ts));
        json_array_append_new(pt, json_real(p->v));
        json_t *pts = json_array();
        json_array_append_new(pts, pt);
        json_object_set_new(o, "type", json_string("series"));
        json_object_set_new(o, "metric", json_string(metric));
        json_object_set_new(o, "tags", tags_json(s->tags, s->ntags));
        json_object_set_new(o, "points", pts);
        json_object_set_new(o, "kind", json_string(kind));
        json_object_set_new(o, "interval", json_integer(s->interval));
        write_line(l, o);
        return;
    }
    struct row *r = row_add(l, kind, metric, s->tags, s->ntags);
    if (r != NULL)
        snprintf(r->value, sizeof(r->value), "%.10g", p->v);
}

static void ls_series(void *data, const struct agg_series_rec *s)
{
    struct ls_sink *l = data;
    char metric[LS_TEXT_MAX];
    int w = snprintf(metric, sizeof(metric), "%.*s%s", (int)s->name.len,
                     s->name.p ? s->name.p : "", s->suffix);

    if (w < 0)
        metric[0] = '\0';
    for (size_t i = 0; i < s->npoints; i++) {
        if (ls_accepting(l))
            emit_point(l, metric, s, series_kind(s->type), &s->points[i]);
    }
}

static void ls_sketch(void *data, const struct agg_sketch_rec *s)
{
    struct ls_sink *l = data;
    char metric[LS_TEXT_MAX];

    if (!ls_accepting(l))
        return;
    ls_cstr(metric, sizeof(metric), s->name);
    l->stats.sketch_points++;
    if (l->file != NULL) {
        json_t *o = json_object();
        json_object_set_new(o, "type", json_string("sketch"));
        json_object_set_new(o, "metric", json_string(metric));
        json_object_set_new(o, "tags", tags_json(s->tags, s->ntags));
        json_object_set_new(o, "ts", json_integer(s->ts));
        json_object_set_new(o, "cnt", json_integer(s->cnt));
        json_object_set_new(o, "min", json_real(s->min));
        json_object_set_new(o, "max", json_real(s->max));
        json_object_set_new(o, "sum", json_real(s->sum));
        json_object_set_new(o, "avg", json_real(s->avg));
        json_object_set_new(o, "p50", json_real(s->p50));
        json_object_set_new(o, "p99", json_real(s->p99));
        write_line(l, o);
        return;
    }
    struct row *r = row_add(l, "distribution", metric, s->tags, s->ntags);
    if (r != NULL)
        snprintf(r->value, sizeof(r->value), "cnt=%lld min=%g p50=%g max=%g",
                 (long long)s->cnt, s->min, s->p50, s->max);
}

/* A summary row for an event or a service check. */
static void item_row(struct ls_sink *l, const char *type, struct cmn_slice name,
                     const struct cmn_slice *tags, size_t ntags,
                     const char *value)
{
    char namebuf[LS_TEXT_MAX];
    struct row *r =
        row_add(l, type, ls_cstr(namebuf, sizeof(namebuf), name), tags, ntags);
    if (r != NULL)
        snprintf(r->value, sizeof(r->value), "%s", value);
}

/* The event as the intake's JSON object has it, "type" first. */
static void ls_event(void *data, const struct agg_event_rec *e)
{
    static const char *const prio[] = {NULL, "normal", "low"};
    static const char *const alert[] = {NULL, "info", "warning", "error",
                                        "success"};
    struct ls_sink *l = data;

    if (!ls_accepting(l))
        return;
    l->stats.events++;
    if (l->file == NULL) {
        char text[LS_VALUE_MAX];
        item_row(l, "event", e->title, e->tags, e->ntags,
                 ls_cstr(text, sizeof(text), e->text));
        return;
    }
    json_t *o = json_object();
    json_object_set_new(o, "type", json_string("event"));
    json_object_set_new(o, "msg_title", ls_jstr(e->title));
    json_object_set_new(o, "msg_text", ls_jstr(e->text));
    json_object_set_new(o, "timestamp", json_integer(e->ts));
    if (e->priority > AGG_PRIO_UNSET && e->priority <= AGG_PRIO_LOW)
        json_object_set_new(o, "priority", json_string(prio[e->priority]));
    json_object_set_new(o, "host", ls_jstr(e->host));
    if (e->ntags > 0)
        json_object_set_new(o, "tags", tags_json(e->tags, e->ntags));
    if (e->alert_type > AGG_ALERT_UNSET && e->alert_type <= AGG_ALERT_SUCCESS)
        json_object_set_new(o, "alert_type", json_string(alert[e->alert_type]));
    if (e->aggregation_key.len > 0)
        json_object_set_new(o, "aggregation_key", ls_jstr(e->aggregation_key));
    if (e->source_type_name.len > 0)
        json_object_set_new(o, "source_type_name",
                            ls_jstr(e->source_type_name));
    write_line(l, o);
}

/* The service check as the intake's JSON object has it, "type" first. */
static void ls_check(void *data, const struct agg_check_rec *c)
{
    static const char *const st[] = {"OK", "WARNING", "CRITICAL", "UNKNOWN"};
    struct ls_sink *l = data;

    if (!ls_accepting(l))
        return;
    l->stats.service_checks++;
    if (l->file == NULL) {
        item_row(l, "check", c->name, c->tags, c->ntags,
                 c->status >= 0 && c->status <= 3 ? st[c->status] : "?");
        return;
    }
    json_t *o = json_object();
    json_object_set_new(o, "type", json_string("service_check"));
    json_object_set_new(o, "check", ls_jstr(c->name));
    json_object_set_new(o, "host_name", ls_jstr(c->host));
    json_object_set_new(o, "timestamp", json_integer(c->ts));
    json_object_set_new(o, "status", json_integer(c->status));
    json_object_set_new(o, "message", ls_jstr(c->message));
    json_object_set_new(
        o, "tags", c->ntags > 0 ? tags_json(c->tags, c->ntags) : json_null());
    write_line(l, o);
}

/* The end of a flush: what was written reaches the file. */
static void ls_flushed(void *data)
{
    struct ls_sink *l = data;
    l->stats.batches++;
    if (l->file != NULL && fflush(l->file) != 0)
        l->stats.write_errors++;
}

/* ------------------------------------------------------------------------
 * Public API
 */
int ls_create(uv_loop_t *loop, const char *path, struct ls_sink **out)
{
    struct ls_sink *l = cmn_calloc(1, sizeof(*l));
    if (l == NULL)
        return UV_ENOMEM;
    l->loop = loop;
    l->summary = stderr;
    if (path != NULL) {
        l->path = cmn_strdup(path);
        if (l->path == NULL)
            goto out_free;
    } else {
        l->rows = cmn_calloc(LS_ROWS_MAX, sizeof(*l->rows));
        l->slots = cmn_calloc(LS_SLOTS, sizeof(*l->slots));
        /* zeroed by calloc: no page is touched before it is used, which
         * keeps serverless-init's start-up short */
        if (l->rows == NULL || l->slots == NULL)
            goto out_free;
    }
    *out = l;
    return 0;
out_free:
    cmn_free(l->rows);
    cmn_free(l->slots);
    cmn_free(l->path);
    cmn_free(l);
    return UV_ENOMEM;
}

int ls_start(struct ls_sink *l)
{
    if (l->path != NULL) {
        l->file = fopen(l->path, "ae");
        if (l->file == NULL) {
            int err = -errno;
            CMN_LOGE(COMP, "cannot open %s: %s", l->path, cmn_strerror(err));
            return err;
        }
        CMN_LOGI(COMP, "no DD_API_KEY set: writing metrics as JSON lines to %s",
                 l->path);
    }
    l->started = true;
    return 0;
}

void ls_record_sink(struct ls_sink *l, struct agg_record_sink *sink)
{
    *sink = (struct agg_record_sink){ls_series, ls_sketch,  ls_event,
                                     ls_check,  ls_flushed, l};
}

static int row_cmp(const void *x, const void *y)
{
    const struct row *a = *(const struct row *const *)x;
    const struct row *b = *(const struct row *const *)y;
    int c = strcmp(a->metric, b->metric);
    if (c == 0)
        c = strcmp(a->type, b->type);
    return c != 0 ? c : strcmp(a->tags, b->tags);
}

static bool row_is_metric(const struct row *r)
{
    return strcmp(r->type, "event") != 0 && strcmp(r->type, "check") != 0;
}

static const char *plural(uint64_t n, const char *one, const char *many)
{
    return n == 1 ? one : many;
}

/* One block per metric (and per event title or check name), sorted by
 * name, then type, then tags; names and tags are printed in full:
 *
 *   jobs.done (rate)
 *     tags:   env:dev,team:a
 *     points: 2, last 0.25
 */
static int print_rows(struct ls_sink *l, struct cmn_buf *b)
{
    const struct row **v = cmn_calloc(l->nrows, sizeof(*v));
    int rc = 0;

    if (v == NULL)
        return UV_ENOMEM;
    for (uint32_t i = 0; i < l->nrows; i++)
        v[i] = &l->rows[i];
    qsort(v, l->nrows, sizeof(*v), row_cmp);
    for (uint32_t i = 0; i < l->nrows && rc == 0; i++) {
        const struct row *r = v[i];
        bool metric = row_is_metric(r);
        rc |= cmn_buf_printf(b, "\n%s (%s)\n    tags:   %s\n",
                             r->metric[0] ? r->metric : "-", r->type,
                             strcmp(r->tags, "-") == 0 ? "(none)" : r->tags);
        rc |= cmn_buf_printf(b, "    %s %llu, last %s\n",
                             metric ? "points:" : "sent:  ",
                             (unsigned long long)r->points, r->value);
    }
    cmn_free(v);
    return rc;
}

/* "Totals" and "Dropped" lines: what was kept, and every drop by cause
 * (the pipeline's counters, then the sink's own). */
static int print_totals(struct ls_sink *l, struct cmn_buf *b)
{
    struct ls_drop drops[LS_DROPS_MAX];
    size_t n = 0;
    uint64_t metrics = 0;
    int rc = 0;

    for (uint32_t i = 0; i < l->nrows; i++)
        metrics += row_is_metric(&l->rows[i]);
    uint64_t points = l->stats.series_points + l->stats.sketch_points;
    rc |= cmn_buf_printf(
        b, "\nTotals: %llu %s, %llu %s, %llu %s, %llu %s\n",
        (unsigned long long)metrics, plural(metrics, "metric", "metrics"),
        (unsigned long long)points, plural(points, "point", "points"),
        (unsigned long long)l->stats.events,
        plural(l->stats.events, "event", "events"),
        (unsigned long long)l->stats.service_checks,
        plural(l->stats.service_checks, "service check", "service checks"));
    if (l->drops_fn != NULL)
        n = l->drops_fn(l->drops_data, drops, LS_DROPS_MAX);
    const struct ls_drop own[] = {
        {"lines or rows not written (memory, I/O)", l->stats.write_errors},
        {"records that arrived before start or after stop",
         l->stats.dropped_stopped},
    };
    for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
        if (own[i].n > 0 && n < LS_DROPS_MAX)
            drops[n++] = own[i];
    size_t shown = 0;
    for (size_t i = 0; i < n; i++)
        shown += drops[i].n > 0;
    rc |= cmn_buf_printf(b, "Dropped:%s\n", shown ? "" : " none");
    for (size_t i = 0; i < n; i++)
        if (drops[i].n > 0)
            rc |=
                cmn_buf_printf(b, "    %llu %s\n",
                               (unsigned long long)drops[i].n, drops[i].cause);
    if (l->stats.dropped_cap > 0)
        rc |= cmn_buf_printf(b,
                             "(%llu more points in metrics not shown: over "
                             "%d metrics)\n",
                             (unsigned long long)l->stats.dropped_cap,
                             LS_ROWS_MAX);
    return rc;
}

static void print_summary(struct ls_sink *l)
{
    struct cmn_buf b;
    cmn_buf_init(&b, 64u << 20);
    int rc = 0;
    if (l->nrows == 0) {
        rc |= cmn_buf_printf(&b, "drainpipe: no DD_API_KEY set, so nothing "
                                 "was sent (and no metrics were received).\n");
    } else {
        rc |= cmn_buf_printf(&b, "drainpipe: no DD_API_KEY set, so nothing "
                                 "was sent. This is what would have been "
                                 "sent:\n");
        rc |= print_rows(l, &b);
    }
    rc |= print_totals(l, &b);
    if (rc != 0)
        CMN_LOGW(COMP, "summary truncated");
    if (b.len > 0) {
        (void)fwrite(b.p, 1, b.len, l->summary);
        fflush(l->summary);
    }
    cmn_buf_free(&b);
}

static void stop_reported(uv_handle_t *h)
{
    struct ls_sink *l = h->data;
    if (l->stop_cb != NULL)
        l->stop_cb(l->stop_data);
}

void ls_stop(struct ls_sink *l, struct cmn_deadline dl, ls_stopped_fn cb,
             void *data)
{
    (void)dl; /* see localsink.h: writing out is not cut short */
    if (l->stopped) {
        CMN_LOGW(COMP, "ls_stop called twice: ignored");
        return;
    }
    l->stopped = true;
    if (l->file != NULL) {
        if (fclose(l->file) != 0)
            l->stats.write_errors++;
        l->file = NULL;
        CMN_LOGI(COMP,
                 "wrote %llu series points, %llu sketch points, %llu "
                 "events and %llu service checks to %s",
                 (unsigned long long)l->stats.series_points,
                 (unsigned long long)l->stats.sketch_points,
                 (unsigned long long)l->stats.events,
                 (unsigned long long)l->stats.service_checks, l->path);
    } else if (l->path == NULL) {
        print_summary(l);
    }
    l->stop_cb = cb;
    l->stop_data = data;
    uv_idle_init(l->loop, &l->stop_h); /* cannot fail: no system call */
    l->stop_h.data = l;
    uv_close((uv_handle_t *)&l->stop_h, stop_reported);
}

void ls_destroy(struct ls_sink *l)
{
    if (l == NULL)
        return;
    if (l->file != NULL)
        fclose(l->file);
    for (uint32_t i = 0; l->rows != NULL && i < l->nrows; i++) {
        cmn_free(l->rows[i].key);
        cmn_free(l->rows[i].tags);
    }
    cmn_free(l->rows);
    cmn_free(l->slots);
    cmn_free(l->path);
    cmn_free(l);
}

void ls_get_stats(const struct ls_sink *l, struct ls_stats *out)
{
    *out = l->stats;
}

void ls_set_drops_fn(struct ls_sink *l, ls_drops_fn fn, void *data)
{
    l->drops_fn = fn;
    l->drops_data = data;
}

void ls_set_summary_stream(struct ls_sink *l, FILE *f)
{
    l->summary = f != NULL ? f : stderr;
}
