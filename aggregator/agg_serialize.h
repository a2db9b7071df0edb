/*
 * agg_serialize.h - the serializer's own header: a flush job's records
 * (agg_hist.c) into intake payloads. Protobuf series and sketches are
 * written by hand in agg_serialize.c with the field numbers and wire types
 * of agent_payload_fields.h, generated at build time from
 * proto/agent_payload.proto by proto/gen_fields.awk (CMake
 * add_custom_command, Bazel genrule), so no field number is a literal
 * here; JSON series, events and service checks with jansson; payloads are
 * packed and compressed by agg_pack.c. Everything here runs on a pool
 * thread and touches only the job.
 */
#ifndef DP_AGG_SERIALIZE_H
#define DP_AGG_SERIALIZE_H

#include "agent_payload_fields.h"
#include "agg_internal.h"

/* The key of field F (an AGG_PB_* constant): F << 3 | its wire type. */
#define AGG_PB_KEY(F) ((unsigned)(F) << 3 | (unsigned)(F##_WT))

/* The series types the records carry are the intake's MetricType. */
_Static_assert(AGG__API_COUNT == AGG_PB_METRIC_TYPE_COUNT &&
                   AGG__API_RATE == AGG_PB_METRIC_TYPE_RATE &&
                   AGG__API_GAUGE == AGG_PB_METRIC_TYPE_GAUGE,
               "record API types are the protobuf MetricType values");

/* agg_serialize.c: every payload of the job into j->out, in order: series
 * (v2 protobuf or v1 JSON), sketches, events, service checks. */
void agg__serialize_job(struct agg__job *j);

/* agg_events.c */
void agg__serialize_events(struct agg__job *j);
void agg__serialize_checks(struct agg__job *j);

/* agg_serialize.c: JSON */
/* Appends o as compact JSON; UV_ENOMEM leaves b as it was. */
int agg__json_append(struct cmn_buf *b, const json_t *o) CMN_MUST_CHECK;
/* Checked jansson building (its allocations can fail, through cmn_alloc):
 * each sets *ok to false when the container or value is NULL or the call
 * fails, and always consumes v. */
void agg__jset(json_t *o, const char *key, json_t *v, bool *ok);
void agg__jpush(json_t *arr, json_t *v, bool *ok);
/* A JSON string of s; invalid UTF-8 bytes become U+FFFD. */
json_t *agg__jstr(struct cmn_slice s);

/* agg_pack.c */
/* Compresses raw (borrowed) per the config into a new payload of kind;
 * NULL on failure. */
struct fwd_payload *agg__make_payload(const struct agg_config *cfg,
                                      enum fwd_kind kind, const char *raw,
                                      size_t len);
/* As agg__make_payload, with the zstd context kept in *zcx (created on
 * first use, freed with agg__zcx_free): the flush's serializer reuses one
 * instead of a fresh working memory per payload. */
struct fwd_payload *agg__make_payload_cx(const struct agg_config *cfg,
                                         enum fwd_kind kind, const char *raw,
                                         size_t len, void **zcx);
void agg__zcx_free(void *zcx);
/* Adds p to the job's output (drops it on allocation failure). */
void agg__job_out(struct agg__job *j, struct fwd_payload *p);

/* The generic payload packer (struct agg__chunks is in agg_internal.h:
 * struct agg keeps one between flushes). */
void agg__chunks_init(struct agg__chunks *c);
void agg__chunks_free(struct agg__chunks *c);
/* Drops the partly written item (after a failure) and marks c failed. */
void agg__chunks_abort(struct agg__chunks *c);
/* Closes the item just written into c->data; on failure the item is
 * dropped as by agg__chunks_abort. */
int agg__chunks_close(struct agg__chunks *c, uint32_t points) CMN_MUST_CHECK;
struct agg__pack_spec {
    enum fwd_kind kind;
    const char *prefix, *sep, *suffix;
    size_t prefix_len, sep_len, suffix_len;
    size_t max_points; /* 0 = no limit */
    size_t max_raw, max_comp;
    const char *route; /* NULL = the kind's default */
    const char *content_type;
};
void agg__pack(struct agg__job *j, struct agg__chunks *c,
               const struct agg__pack_spec *spec);
/* As agg__pack, but only the payloads that a following item closed: the
 * items of the last one stay in c, moved to its front, for more items to
 * join (the payloads are those agg__pack would make of all the items). */
void agg__pack_closed(struct agg__job *j, struct agg__chunks *c,
                      const struct agg__pack_spec *spec);

/* The streaming packer of zstd payloads: items go into the open
 * payload's zstd stream as they are written, so the serializer holds one
 * item's raw bytes and the compressed bytes, not a whole payload's raw
 * bytes (1.7-5 MB per series payload). Payloads are cut by the same
 * limits as agg__pack: points, raw bytes, and compressed bytes, the last
 * checked before each item against what is compressed so far plus
 * ZSTD_compressBound of what the stream has not flushed yet (flushed
 * first when that would pass the limit), so no payload is ever compressed
 * twice. Items that join without a separator (protobuf) and fit go into
 * the stream in one call. An item too big on its own is dropped and counted
 * (items_too_big), as by agg__pack. */
struct agg__zpack {
    void **cx;          /* the zstd context kept in struct agg */
    struct cmn_buf out; /* the open payload's compressed bytes */
    size_t raw;         /* its raw bytes fed so far (prefix included) */
    size_t unflushed;   /* raw bytes fed since the stream's last flush */
    uint64_t pts;       /* its points */
    uint32_t items;     /* its items */
    bool open;          /* a payload is open */
};
/* Raw bytes of items the series serializer gathers before it feeds them
 * to the stream in one call. */
#define AGG_ZPACK_BATCH ((size_t)64 << 10)
void agg__zpack_init(struct agg__zpack *z, void **cx);
/* Feeds every item of c into the stream (closing payloads as limits are
 * reached), then empties c. */
void agg__zpack_feed(struct agg__job *j, struct agg__zpack *z,
                     struct agg__chunks *c, const struct agg__pack_spec *spec);
/* Closes the open payload, if any, into the job's output. */
void agg__zpack_finish(struct agg__job *j, struct agg__zpack *z,
                       const struct agg__pack_spec *spec);
void agg__zpack_free(struct agg__zpack *z);

#endif /* DP_AGG_SERIALIZE_H */
