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
 * Connections: register and the telemetry subscribe ask to keep theirs
 * (HTTP/1.1 without "Connection: close"), and the next request (the
 * subscribe, the first /next, an error call) goes on it: the init's three
 * round-trips cost one connect, and the Runtime API one accept. Every
 * other request, /next above all, says "Connection: close", so nothing
 * is left idle once the first /next is written: no idle connection ever
 * has to survive a freeze (spec §4.1). A kept connection the server has
 * closed is not reused (checked just before), and a request that gets no
 * byte of answer on a reused connection is sent again on a new one, once.
 */
#include "sinit_lambda.h"

#include <errno.h>
#include <http_parser.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#define COMP "lambda"
#define RAPI_REQ_MAX 4096 /* request head + small JSON bodies */
#define ID_HEADER "Lambda-Extension-Identifier"

int sinit_rapi_init(struct sinit_rapi *r, const char *host_port)
{
    memset(r, 0, sizeof(*r));
    r->idle_fd = -1;
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

void sinit_rapi_close(struct sinit_rapi *r)
{
    if (r->idle_fd >= 0)
        close(r->idle_fd);
    r->idle_fd = -1;
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
                          const char *body, bool keep, char *buf, size_t cap)
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
    cmn_fcat(buf, cap, &n, keep ? "\r\n\r\n" : "\r\nConnection: close\r\n\r\n");
    if (body != NULL)
        cmn_fcat(buf, cap, &n, body);
    if (n >= cap)
        return CMN_ETOOBIG;
    return (int)n;
}

/* The kept connection, if the server has not closed it (nothing may be
 * readable on it between two requests: EOF or stray bytes retire it);
 * -1 when there is none. */
static int take_idle(struct sinit_rapi *r)
{
    int fd = r->idle_fd;
    r->idle_fd = -1;
    if (fd < 0)
        return -1;
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void set_timeouts(int fd, uint32_t timeout_ms)
{
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static int send_all(int fd, const char *req, size_t len)
{
    for (size_t off = 0; off < len;) {
        ssize_t w = send(fd, req + off, len - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -errno : UV_EPIPE;
        off += (size_t)w;
    }
    return 0;
}

/* Writes the request with the socket blocking, on the kept connection
 * when there is one (*reused then), else on a new one; returns the fd or
 * a negative error. timeout_ms 0: no timeout on later reads. */
static int connect_send(struct sinit_rapi *r, const char *req, size_t len,
                        uint32_t timeout_ms, bool *reused)
{
    int fd = take_idle(r);
    *reused = fd >= 0;
    if (fd >= 0) {
        set_timeouts(fd, timeout_ms);
        if (send_all(fd, req, len) == 0) {
            /* Acknowledge the answer's first segment at once: a server
             * that writes the head and the body apart, with Nagle's
             * algorithm on, holds the body until it is acknowledged,
             * and on a connection past its first exchanges Linux delays
             * that by up to 40 ms (a new connection acknowledges at
             * once anyway) */
            int one = 1;
            (void)setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
            return fd;
        }
        close(fd); /* closed meanwhile: a new connection */
        *reused = false;
    }
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (timeout_ms > 0)
        set_timeouts(fd, timeout_ms);
    int err = 0;
    while (connect(fd, (const struct sockaddr *)&r->addr, sizeof(r->addr)) !=
           0) {
        if (errno == EINTR)
            continue;
        err = -errno;
        goto out_close;
    }
    err = send_all(fd, req, len);
    if (err == 0)
        return fd;
out_close:
    close(fd);
    return err;
}

/* What ends an answer that never started on a reused connection: the
 * server closed it as the request went out. */
static bool stale(int err, size_t got)
{
    return got == 0 && (err == UV_EOF || err == -ECONNRESET || err == -EPIPE);
}

int sinit_rapi_send(struct sinit_rapi *r, const char *method, const char *path,
                    const char *headers, const char *body, uint32_t timeout_ms,
                    bool keep)
{
    char req[RAPI_REQ_MAX];
    int n =
        format_request(r, method, path, headers, body, keep, req, sizeof(req));
    if (n < 0)
        return n;
    bool reused;
    return connect_send(r, req, (size_t)n, timeout_ms, &reused);
}

/* Reads one answer on fd (left open); *got counts the bytes read. */
static int read_answer(int fd, struct resp_parser *rp, size_t *got_total)
{
    int err = 0;
    char buf[4096];
    *got_total = 0;
    while (!rp->complete) {
        ssize_t got = recv(fd, buf, sizeof(buf), 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            err = errno == EAGAIN ? UV_ETIMEDOUT : -errno;
            break;
        }
        *got_total += (size_t)got;
        err = rp_feed(rp, buf, (size_t)got);
        if (err != 0 || got == 0)
            break;
    }
    if (err == 0 && !rp->complete)
        err = UV_EOF;
    return err;
}

/* Ends an answer read on fd: kept for the next request when both sides
 * allow it and none is kept yet, else closed. */
static void release(struct sinit_rapi *r, int fd, int err, bool keep,
                    const struct resp_parser *rp)
{
    if (err == 0 && keep && r->idle_fd < 0 &&
        http_should_keep_alive(&rp->hp) != 0)
        r->idle_fd = fd;
    else
        close(fd);
}

/* Reads the answer on fd into out, then keeps or closes fd (release);
 * *got: the bytes read. */
static int answer_on(struct sinit_rapi *r, int fd, bool keep,
                     struct sinit_http_resp *out, size_t *got)
{
    struct resp_parser rp;
    rp_init(&rp, out);
    int err = read_answer(fd, &rp, got);
    release(r, fd, err, keep, &rp);
    if (err == 0)
        return rp_finish(&rp);
    cmn_buf_free(&rp.body);
    return err;
}

int sinit_rapi_recv(struct sinit_rapi *r, int fd, bool keep,
                    struct sinit_http_resp *out)
{
    size_t got;
    return answer_on(r, fd, keep, out, &got);
}

int sinit_rapi_call(struct sinit_rapi *r, const char *method, const char *path,
                    const char *headers, const char *body, uint32_t timeout_ms,
                    bool keep, struct sinit_http_resp *out)
{
    char req[RAPI_REQ_MAX];
    int n =
        format_request(r, method, path, headers, body, keep, req, sizeof(req));
    if (n < 0) {
        memset(out, 0, sizeof(*out)); /* freeable */
        return n;
    }
    for (;;) {
        bool reused;
        int fd = connect_send(r, req, (size_t)n, timeout_ms, &reused);
        if (fd < 0) {
            memset(out, 0, sizeof(*out));
            return fd;
        }
        size_t got;
        int err = answer_on(r, fd, keep, out, &got);
        if (err == 0)
            return 0;
        if (!(reused && stale(err, got)))
            return err; /* a new connection's failure is the answer */
        CMN_LOGD(COMP,
                 "kept connection closed by the Runtime API (%s): %s "
                 "%s again on a new one",
                 cmn_strerror(err), method, path);
    }
}

/* ------------------------------------------------------------------------
 * /next: written blocking, answer read on the loop
 */
struct sinit_next {
    uv_tcp_t tcp;
    uv_loop_t *loop;
    struct sinit_rapi *r;
    struct resp_parser rp;
    struct sinit_http_resp resp;
    sinit_next_cb cb;
    void *data;
    int err;
    bool reused;  /* on the connection register or the subscribe kept */
    bool retry;   /* that connection was closed under us: a new one */
    bool started; /* sinit_rapi_next returned 0: cb is owed */
    size_t got;   /* bytes of answer read */
    size_t req_len;
    char req[RAPI_REQ_MAX];
    char buf[4096];
};

static int next_open(struct sinit_next *n);

static void next_closed(uv_handle_t *h)
{
    struct sinit_next *n = h->data;
    if (n->retry) {
        n->retry = false;
        CMN_LOGD(COMP,
                 "kept connection closed by the Runtime API (%s): /next "
                 "again on a new one",
                 cmn_strerror(n->err));
        n->err = 0;
        rp_init(&n->rp, &n->resp);
        int err = next_open(n);
        if (err == 0 || err == UV_ECANCELED) /* else: next_abandoned */
            return;
        n->err = err; /* never opened: ends here, as a failed answer */
    }
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
    if (nread > 0)
        n->got += (size_t)nread;
    int err = nread > 0
                  ? rp_feed(&n->rp, b->base, (size_t)nread)
                  : (nread == UV_EOF ? rp_feed(&n->rp, NULL, 0) : (int)nread);
    if (!n->rp.complete && err == 0 && nread > 0)
        return;
    n->err = n->rp.complete ? 0 : (err != 0 ? err : UV_EOF);
    /* the kept connection died before a byte of answer: once more */
    if (n->err != 0 && n->reused && stale(n->err, n->got)) {
        n->retry = true;
        cmn_buf_free(&n->rp.body);
    }
    uv_read_stop(s);
    uv_close((uv_handle_t *)s, next_closed);
}

/* The failure path's close: nothing was delivered; cb runs with the
 * error only when sinit_rapi_next had already returned 0 (a retry). */
static void next_abandoned(uv_handle_t *h)
{
    struct sinit_next *n = h->data;
    cmn_buf_free(&n->rp.body);
    if (n->started)
        n->cb(n->data, n->err, NULL);
    cmn_free(n);
}

/* Writes the request and starts reading. 0; or an error with the handle
 * never opened (the caller frees n); or UV_ECANCELED when the handle was
 * opened and is closing: next_abandoned frees n, and the error that
 * caused it is in n->err. */
static int next_open(struct sinit_next *n)
{
    n->got = 0;
    int fd = connect_send(n->r, n->req, n->req_len, 1000, &n->reused);
    if (fd < 0)
        return fd;
    int err = uv_tcp_init(n->loop, &n->tcp);
    if (err != 0) {
        close(fd);
        return err;
    }
    n->tcp.data = n;
    err = uv_tcp_open(&n->tcp, fd);
    if (err != 0)
        close(fd); /* not the handle's yet */
    if (err == 0)
        err = uv_read_start((uv_stream_t *)&n->tcp, next_alloc, next_read);
    if (err == 0)
        return 0;
    n->err = err;
    uv_close((uv_handle_t *)&n->tcp, next_abandoned);
    return UV_ECANCELED;
}

int sinit_rapi_next(uv_loop_t *loop, struct sinit_rapi *r, sinit_next_cb cb,
                    void *data)
{
    struct sinit_next *n = cmn_calloc(1, sizeof(*n));
    if (n == NULL)
        return UV_ENOMEM;
    int len = format_request(r, "GET", "/2020-01-01/extension/event/next", NULL,
                             NULL, false, n->req, sizeof(n->req));
    if (len < 0) {
        cmn_free(n);
        return len;
    }
    n->req_len = (size_t)len;
    n->loop = loop;
    n->r = r;
    n->cb = cb;
    n->data = data;
    rp_init(&n->rp, &n->resp);
    int err = next_open(n);
    if (err == UV_ECANCELED)
        return n->err; /* the error is returned: cb must never run */
    if (err != 0)
        cmn_free(n);
    else
        n->started = true;
    return err;
}
