/*
 * agg_events.c - events and service checks: private copies made on the
 * loop thread (the parser's buffers are borrowed), and their JSON bodies
 * (spec/pipeline.md §3.7), built on a pool thread with jansson.
 *
 * Strings are copied repaired (each byte that is not valid UTF-8 becomes
 * U+FFFD), so the JSON payloads and the record sink get the same valid
 * text.
 *
 * Host of an item: its own h: field, else its last host: tag, else the
 * aggregator's hostname. Special tags are removed as for metrics; the
 * extra tags are appended at serialization, skipping ones already present.
 * A timestamp of 0 becomes the receive time (the Agent's addEvent /
 * addServiceCheck).
 */
#include "agg_serialize.h"

#include <stdlib.h>
#include <string.h>

/* Splits raw tags into a->scratch_tags; returns the kept count (or -1) and
 * sets *host from the last host: tag. */
static long agg_item_tags(struct agg *a, struct cmn_slice raw,
                          struct cmn_slice *host)
{
    struct cmn_slice *t = a->scratch_tags;
    long n = agg__split_tags(raw, t, a->scratch_cap);
    long w = 0;
    for (long i = 0; i < n; i++) {
        if (cmn_slice_has_prefix(t[i], "host:"))
            *host = cmn_slice(t[i].p + 5, t[i].len - 5);
        else if (cmn_slice_has_prefix(t[i], "dd.internal.entity_id:") ||
                 cmn_slice_has_prefix(t[i], "dd.internal.card:") ||
                 cmn_slice_has_prefix(t[i], "dd.internal.jmx_check_name:"))
            continue;
        else
            t[w++] = t[i];
    }
    return n < 0 ? -1 : w;
}

/* Bytes src takes in a copy: invalid UTF-8 is repaired (each bad byte
 * becomes the 3-byte U+FFFD), so every string handed out (payloads, record
 * sink) is valid, as for metric contexts. */
static size_t agg_put_len(struct cmn_slice src)
{
    return agg__utf8_valid(src) ? src.len : src.len * 3;
}

/* Copies src, repaired, into the flexible area at *p. */
static void agg_put(char **p, struct cmn_slice *dst, struct cmn_slice src)
{
    size_t n = src.len;
    if (!agg__utf8_valid(src))
        n = agg__utf8_fix_into(src, *p);
    else if (src.len)
        memcpy(*p, src.p, src.len);
    (*p)[n] = '\0';
    *dst = cmn_slice(*p, n);
    *p += n + 1;
}

int agg__event_copy(struct agg *a, const struct agg_event *e, double now,
                    struct agg__event **out)
{
    struct cmn_slice host = cmn_slice_cstr(a->host);
    long nt = agg_item_tags(a, e->tags, &host);
    if (nt < 0)
        return CMN_ETOOBIG;
    if (e->host.len > 0)
        host = e->host;
    size_t bytes = agg_put_len(e->title) + agg_put_len(e->text) +
                   agg_put_len(host) + agg_put_len(e->aggregation_key) +
                   agg_put_len(e->source_type_name) + 5;
    for (long i = 0; i < nt; i++)
        bytes += agg_put_len(a->scratch_tags[i]) + 1;
    struct agg__event *v =
        cmn_malloc(sizeof(*v) + (size_t)nt * sizeof(struct cmn_slice) + bytes);
    if (v == NULL)
        return UV_ENOMEM;
    char *p = (char *)&v->tags[nt];
    agg_put(&p, &v->title, e->title);
    agg_put(&p, &v->text, e->text);
    agg_put(&p, &v->host, host);
    agg_put(&p, &v->agg_key, e->aggregation_key);
    agg_put(&p, &v->source, e->source_type_name);
    for (long i = 0; i < nt; i++)
        agg_put(&p, &v->tags[i], a->scratch_tags[i]);
    v->ntags = (size_t)nt;
    v->ts = e->timestamp ? e->timestamp : (int64_t)now;
    v->priority = e->priority;
    v->alert_type = e->alert_type;
    *out = v;
    return 0;
}

int agg__check_copy(struct agg *a, const struct agg_service_check *sc,
                    double now, struct agg__check **out)
{
    struct cmn_slice host = cmn_slice_cstr(a->host);
    long nt = agg_item_tags(a, sc->tags, &host);
    if (nt < 0)
        return CMN_ETOOBIG;
    if (sc->host.len > 0)
        host = sc->host;
    size_t bytes = agg_put_len(sc->name) + agg_put_len(host) +
                   agg_put_len(sc->message) + 3;
    for (long i = 0; i < nt; i++)
        bytes += agg_put_len(a->scratch_tags[i]) + 1;
    struct agg__check *v =
        cmn_malloc(sizeof(*v) + (size_t)nt * sizeof(struct cmn_slice) + bytes);
    if (v == NULL)
        return UV_ENOMEM;
    char *p = (char *)&v->tags[nt];
    agg_put(&p, &v->name, sc->name);
    agg_put(&p, &v->host, host);
    agg_put(&p, &v->message, sc->message);
    for (long i = 0; i < nt; i++)
        agg_put(&p, &v->tags[i], a->scratch_tags[i]);
    v->ntags = (size_t)nt;
    v->status = sc->status;
    v->ts = sc->timestamp ? sc->timestamp : (int64_t)now;
    *out = v;
    return 0;
}

/* tags + the extra tags they lack, or NULL when there are none at all
 * (then *ok is untouched); a failure sets *ok to false. */
static json_t *agg_jtags(const struct agg__job *j, const struct cmn_slice *t,
                         size_t n, bool *ok)
{
    size_t nextra = j->extra ? j->extra->n : 0;
    if (n == 0 && nextra == 0)
        return NULL;
    json_t *arr = json_array();
    if (arr == NULL) {
        *ok = false;
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        agg__jpush(arr, agg__jstr(t[i]), ok);
    for (size_t i = 0; i < nextra; i++) {
        if (!agg__has_tag(t, n, j->extra->tags[i]))
            agg__jpush(arr, agg__jstr(j->extra->tags[i]), ok);
    }
    return arr;
}

/* The event's JSON object, or NULL when memory ran out (never a partial
 * object). */
static json_t *agg_event_json(const struct agg__job *j,
                              const struct agg__event *e)
{
    static const char *const prio[] = {NULL, "normal", "low"};
    static const char *const alert[] = {NULL, "info", "warning", "error",
                                        "success"};
    bool ok = true;
    json_t *o = json_object();
    agg__jset(o, "msg_title", agg__jstr(e->title), &ok);
    agg__jset(o, "msg_text", agg__jstr(e->text), &ok);
    agg__jset(o, "timestamp", json_integer(e->ts), &ok);
    if (e->priority > AGG_PRIO_UNSET && e->priority <= AGG_PRIO_LOW)
        agg__jset(o, "priority", json_string(prio[e->priority]), &ok);
    agg__jset(o, "host", agg__jstr(e->host), &ok);
    json_t *tags = agg_jtags(j, e->tags, e->ntags, &ok);
    if (tags != NULL)
        agg__jset(o, "tags", tags, &ok);
    if (e->alert_type > AGG_ALERT_UNSET && e->alert_type <= AGG_ALERT_SUCCESS)
        agg__jset(o, "alert_type", json_string(alert[e->alert_type]), &ok);
    if (e->agg_key.len > 0)
        agg__jset(o, "aggregation_key", agg__jstr(e->agg_key), &ok);
    if (e->source.len > 0)
        agg__jset(o, "source_type_name", agg__jstr(e->source), &ok);
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* Emits events [lo, hi) of the sorted array as one payload, halving when a
 * limit is exceeded. */
static void agg_emit_events(struct agg__job *j, struct agg__event **ev,
                            size_t lo, size_t hi)
{
    const struct agg_config *cfg = &j->a->cfg;
    json_t *root = json_object(), *groups = json_object();
    struct cmn_buf b;
    struct fwd_payload *p = NULL;

    bool ok = true;
    agg__jset(root, "apiKey", json_string(""), &ok);
    for (size_t i = lo; i < hi;) {
        struct cmn_slice src =
            ev[i]->source.len ? ev[i]->source : CMN_SLICE_LIT("api");
        json_t *arr = json_array();
        size_t k = i;
        for (; k < hi; k++) {
            struct cmn_slice s2 =
                ev[k]->source.len ? ev[k]->source : CMN_SLICE_LIT("api");
            if (!cmn_slice_eq(src, s2))
                break;
            agg__jpush(arr, agg_event_json(j, ev[k]), &ok);
        }
        if (arr == NULL) {
            ok = false;
        } else if (json_object_setn(groups, src.p, src.len, arr) != 0) {
            size_t fl; /* a source name that is not valid UTF-8 */
            char *fixed = agg__utf8_fix(src, &fl);
            if (fixed == NULL || json_object_setn(groups, fixed, fl, arr) != 0)
                ok = false;
            cmn_free(fixed);
        }
        json_decref(arr);
        i = k;
    }
    json_incref(groups); /* kept for the check below */
    agg__jset(root, "events", groups, &ok);
    if (groups == NULL)
        ok = false;
    json_decref(groups);
    agg__jset(root, "internalHostname",
              agg__jstr(cmn_slice_cstr(j->a->cfg.hostname)), &ok);
    cmn_buf_init(&b, (size_t)1 << 30);
    if (!ok) { /* memory ran out: never send a partial payload */
        j->st.payloads_dropped++;
        goto out;
    }
    cmn_buf_init(&b, (size_t)1 << 30);
    if (agg__json_append(&b, root) != 0) {
        j->st.payloads_dropped++;
        goto out;
    }
    if (b.len <= cfg->max_uncompressed_payload_size) {
        p = agg__make_payload(cfg, FWD_KIND_EVENTS, b.p, b.len);
        if (p == NULL) {
            j->st.payloads_dropped++;
            goto out;
        }
        if (p->len <= cfg->max_payload_size) {
            p->items = (uint32_t)(hi - lo);
            j->st.payloads++;
            agg__job_out(j, p);
            p = NULL;
            goto out;
        }
    }
    if (hi - lo == 1) {
        j->st.items_too_big++;
    } else {
        size_t mid = lo + (hi - lo) / 2;
        cmn_buf_free(&b);
        json_decref(root);
        fwd_payload_free(p);
        agg_emit_events(j, ev, lo, mid);
        agg_emit_events(j, ev, mid, hi);
        return;
    }
out:
    fwd_payload_free(p);
    cmn_buf_free(&b);
    json_decref(root);
}

void agg__serialize_events(struct agg__job *j)
{
    /* sorted by source type by agg__job_records */
    agg_emit_events(j, j->events, 0, j->nevents);
}

void agg__serialize_checks(struct agg__job *j)
{
    struct agg__chunks ch;
    agg__chunks_init(&ch);
    for (size_t i = 0; i < j->nchecks; i++) {
        const struct agg__check *c = j->checks[i];
        bool ok = true;
        json_t *o = json_object();
        agg__jset(o, "check", agg__jstr(c->name), &ok);
        agg__jset(o, "host_name", agg__jstr(c->host), &ok);
        agg__jset(o, "timestamp", json_integer(c->ts), &ok);
        agg__jset(o, "status", json_integer(c->status), &ok);
        agg__jset(o, "message", agg__jstr(c->message), &ok);
        json_t *tags = agg_jtags(j, c->tags, c->ntags, &ok);
        agg__jset(o, "tags", tags ? tags : json_null(), &ok);
        if (!ok || agg__json_append(&ch.data, o) != 0 ||
            agg__chunks_close(&ch, 0) != 0)
            agg__chunks_abort(&ch);
        json_decref(o);
    }
    if (ch.failed)
        j->st.payloads_dropped++;
    struct agg__pack_spec spec = {
        .kind = FWD_KIND_SERVICE_CHECKS,
        .prefix = "[",
        .prefix_len = 1,
        .sep = ",",
        .sep_len = 1,
        .suffix = "]",
        .suffix_len = 1,
        .max_raw = j->a->cfg.max_uncompressed_payload_size,
        .max_comp = j->a->cfg.max_payload_size,
    };
    agg__pack(j, &ch, &spec);
    agg__chunks_free(&ch);
}
