/*
 * dsd_sink.c - the sink that feeds the aggregator. Kept in its own object
 * file so that a program using only the parsers and listeners (tests,
 * benchmarks with a counting sink) does not pull in the aggregator.
 */
#include "dogstatsd.h"

static int sink_metric(void *data, const struct agg_metric *m)
{
    return agg_add_metric(data, m);
}

static int sink_event(void *data, const struct agg_event *e)
{
    return agg_add_event(data, e);
}

static int sink_service_check(void *data, const struct agg_service_check *sc)
{
    return agg_add_service_check(data, sc);
}

void dsd_sink_from_agg(struct dsd_sink *out, struct agg *a)
{
    out->metric = sink_metric;
    out->event = sink_event;
    out->service_check = sink_service_check;
    out->data = a;
}
