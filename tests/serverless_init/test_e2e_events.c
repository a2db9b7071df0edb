/*
 * test_e2e_events.c - events and service checks from a wrapped job reach
 * the intake. The real serverless-init wraps the real child, which sends
 * an event and two service checks over UDP and exits; the loopback intake
 * decodes POST /intake/ and POST /api/v1/check_run and every field is
 * checked. Datadog's serverless-init drops both (its serverless batcher
 * has no event channel); drainpipe delivers them unless
 * DRAINPIPE_SERVERLESS_DROP_EVENTS=true, which the second test checks.
 */
#include <time.h>

#include "e2e.h"

#define PACKET                                                                 \
    "_e{8,19}:batch 42|3 rows were skipped|t:error|d:1764072000|p:low|"        \
    "k:batch|s:job|#table:orders\\n"                                           \
    "_sc|job.done|2|d:1764072000|m:3 rows failed|#table:orders\\n"             \
    "_sc|job.started|0\\n"                                                     \
    "e2e.rows:3|c"

static const struct ti_request *only_request(struct ti *ti, const char *path)
{
    const struct ti_request *found = NULL;
    for (size_t i = 0; i < ti_request_count(ti); i++) {
        const struct ti_request *r = ti_request_get(ti, i);
        if (strcmp(r->path, path) != 0)
            continue;
        cr_assert_null(found, "two requests to %s", path);
        found = r;
    }
    cr_assert_not_null(found, "no request to %s", path);
    return found;
}

/* tags of a JSON array joined with ',' */
static void jtags(json_t *arr, char *out, size_t cap)
{
    size_t w = 0, i;
    json_t *t;
    out[0] = '\0';
    cr_assert(json_is_array(arr));
    json_array_foreach(arr, i, t)
    {
        w += (size_t)snprintf(out + w, cap - w, "%s%s", i ? "," : "",
                              json_string_value(t));
    }
}

static const char *jstr(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    cr_assert(json_is_string(v), "field %s", k);
    return json_string_value(v);
}

static long long jint(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    cr_assert(json_is_integer(v), "field %s", k);
    return json_integer_value(v);
}

Test(e2e_events, event_and_checks_arrive_with_exact_fields, .timeout = 60)
{
    struct e2e e;
    struct ti *ti = e2e_with_intake(&e);
    char tags[700], got[1024];
    /* the extra (cloud and version) tags follow the item's own */
    snprintf(tags, sizeof(tags), "table:orders,%s", e.tags);

    long long before = (long long)time(NULL);
    const char *args[] = {e.child, "udp", PACKET, "exit", "0", NULL};
    cr_assert_eq(e2e_run(&e, args, 20000), 0);
    long long after = (long long)time(NULL);

    const struct ti_request *r = only_request(ti, "/intake/");
    cr_assert_str_eq(r->method, "POST");
    cr_assert_str_eq(ti_request_header(r, "Content-Type"), "application/json");
    cr_assert_str_eq(ti_request_header(r, "DD-Api-Key"), "test");
    json_t *body = ti_decode_json(r);
    cr_assert_not_null(body);
    cr_assert_str_eq(jstr(body, "apiKey"), "");
    cr_assert_str_eq(jstr(body, "internalHostname"), "");
    json_t *groups = json_object_get(body, "events");
    cr_assert_eq(json_object_size(groups), 1);
    json_t *arr = json_object_get(groups, "job");
    cr_assert_eq(json_array_size(arr), 1);
    json_t *ev = json_array_get(arr, 0);
    cr_assert_eq(json_object_size(ev), 9);
    cr_assert_str_eq(jstr(ev, "msg_title"), "batch 42");
    cr_assert_str_eq(jstr(ev, "msg_text"), "3 rows were skipped");
    cr_assert_eq(jint(ev, "timestamp"), 1764072000);
    cr_assert_str_eq(jstr(ev, "priority"), "low");
    cr_assert_str_eq(jstr(ev, "host"), "");
    jtags(json_object_get(ev, "tags"), got, sizeof(got));
    cr_assert_str_eq(got, tags);
    cr_assert_str_eq(jstr(ev, "alert_type"), "error");
    cr_assert_str_eq(jstr(ev, "aggregation_key"), "batch");
    cr_assert_str_eq(jstr(ev, "source_type_name"), "job");
    json_decref(body);

    r = only_request(ti, "/api/v1/check_run");
    cr_assert_str_eq(r->method, "POST");
    cr_assert_str_eq(ti_request_header(r, "Content-Type"), "application/json");
    body = ti_decode_json(r);
    cr_assert(json_is_array(body));
    cr_assert_eq(json_array_size(body), 2);
    json_t *sc = json_array_get(body, 0);
    cr_assert_eq(json_object_size(sc), 6);
    cr_assert_str_eq(jstr(sc, "check"), "job.done");
    cr_assert_str_eq(jstr(sc, "host_name"), "");
    cr_assert_eq(jint(sc, "timestamp"), 1764072000);
    cr_assert_eq(jint(sc, "status"), 2);
    cr_assert_str_eq(jstr(sc, "message"), "3 rows failed");
    jtags(json_object_get(sc, "tags"), got, sizeof(got));
    cr_assert_str_eq(got, tags);
    sc = json_array_get(body, 1);
    cr_assert_str_eq(jstr(sc, "check"), "job.started");
    cr_assert_eq(jint(sc, "status"), 0);
    cr_assert_str_eq(jstr(sc, "message"), "");
    /* no d: field: stamped with the time it was received */
    long long ts = jint(sc, "timestamp");
    cr_assert(ts >= before && ts <= after, "timestamp %lld", ts);
    jtags(json_object_get(sc, "tags"), got, sizeof(got));
    cr_assert_str_eq(got, tags + strlen("table:orders,"));
    json_decref(body);

    double sum;
    cr_assert_eq(e2e_delivered_points(ti, "e2e.rows", &sum, NULL), 1);
    cr_assert_eq(sum, 0.3);
    e2e_fini(&e);
    ti_stop(ti);
}

Test(e2e_events, drop_switch_restores_the_agents_serverless_behaviour,
     .timeout = 60)
{
    struct e2e e;
    struct ti *ti = e2e_with_intake(&e);
    e2e_env(&e, "DRAINPIPE_SERVERLESS_DROP_EVENTS=true");
    const char *args[] = {e.child, "udp", PACKET, "exit", "0", NULL};
    cr_assert_eq(e2e_run(&e, args, 20000), 0);
    cr_assert_eq(ti_count_path(ti, "/intake/"), 0);
    cr_assert_eq(ti_count_path(ti, "/api/v1/check_run"), 0);
    double sum;
    cr_assert_eq(e2e_delivered_points(ti, "e2e.rows", &sum, NULL), 1);
    cr_assert_eq(sum, 0.3);
    e2e_fini(&e);
    ti_stop(ti);
}
