/*
 * dsd_rec.h - a recording sink for the dogstatsd tests: every item the
 * server hands over is written as one text row into a fixed table, so a
 * test can assert exactly what a user's metrics turned into.
 *
 * Row formats (values with %.17g):
 *   metric:  "<type> <name> <v1,v2,...|set member> #<tags> @<rate> T<ts>"
 *            type is one of g c s h ms d
 *   event:   "event <title>|<text> #<tags> p<prio> a<alert> T<ts> h<host>"
 *   sc:      "sc <name> <status> #<tags> T<ts> h<host> m<message>"
 */
#ifndef DP_TESTS_DSD_REC_H
#define DP_TESTS_DSD_REC_H

#include <stdio.h>
#include <string.h>

#include "dogstatsd.h"

#define REC_MAX 4096
#define REC_ROW 512

struct rec {
    char rows[REC_MAX][REC_ROW];
    size_t n;       /* rows stored */
    uint64_t total; /* items seen (rows past REC_MAX are counted only) */
    int refuse;     /* when non-zero, every op returns it */
};

static inline const char *rec_type(enum agg_mtype t)
{
    static const char *const names[] = {"g", "c", "s", "h", "ms", "d"};
    return t < AGG_MTYPE_MAX ? names[t] : "?";
}

static inline char *rec_next(struct rec *r)
{
    r->total++;
    return r->n < REC_MAX ? r->rows[r->n++] : NULL;
}

static inline int rec_metric(void *data, const struct agg_metric *m)
{
    struct rec *r = data;
    char *row = rec_next(r);
    if (row != NULL) {
        char vals[256] = "";
        if (m->type == AGG_SET) {
            snprintf(vals, sizeof(vals), "%.*s", (int)m->set_member.len,
                     m->set_member.p);
        } else {
            size_t o = 0;
            for (size_t i = 0; i < m->nvalues && o < sizeof(vals); i++)
                o += (size_t)snprintf(vals + o, sizeof(vals) - o, "%s%.17g",
                                      i ? "," : "", m->values[i]);
        }
        snprintf(row, REC_ROW, "%s %.*s %s #%.*s @%g T%lld", rec_type(m->type),
                 (int)m->name.len, m->name.p, vals, (int)m->tags.len, m->tags.p,
                 m->rate, (long long)m->timestamp);
    }
    return r->refuse;
}

static inline int rec_event(void *data, const struct agg_event *e)
{
    struct rec *r = data;
    char *row = rec_next(r);
    if (row != NULL)
        snprintf(row, REC_ROW, "event %.*s|%.*s #%.*s p%d a%d T%lld h%.*s",
                 (int)e->title.len, e->title.p, (int)e->text.len, e->text.p,
                 (int)e->tags.len, e->tags.p, (int)e->priority,
                 (int)e->alert_type, (long long)e->timestamp, (int)e->host.len,
                 e->host.p);
    return r->refuse;
}

static inline int rec_sc(void *data, const struct agg_service_check *sc)
{
    struct rec *r = data;
    char *row = rec_next(r);
    if (row != NULL)
        snprintf(row, REC_ROW, "sc %.*s %d #%.*s T%lld h%.*s m%.*s",
                 (int)sc->name.len, sc->name.p, sc->status, (int)sc->tags.len,
                 sc->tags.p, (long long)sc->timestamp, (int)sc->host.len,
                 sc->host.p, (int)sc->message.len, sc->message.p);
    return r->refuse;
}

static inline struct dsd_sink rec_sink(struct rec *r)
{
    struct dsd_sink s = {rec_metric, rec_event, rec_sc, r};
    return s;
}

#endif /* DP_TESTS_DSD_REC_H */
