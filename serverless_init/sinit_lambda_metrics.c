/*
 * sinit_lambda_metrics.c - Lambda enhanced metrics and static tags
 * (spec §2.3, §3): INVOKE, platform.initReport / runtimeDone / report and
 * SHUTDOWN become aws.lambda.enhanced.* distribution samples, with the
 * units of spec §3 (s for duration, billed_duration, init_duration; ms for
 * runtime_duration and post_runtime_duration; MB; USD).
 *
 * Each invocation keeps a slot in a small ring (SINIT_LE_RING) keyed by
 * requestId: its cold_start / proactive_initialization tags and its
 * runtimeDone duration, because platform.report of request N arrives after
 * the extension's next /next, i.e. after INVOKE N+1 (spec §2.2 note).
 * A record for a request no longer in the ring is still counted, as warm.
 */
#include "sinit_lambda.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define P "aws.lambda.enhanced."
#define PRICE_X86 0.0000166667 /* USD per GB-second */
#define PRICE_ARM 0.0000133334
#define PRICE_REQUEST 0.0000002

void sinit_le_init(struct sinit_le *le, bool enabled, uint64_t start_ms,
                   sinit_emit_fn emit, void *data)
{
    memset(le, 0, sizeof(*le));
    le->enabled = enabled;
    le->start_ms = start_ms;
    le->emit = emit;
    le->emit_data = data;
#if defined(__aarch64__)
    le->arm64 = true;
#endif
}

/* round(): half away from zero, without libm (the binary links none).
 * Exact below 2^52, where x - trunc(x) is exact; above, x is an integer. */
static double round_away(double x)
{
    if (!(fabs(x) < 4503599627370496.0)) /* 2^52; also NaN */
        return x;
    int64_t i = (int64_t)x; /* truncates toward zero */
    double f = x - (double)i;
    if (f >= 0.5)
        i++;
    else if (f <= -0.5)
        i--;
    return (double)i;
}

double sinit_le_cost(double billed_ms, double memory_mb, bool arm64)
{
    double gb_s = (billed_ms / 1000.0) * (memory_mb / 1024.0);
    double c = PRICE_REQUEST + gb_s * (arm64 ? PRICE_ARM : PRICE_X86);
    return round_away(c * 1e12) / 1e12;
}

static struct sinit_le_req *find(struct sinit_le *le, const char *id)
{
    if (id == NULL || id[0] == '\0')
        return NULL;
    for (size_t i = 0; i < SINIT_LE_RING; i++)
        if (strcmp(le->ring[i].id, id) == 0)
            return &le->ring[i];
    return NULL;
}

/* The dynamic tags of a request: "cold_start:true|false" and, when true,
 * ",proactive_initialization:true". */
static void req_tags(const struct sinit_le_req *r, char *buf, size_t cap)
{
    bool cold = r != NULL && r->cold;
    bool pro = r != NULL && r->proactive;
    snprintf(buf, cap, "cold_start:%s%s", cold ? "true" : "false",
             pro ? ",proactive_initialization:true" : "");
}

static void emit(struct sinit_le *le, const char *name, double v,
                 const char *tags)
{
    if (le->enabled && le->emit != NULL)
        le->emit(le->emit_data, name, v, tags);
}

void sinit_le_invoke(struct sinit_le *le, const char *request_id,
                     uint64_t now_ms)
{
    struct sinit_le_req *r = &le->ring[le->next];
    le->next = (le->next + 1) % SINIT_LE_RING;
    memset(r, 0, sizeof(*r));
    snprintf(r->id, sizeof(r->id), "%s", request_id ? request_id : "");
    snprintf(le->last_id, sizeof(le->last_id), "%s", r->id);
    r->runtime_ms = -1;
    if (le->invocations == 0) {
        /* spec §3: the first invocation is a cold start when it comes
         * within 10 s of the extension's start, else the sandbox was
         * initialised proactively */
        if (now_ms - le->start_ms <= SINIT_PROACTIVE_INIT_MS)
            r->cold = true;
        else
            r->proactive = true;
    }
    le->invocations++;
    char tags[96];
    req_tags(r, tags, sizeof(tags));
    emit(le, P "invocations", 1, tags);
}

static double num(const json_t *o, const char *key, bool *ok)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_number(v)) {
        *ok = false;
        return 0;
    }
    return json_number_value(v);
}

static void out_of_memory(struct sinit_le *le, struct sinit_le_req *r,
                          const char *tags)
{
    if (r != NULL && r->oom)
        return; /* deduplicated per request (spec §3) */
    if (r != NULL)
        r->oom = true;
    emit(le, P "out_of_memory", 1, tags);
}

static void init_duration(struct sinit_le *le, double ms)
{
    if (le->init_reported)
        return;
    le->init_reported = true;
    char tags[64] = "";
    if (le->init_type[0] != '\0')
        snprintf(tags, sizeof(tags), "init_type:%s", le->init_type);
    emit(le, P "init_duration", ms * 0.001, tags[0] ? tags : NULL);
}

static void runtime_done(struct sinit_le *le, const json_t *rec)
{
    const char *id = json_string_value(json_object_get(rec, "requestId"));
    const char *status = json_string_value(json_object_get(rec, "status"));
    const char *etype = json_string_value(json_object_get(rec, "errorType"));
    struct sinit_le_req *r = find(le, id);
    char tags[96];
    req_tags(r, tags, sizeof(tags));
    if (status != NULL && strcmp(status, "success") != 0)
        emit(le, P "errors", 1, tags);
    if (status != NULL && strcmp(status, "timeout") == 0)
        emit(le, P "timeouts", 1, tags);
    if (status != NULL && strcmp(status, "error") == 0 && etype != NULL &&
        strcmp(etype, "Runtime.OutOfMemory") == 0)
        out_of_memory(le, r, tags);
    const json_t *m = json_object_get(rec, "metrics");
    bool ok = true;
    double d = num(m, "durationMs", &ok);
    if (ok) {
        emit(le, P "runtime_duration", d, tags);
        if (r != NULL)
            r->runtime_ms = d;
    }
    ok = true;
    double pb = num(m, "producedBytes", &ok);
    if (ok)
        emit(le, P "produced_bytes", pb, tags);
}

static void report(struct sinit_le *le, const json_t *rec)
{
    const char *id = json_string_value(json_object_get(rec, "requestId"));
    struct sinit_le_req *r = find(le, id);
    char tags[96];
    req_tags(r, tags, sizeof(tags));
    if (r != NULL)
        r->reported = true;
    const json_t *m = json_object_get(rec, "metrics");
    bool ok = true, billed_ok = true, mem_ok = true, max_ok = true;
    double d = num(m, "durationMs", &ok);
    double billed = num(m, "billedDurationMs", &billed_ok);
    double mem = num(m, "memorySizeMB", &mem_ok);
    double max = num(m, "maxMemoryUsedMB", &max_ok);
    if (ok)
        emit(le, P "duration", d * 0.001, tags);
    if (billed_ok)
        emit(le, P "billed_duration", billed * 0.001, tags);
    if (max_ok)
        emit(le, P "max_memory_used", max, tags);
    if (mem_ok)
        emit(le, P "memorysize", mem, tags);
    if (billed_ok && mem_ok)
        emit(le, P "estimated_cost", sinit_le_cost(billed, mem, le->arm64),
             tags);
    if (ok && r != NULL && r->runtime_ms >= 0)
        emit(le, P "post_runtime_duration", d - r->runtime_ms, tags);
    if (max_ok && mem_ok && max >= mem)
        out_of_memory(le, r, tags);
    bool init_ok = true;
    double init = num(m, "initDurationMs", &init_ok);
    if (init_ok)
        init_duration(le, init); /* fallback when no initReport came */
}

void sinit_le_event(struct sinit_le *le, const char *type, const json_t *record)
{
    if (!json_is_object(record))
        return;
    if (strcmp(type, "platform.initStart") == 0 ||
        strcmp(type, "platform.initReport") == 0) {
        const char *it =
            json_string_value(json_object_get(record, "initializationType"));
        if (it != NULL)
            snprintf(le->init_type, sizeof(le->init_type), "%s", it);
        if (type[13] == 'R') { /* initReport */
            bool ok = true;
            double d =
                num(json_object_get(record, "metrics"), "durationMs", &ok);
            if (ok)
                init_duration(le, d);
        }
    } else if (strcmp(type, "platform.runtimeDone") == 0) {
        runtime_done(le, record);
    } else if (strcmp(type, "platform.report") == 0) {
        report(le, record);
    }
}

void sinit_le_shutdown(struct sinit_le *le)
{
    emit(le, P "shutdowns", 1, NULL);
    if (le->invocations == 0)
        emit(le, P "unused_init", 1, NULL);
}

bool sinit_le_last_reported(const struct sinit_le *le)
{
    if (le->invocations == 0)
        return true;
    for (size_t i = 0; i < SINIT_LE_RING; i++)
        if (strcmp(le->ring[i].id, le->last_id) == 0)
            return le->ring[i].reported;
    return true;
}

/* ------------------------------------------------------------------------
 * Static tags
 */
/* Appends "k:val" to l (errors are sticky in l->err). */
static void add_tag(struct cmn_strv *l, const char *k, const char *val)
{
    char buf[512];
    int len = snprintf(buf, sizeof(buf), "%s:%s", k, val);
    if (len > 0 && (size_t)len < sizeof(buf)) /* longer: not a Lambda name */
        cmn_strv_add(cmn_slice(buf, (size_t)len), l);
}

static void lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

static const char *partition(const char *region)
{
    if (strncmp(region, "us-gov-", 7) == 0)
        return "aws-us-gov";
    if (strncmp(region, "cn-", 3) == 0)
        return "aws-cn";
    return "aws";
}

int sinit_lambda_tags(const struct cmn_env *env, const char *account,
                      char *const *prev, size_t nprev, char ***out, size_t *n)
{
    const char *region = cmn_env_get(env, "AWS_REGION");
    const char *fn = cmn_env_get(env, "AWS_LAMBDA_FUNCTION_NAME");
    const char *ver = cmn_env_get(env, "AWS_LAMBDA_FUNCTION_VERSION");
    const char *mem = cmn_env_get(env, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE");
    const char *itype = cmn_env_get(env, "AWS_LAMBDA_INITIALIZATION_TYPE");
    if (region == NULL)
        region = "us-east-1";
    if (fn == NULL)
        fn = "unknown";
    if (account == NULL || account[0] == '\0')
        account = "none";
    struct cmn_strv l = {NULL, 0, 0};
    for (size_t i = 0; i < nprev; i++)
        cmn_strv_add(cmn_slice_cstr(prev[i]), &l);
    static const char *const usv[][2] = {{"DD_ENV", "env"},
                                         {"DD_SERVICE", "service"},
                                         {"DD_VERSION", "version"}};
    for (size_t i = 0; i < 3; i++) {
        const char *val = cmn_env_get(env, usv[i][0]);
        if (val == NULL || val[0] == '\0')
            continue;
        char low[256];
        snprintf(low, sizeof(low), "%s", val);
        if (i < 2)
            lower(low); /* env and service are lowercased (spec §3) */
        add_tag(&l, usv[i][1], low);
    }
    char arn[512], name[256];
    snprintf(name, sizeof(name), "%s", fn);
    lower(name);
    snprintf(arn, sizeof(arn), "arn:%s:lambda:%s:%s:function:%s",
             partition(region), region, account, name);
    bool qualified = ver != NULL && strcmp(ver, "$LATEST") != 0;
    char resource[300];
    snprintf(resource, sizeof(resource), "%s%s%s", name, qualified ? ":" : "",
             qualified ? ver : "");
    const char *kv[][2] = {
        {"region", region},
        {"account_id", account},
        {"aws_account", account},
        {"functionname", name},
        {"resource", resource},
        {"function_arn", arn},
        {"executedversion", qualified ? ver : NULL},
        {"memorysize", mem},
        {"init_type", itype},
#if defined(__aarch64__)
        {"architecture", "arm64"},
#else
        {"architecture", "x86_64"},
#endif
        {"dd_extension_version", CMN_VERSION},
    };
    for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++)
        if (kv[i][1] != NULL)
            add_tag(&l, kv[i][0], kv[i][1]);
    if (l.err != 0) {
        cmn_strv_free(l.v, l.n);
        return l.err;
    }
    *out = l.v;
    *n = l.n;
    return 0;
}
