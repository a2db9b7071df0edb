/*
 * sinit_lambda.h - Lambda extension mode (spec/lambda-cloudrun.md §1-§4):
 * the Runtime API client, the Telemetry API listener, the enhanced
 * metrics, the flush strategies and the extension's run loop.
 *
 * Everything runs on the one loop thread (or before the loop runs).
 */
#ifndef DP_SINIT_LAMBDA_H
#define DP_SINIT_LAMBDA_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "common.h"

/* Default telemetry listener port (bottlecap's), DRAINPIPE_TELEMETRY_PORT;
 * 0 = ephemeral (tests). */
#define SINIT_TELEMETRY_PORT_DEFAULT 8999
/* Largest response body read from the Runtime API, and largest telemetry
 * batch accepted (Lambda sends up to 2 x maxBytes + metadata; we subscribe
 * with maxBytes 262144). Over it: the batch is answered 413 and counted. */
#define SINIT_RAPI_BODY_MAX (1u << 20)
#define SINIT_TELEMETRY_BODY_MAX (1u << 20)

/* ------------------------------------------------------------------------
 * Mode detection (main.c): AWS_LAMBDA_RUNTIME_API set and no command.
 */
bool sinit_lambda_detect(int argc, char *const *argv);
/* The extension: returns the process exit code. */
int sinit_lambda_main(int argc, char **argv);

/* ------------------------------------------------------------------------
 * Runtime API client (sinit_rapi.c): plain HTTP/1.1 to the numeric
 * address of AWS_LAMBDA_RUNTIME_API (no DNS, no TLS, no libcurl: it runs
 * before the first /next). Register, subscribe and the error calls are
 * blocking with a timeout (loopback round-trips); /next is written
 * blocking and its answer read on the loop, with no timeout (the process
 * may be frozen while it waits, spec §1.3).
 */
struct sinit_rapi {
    struct sockaddr_in addr;
    char host[64]; /* Host header: the variable's value */
    char id[128];  /* Lambda-Extension-Identifier, "" before register */
    int idle_fd;   /* the connection kept for the next request, or -1 */
};

struct sinit_http_resp {
    int status;   /* HTTP status, 0 until the status line was read */
    char *body;   /* owned, NUL-terminated (may be "") */
    size_t len;   /* bytes in body */
    char id[128]; /* Lambda-Extension-Identifier response header */
};

/* host_port: "a.b.c.d:port" or "localhost:port". 0 or UV_EINVAL. */
int sinit_rapi_init(struct sinit_rapi *r, const char *host_port) CMN_MUST_CHECK;
/* Closes the kept connection, if any. */
void sinit_rapi_close(struct sinit_rapi *r);
/* One blocking request. headers: extra "Name: value\r\n" lines (or NULL);
 * the identifier header is added when r->id is set. body may be NULL.
 * Any request goes on the connection kept by the previous one, if the
 * server has not closed it (sent again on a new one if it closes as the
 * request goes out). keep: ask the server to keep this connection for the
 * next request (no "Connection: close"); only for a request another
 * follows at once (register, subscribe), never across a possible freeze.
 * Returns 0 with *out filled (free with sinit_http_resp_free, also on
 * error), or a negative errno-style error (connect, timeout, parse). */
int sinit_rapi_call(struct sinit_rapi *r, const char *method, const char *path,
                    const char *headers, const char *body, uint32_t timeout_ms,
                    bool keep, struct sinit_http_resp *out) CMN_MUST_CHECK;
/* The two halves of sinit_rapi_call, so that work can be done while the
 * Runtime API answers: sinit_rapi_send writes the request (blocking),
 * returning the connected socket or a negative error; sinit_rapi_recv
 * reads and parses the answer (blocking, bounded by the send's timeout),
 * keeps fd for the next request (keep, and the server allows it) or
 * closes it, and returns as sinit_rapi_call does. No second try: for a
 * first request (register), on a new connection. */
int sinit_rapi_send(struct sinit_rapi *r, const char *method, const char *path,
                    const char *headers, const char *body, uint32_t timeout_ms,
                    bool keep) CMN_MUST_CHECK;
int sinit_rapi_recv(struct sinit_rapi *r, int fd, bool keep,
                    struct sinit_http_resp *out) CMN_MUST_CHECK;
void sinit_http_resp_free(struct sinit_http_resp *resp);

struct sinit_next;
/* err 0: resp (borrowed for the call) is the full answer; else the
 * connection failed. Called once, on the loop thread. */
typedef void (*sinit_next_cb)(void *data, int err,
                              const struct sinit_http_resp *resp);
/* Sends GET /2020-01-01/extension/event/next ("Connection: close"; on the
 * kept connection if there is one) and reads the answer on loop. Returns
 * 0 (cb will be called once, never from inside this call) or an error (cb
 * not called). The object frees itself after cb. r must outlive it. */
int sinit_rapi_next(uv_loop_t *loop, struct sinit_rapi *r, sinit_next_cb cb,
                    void *data) CMN_MUST_CHECK;

/* ------------------------------------------------------------------------
 * Telemetry listener (sinit_telemetry.c): HTTP/1.1 server on TCP, parses
 * each POSTed body as a JSON array and hands every element to cb. Every
 * request is answered 200 (unparseable ones too, as bottlecap does, and
 * counted), except bodies over SINIT_TELEMETRY_BODY_MAX (413).
 */
typedef void (*sinit_tel_cb)(void *data, const char *type,
                             const json_t *record);
struct sinit_tel_stats {
    uint64_t batches;     /* requests with a parsed JSON array */
    uint64_t events;      /* array elements handed to cb */
    uint64_t bad_batches; /* not JSON / not an array / too big */
};
struct sinit_tel;
/* Binds 0.0.0.0:port (0 = ephemeral) and listens. 0 or an error. */
int sinit_tel_start(uv_loop_t *loop, int port, sinit_tel_cb cb, void *data,
                    struct sinit_tel **out) CMN_MUST_CHECK;
int sinit_tel_port(const struct sinit_tel *t);
void sinit_tel_get_stats(const struct sinit_tel *t, struct sinit_tel_stats *o);
/* Stops accepting (connections already open are still read: a batch in
 * transit is not lost). */
void sinit_tel_stop_accepting(struct sinit_tel *t);
/* Closes everything and frees t once the last handle closed. NULL: no-op.
 * cb is not called any more. */
void sinit_tel_close(struct sinit_tel *t);

/* ------------------------------------------------------------------------
 * Flush strategies (sinit_flush.c, spec §4.2). Pure: times are given.
 */
enum sinit_flush_kind {
    SINIT_FLUSH_DEFAULT,      /* adaptive */
    SINIT_FLUSH_END,          /* after runtimeDone, before /next */
    SINIT_FLUSH_END_PERIODIC, /* end + every interval during the call */
    SINIT_FLUSH_PERIODICALLY, /* blocking, at INVOKE once interval passed */
    SINIT_FLUSH_CONTINUOUSLY  /* non-blocking, at INVOKE once interval */
};

#define SINIT_FLUSH_LOOKBACK 20         /* invocations remembered */
#define SINIT_FLUSH_ADAPT_GAP_MS 120000 /* mean gap threshold */
#define SINIT_FLUSH_ADAPT_INTERVAL_MS 20000
#define SINIT_FLUSH_TIMEOUT_MS 30000 /* bottlecap's flush_timeout */

struct sinit_flush_strategy {
    enum sinit_flush_kind kind;
    uint64_t interval_ms; /* END_PERIODIC/PERIODICALLY/CONTINUOUSLY */
};

/* Parses DD_SERVERLESS_FLUSH_STRATEGY: "end", "end,<ms>",
 * "periodically,<ms>", "continuously,<ms>" (ms 1..86400000). NULL or ""
 * is the default. Anything else: UV_EINVAL (the caller names the
 * variable; bottlecap silently falls back, we refuse, DESIGN.md). */
int sinit_flush_parse(const char *s,
                      struct sinit_flush_strategy *out) CMN_MUST_CHECK;

/* What to do at one INVOKE. */
enum sinit_flush_action {
    SINIT_FLUSH_AT_END,       /* wait for runtimeDone, flush, then /next */
    SINIT_FLUSH_NOW_BLOCKING, /* flush now, wait for it, then /next */
    SINIT_FLUSH_NOW_ASYNC,    /* start a flush, /next at once */
    SINIT_FLUSH_NONE          /* /next at once */
};

struct sinit_flush_ctl {
    struct sinit_flush_strategy cfg;
    uint64_t times[SINIT_FLUSH_LOOKBACK]; /* ring of INVOKE times, ms */
    size_t ntimes;                        /* seen, capped at LOOKBACK */
    size_t head;                          /* next slot */
    uint64_t last_flush_ms;               /* 0 = never */
};

void sinit_flush_init(struct sinit_flush_ctl *c,
                      const struct sinit_flush_strategy *cfg);
/* The strategy in effect for an invocation starting at now_ms (after
 * recording it): the configured one, or the adaptive choice. */
struct sinit_flush_strategy
sinit_flush_effective(const struct sinit_flush_ctl *c, uint64_t now_ms);
/* Records an INVOKE at now_ms and returns the action for it. */
enum sinit_flush_action sinit_flush_on_invoke(struct sinit_flush_ctl *c,
                                              uint64_t now_ms);
/* Records that a flush started at now_ms. */
void sinit_flush_did(struct sinit_flush_ctl *c, uint64_t now_ms);
/* "end", "end-periodically", ... (static). */
const char *sinit_flush_kind_name(enum sinit_flush_kind k);

/* ------------------------------------------------------------------------
 * Enhanced metrics (sinit_lambda_metrics.c, spec §3): turns INVOKE,
 * platform.* records and SHUTDOWN into aws.lambda.enhanced.* distribution
 * samples through an emit callback (the aggregator in the extension).
 */
typedef void (*sinit_emit_fn)(void *data, const char *name, double value,
                              const char *tags);

#define SINIT_LE_RING 8 /* invocations whose runtimeDone is remembered */
#define SINIT_PROACTIVE_INIT_MS 10000

struct sinit_le_req {
    char id[64];       /* requestId, "" = free slot */
    bool cold;         /* cold_start:true */
    bool proactive;    /* proactive_initialization:true */
    double runtime_ms; /* runtimeDone durationMs, < 0 = not seen */
    bool oom;          /* out_of_memory already counted */
    bool reported;     /* platform.report seen */
};

struct sinit_le {
    bool enabled;         /* DD_ENHANCED_METRICS */
    bool arm64;           /* price per GB-s */
    uint64_t start_ms;    /* extension start (monotonic ms) */
    uint64_t invocations; /* INVOKEs seen */
    bool init_reported;   /* init_duration emitted */
    char init_type[32];   /* from initStart/initReport */
    struct sinit_le_req ring[SINIT_LE_RING];
    size_t next;      /* ring slot for the next INVOKE */
    char last_id[64]; /* requestId of the last INVOKE */
    sinit_emit_fn emit;
    void *emit_data;
};

void sinit_le_init(struct sinit_le *le, bool enabled, uint64_t start_ms,
                   sinit_emit_fn emit, void *data);
/* INVOKE at now_ms (monotonic) for request_id. */
void sinit_le_invoke(struct sinit_le *le, const char *request_id,
                     uint64_t now_ms);
/* One telemetry event. */
void sinit_le_event(struct sinit_le *le, const char *type,
                    const json_t *record);
/* SHUTDOWN: shutdowns, and unused_init when no INVOKE came. */
void sinit_le_shutdown(struct sinit_le *le);
/* True once platform.report of the last INVOKE was seen (or none came). */
bool sinit_le_last_reported(const struct sinit_le *le);
/* estimated_cost of one report, rounded to 1e-12 USD. */
double sinit_le_cost(double billed_ms, double memory_mb, bool arm64);

/* Static Lambda tags (spec §3): region, account_id, aws_account,
 * functionname, resource, function_arn, executedversion, memorysize,
 * architecture, dd_extension_version, env/service/version, plus prev
 * (DD_TAGS etc. from the aggregator config) first. Owned array of owned
 * "k:v" strings (cmn_strv_free). account may be NULL ("none"). */
int sinit_lambda_tags(const struct cmn_env *env, const char *account,
                      char *const *prev, size_t nprev, char ***out,
                      size_t *n) CMN_MUST_CHECK;

#endif /* DP_SINIT_LAMBDA_H */
