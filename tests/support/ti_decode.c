/*
 * ti_decode.c - decoders for what the test intake received: MetricPayload
 * and SketchPayload with protobuf-c, JSON with jansson, and lookups of
 * "the points of series <name> with tags <...>" across all requests.
 *
 * Tag sets are compared as sets: order-insensitive, duplicates ignored.
 */
#include <string.h>

#include "common.h"
#include "intake.h"

Datadog__Agentpayload__MetricPayload *
ti_decode_series(const struct ti_request *r)
{
    if (!r->decode_ok)
        return NULL;
    return datadog__agentpayload__metric_payload__unpack(NULL, r->decoded_len,
                                                         r->decoded);
}

Datadog__Agentpayload__SketchPayload *
ti_decode_sketches(const struct ti_request *r)
{
    if (!r->decode_ok)
        return NULL;
    return datadog__agentpayload__sketch_payload__unpack(NULL, r->decoded_len,
                                                         r->decoded);
}

json_t *ti_decode_json(const struct ti_request *r)
{
    if (!r->decode_ok)
        return NULL;
    return json_loadb((const char *)r->decoded, r->decoded_len, 0, NULL);
}

/* Is tag t (len bytes) in the comma-separated list? */
static bool csv_has(const char *csv, const char *t, size_t len)
{
    const char *p = csv;
    while (*p != '\0') {
        size_t n = strcspn(p, ",");
        if (n == len && memcmp(p, t, len) == 0)
            return true;
        p += n;
        if (*p == ',')
            p++;
    }
    return false;
}

static bool tags_equal(char **tags, size_t ntags, const char *csv)
{
    const char *p = csv;

    for (size_t i = 0; i < ntags; i++)
        if (!csv_has(csv, tags[i], strlen(tags[i])))
            return false;
    while (*p != '\0') {
        size_t n = strcspn(p, ",");
        bool found = false;
        for (size_t i = 0; i < ntags && !found; i++)
            found = strlen(tags[i]) == n && memcmp(tags[i], p, n) == 0;
        if (n > 0 && !found)
            return false;
        p += n;
        if (*p == ',')
            p++;
    }
    return true;
}

size_t ti_series_points(struct ti *ti, const char *name, const char *tags,
                        struct ti_point *out, size_t max,
                        struct ti_series_info *info)
{
    size_t total = 0, n = ti_request_count(ti);

    if (info != NULL)
        memset(info, 0, sizeof(*info));
    for (size_t i = 0; i < n; i++) {
        const struct ti_request *r = ti_request_get(ti, i);
        Datadog__Agentpayload__MetricPayload *mp;

        if (strcmp(r->path, "/api/v2/series") != 0)
            continue;
        mp = ti_decode_series(r);
        if (mp == NULL)
            continue;
        for (size_t s = 0; s < mp->n_series; s++) {
            Datadog__Agentpayload__MetricPayload__MetricSeries *ms =
                mp->series[s];
            if (strcmp(ms->metric, name) != 0 ||
                !tags_equal(ms->tags, ms->n_tags, tags))
                continue;
            if (info != NULL) {
                info->type = (int)ms->type;
                info->interval = ms->interval;
                info->host[0] = '\0';
                for (size_t k = 0; k < ms->n_resources; k++)
                    if (strcmp(ms->resources[k]->type, "host") == 0)
                        snprintf(info->host, sizeof(info->host), "%s",
                                 ms->resources[k]->name);
            }
            for (size_t p = 0; p < ms->n_points; p++, total++) {
                if (out != NULL && total < max) {
                    out[total].ts = ms->points[p]->timestamp;
                    out[total].value = ms->points[p]->value;
                }
            }
        }
        datadog__agentpayload__metric_payload__free_unpacked(mp, NULL);
    }
    return total;
}

size_t ti_sketch_find(struct ti *ti, const char *name, const char *tags,
                      struct ti_sketch_sum *out)
{
    size_t found = 0, n = ti_request_count(ti);

    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < n; i++) {
        const struct ti_request *r = ti_request_get(ti, i);
        Datadog__Agentpayload__SketchPayload *sp;

        if (strcmp(r->path, "/api/beta/sketches") != 0)
            continue;
        sp = ti_decode_sketches(r);
        if (sp == NULL)
            continue;
        for (size_t s = 0; s < sp->n_sketches; s++) {
            Datadog__Agentpayload__SketchPayload__Sketch *sk = sp->sketches[s];
            if (strcmp(sk->metric, name) != 0 ||
                !tags_equal(sk->tags, sk->n_tags, tags))
                continue;
            for (size_t d = 0; d < sk->n_dogsketches; d++) {
                Datadog__Agentpayload__SketchPayload__Sketch__Dogsketch *ds =
                    sk->dogsketches[d];
                if (found == 0 || ds->min < out->min)
                    out->min = ds->min;
                if (found == 0 || ds->max > out->max)
                    out->max = ds->max;
                out->cnt += ds->cnt;
                out->sum += ds->sum;
                out->nbins += ds->n_k;
                found++;
            }
        }
        datadog__agentpayload__sketch_payload__free_unpacked(sp, NULL);
    }
    return found;
}
