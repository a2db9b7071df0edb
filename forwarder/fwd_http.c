/*
 * fwd_http.c - the forwarder's transport: one libcurl multi handle driven
 * by the libuv loop, after curl's docs/examples/multi-uv.c (STYLE.md rule
 * 14). CURLMOPT_SOCKETFUNCTION maps each curl socket to a uv_poll_t,
 * CURLMOPT_TIMERFUNCTION to one uv_timer_t, and every
 * curl_multi_socket_action is followed by draining curl_multi_info_read.
 *
 * Invariants: a socket context (struct fwd_sock) is freed only in its
 * close_cb; nothing here blocks the loop (curl's threaded resolver does
 * DNS; fwd__http_init checks it is present). The API key only ever goes
 * into a request header, never into a URL or a log line.
 */
#include <string.h>

#include "fwd_internal.h"

/* ------------------------------------------------------------------------
 * Loop <-> curl glue
 */

static void check_multi_info(struct fwd *f)
{
    CURLMsg *msg;
    int pending;

    while ((msg = curl_multi_info_read(f->multi, &pending)) != NULL) {
        struct fwd_txn *t = NULL;
        long status = 0;
        CURLcode res;

        if (msg->msg != CURLMSG_DONE)
            continue;
        res = msg->data.result;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
        curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
        curl_multi_remove_handle(f->multi, msg->easy_handle);
        fwd__txn_done(f, t, status, res);
    }
}

static void sock_close_cb(uv_handle_t *h)
{
    struct fwd_sock *s = h->data;
    struct fwd *f = s->f;

    cmn_free(s);
    fwd__handle_closed(f);
}

static void sock_close(struct fwd_sock *s)
{
    struct fwd *f = s->f;

    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        f->socks = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    s->next = s->prev = NULL;
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, sock_close_cb);
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
    struct fwd_sock *s = h->data;
    struct fwd *f = s->f;
    int flags = 0, running;

    /* libuv reports an error on the socket (EPOLLERR, e.g. a reset) as
     * status < 0 and stops watching. Let curl find it by reading and
     * writing: on a reused connection that died before any reply (a stale
     * keep-alive, as after a Lambda freeze) curl then retries at once on a
     * fresh connection; CURL_CSELECT_ERR alone would fail the request
     * instead ("select/poll returned error"). */
    if (status < 0)
        flags = CURL_CSELECT_IN | CURL_CSELECT_OUT;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(f->multi, s->fd, flags, &running);
    check_multi_info(f);
}

static int socket_cb(CURL *easy, curl_socket_t fd, int action, void *userp,
                     void *socketp)
{
    struct fwd *f = userp;
    struct fwd_sock *s = socketp;
    int events = 0;

    if (action == CURL_POLL_REMOVE) {
        if (s != NULL) {
            curl_multi_assign(f->multi, fd, NULL);
            sock_close(s);
        }
        return 0;
    }
    if (s == NULL) {
        s = cmn_calloc(1, sizeof(*s));
        if (s == NULL)
            return -1; /* curl fails the transfer */
        if (uv_poll_init_socket(f->loop, &s->poll, fd) != 0) {
            cmn_free(s);
            return -1;
        }
        s->poll.data = s;
        s->f = f;
        s->fd = fd;
        s->next = f->socks;
        if (f->socks != NULL)
            f->socks->prev = s;
        f->socks = s;
        f->handles_open++;
        curl_multi_assign(f->multi, fd, s);
    }
    if (action != CURL_POLL_OUT)
        events |= UV_READABLE;
    if (action != CURL_POLL_IN)
        events |= UV_WRITABLE;
    uv_poll_start(&s->poll, events, poll_cb);
    return 0;
}

static void curl_timer_cb(uv_timer_t *h)
{
    struct fwd *f = h->data;
    int running;

    curl_multi_socket_action(f->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_multi_info(f);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct fwd *f = userp;

    if (timeout_ms < 0)
        uv_timer_stop(&f->curl_timer);
    else
        uv_timer_start(&f->curl_timer, curl_timer_cb, (uint64_t)timeout_ms, 0);
    return 0;
}

int fwd__http_init(struct fwd *f)
{
    curl_version_info_data *vi = curl_version_info(CURLVERSION_NOW);

    if (!(vi->features & CURL_VERSION_ASYNCHDNS))
        CMN_LOGW(FWD_COMP,
                 "libcurl %s has no asynchronous resolver: DNS "
                 "lookups may block the loop",
                 vi->version);
    f->multi = curl_multi_init();
    if (f->multi == NULL)
        return UV_ENOMEM;
    curl_multi_setopt(f->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(f->multi, CURLMOPT_SOCKETDATA, f);
    curl_multi_setopt(f->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(f->multi, CURLMOPT_TIMERDATA, f);
    curl_multi_setopt(f->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    return 0;
}

void fwd__http_shutdown(struct fwd *f)
{
    if (f->multi != NULL) {
        /* curl reports CURL_POLL_REMOVE for the sockets it closes here */
        curl_multi_cleanup(f->multi);
        f->multi = NULL;
    }
    while (f->socks != NULL)
        sock_close(f->socks);
}

/* ------------------------------------------------------------------------
 * Requests
 */

static size_t discard_cb(char *p, size_t size, size_t n, void *data)
{
    return size * n;
}

static int add_header(struct curl_slist **list, const char *name,
                      const char *value)
{
    struct cmn_buf b;
    struct curl_slist *l;

    cmn_buf_init(&b, 8192);
    if (cmn_buf_printf(&b, "%s: %s", name, value) != 0 ||
        cmn_buf_append(&b, "", 1) != 0) {
        cmn_buf_free(&b);
        return UV_ENOMEM;
    }
    l = curl_slist_append(*list, b.p);
    cmn_wipe(b.p, b.len); /* the DD-Api-Key line */
    cmn_buf_free(&b);
    if (l == NULL)
        return UV_ENOMEM;
    *list = l;
    return 0;
}

static int build_headers(struct fwd_txn *t)
{
    const struct fwd_payload *p = t->warmup ? NULL : t->body->p;
    struct curl_slist **h = &t->headers;
    int rc = 0;

    rc |= add_header(h, "DD-Api-Key", t->ep->keys[t->key]);
    rc |= add_header(h, "DD-Agent-Version", CMN_AGENT_VERSION);
    if (p != NULL) {
        rc |= add_header(h, "Content-Type", p->content_type);
        rc |= add_header(h, "Content-Encoding", p->content_encoding);
        if (p->protobuf)
            rc |= add_header(h, "DD-Agent-Payload", FWD_AGENT_PAYLOAD_VERSION);
        /* no 100-continue round trip on large bodies */
        rc |= add_header(h, "Expect", "");
    }
    return rc != 0 ? UV_ENOMEM : 0;
}

static int build_url(struct fwd_txn *t)
{
    const char *route = t->warmup ? "/api/v1/validate" : t->body->p->route;
    struct cmn_buf b;

    cmn_buf_init(&b, 16384);
    if (cmn_buf_printf(&b, "%s%s", t->ep->url, route) != 0 ||
        cmn_buf_append(&b, "", 1) != 0) {
        cmn_buf_free(&b);
        return UV_ENOMEM;
    }
    t->url = cmn_buf_steal(&b, NULL);
    return 0;
}

static void set_tls(const struct fwd_config *cfg, CURL *e)
{
    long v = CURL_SSLVERSION_TLSv1_2;

    switch (cfg->min_tls_version) {
    case 10:
        v = CURL_SSLVERSION_TLSv1_0;
        break;
    case 11:
        v = CURL_SSLVERSION_TLSv1_1;
        break;
    case 13:
        v = CURL_SSLVERSION_TLSv1_3;
        break;
    default:
        break;
    }
    curl_easy_setopt(e, CURLOPT_SSLVERSION, v);
    if (cfg->skip_ssl_validation) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (cfg->ca_file != NULL)
        curl_easy_setopt(e, CURLOPT_CAINFO, cfg->ca_file);
}

static void set_proxy(const struct fwd_config *cfg, const char *url, CURL *e)
{
    bool https = strncmp(url, "https://", 8) == 0;
    const char *proxy = https ? cfg->proxy_https : cfg->proxy_http;

    /* "" disables curl's own reading of the proxy environment: the
     * configuration (which already fell back to it) is the only source */
    curl_easy_setopt(e, CURLOPT_PROXY, proxy != NULL ? proxy : "");
    curl_easy_setopt(e, CURLOPT_NOPROXY,
                     cfg->no_proxy != NULL ? cfg->no_proxy : "");
}

int fwd__http_send(struct fwd *f, struct fwd_txn *t)
{
    const struct fwd_config *cfg = &f->cfg;
    CURL *e;
    int rc;

    rc = build_url(t);
    if (rc == 0)
        rc = build_headers(t);
    if (rc != 0)
        goto out_release;
    e = curl_easy_init();
    if (e == NULL) {
        rc = UV_ENOMEM;
        goto out_release;
    }
    t->easy = e;
    t->errbuf[0] = '\0';
    curl_easy_setopt(e, CURLOPT_URL, t->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)t);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "datadog-agent/" CMN_AGENT_VERSION);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard_cb);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(cfg->timeout_s * 1000));
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    if (t->warmup) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, t->body->p->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)t->body->p->len);
    }
    set_tls(cfg, e);
    set_proxy(cfg, t->url, e);
    if (curl_multi_add_handle(f->multi, e) != CURLM_OK) {
        rc = UV_ENOMEM;
        goto out_release;
    }
    return 0;

out_release:
    fwd__http_release(t);
    return rc;
}

void fwd__http_cancel(struct fwd *f, struct fwd_txn *t)
{
    if (t->easy != NULL && f->multi != NULL)
        curl_multi_remove_handle(f->multi, t->easy);
}

void fwd__http_release(struct fwd_txn *t)
{
    if (t->easy != NULL)
        curl_easy_cleanup(t->easy);
    t->easy = NULL;
    /* never called through the table before libcurl is loaded */
    if (t->headers != NULL)
        curl_slist_free_all(t->headers);
    t->headers = NULL;
    cmn_free(t->url);
    t->url = NULL;
}
