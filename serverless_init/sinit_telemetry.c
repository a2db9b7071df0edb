/*
 * sinit_telemetry.c - the Telemetry API listener (spec §2): an HTTP/1.1
 * server on TCP that Lambda POSTs batches to, each a JSON array of
 * {time, type, record}. Requests are parsed with http_parser (keep-alive
 * and pipelining work), bodies with jansson; every element with a string
 * "type" goes to the callback, in order.
 *
 * Every request is answered 200 once its body was handled, unparseable
 * ones too (bottlecap does the same: Lambda would otherwise retry a batch
 * that can never parse); only a body over SINIT_TELEMETRY_BODY_MAX gets
 * 413 and the connection is closed. Both are counted.
 *
 * Invariant: t is freed only once the server handle and every connection
 * closed (t->nlive == 0 after sinit_tel_close).
 */
#include "sinit_lambda.h"

#include <http_parser.h>
#include <string.h>

#define COMP "telemetry"
#define TEL_CONNS_MAX 64 /* Lambda opens one or two; more are refused */

static const char resp_ok[] = "HTTP/1.1 200 OK\r\nContent-Length: "
                              "2\r\nContent-Type: text/plain\r\n\r\nOK";
static const char resp_big[] = "HTTP/1.1 413 Payload Too Large\r\n"
                               "Content-Length: 0\r\nConnection: close\r\n\r\n";

struct tel_conn {
    uv_tcp_t tcp;
    struct sinit_tel *t;
    struct tel_conn *prev, *next; /* t->conns */
    http_parser hp;
    struct cmn_buf body;
    bool too_big;
    bool closing;
    char rbuf[16384];
};

struct sinit_tel {
    uv_tcp_t srv;
    bool srv_open;
    int port;
    sinit_tel_cb cb; /* NULL once closed */
    void *data;
    unsigned nlive; /* handles not yet closed (server + connections) */
    unsigned nconns;
    struct tel_conn *conns; /* open connections */
    bool closed;            /* sinit_tel_close called */
    struct sinit_tel_stats st;
};

static void maybe_free(struct sinit_tel *t)
{
    if (t->closed && t->nlive == 0)
        cmn_free(t);
}

static void conn_closed(uv_handle_t *h)
{
    struct tel_conn *c = h->data;
    struct sinit_tel *t = c->t;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        t->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    cmn_buf_free(&c->body);
    cmn_free(c);
    t->nconns--;
    t->nlive--;
    maybe_free(t);
}

static void conn_close(struct tel_conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void write_done(uv_write_t *w, int status)
{
    (void)status;
    cmn_free(w);
}

static void send_static(struct tel_conn *c, const char *s, size_t len)
{
    uv_write_t *w = cmn_malloc(sizeof(*w));
    if (w == NULL) {
        conn_close(c);
        return;
    }
    uv_buf_t b = uv_buf_init((char *)s, (unsigned)len);
    if (uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, write_done) != 0) {
        cmn_free(w);
        conn_close(c);
    }
}

/* Hands every element of one batch to the callback. */
static void dispatch_batch(struct sinit_tel *t, const char *p, size_t len)
{
    json_error_t jerr;
    json_t *arr = json_loadb(p, len, 0, &jerr);
    if (arr == NULL || !json_is_array(arr)) {
        t->st.bad_batches++;
        CMN_LOGW(COMP, "telemetry batch is not a JSON array (%s): dropped",
                 arr == NULL ? jerr.text : "other JSON");
        json_decref(arr);
        return;
    }
    t->st.batches++;
    size_t i;
    json_t *ev;
    json_array_foreach(arr, i, ev)
    {
        const char *type = json_string_value(json_object_get(ev, "type"));
        if (type == NULL || t->cb == NULL)
            continue;
        t->st.events++;
        t->cb(t->data, type, json_object_get(ev, "record"));
    }
    json_decref(arr);
}

static int on_body(http_parser *hp, const char *at, size_t len)
{
    struct tel_conn *c = hp->data;
    if (c->too_big || cmn_buf_append(&c->body, at, len) != 0)
        c->too_big = true; /* keep parsing: answered at the end */
    return 0;
}

static int on_message_complete(http_parser *hp)
{
    struct tel_conn *c = hp->data;
    struct sinit_tel *t = c->t;
    if (c->too_big) {
        t->st.bad_batches++;
        CMN_LOGW(COMP, "telemetry batch over %u bytes: dropped",
                 SINIT_TELEMETRY_BODY_MAX);
        send_static(c, resp_big, sizeof(resp_big) - 1);
        return 1; /* stop parsing: the connection is closed after it */
    }
    if (c->body.len > 0)
        dispatch_batch(t, (const char *)c->body.p, c->body.len);
    cmn_buf_reset(&c->body);
    send_static(c, resp_ok, sizeof(resp_ok) - 1);
    return 0;
}

static const http_parser_settings req_settings = {
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void conn_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct tel_conn *c = h->data;
    (void)hint;
    *b = uv_buf_init(c->rbuf, sizeof(c->rbuf));
}

static void conn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct tel_conn *c = s->data;
    if (nread == 0)
        return;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    size_t n =
        http_parser_execute(&c->hp, &req_settings, b->base, (size_t)nread);
    if (c->too_big || HTTP_PARSER_ERRNO(&c->hp) != HPE_OK ||
        n != (size_t)nread) {
        if (!c->too_big)
            CMN_LOGW(COMP, "bad HTTP request on the telemetry listener: %s",
                     http_errno_description(HTTP_PARSER_ERRNO(&c->hp)));
        uv_read_stop(s);
        conn_close(c); /* queued writes are flushed or cancelled first */
    }
}

static void on_connection(uv_stream_t *srv, int status)
{
    struct sinit_tel *t = srv->data;
    if (status < 0)
        return;
    struct tel_conn *c = NULL;
    if (t->nconns < TEL_CONNS_MAX)
        c = cmn_calloc(1, sizeof(*c));
    if (c == NULL) {
        /* accept and drop it, or the listener would spin on it */
        uv_tcp_t *tmp = cmn_malloc(sizeof(*tmp));
        if (tmp != NULL && uv_tcp_init(srv->loop, tmp) == 0) {
            (void)uv_accept(srv, (uv_stream_t *)tmp);
            uv_close((uv_handle_t *)tmp, (uv_close_cb)cmn_free);
        } else {
            cmn_free(tmp);
        }
        return;
    }
    c->t = t;
    cmn_buf_init(&c->body, SINIT_TELEMETRY_BODY_MAX);
    http_parser_init(&c->hp, HTTP_REQUEST);
    c->hp.data = c;
    if (uv_tcp_init(srv->loop, &c->tcp) != 0) {
        cmn_free(c);
        return;
    }
    c->tcp.data = c;
    c->next = t->conns;
    if (t->conns != NULL)
        t->conns->prev = c;
    t->conns = c;
    t->nlive++;
    t->nconns++;
    if (uv_accept(srv, (uv_stream_t *)&c->tcp) != 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_read) != 0)
        conn_close(c);
}

int sinit_tel_start(uv_loop_t *loop, int port, sinit_tel_cb cb, void *data,
                    struct sinit_tel **out)
{
    struct sinit_tel *t = cmn_calloc(1, sizeof(*t));
    if (t == NULL)
        return UV_ENOMEM;
    t->cb = cb;
    t->data = data;
    int err = uv_tcp_init(loop, &t->srv);
    if (err != 0) {
        cmn_free(t);
        return err;
    }
    t->srv.data = t;
    t->srv_open = true;
    t->nlive = 1;
    struct sockaddr_in sa;
    (void)uv_ip4_addr("0.0.0.0", port, &sa);
    err = uv_tcp_bind(&t->srv, (const struct sockaddr *)&sa, 0);
    if (err == 0)
        err = uv_listen((uv_stream_t *)&t->srv, 16, on_connection);
    if (err == 0) {
        struct sockaddr_storage ss;
        int len = sizeof(ss);
        err = uv_tcp_getsockname(&t->srv, (struct sockaddr *)&ss, &len);
        t->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    if (err != 0) {
        CMN_LOGE(COMP, "cannot listen on TCP port %d: %s", port,
                 uv_strerror(err));
        sinit_tel_close(t);
        return err;
    }
    *out = t;
    return 0;
}

int sinit_tel_port(const struct sinit_tel *t)
{
    return t->port;
}

void sinit_tel_get_stats(const struct sinit_tel *t, struct sinit_tel_stats *o)
{
    *o = t->st;
}

static void srv_closed(uv_handle_t *h)
{
    struct sinit_tel *t = h->data;
    t->nlive--;
    maybe_free(t);
}

void sinit_tel_stop_accepting(struct sinit_tel *t)
{
    if (t == NULL || !t->srv_open)
        return;
    t->srv_open = false;
    uv_close((uv_handle_t *)&t->srv, srv_closed);
}

void sinit_tel_close(struct sinit_tel *t)
{
    if (t == NULL)
        return;
    t->cb = NULL;
    t->closed = true;
    sinit_tel_stop_accepting(t);
    for (struct tel_conn *c = t->conns; c != NULL; c = c->next)
        conn_close(c);
    maybe_free(t);
}
