/*
 * intake.c - the loopback test intake: an HTTP/1.1 server on its own thread
 * and uv loop that records every request and answers per a fault plan.
 *
 * Invariants: every uv handle belongs to the server thread's loop and is
 * touched only there (the caller thread only initialises them before the
 * thread starts); the recorded requests and the plan are guarded by one
 * mutex; a request is recorded before its answer is written, so a client
 * that saw the answer always finds the request recorded.
 */
#include <pthread.h>
#include <string.h>
#include <strings.h>

#include <http_parser.h>
#include <zlib.h>
#include <zstd.h>

#include "common.h"
#include "intake.h"

#define TI_MAX_BODY (64u * 1024 * 1024)
#define TI_MAX_HEADERS 100
#define TI_MAX_HEADER_BYTES (64u * 1024)
#define TI_MAX_DECODED (256u * 1024 * 1024)

struct ti_conn;

struct ti {
    uv_loop_t loop;
    uv_tcp_t server;
    uv_async_t stop_async;
    pthread_t thread;
    int port;
    char url[64];
    pthread_mutex_t mu;
    pthread_cond_t cond;
    struct ti_plan plan;      /* guarded by mu */
    uint32_t plan_used;       /* planned requests already answered */
    struct ti_request **reqs; /* guarded by mu */
    size_t nreqs, capreqs;
    uint64_t nconns;       /* guarded by mu */
    struct ti_conn *conns; /* server thread only */
    bool stopping;         /* server thread only */
};

struct ti_conn {
    uv_tcp_t tcp;
    uv_timer_t timer; /* delay / trickle */
    struct ti *ti;
    struct ti_conn *next, *prev;
    http_parser parser;
    uint64_t id;
    struct ti_request *cur; /* being parsed */
    struct cmn_buf hname, hval, url, body;
    struct cmn_buf pending; /* bytes received while an answer is due */
    bool in_value;
    int closing;    /* handles still to close */
    bool answering; /* an answer is pending */
    bool keep_alive;
    char resp[256]; /* answer being written */
    size_t resp_len, resp_off;
    uint32_t trickle_ms;
    uv_write_t wreq;
};

/* ------------------------------------------------------------------------
 * Request records
 */

static void request_free(struct ti_request *r)
{
    if (r == NULL)
        return;
    cmn_free(r->path);
    for (size_t i = 0; i < r->nheaders; i++) {
        cmn_free(r->headers[i].name);
        cmn_free(r->headers[i].value);
    }
    cmn_free(r->headers);
    cmn_free(r->body);
    cmn_free(r->decoded);
    cmn_free(r);
}

const char *ti_request_header(const struct ti_request *r, const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

static int decode_zstd(const unsigned char *in, size_t len, struct cmn_buf *out)
{
    ZSTD_DStream *ds = ZSTD_createDStream();
    ZSTD_inBuffer ib = {in, len, 0};
    unsigned char tmp[65536];
    int rc = 0;
    size_t r = 1;

    if (ds == NULL)
        return -1;
    while (ib.pos < ib.size || r != 0) {
        ZSTD_outBuffer ob = {tmp, sizeof(tmp), 0};
        size_t before = ib.pos;
        r = ZSTD_decompressStream(ds, &ob, &ib);
        if (ZSTD_isError(r) || cmn_buf_append(out, tmp, ob.pos) != 0) {
            rc = -1;
            break;
        }
        if (ib.pos == before && ob.pos == 0) {
            rc = r == 0 ? 0 : -1; /* truncated input */
            break;
        }
    }
    ZSTD_freeDStream(ds);
    return rc;
}

static int decode_zlib(const unsigned char *in, size_t len, struct cmn_buf *out)
{
    z_stream zs;
    unsigned char tmp[65536];
    int zrc;

    memset(&zs, 0, sizeof(zs));
    if (inflateInit2(&zs, 15 + 32) != Z_OK) /* zlib or gzip header */
        return -1;
    zs.next_in = (unsigned char *)in;
    zs.avail_in = (uInt)len;
    do {
        zs.next_out = tmp;
        zs.avail_out = sizeof(tmp);
        zrc = inflate(&zs, Z_NO_FLUSH);
        if (zrc != Z_OK && zrc != Z_STREAM_END)
            break;
        if (cmn_buf_append(out, tmp, sizeof(tmp) - zs.avail_out) != 0) {
            zrc = Z_MEM_ERROR;
            break;
        }
    } while (zrc != Z_STREAM_END && (zs.avail_in > 0 || zs.avail_out == 0));
    inflateEnd(&zs);
    return zrc == Z_STREAM_END ? 0 : -1;
}

static void decode_body(struct ti_request *r)
{
    const char *enc = ti_request_header(r, "Content-Encoding");
    struct cmn_buf out;
    int rc;

    cmn_buf_init(&out, TI_MAX_DECODED);
    if (enc == NULL || strcasecmp(enc, "identity") == 0)
        rc = cmn_buf_append(&out, r->body != NULL ? r->body : (void *)"",
                            r->body_len);
    else if (strcasecmp(enc, "zstd") == 0)
        rc = decode_zstd(r->body, r->body_len, &out);
    else if (strcasecmp(enc, "deflate") == 0 || strcasecmp(enc, "gzip") == 0)
        rc = decode_zlib(r->body, r->body_len, &out);
    else
        rc = -1;
    /* always NUL-terminated for JSON decoding convenience */
    if (rc == 0 && cmn_buf_append(&out, "", 1) == 0) {
        r->decoded_len = out.len - 1;
        r->decoded = (unsigned char *)cmn_buf_steal(&out, NULL);
        r->decode_ok = true;
    }
    cmn_buf_free(&out);
}

/* Records r (takes ownership) and returns the plan for it. */
static void record(struct ti *ti, struct ti_request *r, struct ti_plan *plan)
{
    struct ti_plan none = {0};

    pthread_mutex_lock(&ti->mu);
    if (ti->plan_used < ti->plan.count) {
        *plan = ti->plan;
        if (ti->plan.count != TI_ALL)
            ti->plan_used++;
    } else {
        *plan = none;
    }
    r->answered = plan->fault == TI_FAULT_RESET || plan->fault == TI_FAULT_HANG
                      ? 0
                      : (plan->status != 0 ? plan->status : 202);
    if (ti->nreqs == ti->capreqs) {
        size_t cap = ti->capreqs ? ti->capreqs * 2 : 64;
        struct ti_request **n = cmn_reallocarray(ti->reqs, cap, sizeof(*n));
        if (n == NULL) {
            pthread_mutex_unlock(&ti->mu);
            request_free(r);
            return;
        }
        ti->reqs = n;
        ti->capreqs = cap;
    }
    r->index = ti->nreqs;
    ti->reqs[ti->nreqs++] = r;
    pthread_cond_broadcast(&ti->cond);
    pthread_mutex_unlock(&ti->mu);
}

/* ------------------------------------------------------------------------
 * Connections
 */

static void conn_closed_cb(uv_handle_t *h)
{
    struct ti_conn *c = h->data;
    if (--c->closing > 0)
        return;
    request_free(c->cur);
    cmn_buf_free(&c->hname);
    cmn_buf_free(&c->hval);
    cmn_buf_free(&c->url);
    cmn_buf_free(&c->body);
    cmn_buf_free(&c->pending);
    cmn_free(c);
}

static void conn_close(struct ti_conn *c, bool reset)
{
    struct ti *ti = c->ti;

    if (c->closing > 0)
        return;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        ti->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    c->closing = 2;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, conn_closed_cb);
    if (reset)
        uv_tcp_close_reset(&c->tcp, conn_closed_cb);
    else
        uv_close((uv_handle_t *)&c->tcp, conn_closed_cb);
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    static __thread char slab[65536];
    buf->base = slab;
    buf->len = sizeof(slab);
}

static void write_next(struct ti_conn *c);
static void resume(struct ti_conn *c);

static void trickle_cb(uv_timer_t *t)
{
    write_next(t->data);
}

static void write_cb(uv_write_t *w, int status)
{
    struct ti_conn *c = w->data;

    if (c->closing > 0)
        return;
    if (status < 0) {
        conn_close(c, false);
        return;
    }
    if (c->resp_off < c->resp_len) {
        uv_timer_start(&c->timer, trickle_cb, c->trickle_ms, 0);
        return;
    }
    c->answering = false;
    if (!c->keep_alive || c->ti->stopping) {
        conn_close(c, false);
        return;
    }
    resume(c);
}

static void write_next(struct ti_conn *c)
{
    size_t n = c->resp_len - c->resp_off;
    uv_buf_t b;

    if (c->trickle_ms > 0 && n > 1)
        n = 1;
    b = uv_buf_init(c->resp + c->resp_off, (unsigned)n);
    c->resp_off += n;
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, write_cb) != 0)
        conn_close(c, false);
}

static const char *reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 202:
        return "Accepted";
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 413:
        return "Payload Too Large";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "Status";
    }
}

static void answer(struct ti_conn *c, int status)
{
    int n = snprintf(c->resp, sizeof(c->resp),
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: 2\r\n%s\r\n{}",
                     status, reason(status),
                     c->keep_alive ? "" : "Connection: close\r\n");
    c->resp_len = (size_t)n;
    c->resp_off = 0;
    write_next(c);
}

static void delay_cb(uv_timer_t *t)
{
    struct ti_conn *c = t->data;
    answer(c, (int)c->parser.status_code);
}

/* ------------------------------------------------------------------------
 * HTTP parsing callbacks
 */

static int on_message_begin(http_parser *p)
{
    struct ti_conn *c = p->data;

    request_free(c->cur);
    c->cur = cmn_calloc(1, sizeof(*c->cur));
    if (c->cur == NULL)
        return -1;
    cmn_buf_reset(&c->url);
    cmn_buf_reset(&c->body);
    cmn_buf_reset(&c->hname);
    cmn_buf_reset(&c->hval);
    c->in_value = false;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct ti_conn *c = p->data;
    return cmn_buf_append(&c->url, at, len) == 0 ? 0 : -1;
}

static int flush_header(struct ti_conn *c)
{
    struct ti_request *r = c->cur;
    struct ti_header *h;

    if (!c->in_value)
        return 0;
    c->in_value = false;
    if (r->nheaders >= TI_MAX_HEADERS)
        return -1;
    h = cmn_reallocarray(r->headers, r->nheaders + 1, sizeof(*h));
    if (h == NULL)
        return -1;
    r->headers = h;
    h = &r->headers[r->nheaders];
    h->name = cmn_strndup(c->hname.p ? c->hname.p : "", c->hname.len);
    h->value = cmn_strndup(c->hval.p ? c->hval.p : "", c->hval.len);
    if (h->name == NULL || h->value == NULL) {
        cmn_free(h->name);
        cmn_free(h->value);
        return -1;
    }
    r->nheaders++;
    cmn_buf_reset(&c->hname);
    cmn_buf_reset(&c->hval);
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct ti_conn *c = p->data;
    if (flush_header(c) != 0)
        return -1;
    return cmn_buf_append(&c->hname, at, len) == 0 ? 0 : -1;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct ti_conn *c = p->data;
    c->in_value = true;
    return cmn_buf_append(&c->hval, at, len) == 0 ? 0 : -1;
}

static int on_headers_complete(http_parser *p)
{
    return flush_header(p->data);
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct ti_conn *c = p->data;
    return cmn_buf_append(&c->body, at, len) == 0 ? 0 : -1;
}

static int on_message_complete(http_parser *p)
{
    struct ti_conn *c = p->data;
    struct ti_request *r = c->cur;
    struct ti_plan plan;
    int status;

    c->cur = NULL;
    snprintf(r->method, sizeof(r->method), "%s",
             http_method_str((enum http_method)p->method));
    r->path = cmn_strndup(c->url.p ? c->url.p : "", c->url.len);
    r->body = (unsigned char *)cmn_buf_steal(&c->body, &r->body_len);
    r->conn_id = c->id;
    r->recv_ns = cmn_mono_ns();
    if (r->path == NULL) {
        request_free(r);
        return -1;
    }
    decode_body(r);
    c->keep_alive = http_should_keep_alive(p) != 0;
    /* one request at a time: later pipelined bytes wait in `pending` */
    http_parser_pause(p, 1);
    record(c->ti, r, &plan);
    status = plan.status != 0 ? plan.status : 202;
    switch (plan.fault) {
    case TI_FAULT_RESET:
        conn_close(c, true);
        return 0;
    case TI_FAULT_HANG:
        c->answering = true;
        return 0;
    case TI_FAULT_TRICKLE:
        c->trickle_ms = plan.trickle_ms > 0 ? plan.trickle_ms : 10;
        break;
    default:
        c->trickle_ms = 0;
        break;
    }
    c->answering = true;
    if (plan.delay_ms > 0) {
        /* status_code is unused on a request parser: reuse it */
        p->status_code = (unsigned)status;
        uv_timer_start(&c->timer, delay_cb, plan.delay_ms, 0);
    } else {
        answer(c, status);
    }
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* Parses data; bytes after a completed request wait in c->pending until
 * its answer is written (the parser is paused meanwhile). */
static void feed(struct ti_conn *c, const char *data, size_t len)
{
    size_t n = http_parser_execute(&c->parser, &parser_settings, data, len);

    if (c->closing > 0)
        return;
    if (HTTP_PARSER_ERRNO(&c->parser) == HPE_PAUSED) {
        if (n < len && cmn_buf_append(&c->pending, data + n, len - n) != 0) {
            conn_close(c, false);
            return;
        }
        uv_read_stop((uv_stream_t *)&c->tcp);
        return;
    }
    if (n != len || HTTP_PARSER_ERRNO(&c->parser) != HPE_OK)
        conn_close(c, false);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct ti_conn *c = s->data;

    if (nread == 0)
        return;
    if (nread < 0) {
        conn_close(c, false);
        return;
    }
    feed(c, buf->base, (size_t)nread);
}

/* The answer is written: parse what waited, then read again. */
static void resume(struct ti_conn *c)
{
    char *p;
    size_t len;

    http_parser_pause(&c->parser, 0);
    if (c->pending.len > 0) {
        p = cmn_buf_steal(&c->pending, &len);
        feed(c, p, len);
        cmn_free(p);
        if (c->closing > 0 || HTTP_PARSER_ERRNO(&c->parser) == HPE_PAUSED)
            return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
}

static void on_connection(uv_stream_t *server, int status)
{
    struct ti *ti = server->data;
    struct ti_conn *c;

    if (status < 0)
        return;
    c = cmn_calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    c->ti = ti;
    uv_tcp_init(&ti->loop, &c->tcp);
    uv_timer_init(&ti->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        c->closing = 2;
        uv_close((uv_handle_t *)&c->tcp, conn_closed_cb);
        uv_close((uv_handle_t *)&c->timer, conn_closed_cb);
        return;
    }
    cmn_buf_init(&c->hname, TI_MAX_HEADER_BYTES);
    cmn_buf_init(&c->hval, TI_MAX_HEADER_BYTES);
    cmn_buf_init(&c->url, TI_MAX_HEADER_BYTES);
    cmn_buf_init(&c->body, TI_MAX_BODY);
    cmn_buf_init(&c->pending, TI_MAX_BODY);
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    pthread_mutex_lock(&ti->mu);
    c->id = ++ti->nconns;
    pthread_mutex_unlock(&ti->mu);
    c->next = ti->conns;
    if (ti->conns != NULL)
        ti->conns->prev = c;
    ti->conns = c;
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
}

/* ------------------------------------------------------------------------
 * Server thread
 */

static void stop_async_cb(uv_async_t *a)
{
    struct ti *ti = a->data;

    ti->stopping = true;
    while (ti->conns != NULL)
        conn_close(ti->conns, false);
    uv_close((uv_handle_t *)&ti->server, NULL);
    uv_close((uv_handle_t *)&ti->stop_async, NULL);
}

static void *server_main(void *arg)
{
    struct ti *ti = arg;
    uv_run(&ti->loop, UV_RUN_DEFAULT);
    return NULL;
}

/* Binds a TCP server on 127.0.0.1:0 and returns its port. Shared with the
 * proxy. */
int ti__listen(uv_loop_t *loop, uv_tcp_t *server, uv_connection_cb cb,
               int *port)
{
    struct sockaddr_in addr;
    struct sockaddr_storage ss;
    int len = sizeof(ss), rc;

    uv_ip4_addr("127.0.0.1", 0, &addr);
    rc = uv_tcp_init(loop, server);
    if (rc != 0)
        return rc;
    rc = uv_tcp_bind(server, (const struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)server, 128, cb);
    if (rc == 0)
        rc = uv_tcp_getsockname(server, (struct sockaddr *)&ss, &len);
    if (rc != 0)
        return rc;
    *port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return 0;
}

/* Starts a thread with all signals blocked (STYLE: non-loop threads block
 * signals). */
int ti__thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
    sigset_t all, old;
    int rc;

    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(t, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc == 0 ? 0 : UV_EAGAIN;
}

int ti_start(struct ti **out)
{
    struct ti *ti = cmn_calloc(1, sizeof(*ti));
    int rc;

    *out = NULL;
    if (ti == NULL)
        return UV_ENOMEM;
    rc = uv_loop_init(&ti->loop);
    if (rc != 0)
        goto out_free;
    pthread_mutex_init(&ti->mu, NULL);
    pthread_cond_init(&ti->cond, NULL);
    rc = ti__listen(&ti->loop, &ti->server, on_connection, &ti->port);
    if (rc != 0)
        goto out_loop;
    ti->server.data = ti;
    uv_async_init(&ti->loop, &ti->stop_async, stop_async_cb);
    ti->stop_async.data = ti;
    snprintf(ti->url, sizeof(ti->url), "http://127.0.0.1:%d", ti->port);
    rc = ti__thread_start(&ti->thread, server_main, ti);
    if (rc != 0) {
        uv_close((uv_handle_t *)&ti->stop_async, NULL);
        goto out_loop;
    }
    *out = ti;
    return 0;

out_loop:
    uv_close((uv_handle_t *)&ti->server, NULL);
    uv_run(&ti->loop, UV_RUN_DEFAULT);
    uv_loop_close(&ti->loop);
    pthread_mutex_destroy(&ti->mu);
    pthread_cond_destroy(&ti->cond);
out_free:
    cmn_free(ti);
    return rc;
}

void ti_stop(struct ti *ti)
{
    if (ti == NULL)
        return;
    uv_async_send(&ti->stop_async);
    pthread_join(ti->thread, NULL);
    uv_loop_close(&ti->loop);
    for (size_t i = 0; i < ti->nreqs; i++)
        request_free(ti->reqs[i]);
    cmn_free(ti->reqs);
    pthread_mutex_destroy(&ti->mu);
    pthread_cond_destroy(&ti->cond);
    cmn_free(ti);
}

int ti_port(const struct ti *ti)
{
    return ti->port;
}

const char *ti_url(const struct ti *ti)
{
    return ti->url;
}

void ti_set_plan(struct ti *ti, const struct ti_plan *plan)
{
    pthread_mutex_lock(&ti->mu);
    ti->plan = *plan;
    ti->plan_used = 0;
    pthread_mutex_unlock(&ti->mu);
}

size_t ti_request_count(struct ti *ti)
{
    size_t n;
    pthread_mutex_lock(&ti->mu);
    n = ti->nreqs;
    pthread_mutex_unlock(&ti->mu);
    return n;
}

const struct ti_request *ti_request_get(struct ti *ti, size_t i)
{
    const struct ti_request *r = NULL;
    pthread_mutex_lock(&ti->mu);
    if (i < ti->nreqs)
        r = ti->reqs[i];
    pthread_mutex_unlock(&ti->mu);
    return r;
}

uint64_t ti_connection_count(struct ti *ti)
{
    uint64_t n;
    pthread_mutex_lock(&ti->mu);
    n = ti->nconns;
    pthread_mutex_unlock(&ti->mu);
    return n;
}

size_t ti_wait_count(struct ti *ti, size_t n, uint32_t timeout_ms)
{
    struct timespec ts;
    size_t got;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&ti->mu);
    while (ti->nreqs < n) {
        if (pthread_cond_timedwait(&ti->cond, &ti->mu, &ts) != 0)
            break;
    }
    got = ti->nreqs;
    pthread_mutex_unlock(&ti->mu);
    return got;
}

size_t ti_count_path(struct ti *ti, const char *path)
{
    size_t n = 0, total = ti_request_count(ti);
    for (size_t i = 0; i < total; i++)
        if (strcmp(ti_request_get(ti, i)->path, path) == 0)
            n++;
    return n;
}
