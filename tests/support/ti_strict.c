/*
 * ti_strict.c - a strict reading of the payloads drainpipe sends: what a
 * picky intake would refuse. A payload passes when protobuf-c unpacks it,
 * no message in it carries an unknown field, every string field is valid
 * UTF-8 (proto3 requires it; strict decoders such as Go's reject the whole
 * payload otherwise) and every double is finite (the intake has no use for
 * NaN or Inf, and v1 JSON cannot even spell them).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "intake.h"

/* Valid UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
bool ti_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i], cp, min;
        size_t len;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
            min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            min = 0x10000;
        } else {
            return false;
        }
        if (n - i < len)
            return false;
        cp = c & (0x7Fu >> len);
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (p[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

struct strict {
    char *why;
    size_t cap;
    bool bad;
};

static void fail(struct strict *st, const char *what, const char *detail)
{
    if (st->bad)
        return; /* keep the first reason */
    st->bad = true;
    snprintf(st->why, st->cap, "%s: %.80s", what, detail ? detail : "");
}

static void str(struct strict *st, const char *what, const char *s)
{
    if (s != NULL && !ti_utf8_valid(s, strlen(s)))
        fail(st, what, "invalid UTF-8");
}

static void msg(struct strict *st, const char *what, const ProtobufCMessage *m)
{
    if (m != NULL && m->n_unknown_fields != 0)
        fail(st, what, "unknown field");
}

static void num(struct strict *st, const char *what, double v)
{
    if (!isfinite(v))
        fail(st, what, "not finite");
}

static void metadata(struct strict *st,
                     const Datadog__Agentpayload__Metadata *m)
{
    if (m == NULL)
        return;
    msg(st, "metadata", &m->base);
    if (m->origin != NULL)
        msg(st, "origin", &m->origin->base);
}

static void series(struct strict *st,
                   const Datadog__Agentpayload__MetricPayload__MetricSeries *s)
{
    msg(st, "series", &s->base);
    str(st, "series name", s->metric);
    str(st, "series unit", s->unit);
    str(st, "series source_type_name", s->source_type_name);
    for (size_t i = 0; i < s->n_resources; i++) {
        msg(st, "resource", &s->resources[i]->base);
        str(st, "resource type", s->resources[i]->type);
        str(st, "resource name", s->resources[i]->name);
    }
    for (size_t i = 0; i < s->n_tags; i++)
        str(st, "series tag", s->tags[i]);
    for (size_t i = 0; i < s->n_points; i++) {
        msg(st, "point", &s->points[i]->base);
        num(st, "point value", s->points[i]->value);
    }
    metadata(st, s->metadata);
}

static void sketch(struct strict *st,
                   const Datadog__Agentpayload__SketchPayload__Sketch *s)
{
    msg(st, "sketch", &s->base);
    str(st, "sketch name", s->metric);
    str(st, "sketch host", s->host);
    for (size_t i = 0; i < s->n_tags; i++)
        str(st, "sketch tag", s->tags[i]);
    if (s->n_distributions != 0)
        fail(st, "sketch", "deprecated distributions field set");
    for (size_t i = 0; i < s->n_dogsketches; i++) {
        const Datadog__Agentpayload__SketchPayload__Sketch__Dogsketch *d =
            s->dogsketches[i];
        msg(st, "dogsketch", &d->base);
        num(st, "dogsketch min", d->min);
        num(st, "dogsketch max", d->max);
        num(st, "dogsketch avg", d->avg);
        num(st, "dogsketch sum", d->sum);
        if (d->cnt <= 0)
            fail(st, "dogsketch", "count not positive");
        if (d->n_k != d->n_n)
            fail(st, "dogsketch", "keys and counts differ in length");
    }
    metadata(st, s->metadata);
}

int ti_strict_series(const void *p, size_t n, char *why, size_t cap)
{
    struct strict st = {why, cap, false};
    Datadog__Agentpayload__MetricPayload *mp =
        datadog__agentpayload__metric_payload__unpack(NULL, n, p);
    if (mp == NULL) {
        snprintf(why, cap, "MetricPayload does not unpack");
        return -1;
    }
    msg(&st, "payload", &mp->base);
    for (size_t i = 0; i < mp->n_series; i++)
        series(&st, mp->series[i]);
    datadog__agentpayload__metric_payload__free_unpacked(mp, NULL);
    return st.bad ? -1 : 0;
}

int ti_strict_sketches(const void *p, size_t n, char *why, size_t cap)
{
    struct strict st = {why, cap, false};
    Datadog__Agentpayload__SketchPayload *sp =
        datadog__agentpayload__sketch_payload__unpack(NULL, n, p);
    if (sp == NULL) {
        snprintf(why, cap, "SketchPayload does not unpack");
        return -1;
    }
    msg(&st, "payload", &sp->base);
    if (sp->metadata != NULL) {
        msg(&st, "common metadata", &sp->metadata->base);
    }
    for (size_t i = 0; i < sp->n_sketches; i++)
        sketch(&st, sp->sketches[i]);
    datadog__agentpayload__sketch_payload__free_unpacked(sp, NULL);
    return st.bad ? -1 : 0;
}

size_t ti_strict_check_all(struct ti *ti, char *why, size_t cap)
{
    size_t bad = 0;
    why[0] = '\0';
    for (size_t i = 0; i < ti_request_count(ti); i++) {
        const struct ti_request *r = ti_request_get(ti, i);
        char one[160];
        int rc = 0;
        if (strcmp(r->path, "/api/v2/series") == 0)
            rc = r->decode_ok ? ti_strict_series(r->decoded, r->decoded_len,
                                                 one, sizeof(one))
                              : -1;
        else if (strcmp(r->path, "/api/beta/sketches") == 0)
            rc = r->decode_ok ? ti_strict_sketches(r->decoded, r->decoded_len,
                                                   one, sizeof(one))
                              : -1;
        if (rc != 0) {
            if (!r->decode_ok)
                snprintf(one, sizeof(one), "body does not decompress");
            if (bad++ == 0)
                snprintf(why, cap, "request %zu %s: %s", i, r->path, one);
        }
    }
    return bad;
}
