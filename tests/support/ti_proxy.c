/*
 * ti_proxy.c - a minimal HTTP CONNECT proxy for tests, on its own thread
 * and uv loop. It reads one request head (up to 8 KiB), accepts only
 * "CONNECT 127.0.0.1:<port>", "localhost:<port>" or "[::1]:<port>" (always
 * dialled as 127.0.0.1), answers 200 and then relays bytes both ways until
 * either side closes. Anything else is refused with 403 and counted.
 *
 * Invariant: a tunnel is freed only after both of its handles closed.
 */
#include <pthread.h>
#include <string.h>

#include "common.h"
#include "intake.h"

int ti__listen(uv_loop_t *loop, uv_tcp_t *server, uv_connection_cb cb,
               int *port);
int ti__thread_start(pthread_t *t, void *(*fn)(void *), void *arg);

#define TP_HEAD_MAX 8192

struct tp {
    uv_loop_t loop;
    uv_tcp_t server;
    uv_async_t stop_async;
    pthread_t thread;
    int port;
    char url[64];
    pthread_mutex_t mu;
    uint64_t tunnels, refused; /* guarded by mu */
    struct tp_tun *tuns;       /* proxy thread only */
};

struct tp_tun {
    struct tp *tp;
    struct tp_tun *next, *prev;
    uv_tcp_t client, upstream;
    uv_connect_t connect;
    char head[TP_HEAD_MAX];
    size_t head_len;
    bool upstream_open; /* upstream initialised (must be closed) */
    bool connected;     /* relaying */
    bool close_after;   /* close once the pending write is done */
    int closing;        /* handles still to close */
};

struct tp_write {
    uv_write_t w;
    struct tp_tun *t;
    char data[];
};

static void tun_closed_cb(uv_handle_t *h)
{
    struct tp_tun *t = h->data;
    if (--t->closing == 0)
        cmn_free(t);
}

static void tun_close(struct tp_tun *t)
{
    struct tp *tp = t->tp;

    if (t->closing > 0)
        return;
    if (t->prev != NULL)
        t->prev->next = t->next;
    else
        tp->tuns = t->next;
    if (t->next != NULL)
        t->next->prev = t->prev;
    t->closing = t->upstream_open ? 2 : 1;
    uv_close((uv_handle_t *)&t->client, tun_closed_cb);
    if (t->upstream_open)
        uv_close((uv_handle_t *)&t->upstream, tun_closed_cb);
}

static void write_cb(uv_write_t *w, int status)
{
    struct tp_write *pw = (struct tp_write *)w;
    if (status < 0 || pw->t->close_after)
        tun_close(pw->t);
    cmn_free(pw);
}

static int send_bytes(struct tp_tun *t, uv_tcp_t *to, const char *p, size_t n)
{
    struct tp_write *pw;
    uv_buf_t b;

    if (n == 0)
        return 0;
    pw = cmn_malloc(sizeof(*pw) + n);
    if (pw == NULL)
        return UV_ENOMEM;
    pw->t = t;
    memcpy(pw->data, p, n);
    b = uv_buf_init(pw->data, (unsigned)n);
    if (uv_write(&pw->w, (uv_stream_t *)to, &b, 1, write_cb) != 0) {
        cmn_free(pw);
        return UV_EPIPE;
    }
    return 0;
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    static __thread char slab[65536];
    buf->base = slab;
    buf->len = sizeof(slab);
}

static void relay_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct tp_tun *t = s->data;
    uv_tcp_t *to = s == (uv_stream_t *)&t->client ? &t->upstream : &t->client;

    if (nread == 0 || t->closing > 0)
        return;
    if (nread < 0 || send_bytes(t, to, buf->base, (size_t)nread) != 0)
        tun_close(t);
}

static void refuse(struct tp_tun *t)
{
    static const char msg[] = "HTTP/1.1 403 Forbidden\r\n"
                              "Content-Length: 0\r\nConnection: close\r\n\r\n";
    pthread_mutex_lock(&t->tp->mu);
    t->tp->refused++;
    pthread_mutex_unlock(&t->tp->mu);
    uv_read_stop((uv_stream_t *)&t->client);
    t->close_after = true; /* write_cb closes */
    if (send_bytes(t, &t->client, msg, sizeof(msg) - 1) != 0)
        tun_close(t);
}

static void connect_cb(uv_connect_t *req, int status)
{
    static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
    struct tp_tun *t = req->data;
    char *end;
    size_t used;

    if (t->closing > 0)
        return;
    if (status < 0) {
        tun_close(t);
        return;
    }
    pthread_mutex_lock(&t->tp->mu);
    t->tp->tunnels++;
    pthread_mutex_unlock(&t->tp->mu);
    t->connected = true;
    end = memmem(t->head, t->head_len, "\r\n\r\n", 4);
    used = (size_t)(end - t->head) + 4;
    if (send_bytes(t, &t->client, ok, sizeof(ok) - 1) != 0 ||
        send_bytes(t, &t->upstream, t->head + used, t->head_len - used) != 0) {
        tun_close(t);
        return;
    }
    uv_read_start((uv_stream_t *)&t->client, alloc_cb, relay_cb);
    uv_read_start((uv_stream_t *)&t->upstream, alloc_cb, relay_cb);
}

/* Parses "CONNECT host:port HTTP/1.x". Returns the port or -1. */
static int parse_connect(const char *h, size_t len)
{
    static const char *const hosts[] = {"127.0.0.1:", "localhost:", "[::1]:"};
    const char *p;
    long port = 0;

    if (len < 8 || memcmp(h, "CONNECT ", 8) != 0)
        return -1;
    h += 8;
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(hosts[i]);
        if (strncmp(h, hosts[i], n) == 0) {
            p = h + n;
            while (*p >= '0' && *p <= '9' && port < 65536)
                port = port * 10 + (*p++ - '0');
            if (*p == ' ' && port > 0 && port < 65536)
                return (int)port;
            return -1;
        }
    }
    return -1;
}

static void head_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct tp_tun *t = s->data;
    struct sockaddr_in addr;
    int port;

    if (nread == 0 || t->closing > 0)
        return;
    if (nread < 0 || t->head_len + (size_t)nread >= sizeof(t->head)) {
        tun_close(t);
        return;
    }
    memcpy(t->head + t->head_len, buf->base, (size_t)nread);
    t->head_len += (size_t)nread;
    t->head[t->head_len] = '\0';
    if (memmem(t->head, t->head_len, "\r\n\r\n", 4) == NULL)
        return;
    uv_read_stop(s);
    port = parse_connect(t->head, t->head_len);
    if (port < 0) {
        refuse(t);
        return;
    }
    uv_tcp_init(&t->tp->loop, &t->upstream);
    t->upstream.data = t;
    t->upstream_open = true;
    uv_ip4_addr("127.0.0.1", port, &addr);
    t->connect.data = t;
    if (uv_tcp_connect(&t->connect, &t->upstream,
                       (const struct sockaddr *)&addr, connect_cb) != 0)
        tun_close(t);
}

static void on_connection(uv_stream_t *server, int status)
{
    struct tp *tp = server->data;
    struct tp_tun *t;

    if (status < 0)
        return;
    t = cmn_calloc(1, sizeof(*t));
    if (t == NULL)
        return;
    t->tp = tp;
    uv_tcp_init(&tp->loop, &t->client);
    t->client.data = t;
    t->next = tp->tuns;
    if (tp->tuns != NULL)
        tp->tuns->prev = t;
    tp->tuns = t;
    if (uv_accept(server, (uv_stream_t *)&t->client) != 0) {
        tun_close(t);
        return;
    }
    uv_read_start((uv_stream_t *)&t->client, alloc_cb, head_read_cb);
}

static void stop_async_cb(uv_async_t *a)
{
    struct tp *tp = a->data;
    while (tp->tuns != NULL)
        tun_close(tp->tuns);
    uv_close((uv_handle_t *)&tp->server, NULL);
    uv_close((uv_handle_t *)&tp->stop_async, NULL);
}

static void *proxy_main(void *arg)
{
    struct tp *tp = arg;
    uv_run(&tp->loop, UV_RUN_DEFAULT);
    return NULL;
}

int tp_start(struct tp **out)
{
    struct tp *tp = cmn_calloc(1, sizeof(*tp));
    int rc;

    *out = NULL;
    if (tp == NULL)
        return UV_ENOMEM;
    rc = uv_loop_init(&tp->loop);
    if (rc != 0) {
        cmn_free(tp);
        return rc;
    }
    pthread_mutex_init(&tp->mu, NULL);
    rc = ti__listen(&tp->loop, &tp->server, on_connection, &tp->port);
    tp->server.data = tp;
    if (rc == 0) {
        uv_async_init(&tp->loop, &tp->stop_async, stop_async_cb);
        tp->stop_async.data = tp;
        rc = ti__thread_start(&tp->thread, proxy_main, tp);
        if (rc != 0)
            uv_close((uv_handle_t *)&tp->stop_async, NULL);
    }
    if (rc != 0) {
        uv_close((uv_handle_t *)&tp->server, NULL);
        uv_run(&tp->loop, UV_RUN_DEFAULT);
        uv_loop_close(&tp->loop);
        pthread_mutex_destroy(&tp->mu);
        cmn_free(tp);
        return rc;
    }
    snprintf(tp->url, sizeof(tp->url), "http://127.0.0.1:%d", tp->port);
    *out = tp;
    return 0;
}

void tp_stop(struct tp *tp)
{
    if (tp == NULL)
        return;
    uv_async_send(&tp->stop_async);
    pthread_join(tp->thread, NULL);
    uv_loop_close(&tp->loop);
    pthread_mutex_destroy(&tp->mu);
    cmn_free(tp);
}

int tp_port(const struct tp *tp)
{
    return tp->port;
}

const char *tp_url(const struct tp *tp)
{
    return tp->url;
}

uint64_t tp_tunnel_count(struct tp *tp)
{
    uint64_t n;
    pthread_mutex_lock(&tp->mu);
    n = tp->tunnels;
    pthread_mutex_unlock(&tp->mu);
    return n;
}

uint64_t tp_refused_count(struct tp *tp)
{
    uint64_t n;
    pthread_mutex_lock(&tp->mu);
    n = tp->refused;
    pthread_mutex_unlock(&tp->mu);
    return n;
}
