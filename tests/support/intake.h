/*
 * intake.h - test doubles for the Datadog intake, on loopback only.
 *
 *   ti_*  a real HTTP/1.1 server on 127.0.0.1:<ephemeral>, on its own
 *         thread with its own uv loop. It records every request (method,
 *         path, headers, raw body, body decoded from zstd/deflate/gzip/
 *         identity, connection number) and answers per a fault plan that
 *         may be changed at any time from any thread.
 *   tp_*  a minimal HTTP CONNECT proxy (own thread) that only tunnels to
 *         loopback addresses.
 *   tt_*  a TLS front for the intake: socat OPENSSL-LISTEN with the test
 *         certificates in tests/support/certs (CA: TI_CA_FILE).
 *   ti_proc_status_kib  a memory figure of a process (ti_proc.c).
 *
 * Typical use from a test whose code under test runs on the main loop:
 *
 *   struct ti *ti;
 *   cr_assert_eq(ti_start(&ti), 0);
 *   ... point the code at ti_url(ti), run the main loop ...
 *   cr_assert_eq(ti_request_count(ti), 1);
 *   const struct ti_request *r = ti_request_get(ti, 0);
 *   cr_assert_str_eq(ti_request_header(r, "DD-Api-Key"), "key");
 *   ti_stop(ti);
 *
 * From a test where the code under test runs in another process or thread
 * (e.g. the serverless-init binary with DD_DD_URL=ti_url(ti)), block with
 * ti_wait_count(). All functions are thread-safe unless noted. Requests are
 * immutable once recorded and stay valid until ti_stop.
 */
#ifndef DP_TEST_INTAKE_H
#define DP_TEST_INTAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "agent_payload.pb-c.h"

/* ------------------------------------------------------------------------
 * Intake
 */
struct ti;

struct ti_header {
    char *name;  /* as received */
    char *value; /* as received */
};

struct ti_request {
    char method[16]; /* "POST", "GET", ... */
    char *path;      /* path and query, e.g. "/api/v2/series" */
    struct ti_header *headers;
    size_t nheaders;
    unsigned char *body; /* raw bytes as received (may be NULL) */
    size_t body_len;
    unsigned char *decoded; /* body after Content-Encoding, or NULL */
    size_t decoded_len;
    bool decode_ok;   /* false: unknown encoding or corrupt */
    uint64_t conn_id; /* 1 = first accepted connection */
    uint64_t index;   /* 0-based arrival order */
    uint64_t recv_ns; /* cmn_mono_ns() when fully received */
    int answered;     /* status sent, 0 for reset/hang */
};

enum ti_fault {
    TI_FAULT_NONE,   /* answer with the plan's status */
    TI_FAULT_RESET,  /* close the connection with a TCP RST */
    TI_FAULT_HANG,   /* never answer (the connection stays open) */
    TI_FAULT_TRICKLE /* send the answer one byte per trickle_ms */
};

/* The fault plan applies to the next `count` requests after ti_set_plan;
 * later requests get 202 with no delay. */
struct ti_plan {
    int status;        /* HTTP status for planned requests; 0 = 202 */
    uint32_t count;    /* planned requests; TI_ALL = every one */
    uint32_t delay_ms; /* wait before answering a planned request */
    enum ti_fault fault;
    uint32_t trickle_ms; /* TI_FAULT_TRICKLE: ms between bytes */
};
#define TI_ALL UINT32_MAX

/* Starts an intake on 127.0.0.1, ephemeral port, answering 202 "{}" to
 * everything. Returns 0 or a negative libuv error. */
int ti_start(struct ti **out);
/* Stops the server thread, closes every connection and frees everything,
 * including the recorded requests. NULL is a no-op. */
void ti_stop(struct ti *ti);
int ti_port(const struct ti *ti);
/* "http://127.0.0.1:<port>" (valid until ti_stop). */
const char *ti_url(const struct ti *ti);
/* Replaces the plan (copied). Takes effect from the next request. */
void ti_set_plan(struct ti *ti, const struct ti_plan *plan);

size_t ti_request_count(struct ti *ti);
/* The i-th request (arrival order) or NULL; valid until ti_stop. */
const struct ti_request *ti_request_get(struct ti *ti, size_t i);
/* Blocks until at least n requests were recorded or timeout_ms passed.
 * Returns the count at return. Do not call it from the thread running the
 * loop of the code under test (nothing would progress). */
size_t ti_wait_count(struct ti *ti, size_t n, uint32_t timeout_ms);
/* Number of TCP connections accepted so far. */
uint64_t ti_connection_count(struct ti *ti);
/* First header with this name (case-insensitive) or NULL. */
const char *ti_request_header(const struct ti_request *r, const char *name);
/* Counts requests whose path equals path. */
size_t ti_count_path(struct ti *ti, const char *path);

/* Decoders of a request's decoded body; NULL when it does not parse.
 * Free with datadog__agentpayload__metric_payload__free_unpacked(p, NULL),
 * ..._sketch_payload__free_unpacked(p, NULL) and json_decref. */
Datadog__Agentpayload__MetricPayload *
ti_decode_series(const struct ti_request *r);
Datadog__Agentpayload__SketchPayload *
ti_decode_sketches(const struct ti_request *r);
json_t *ti_decode_json(const struct ti_request *r);

struct ti_point {
    int64_t ts;
    double value;
};
struct ti_series_info {
    int type;         /* MetricType of the last match (1 COUNT, 2 RATE,
                         3 GAUGE) */
    int64_t interval; /* of the last match */
    char host[256];   /* "host" resource of the last match, or "" */
};
/* Collects, in arrival order, the points of every series named `name`
 * whose tag set equals `tags` (comma-separated, any order; "" = no tags)
 * across all /api/v2/series requests received. Copies up to max points
 * into out (may be NULL) and returns the total found. info may be NULL. */
size_t ti_series_points(struct ti *ti, const char *name, const char *tags,
                        struct ti_point *out, size_t max,
                        struct ti_series_info *info);

struct ti_sketch_sum {
    int64_t cnt;  /* sum of dogsketch counts */
    double sum;   /* sum of dogsketch sums */
    double min;   /* min over dogsketches */
    double max;   /* max over dogsketches */
    size_t nbins; /* total bins */
};
/* Sums every dogsketch of sketch `name` with tag set `tags` across all
 * /api/beta/sketches requests. Returns the number of dogsketches found. */
size_t ti_sketch_find(struct ti *ti, const char *name, const char *tags,
                      struct ti_sketch_sum *out);

/* ------------------------------------------------------------------------
 * Strict payload checks (ti_strict.c): what a picky intake would refuse.
 * A payload passes when protobuf-c unpacks it, no message carries an
 * unknown field, every string is valid UTF-8 and every double is finite.
 */
bool ti_utf8_valid(const char *s, size_t n);
/* 0 when the MetricPayload / SketchPayload bytes pass, else -1 with the
 * first reason in why. */
int ti_strict_series(const void *p, size_t n, char *why, size_t cap);
int ti_strict_sketches(const void *p, size_t n, char *why, size_t cap);
/* Checks every series and sketch request received; returns how many fail
 * (the first reason in why). */
size_t ti_strict_check_all(struct ti *ti, char *why, size_t cap);

/* ------------------------------------------------------------------------
 * CONNECT proxy (loopback targets only)
 */
struct tp;
int tp_start(struct tp **out);
void tp_stop(struct tp *tp);
int tp_port(const struct tp *tp);
/* "http://127.0.0.1:<port>" */
const char *tp_url(const struct tp *tp);
/* CONNECT requests tunnelled, and refused (non-loopback or malformed). */
uint64_t tp_tunnel_count(struct tp *tp);
uint64_t tp_refused_count(struct tp *tp);

/* ------------------------------------------------------------------------
 * TLS front (socat) for a loopback HTTP server
 */
struct tt {
    pid_t pid;    /* socat's process (and process group) */
    int port;     /* TLS port on 127.0.0.1 */
    char url[64]; /* "https://127.0.0.1:<port>" */
};
/* Path of the test CA certificate. */
#define TI_CA_FILE TI_CERT_DIR "/ca.pem"
/* Spawns socat OPENSSL-LISTEN on an ephemeral port forwarding to
 * 127.0.0.1:backend_port and waits (up to 5 s) until it accepts. */
int tt_start(int backend_port, struct tt *out);
void tt_stop(struct tt *tt);

/* ------------------------------------------------------------------------
 * Process figures for benchmarks and tests
 */
/* A "<key> <n> kB" field of /proc/<pid>/status (key with its colon, e.g.
 * "VmHWM:") in KiB, or -1 when the process or the field is gone. */
long ti_proc_status_kib(pid_t pid, const char *key);

#endif /* DP_TEST_INTAKE_H */
