/*
 * fwd_http.c - the forwarder's transport: libcurl loaded on the thread
 * pool, one libcurl multi handle driven by the libuv loop, the requests,
 * and the warm start. The multi handle follows curl's
 * docs/examples/multi-uv.c (STYLE.md rule 14). CURLMOPT_SOCKETFUNCTION maps
 * each curl socket to a uv_poll_t, CURLMOPT_TIMERFUNCTION to one uv_timer_t,
 * and every curl_multi_socket_action is followed by draining
 * curl_multi_info_read.
 *
 * Invariants: a socket context (struct fwd_sock) is freed only in its
 * close_cb; nothing here blocks the loop (curl's threaded resolver does
 * DNS; fwd__http_init checks it is present). The API key only ever goes
 * into a request header, never into a URL or a log line.
 */
#include <string.h>
#include <strings.h>

#include "fwd_internal.h"

static void warmup_done(struct fwd_txn *t, long status, CURLcode res);

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
        if (t->warmup) {
            warmup_done(t, status, res);
            fwd__maybe_finish_stop(f);
        } else {
            fwd__txn_done(f, t, status, res);
        }
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
    const char *ca = cfg->ca_file != NULL ? cfg->ca_file : fwd__ca_default();
    if (ca != NULL)
        curl_easy_setopt(e, CURLOPT_CAINFO, ca);
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

/* ------------------------------------------------------------------------
 * Start-up: libcurl on the thread pool, the warm start, the warnings
 */

bool fwd__url_is_plain_remote(const char *url)
{
    static const char *const loopback[] = {"localhost", "[::1]", "127."};
    const char *host = url + 7;

    if (strncasecmp(url, "http://", 7) != 0)
        return false;
    for (size_t i = 0; i < sizeof(loopback) / sizeof(loopback[0]); i++) {
        size_t n = strlen(loopback[i]);
        if (strncasecmp(host, loopback[i], n) != 0)
            continue;
        /* a whole host: "localhost.example.com" or "127.evil.com" is not
         * loopback; 127.x.y.z must be digits and dots */
        const char *p = host + n;
        if (loopback[i][n - 1] == '.')
            p += strspn(p, "0123456789.");
        if (*p == '\0' || *p == ':' || *p == '/')
            return false;
    }
    return true;
}

void fwd__http_warn_insecure(const struct fwd_config *cfg)
{
    if (cfg->skip_ssl_validation && cfg->nendpoints > 0)
        CMN_LOGW(FWD_COMP, "TLS certificate verification is off "
                           "(DD_SKIP_SSL_VALIDATION): the intake's identity "
                           "is not checked");
    for (size_t i = 0; i < cfg->nendpoints; i++) {
        if (fwd__url_is_plain_remote(cfg->endpoints[i].url))
            CMN_LOGW(FWD_COMP,
                     "intake URL %s is plain http:// to a host that is not "
                     "loopback: the API key and the payloads travel "
                     "unencrypted",
                     cfg->endpoints[i].url);
    }
}

/* One GET /api/v1/validate per endpoint with a key, so the first payload
 * finds the connection (DNS, TCP, TLS) already made. */
static void warm_start(struct fwd *f)
{
    for (size_t i = 0; i < f->neps; i++) {
        struct fwd_ep *ep = &f->eps[i];
        struct fwd_txn *t;

        if (ep->nkeys == 0)
            continue;
        t = cmn_calloc(1, sizeof(*t));
        if (t == NULL)
            return; /* optional: nothing waits for it */
        t->f = f;
        t->ep = ep;
        t->warmup = true;
        if (fwd__http_send(f, t) != 0) {
            cmn_free(t);
            continue;
        }
        ep->warmup = t;
    }
}

static void warmup_done(struct fwd_txn *t, long status, CURLcode res)
{
    char red[16];

    t->ep->warmup = NULL;
    fwd__redact(t->ep->keys[t->key], red);
    if (res != CURLE_OK)
        CMN_LOGD(FWD_COMP, "warm start to %s failed: %s", t->ep->url,
                 t->errbuf[0] ? t->errbuf : curl_easy_strerror(res));
    else if (status == 403)
        CMN_LOGW(FWD_COMP, "API key %s rejected by %s/api/v1/validate", red,
                 t->ep->url);
    else
        CMN_LOGD(FWD_COMP, "warm start to %s done (HTTP %ld)", t->ep->url,
                 status);
    fwd__http_release(t);
    cmn_free(t);
}

void fwd__http_cancel_warmups(struct fwd *f)
{
    for (size_t i = 0; i < f->neps; i++) {
        struct fwd_txn *t = f->eps[i].warmup;
        if (t == NULL)
            continue;
        fwd__http_cancel(f, t);
        fwd__http_release(t);
        cmn_free(t);
        f->eps[i].warmup = NULL;
    }
}

/* Thread pool: the blocking part of start-up (see fwd_curl.c). */
static void load_work(uv_work_t *req)
{
    int rc = fwd__curl_load(); /* the result is read again in load_after */
    (void)rc;
}

/* Loop thread, once libcurl is loaded (or not). load_req counts as an open
 * handle so the stop callback, and with it fwd_destroy, waits for it. */
static void load_after(uv_work_t *req, int status)
{
    struct fwd *f = req->data;
    int lrc = status != 0 ? status : fwd__curl_load();
    if (lrc == 0)
        lrc = fwd__curl_global_init();
    int rc = lrc;

    f->loading = false;
    cmn_checkpoint_log(FWD_COMP, "load", "libcurl",
                       cmn_mono_ns() - f->load_begin_ns);
    if (f->state == FWD_RUNNING || f->state == FWD_STOPPING) {
        if (rc == 0)
            rc = fwd__http_init(f);
        if (rc == 0) {
            f->http_ready = true;
            CMN_LOGD(FWD_COMP, "libcurl loaded: %s (%s)",
                     fwd__curl_loaded_name(),
                     curl_version_info(CURLVERSION_NOW)->version);
            if (f->cfg.warm_start && f->state == FWD_RUNNING)
                warm_start(f);
            fwd__loaded(f, true);
        } else {
            CMN_LOGE(FWD_COMP,
                     "cannot use libcurl (%s): payloads cannot be sent and "
                     "are dropped",
                     lrc != 0 && status == 0 ? fwd__curl_load_error()
                                             : cmn_strerror(rc));
            fwd__loaded(f, false);
        }
    }
    fwd__handle_closed(f);
}

/* Queues the libcurl load on the thread pool, from fwd_start: as early as
 * possible, since a short job's final flush waits for it. (serverless-init
 * starts the forwarder after it spawned the child, so the load overlaps
 * the child's start; deferring it to the first loop iteration, as before,
 * only made the flush wait longer: measured in bench/coldstart.) */
static void load_kick(struct fwd *f)
{
    f->load_begin_ns = cmn_mono_ns();
    fwd__curl_choose();
    f->load_req.data = f;
    if (uv_queue_work(f->loop, &f->load_req, load_work, load_after) != 0) {
        CMN_LOGE(FWD_COMP, "cannot queue the libcurl load: payloads are "
                           "dropped");
        fwd__loaded(f, false);
        return;
    }
    f->loading = true;
    f->handles_open++;
}

static void load_kick_cb(uv_timer_t *t)
{
    load_kick(t->data);
}

void fwd__http_load(struct fwd *f)
{
    if (f->cfg.load_on_loop) /* curl_timer is idle until then */
        uv_timer_start(&f->curl_timer, load_kick_cb, 0, 0);
    else
        load_kick(f);
}
