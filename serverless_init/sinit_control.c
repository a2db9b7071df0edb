/*
 * sinit_control.c - the control port (sinit_control.h): POST /flush and
 * GET /stats over HTTP/1.1 on 127.0.0.1, parsed with http_parser.
 *
 * Flushes are shared: a /flush that arrives while one runs waits for the
 * next one (which starts when the running one ends), because the running
 * flush may have synced the sockets before the caller's last datagram
 * arrived. Generations count them: a request is served by the first flush
 * whose generation is at least the one it was given.
 *
 * Invariant: the server is freed only once its handle and every
 * connection (with its timer) closed (nlive == 0 after sinit_ctl_close).
 */
#include "sinit_control.h"

#include <http_parser.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#define COMP "control"
#define CTL_URL_MAX 256

struct ctl_conn {
    uv_tcp_t tcp;
    uv_timer_t timer; /* the /flush timeout */
    struct sinit_ctl *s;
    struct ctl_conn *prev, *next; /* s->conns */
    http_parser hp;
    char url[CTL_URL_MAX];
    size_t url_len;
    bool url_too_long;
    bool waiting; /* for the flush of generation `gen` */
    uint64_t gen;
    bool answered;
    unsigned nopen; /* tcp + timer not closed yet */
    char rbuf[4096];
};

struct sinit_ctl {
    uv_tcp_t srv;
    sinit_ctl_pipeline_fn get;
    void *data;
    unsigned nlive; /* server + connections not yet freed */
    unsigned nconns;
    struct ctl_conn *conns;
    bool closed;
    uint64_t gen_req;     /* generations asked for */
    uint64_t gen_running; /* the running flush's (0: none ran yet) */
    bool flushing;        /* a dp_flush_async of ours runs (counted in nlive:
                             its callback still reaches s after a close) */
};

static void maybe_free(struct sinit_ctl *s)
{
    if (s->closed && s->nlive == 0)
        cmn_free(s);
}

static void conn_handle_closed(uv_handle_t *h)
{
    struct ctl_conn *c = h->data;
    struct sinit_ctl *s = c->s;
    if (--c->nopen > 0)
        return;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    cmn_free(c);
    s->nconns--;
    s->nlive--;
    maybe_free(s);
}

static void conn_close(struct ctl_conn *c)
{
    if (uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    c->waiting = false;
    uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
}

/* The response and its body, in one block freed when written. */
struct ctl_write {
    uv_write_t w;
    struct ctl_conn *c;
    char buf[];
};

static void write_done(uv_write_t *w, int status)
{
    struct ctl_write *cw = (struct ctl_write *)w;
    (void)status;
    conn_close(cw->c);
    cmn_free(cw);
}

static const char *status_text(int code)
{
    switch (code) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 503:
        return "Service Unavailable";
    default:
        return "Gateway Timeout";
    }
}

/* Answers once, then closes the connection. body is copied. */
static void respond(struct ctl_conn *c, int code, const char *type,
                    const char *body)
{
    if (c->answered)
        return;
    c->answered = true;
    c->waiting = false;
    uv_timer_stop(&c->timer);
    size_t blen = strlen(body);
    size_t cap = blen + 256;
    struct ctl_write *cw = cmn_malloc(sizeof(*cw) + cap);
    if (cw == NULL) {
        conn_close(c);
        return;
    }
    int n = snprintf(cw->buf, cap,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     code, status_text(code), type, blen, body);
    cw->c = c;
    uv_buf_t b = uv_buf_init(cw->buf, (unsigned)n);
    if (n <= 0 || (size_t)n >= cap ||
        uv_write(&cw->w, (uv_stream_t *)&c->tcp, &b, 1, write_done) != 0) {
        cmn_free(cw);
        conn_close(c);
    }
}

static void respond_text(struct ctl_conn *c, int code, const char *msg)
{
    respond(c, code, "text/plain", msg);
}

/* ------------------------------------------------------------------------
 * /flush
 */
static void start_flush(struct sinit_ctl *s);

static void on_flushed(dp_pipeline *p, int status, void *data)
{
    struct sinit_ctl *s = data;
    (void)p;
    s->flushing = false;
    s->nlive--;
    if (s->closed) { /* answered 503 at the close */
        maybe_free(s);
        return;
    }
    for (struct ctl_conn *c = s->conns; c != NULL; c = c->next)
        if (c->waiting && c->gen <= s->gen_running)
            respond_text(c, status == 0 ? 200 : 503,
                         status == 0 ? "flushed\n" : "stopping\n");
    if (s->gen_req > s->gen_running)
        start_flush(s);
}

static void fail_waiting(struct sinit_ctl *s, int code, const char *msg)
{
    for (struct ctl_conn *c = s->conns; c != NULL; c = c->next)
        if (c->waiting)
            respond_text(c, code, msg);
}

static void start_flush(struct sinit_ctl *s)
{
    dp_pipeline *p = s->get(s->data);
    if (p == NULL) {
        fail_waiting(s, 503, "no running pipeline\n");
        return;
    }
    s->gen_running = s->gen_req;
    int rc = dp_flush_async(p, on_flushed, s);
    if (rc != 0) {
        CMN_LOGW(COMP, "flush: %s", dp_strerror(rc));
        fail_waiting(s, 503, "the pipeline cannot flush now\n");
        return;
    }
    s->flushing = true;
    s->nlive++;
}

static void on_flush_timeout(uv_timer_t *t)
{
    struct ctl_conn *c = t->data;
    respond_text(c, 504, "not everything was delivered in time\n");
}

/* "timeout_ms=N" (the only parameter); 0 or UV_EINVAL. */
static int parse_query(const char *q, size_t len, uint64_t *ms)
{
    static const char key[] = "timeout_ms=";
    *ms = SINIT_CONTROL_TIMEOUT_MS;
    if (len == 0)
        return 0;
    if (len < sizeof(key) - 1 || memcmp(q, key, sizeof(key) - 1) != 0)
        return UV_EINVAL;
    struct cmn_slice v = {q + sizeof(key) - 1, len - (sizeof(key) - 1)};
    return cmn_parse_u64(v, SINIT_CONTROL_TIMEOUT_MAX, ms) == 0 ? 0 : UV_EINVAL;
}

static void handle_flush(struct ctl_conn *c, const char *q, size_t qlen)
{
    struct sinit_ctl *s = c->s;
    uint64_t ms;
    if (parse_query(q, qlen, &ms) != 0) {
        respond_text(c, 400, "expected ?timeout_ms=N (0-600000)\n");
        return;
    }
    if (s->get(s->data) == NULL) {
        respond_text(c, 503, "no running pipeline\n");
        return;
    }
    c->waiting = true;
    c->gen = ++s->gen_req;
    (void)uv_timer_start(&c->timer, on_flush_timeout, ms, 0);
    if (!s->flushing)
        start_flush(s);
}

/* ------------------------------------------------------------------------
 * /stats
 */
static void handle_stats(struct ctl_conn *c)
{
    dp_pipeline *p = c->s->get(c->s->data);
    struct dp_stats st;
    struct dp_info info;
    if (p == NULL || dp_stats(p, &st, sizeof(st)) != 0 ||
        dp_get_info(p, &info, sizeof(info)) != 0) {
        respond_text(c, 503, "no running pipeline\n");
        return;
    }
    const struct {
        const char *name;
        uint64_t v;
    } f[] = {
        {"submitted", st.submitted},
        {"packets", st.packets},
        {"metric_lines", st.metric_lines},
        {"metric_samples", st.metric_samples},
        {"parse_errors", st.parse_errors},
        {"kernel_drops", st.kernel_drops},
        {"contexts", st.contexts},
        {"samples_dropped", st.samples_dropped},
        {"series_flushed", st.series_flushed},
        {"sketches_flushed", st.sketches_flushed},
        {"payloads", st.payloads},
        {"delivered", st.delivered},
        {"retried", st.retried},
        {"dropped", st.dropped_payloads},
        {"queued", st.queued - st.inflight},
        {"inflight", st.inflight},
    };
    json_t *o = json_object();
    for (size_t i = 0; o != NULL && i < sizeof(f) / sizeof(f[0]); i++)
        json_object_set_new(o, f[i].name, json_integer((json_int_t)f[i].v));
    if (o != NULL)
        json_object_set_new(o, "local", json_boolean(info.local_sink));
    /* into our buffer: jansson's allocator may be the scrubbing one */
    char buf[1024];
    size_t n =
        o != NULL ? json_dumpb(o, buf, sizeof(buf) - 1, JSON_COMPACT) : 0;
    json_decref(o);
    if (n == 0 || n >= sizeof(buf) - 1) {
        respond_text(c, 503, "out of memory\n");
        return;
    }
    buf[n] = '\0';
    respond(c, 200, "application/json", buf);
}

/* ------------------------------------------------------------------------
 * HTTP
 */
static int on_url(http_parser *hp, const char *at, size_t len)
{
    struct ctl_conn *c = hp->data;
    if (len > sizeof(c->url) - 1 - c->url_len) {
        c->url_too_long = true;
        return 0;
    }
    memcpy(c->url + c->url_len, at, len);
    c->url_len += len;
    return 0;
}

static int on_message_complete(http_parser *hp)
{
    struct ctl_conn *c = hp->data;
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (c->url_too_long ||
        http_parser_parse_url(c->url, c->url_len, 0, &u) != 0 ||
        !(u.field_set & (1 << UF_PATH))) {
        respond_text(c, 400, "bad request target\n");
        return 1;
    }
    const char *path = c->url + u.field_data[UF_PATH].off;
    size_t plen = u.field_data[UF_PATH].len;
    const char *q = "";
    size_t qlen = 0;
    if (u.field_set & (1 << UF_QUERY)) {
        q = c->url + u.field_data[UF_QUERY].off;
        qlen = u.field_data[UF_QUERY].len;
    }
    bool is_flush = plen == 6 && memcmp(path, "/flush", 6) == 0;
    bool is_stats = plen == 6 && memcmp(path, "/stats", 6) == 0;
    if (!is_flush && !is_stats)
        respond_text(c, 404, "POST /flush or GET /stats\n");
    else if (is_flush && hp->method != HTTP_POST)
        respond_text(c, 405, "POST /flush\n");
    else if (is_stats && hp->method != HTTP_GET)
        respond_text(c, 405, "GET /stats\n");
    else if (is_flush)
        handle_flush(c, q, qlen);
    else
        handle_stats(c);
    return 1; /* one request per connection */
}

static const http_parser_settings settings = {
    .on_url = on_url,
    .on_message_complete = on_message_complete,
};

static void conn_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct ctl_conn *c = h->data;
    (void)hint;
    *b = uv_buf_init(c->rbuf, sizeof(c->rbuf));
}

static void conn_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
    struct ctl_conn *c = st->data;
    if (nread == 0)
        return;
    if (nread < 0) { /* EOF or error before a whole request */
        if (!c->waiting)
            conn_close(c);
        return;
    }
    if (c->answered || c->waiting)
        return; /* a second request on the connection is ignored */
    size_t n = http_parser_execute(&c->hp, &settings, b->base, (size_t)nread);
    enum http_errno e = HTTP_PARSER_ERRNO(&c->hp);
    if (e != HPE_OK && e != HPE_PAUSED && e != HPE_CB_message_complete) {
        respond_text(c, 400, "not an HTTP/1.1 request\n");
        uv_read_stop(st);
    }
    (void)n;
}

static void free_handle(uv_handle_t *h)
{
    cmn_free(h);
}

static void on_connection(uv_stream_t *srv, int status)
{
    struct sinit_ctl *s = srv->data;
    if (status < 0)
        return;
    struct ctl_conn *c = NULL;
    if (s->nconns < SINIT_CONTROL_CONNS_MAX)
        c = cmn_calloc(1, sizeof(*c));
    if (c == NULL) {
        /* accept and close it, or the listener would spin on it */
        uv_tcp_t *tmp = cmn_malloc(sizeof(*tmp));
        if (tmp != NULL && uv_tcp_init(srv->loop, tmp) == 0) {
            if (uv_accept(srv, (uv_stream_t *)tmp) == 0)
                CMN_LOGW(COMP, "over %d connections: refused",
                         SINIT_CONTROL_CONNS_MAX);
            uv_close((uv_handle_t *)tmp, free_handle);
        } else {
            cmn_free(tmp);
        }
        return;
    }
    c->s = s;
    uv_tcp_init(srv->loop, &c->tcp);
    uv_timer_init(srv->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->nopen = 2;
    http_parser_init(&c->hp, HTTP_REQUEST);
    c->hp.data = c;
    c->next = s->conns;
    if (s->conns != NULL)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    s->nlive++;
    if (uv_accept(srv, (uv_stream_t *)&c->tcp) != 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_read) != 0)
        conn_close(c);
}

/* ------------------------------------------------------------------------
 * Open / close
 */
int sinit_ctl_open(uv_loop_t *loop, const struct cmn_env *env,
                   sinit_ctl_pipeline_fn get, void *data,
                   struct sinit_ctl **out)
{
    int64_t port = 0;
    *out = NULL;
    if (cmn_env_i64(env, SINIT_CONTROL_ENV, 1, 65535, &port) != 0)
        return UV_EINVAL; /* logged, naming the variable */
    if (port == 0)
        return 0;
    struct sinit_ctl *s = cmn_calloc(1, sizeof(*s));
    if (s == NULL)
        return UV_ENOMEM;
    s->get = get;
    s->data = data;
    struct sockaddr_in sa;
    int err = uv_tcp_init(loop, &s->srv);
    if (err != 0) {
        cmn_free(s);
        return err;
    }
    s->srv.data = s;
    s->nlive = 1;
    (void)uv_ip4_addr("127.0.0.1", (int)port, &sa); /* loopback only */
    err = uv_tcp_bind(&s->srv, (const struct sockaddr *)&sa, 0);
    if (err == 0)
        err = uv_listen((uv_stream_t *)&s->srv, 16, on_connection);
    if (err != 0) {
        CMN_LOGE(COMP, "%s=%lld: cannot listen on 127.0.0.1: %s",
                 SINIT_CONTROL_ENV, (long long)port, uv_strerror(err));
        sinit_ctl_close(s);
        return err;
    }
    CMN_LOGI(COMP, "control port on 127.0.0.1:%lld (POST /flush, GET /stats)",
             (long long)port);
    *out = s;
    return 0;
}

static void srv_closed(uv_handle_t *h)
{
    struct sinit_ctl *s = h->data;
    s->nlive--;
    maybe_free(s);
}

void sinit_ctl_close(struct sinit_ctl *s)
{
    if (s == NULL || s->closed)
        return;
    s->closed = true;
    fail_waiting(s, 503, "stopping\n");
    for (struct ctl_conn *c = s->conns; c != NULL; c = c->next)
        conn_close(c);
    uv_close((uv_handle_t *)&s->srv, srv_closed);
}
