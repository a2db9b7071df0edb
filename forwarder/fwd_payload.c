/*
 * fwd_payload.c - the payload object handed from the serializer to the
 * forwarder. A payload owns its body; the route and header values are static
 * strings chosen from the kind, which the serializer may overwrite (with
 * other static strings) after creation.
 *
 * Invariant: a payload returned by fwd_payload_new always has non-NULL
 * route, content_type and content_encoding.
 */
#include "forwarder.h"

struct fwd_kind_defaults {
    const char *route;
    const char *content_type;
    bool protobuf;
};

static const struct fwd_kind_defaults fwd_defaults[FWD_KIND_MAX] = {
    [FWD_KIND_SERIES] = {"/api/v2/series", "application/x-protobuf", true},
    [FWD_KIND_SKETCHES] = {"/api/beta/sketches", "application/x-protobuf",
                           true},
    [FWD_KIND_EVENTS] = {"/intake/", "application/json", false},
    [FWD_KIND_SERVICE_CHECKS] = {"/api/v1/check_run", "application/json",
                                 false},
};

struct fwd_payload *fwd_payload_new(enum fwd_kind kind, unsigned char *body,
                                    size_t len)
{
    struct fwd_payload *p;

    if ((unsigned)kind >= FWD_KIND_MAX) {
        cmn_free(body);
        return NULL;
    }
    p = cmn_calloc(1, sizeof(*p));
    if (p == NULL) {
        cmn_free(body);
        return NULL;
    }
    p->kind = kind;
    p->route = fwd_defaults[kind].route;
    p->content_type = fwd_defaults[kind].content_type;
    p->content_encoding = "identity";
    p->protobuf = fwd_defaults[kind].protobuf;
    p->body = body;
    p->len = len;
    p->raw_len = len;
    return p;
}

void fwd_payload_free(struct fwd_payload *p)
{
    if (p == NULL)
        return;
    cmn_free(p->body);
    cmn_free(p);
}
