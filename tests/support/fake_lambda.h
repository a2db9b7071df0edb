/*
 * fake_lambda.h - a fake AWS Lambda Runtime API on loopback, for the
 * Lambda extension tests: a real HTTP/1.1 server (own threads, blocking
 * sockets, one thread per connection, kept alive while the client asks:
 * no "Connection: close") implementing
 *   POST /2020-01-01/extension/register      (status chosen at start)
 *   GET  /2020-01-01/extension/event/next     (answered from a script)
 *   PUT  /2022-07-01/telemetry                (records the destination port)
 *   POST /2020-01-01/extension/init/error and .../exit/error (recorded)
 * and a client that delivers telemetry batches to the subscribed port on
 * 127.0.0.1 (the extension subscribes "sandbox.localdomain:<port>", which
 * is the sandbox itself).
 *
 * Times are cmn_mono_ns(), comparable with the intake's recv_ns. All
 * functions are thread-safe.
 */
#ifndef DP_TEST_FAKE_LAMBDA_H
#define DP_TEST_FAKE_LAMBDA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FL_MAX_NEXT 4096
#define FL_EXT_ID "8a1b7c1e-0000-4000-8000-00000000c0de"

struct fl;

/* register_status: the answer to register (0 = 200 with an identifier and
 * {"functionName":"orders",...,"accountId":"123456789012"}). */
int fl_start(int register_status, struct fl **out);
void fl_stop(struct fl *fl);
/* "127.0.0.1:<port>" for AWS_LAMBDA_RUNTIME_API. */
const char *fl_addr(const struct fl *fl);

/* Queues the body of the answer to a future /next (copied). */
void fl_push_event(struct fl *fl, const char *json);
/* Queues an INVOKE for request_id with deadline now + deadline_in_ms. */
void fl_push_invoke(struct fl *fl, const char *request_id,
                    int64_t deadline_in_ms);
/* Queues a SHUTDOWN (reason SPINDOWN) with deadline now + deadline_in_ms
 * (computed when answered). */
void fl_push_shutdown(struct fl *fl, int64_t deadline_in_ms);

/* Queues an error answer (HTTP status, e.g. 500) to a future /next. */
void fl_push_next_error(struct fl *fl, int status);

/* Blocks until at least n /next requests arrived or timeout_ms passed;
 * returns the count at return. */
size_t fl_wait_next(struct fl *fl, size_t n, uint32_t timeout_ms);
/* Arrival time of the i-th /next (0-based), 0 if none. */
uint64_t fl_next_ns(struct fl *fl, size_t i);
/* The connection the i-th /next came on: 1 for the first accepted, 2 for
 * the second...; 0 if none. */
int fl_next_conn(struct fl *fl, size_t i);
/* Connections accepted so far. */
int fl_connections(struct fl *fl);
/* on: a connection's second and later requests are read, then the
 * connection is closed with no answer and nothing handled, as a server
 * closing an idle keep-alive connection just as the client reuses it. */
void fl_set_drop_reused(struct fl *fl, bool on);
/* on: every answer is written in two writes, head then body (a server
 * that does not buffer its answer); Nagle's algorithm then holds the body
 * until the client acknowledges the head. Off (the default): one write, as
 * Lambda's Go server flushes a buffered answer. */
void fl_set_split_answers(struct fl *fl, bool on);
/* Time the answer to the i-th /next was written, 0 if not yet. */
uint64_t fl_next_answered_ns(struct fl *fl, size_t i);

/* Blocks until the extension subscribed (or timeout); returns its port or
 * 0. */
int fl_wait_subscribed(struct fl *fl, uint32_t timeout_ms);
/* POSTs a telemetry batch (a JSON array) to the subscribed port; returns
 * the HTTP status, or -1 when nothing could be sent. */
int fl_post_telemetry(struct fl *fl, const char *json_array);
/* A batch the fake POSTs itself right after writing the subscribe answer
 * (copied); its HTTP status is read with fl_post_on_subscribe_status. */
void fl_set_post_on_subscribe(struct fl *fl, const char *json_array);
int fl_post_on_subscribe_status(struct fl *fl);

struct fl_info {
    int nregister, nsubscribe, ninit_error, nexit_error;
    char ext_name[256];    /* Lambda-Extension-Name */
    char ext_feature[256]; /* Lambda-Extension-Accept-Feature */
    char reg_body[512];
    char sub_body[1024];
    char sub_id[128];     /* identifier header on subscribe */
    char next_id[128];    /* identifier header on the last /next */
    char error_type[128]; /* Lambda-Extension-Function-Error-Type */
    uint64_t register_ns; /* arrival of register */
};
void fl_get_info(struct fl *fl, struct fl_info *out);

#endif
