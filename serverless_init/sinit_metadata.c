/*
 * sinit_metadata.c - the GCP metadata client (spec/pipeline.md §5.4):
 * GET /computeMetadata/v1/{instance/id,instance/region,project/project-id}
 * with "Metadata-Flavor: Google", the three in parallel, on the loop.
 *
 * It is a tiny HTTP/1.0 client over uv_tcp: one request per connection,
 * the body is what follows the header block once the server closes. One
 * timer bounds the whole lookup (resolve + connect + read) to timeout_ms;
 * a request that has not finished by then, or that fails, gives "unknown"
 * (as the Agent does). Bodies are lowercased and trimmed; the region keeps
 * only its last '/' segment.
 *
 * Invariant: the struct is freed only when every handle it opened has been
 * closed and the resolver request has returned (refs == 0), and only after
 * sinit_md_close; the user callback runs at most once.
 */
#include "sinit.h"

#include <stdlib.h>
#include <string.h>

#define COMP "metadata"
#define MD_NREQ 3
#define MD_RESP_MAX 4096
#define MD_DEFAULT_HOST "metadata.google.internal"

static const char *const md_paths[MD_NREQ] = {
    "/computeMetadata/v1/instance/id",
    "/computeMetadata/v1/instance/region",
    "/computeMetadata/v1/project/project-id",
};

struct sinit_md_req {
    struct sinit_md *m;
    uv_tcp_t tcp;
    uv_connect_t conn;
    uv_write_t wr;
    char req[256];
    size_t reqlen;
    char resp[MD_RESP_MAX];
    size_t resplen;
    bool tcp_open; /* tcp initialized and not closed yet */
    bool done;
    char *value; /* owned result or NULL (unknown) */
};

struct sinit_md {
    uv_loop_t *loop;
    sinit_md_cb cb;
    void *data;
    uv_timer_t timer;
    uv_getaddrinfo_t gai;
    struct sinit_md_req r[MD_NREQ];
    char host[256];
    char port[8];
    int portn;
    bool gai_pending; /* resolver request outstanding */
    int ndone;
    int refs;      /* open handles + pending resolver request */
    bool reported; /* cb called (or suppressed by close) */
    bool closed;   /* sinit_md_close called */
};

static void md_maybe_free(struct sinit_md *m)
{
    if (m->refs == 0 && m->closed) {
        for (int i = 0; i < MD_NREQ; i++)
            cmn_free(m->r[i].value);
        cmn_free(m);
    }
}

static void on_close(uv_handle_t *h)
{
    struct sinit_md *m = h->data;
    m->refs--;
    md_maybe_free(m);
}

static void close_all(struct sinit_md *m)
{
    if (!uv_is_closing((uv_handle_t *)&m->timer))
        uv_close((uv_handle_t *)&m->timer, on_close);
    for (int i = 0; i < MD_NREQ; i++) {
        if (m->r[i].tcp_open) {
            m->r[i].tcp_open = false;
            uv_close((uv_handle_t *)&m->r[i].tcp, on_close);
        }
    }
    if (m->gai_pending)
        (void)uv_cancel((uv_req_t *)&m->gai); /* may already be running */
}

static void report(struct sinit_md *m)
{
    if (m->reported)
        return;
    m->reported = true;
    struct sinit_gcp_md md = {
        m->r[0].value ? m->r[0].value : "unknown",
        m->r[1].value ? m->r[1].value : "unknown",
        m->r[2].value ? m->r[2].value : "unknown",
    };
    close_all(m);
    if (!m->closed)
        m->cb(m->data, &md);
}

static void req_finish(struct sinit_md_req *r, char *value)
{
    struct sinit_md *m = r->m;
    if (r->done) {
        cmn_free(value);
        return;
    }
    r->done = true;
    r->value = value;
    if (r->tcp_open) {
        r->tcp_open = false;
        uv_close((uv_handle_t *)&r->tcp, on_close);
    }
    if (++m->ndone == MD_NREQ)
        report(m);
}

/* Extracts the body of a 200 answer: lowercased, trimmed; NULL if not a
 * 200 or empty. */
static char *parse_response(const char *p, size_t len, bool last_segment)
{
    if (len < 12 || memcmp(p, "HTTP/1.", 7) != 0 || memcmp(p + 8, " 200", 4))
        return NULL;
    const char *end = p + len, *body = NULL;
    for (const char *q = p; q + 4 <= end; q++) {
        if (memcmp(q, "\r\n\r\n", 4) == 0) {
            body = q + 4;
            break;
        }
    }
    if (body == NULL)
        return NULL;
    while (body < end &&
           (*body == ' ' || *body == '\r' || *body == '\n' || *body == '\t'))
        body++;
    while (end > body && (end[-1] == ' ' || end[-1] == '\r' ||
                          end[-1] == '\n' || end[-1] == '\t'))
        end--;
    if (last_segment) {
        for (const char *q = end; q > body; q--) {
            if (q[-1] == '/') {
                body = q;
                break;
            }
        }
    }
    if (end == body)
        return NULL;
    char *v = cmn_strndup(body, (size_t)(end - body));
    if (v == NULL)
        return NULL;
    for (char *c = v; *c; c++)
        if (*c >= 'A' && *c <= 'Z')
            *c = (char)(*c - 'A' + 'a');
    return v;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct sinit_md_req *req =
        (struct sinit_md_req *)((char *)h - offsetof(struct sinit_md_req, tcp));
    buf->base = req->resp + req->resplen;
    buf->len = sizeof(req->resp) - req->resplen;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct sinit_md_req *r =
        (struct sinit_md_req *)((char *)s - offsetof(struct sinit_md_req, tcp));
    if (nread > 0) {
        r->resplen += (size_t)nread;
        if (r->resplen == sizeof(r->resp))
            req_finish(r, NULL); /* too big: not a metadata value */
        return;
    }
    if (nread == UV_EOF) {
        size_t i = (size_t)(r - r->m->r);
        req_finish(r, parse_response(r->resp, r->resplen, i == 1));
    } else if (nread < 0) {
        req_finish(r, NULL);
    }
}

static void on_write(uv_write_t *w, int status)
{
    struct sinit_md_req *r = w->data;
    if (status != 0)
        req_finish(r, NULL);
}

static void on_connect(uv_connect_t *c, int status)
{
    struct sinit_md_req *r = c->data;
    if (r->done)
        return;
    if (status != 0) {
        CMN_LOGD(COMP, "connect: %s", uv_strerror(status));
        req_finish(r, NULL);
        return;
    }
    uv_buf_t b = uv_buf_init(r->req, (unsigned)r->reqlen);
    r->wr.data = r;
    int err = uv_write(&r->wr, (uv_stream_t *)&r->tcp, &b, 1, on_write);
    if (err == 0)
        err = uv_read_start((uv_stream_t *)&r->tcp, on_alloc, on_read);
    if (err != 0)
        req_finish(r, NULL);
}

static void start_requests(struct sinit_md *m, const struct sockaddr *addr)
{
    for (int i = 0; i < MD_NREQ; i++) {
        struct sinit_md_req *r = &m->r[i];
        if (r->done)
            continue;
        int n = snprintf(r->req, sizeof(r->req),
                         "GET %s HTTP/1.0\r\nHost: %s\r\n"
                         "Metadata-Flavor: Google\r\n\r\n",
                         md_paths[i], m->host);
        if (n < 0 || (size_t)n >= sizeof(r->req)) {
            req_finish(r, NULL);
            continue;
        }
        r->reqlen = (size_t)n;
        if (uv_tcp_init(m->loop, &r->tcp) != 0) {
            req_finish(r, NULL);
            continue;
        }
        r->tcp.data = m;
        r->tcp_open = true;
        m->refs++;
        r->conn.data = r;
        if (uv_tcp_connect(&r->conn, &r->tcp, addr, on_connect) != 0)
            req_finish(r, NULL);
    }
}

static void fail_all(struct sinit_md *m)
{
    for (int i = 0; i < MD_NREQ; i++)
        req_finish(&m->r[i], NULL);
}

static void on_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *ai)
{
    struct sinit_md *m = g->data;
    m->refs--;
    m->gai_pending = false;
    if (status != 0 || ai == NULL || m->reported) {
        if (status != 0 && status != UV_ECANCELED)
            CMN_LOGD(COMP, "resolve %s: %s", m->host, uv_strerror(status));
        if (!m->reported)
            fail_all(m);
    } else {
        start_requests(m, ai->ai_addr);
    }
    uv_freeaddrinfo(ai);
    md_maybe_free(m);
}

static void on_timeout(uv_timer_t *t)
{
    struct sinit_md *m = t->data;
    CMN_LOGD(COMP, "metadata lookup timed out");
    fail_all(m);
}

/* Splits "host:port", "[v6]:port" or "host" into m->host / m->port. */
static int split_host_port(struct sinit_md *m, const char *hp)
{
    const char *host = hp, *port = "80";
    size_t hlen = strlen(hp);
    if (hp[0] == '[') {
        const char *rb = strchr(hp, ']');
        if (rb == NULL)
            return UV_EINVAL;
        host = hp + 1;
        hlen = (size_t)(rb - host);
        if (rb[1] == ':')
            port = rb + 2;
        else if (rb[1] != '\0')
            return UV_EINVAL;
    } else {
        const char *colon = strrchr(hp, ':');
        if (colon != NULL && strchr(hp, ':') == colon) {
            hlen = (size_t)(colon - hp);
            port = colon + 1;
        }
    }
    uint64_t pn;
    if (hlen == 0 || hlen >= sizeof(m->host) ||
        cmn_parse_u64(cmn_slice_cstr(port), 65535, &pn) != 0 || pn == 0)
        return UV_EINVAL;
    memcpy(m->host, host, hlen);
    m->host[hlen] = '\0';
    snprintf(m->port, sizeof(m->port), "%u", (unsigned)pn);
    m->portn = (int)pn;
    return 0;
}

int sinit_md_fetch(uv_loop_t *loop, const char *host_port, uint64_t timeout_ms,
                   sinit_md_cb cb, void *data, struct sinit_md **out)
{
    if (host_port == NULL)
        host_port = cmn_env_get(NULL, "GCE_METADATA_HOST");
    if (host_port == NULL)
        host_port = MD_DEFAULT_HOST;
    struct sinit_md *m = cmn_calloc(1, sizeof(*m));
    if (m == NULL)
        return UV_ENOMEM;
    int err = split_host_port(m, host_port);
    if (err != 0) {
        CMN_LOGW(COMP, "GCE_METADATA_HOST: expected host:port, got \"%s\"",
                 host_port);
        cmn_free(m);
        return err;
    }
    m->loop = loop;
    m->cb = cb;
    m->data = data;
    for (int i = 0; i < MD_NREQ; i++)
        m->r[i].m = m;
    err = uv_timer_init(loop, &m->timer);
    if (err != 0) {
        cmn_free(m);
        return err;
    }
    m->timer.data = m;
    m->refs = 1;
    *out = m;
    /* From here errors are reported through cb ("unknown" values). */
    (void)uv_timer_start(&m->timer, on_timeout, timeout_ms, 0);

    union {
        struct sockaddr_in v4;
        struct sockaddr_in6 v6;
    } sa;
    int port = m->portn;
    if (uv_ip4_addr(m->host, port, &sa.v4) == 0 ||
        uv_ip6_addr(m->host, port, &sa.v6) == 0) {
        start_requests(m, (const struct sockaddr *)&sa);
        return 0;
    }
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    m->gai.data = m;
    err = uv_getaddrinfo(loop, &m->gai, on_resolved, m->host, m->port, &hints);
    if (err != 0) {
        fail_all(m);
    } else {
        m->refs++;
        m->gai_pending = true;
    }
    return 0;
}

void sinit_md_close(struct sinit_md *m)
{
    if (m == NULL)
        return;
    m->closed = true;
    m->reported = true;
    close_all(m);
    md_maybe_free(m);
}
