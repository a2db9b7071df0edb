/*
 * sinit_rapi.c - the Lambda Runtime API client (spec §1.2-§1.4): HTTP/1.1
 * over a TCP socket to the numeric address in AWS_LAMBDA_RUNTIME_API,
 * responses parsed with http_parser.
 *
 * Why not libcurl: the register, subscribe and first /next round-trips
 * are the extension's whole critical path, and libcurl pulls in ~35 shared
 * libraries (fwd_curl.c); these calls need none of it. The address is
 * always on the sandbox's loopback, so connect() completes at once and the
 * blocking request calls cost a loopback round-trip each.
 *
 * Invariant: a connection carries exactly one request ("Connection:
 * close"), so no idle connection ever has to survive a freeze (spec §4.1).
 */
#include "sinit_lambda.h"

#include <errno.h>
#include <http_parser.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>

#define COMP "lambda"
#define RAPI_REQ_MAX 4096 /* request head + small JSON bodies */
#define ID_HEADER "Lambda-Extension-Identifier"

int sinit_rapi_init(struct sinit_rapi *r, const char *host_port)
{
    memset(r, 0, sizeof(*r));
    if (host_port == NULL)
        return UV_EINVAL;
    const char *colon = strrchr(host_port, ':');
    if (colon == NULL || colon == host_port ||
        (size_t)(colon - host_port) >= 32 ||
        strlen(host_port) >= sizeof(r->host))
        return UV_EINVAL;
    char ip[32];
    memcpy(ip, host_port, (size_t)(colon - host_port));
    ip[colon - host_port] = '\0';
    uint64_t port;
    if (cmn_parse_u64(cmn_slice_cstr(colon + 1), 65535, &port) != 0 ||
        port == 0)
        return UV_EINVAL;
    if (strcmp(ip, "localhost") == 0)
        memcpy(ip, "127.0.0.1", sizeof("127.0.0.1"));
    r->addr.sin_family = AF_INET;
    r->addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, ip, &r->addr.sin_addr) != 1)
        return UV_EINVAL; /* a name would need DNS: not before /next */
    memcpy(r->host, host_port, strlen(host_port) + 1);
    return 0;
}

void sinit_http_resp_free(struct sinit_http_resp *resp)
{
    if (resp == NULL)
        return;
    cmn_free(resp->body);
    resp->body = NULL;
    resp->len = 0;
}

/* ------------------------------------------------------------------------
 * Response parsing, shared by the blocking calls and /next.
 */
struct resp_parser {
    http_parser hp;
    struct sinit_http_resp *out;
    struct cmn_buf body;
    bool in_id;    /* the header being read is the identifier */
    bool complete; /* on_message_complete ran */
};

static int on_header_field(http_parser *hp, const char *at, size_t len)
{
    struct resp_parser *rp = hp->data;
    rp->in_id =
        len == sizeof(ID_HEADER) - 1 && strncasecmp(at, ID_HEADER, len) == 0;
    return 0;
}

static int on_header_value(http_parser *hp, const char *at, size_t len)
{
    struct resp_parser *rp = hp->data;
    if (rp->in_id) {
        size_t used = strlen(rp->out->id);
        if (used + len >= sizeof(rp->out->id))
            return 1; /* an identifier over 127 bytes is not a UUID */
        memcpy(rp->out->id + used, at, len);
        rp->out->id[used + len] = '\0';
    }
    return 0;
}

static int on_body(http_parser *hp, const char *at, size_t len)
{
    struct resp_parser *rp = hp->data;
    return cmn_buf_append(&rp->body, at, len) == 0 ? 0 : 1;
}

static int on_complete(http_parser *hp)
{
    struct resp_parser *rp = hp->data;
    rp->complete = true;
    rp->out->status = (int)hp->status_code;
    return 0;
}

static const http_parser_settings resp_settings = {
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_body = on_body,
    .on_message_complete = on_complete,
};

static void rp_init(struct resp_parser *rp, struct sinit_http_resp *out)
{
    memset(rp, 0, sizeof(*rp));
    memset(out, 0, sizeof(*out));
    rp->out = out;
    http_parser_init(&rp->hp, HTTP_RESPONSE);
    rp->hp.data = rp;
    cmn_buf_init(&rp->body, SINIT_RAPI_BODY_MAX);
}

/* Feeds bytes (len 0 = EOF). Returns 0, or CMN_EPARSE. */
static int rp_feed(struct resp_parser *rp, const char *p, size_t len)
{
    size_t n = http_parser_execute(&rp->hp, &resp_settings, p, len);
    if (rp->complete)
        return 0;
    if (HTTP_PARSER_ERRNO(&rp->hp) != HPE_OK || n != len)
        return CMN_EPARSE;
    return 0;
}

/* Moves the body into out (NUL-terminated). */
static int rp_finish(struct resp_parser *rp)
{
    if (cmn_buf_append(&rp->body, "", 1) != 0) {
        cmn_buf_free(&rp->body);
        return UV_ENOMEM;
    }
    size_t len;
    rp->out->body = cmn_buf_steal(&rp->body, &len);
    rp->out->len = len - 1;
    return 0;
}

/* ------------------------------------------------------------------------
 * Request
 */
/* Built by appends, not printf: register, subscribe and the first /next
 * are the extension's critical path, and a process's first printf costs
 * 0.07-0.15 ms of cold code on a VM. */
static int format_request(const struct sinit_rapi *r, const char *method,
                          const char *path, const char *headers,
                          const char *body, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = '\0';
    cmn_fcat(buf, cap, &n, method);
    cmn_fcat(buf, cap, &n, " ");
    cmn_fcat(buf, cap, &n, path);
    cmn_fcat(buf, cap, &n, " HTTP/1.1\r\nHost: ");
    cmn_fcat(buf, cap, &n, r->host);
    cmn_fcat(buf, cap, &n, "\r\n");
    if (r->id[0] != '\0') {
        cmn_fcat(buf, cap, &n, ID_HEADER ": ");
        cmn_fcat(buf, cap, &n, r->id);
        cmn_fcat(buf, cap, &n, "\r\n");
    }
    if (headers != NULL)
        cmn_fcat(buf, cap, &n, headers);
    cmn_fcat(buf, cap, &n, "Content-Length: ");
    cmn_fcat_u64(buf, cap, &n, body != NULL ? strlen(body) : 0);
    cmn_fcat(buf, cap, &n, "\r\nConnection: close\r\n\r\n");
    if (body != NULL)
        cmn_fcat(buf, cap, &n, body);
    if (n >= cap)
        return CMN_ETOOBIG;
    return (int)n;
}

/* Connects and writes the request with the socket blocking; returns the
 * fd or a negative error. timeout_ms 0: no timeout on later reads. */
static int connect_send(const struct sinit_rapi *r, const char *req, size_t len,
                        uint32_t timeout_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (timeout_ms > 0) {
        struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    }
    int err = 0;
    while (connect(fd, (const struct sockaddr *)&r->addr, sizeof(r->addr)) !=
           0) {
        if (errno == EINTR)
            continue;
        err = -errno;
        goto out_close;
    }
    for (size_t off = 0; off < len;) {
        ssize_t w = send(fd, req + off, len - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            err = w < 0 ? -errno : UV_EPIPE;
            goto out_close;
        }
        off += (size_t)w;
    }
    return fd;

out_close:
    close(fd);
    return err;
}

int sinit_rapi_send(const struct sinit_rapi *r, const char *method,
                    const char *path, const char *headers, const char *body,
                    uint32_t timeout_ms)
{
    char req[RAPI_REQ_MAX];
    int n = format_request(r, method, path, headers, body, req, sizeof(req));
    if (n < 0)
        return n;
    return connect_send(r, req, (size_t)n, timeout_ms);
}

int sinit_rapi_call(const struct sinit_rapi *r, const char *method,
                    const char *path, const char *headers, const char *body,
                    uint32_t timeout_ms, struct sinit_http_resp *out)
{
    int fd = sinit_rapi_send(r, method, path, headers, body, timeout_ms);
    if (fd < 0) {
        memset(out, 0, sizeof(*out)); /* freeable */
        return fd;
    }
    return sinit_rapi_recv(fd, out);
}

int sinit_rapi_recv(int fd, struct sinit_http_resp *out)
{
    struct resp_parser rp;
    rp_init(&rp, out);
    int err = 0;
    char buf[4096];
    while (!rp.complete) {
        ssize_t got = recv(fd, buf, sizeof(buf), 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            err = errno == EAGAIN ? UV_ETIMEDOUT : -errno;
            break;
        }
        err = rp_feed(&rp, buf, (size_t)got);
        if (err != 0 || got == 0)
            break;
    }
    close(fd);
    if (err == 0 && !rp.complete)
        err = UV_EOF;
    if (err == 0)
        return rp_finish(&rp);
    cmn_buf_free(&rp.body);
    return err;
}

/* ------------------------------------------------------------------------
 * /next: written blocking, answer read on the loop
 */
struct sinit_next {
    uv_tcp_t tcp;
    struct resp_parser rp;
    struct sinit_http_resp resp;
    sinit_next_cb cb;
    void *data;
    int err;
    char buf[4096];
};

static void next_closed(uv_handle_t *h)
{
    struct sinit_next *n = h->data;
    /* the callback runs after the close so that it may start the next
     * /next (and anything else) with no handle of ours alive */
    if (n->err == 0)
        n->err = rp_finish(&n->rp);
    else
        cmn_buf_free(&n->rp.body);
    n->cb(n->data, n->err, n->err == 0 ? &n->resp : NULL);
    sinit_http_resp_free(&n->resp);
    cmn_free(n);
}

static void next_free_closed(uv_handle_t *h)
{
    struct sinit_next *n = h->data;
    cmn_buf_free(&n->rp.body);
    cmn_free(n);
}

static void next_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct sinit_next *n = h->data;
    (void)hint;
    *b = uv_buf_init(n->buf, sizeof(n->buf));
}

static void next_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct sinit_next *n = s->data;
    if (nread == 0)
        return;
    int err = nread > 0
                  ? rp_feed(&n->rp, b->base, (size_t)nread)
                  : (nread == UV_EOF ? rp_feed(&n->rp, NULL, 0) : (int)nread);
    if (!n->rp.complete && err == 0 && nread > 0)
        return;
    n->err = n->rp.complete ? 0 : (err != 0 ? err : UV_EOF);
    uv_read_stop(s);
    uv_close((uv_handle_t *)s, next_closed);
}

int sinit_rapi_next(uv_loop_t *loop, const struct sinit_rapi *r,
                    sinit_next_cb cb, void *data)
{
    char req[RAPI_REQ_MAX];
    int len = format_request(r, "GET", "/2020-01-01/extension/event/next", NULL,
                             NULL, req, sizeof(req));
    if (len < 0)
        return len;
    struct sinit_next *n = cmn_calloc(1, sizeof(*n));
    if (n == NULL)
        return UV_ENOMEM;
    n->cb = cb;
    n->data = data;
    rp_init(&n->rp, &n->resp);
    int fd = connect_send(r, req, (size_t)len, 1000);
    if (fd < 0) {
        cmn_free(n);
        return fd;
    }
    int err = uv_tcp_init(loop, &n->tcp);
    if (err != 0) {
        close(fd);
        cmn_free(n);
        return err;
    }
    n->tcp.data = n;
    err = uv_tcp_open(&n->tcp, fd);
    if (err != 0)
        close(fd); /* not the handle's yet */
    if (err == 0)
        err = uv_read_start((uv_stream_t *)&n->tcp, next_alloc, next_read);
    if (err != 0) /* the error is returned: cb must never run */
        uv_close((uv_handle_t *)&n->tcp, next_free_closed);
    return err;
}
