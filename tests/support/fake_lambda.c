/*
 * fake_lambda.c - the fake Lambda Runtime API of fake_lambda.h.
 *
 * One accept thread; one detached thread per connection that reads a
 * request (http_parser), answers it, and reads the next one on the same
 * connection while the client keeps it alive (HTTP/1.1 without
 * "Connection: close", as Lambda's own Go server does), else closes.
 * Requests are not pipelined: each is read after the previous answer.
 * /next blocks its connection thread on the condition variable until a
 * scripted event is queued or the fake stops. fl_stop waits for every
 * connection thread to leave before freeing.
 */
#include "fake_lambda.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <http_parser.h>

#include "common.h"

#define FL_MAX_EVENTS 4096
#define FL_REQ_MAX (64u * 1024)

struct fl {
    int lfd;
    int port;
    char addr[32];
    pthread_t accept_th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping;
    int nthreads; /* connection threads alive */
    int register_status;
    struct fl_info info;
    int tel_port;
    uint64_t next_ns[FL_MAX_NEXT];
    uint64_t next_answered_ns[FL_MAX_NEXT];
    size_t nnext;
    char *events[FL_MAX_EVENTS]; /* owned; shutdowns hold "" + deadline */
    int64_t shutdown_in[FL_MAX_EVENTS]; /* >= 0: a SHUTDOWN, ms from answer */
    int status[FL_MAX_EVENTS];          /* answer status, 0 = 200 */
    size_t nevents, nsent;
    char *post_on_subscribe;
    int post_on_subscribe_status;
    int nconns;                 /* connections accepted */
    int next_conn[FL_MAX_NEXT]; /* connection (1-based) of each /next */
    bool drop_reused;           /* close on a connection's 2nd request */
    bool split_answers;         /* head and body in two writes */
};

/* ------------------------------------------------------------------------
 * Request parsing
 */
struct fl_req {
    char url[256];
    char method[8];
    char hname[128];
    bool in_value;
    char name[256], feature[256], id[128], etype[128];
    char body[8192];
    size_t body_len;
    bool done;
    bool keep; /* the client keeps the connection for another request */
};

static void cpy(char *dst, size_t cap, const char *p, size_t len)
{
    size_t used = strlen(dst);
    if (used + len >= cap)
        len = cap - used - 1;
    memcpy(dst + used, p, len);
    dst[used + len] = '\0';
}

static int on_url(http_parser *hp, const char *at, size_t len)
{
    struct fl_req *r = hp->data;
    cpy(r->url, sizeof(r->url), at, len);
    return 0;
}

static int on_hfield(http_parser *hp, const char *at, size_t len)
{
    struct fl_req *r = hp->data;
    if (r->in_value)
        r->hname[0] = '\0';
    r->in_value = false;
    cpy(r->hname, sizeof(r->hname), at, len);
    return 0;
}

static int on_hvalue(http_parser *hp, const char *at, size_t len)
{
    struct fl_req *r = hp->data;
    r->in_value = true;
    if (strcasecmp(r->hname, "Lambda-Extension-Name") == 0)
        cpy(r->name, sizeof(r->name), at, len);
    else if (strcasecmp(r->hname, "Lambda-Extension-Accept-Feature") == 0)
        cpy(r->feature, sizeof(r->feature), at, len);
    else if (strcasecmp(r->hname, "Lambda-Extension-Identifier") == 0)
        cpy(r->id, sizeof(r->id), at, len);
    else if (strcasecmp(r->hname, "Lambda-Extension-Function-Error-Type") == 0)
        cpy(r->etype, sizeof(r->etype), at, len);
    return 0;
}

static int on_body(http_parser *hp, const char *at, size_t len)
{
    struct fl_req *r = hp->data;
    if (r->body_len + len < sizeof(r->body)) {
        memcpy(r->body + r->body_len, at, len);
        r->body_len += len;
        r->body[r->body_len] = '\0';
    }
    return 0;
}

static int on_done(http_parser *hp)
{
    struct fl_req *r = hp->data;
    r->done = true;
    r->keep = http_should_keep_alive(hp) != 0;
    snprintf(r->method, sizeof(r->method), "%s",
             http_method_str((enum http_method)hp->method));
    return 0;
}

static const http_parser_settings req_settings = {
    .on_url = on_url,
    .on_header_field = on_hfield,
    .on_header_value = on_hvalue,
    .on_body = on_body,
    .on_message_complete = on_done,
};

static bool stopping(struct fl *fl)
{
    pthread_mutex_lock(&fl->mu);
    bool s = fl->stopping;
    pthread_mutex_unlock(&fl->mu);
    return s;
}

static bool read_request(struct fl *fl, int fd, struct fl_req *r)
{
    http_parser hp;
    http_parser_init(&hp, HTTP_REQUEST);
    hp.data = r;
    char buf[4096];
    while (!r->done) {
        /* a kept connection may stay idle: fl_stop must not wait on it */
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int pr = poll(&pfd, 1, 100);
        if (pr == 0 && !stopping(fl))
            continue;
        if (pr <= 0 && !(pr < 0 && errno == EINTR))
            return false;
        if (pr < 0)
            continue;
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        size_t used = http_parser_execute(&hp, &req_settings, buf, (size_t)n);
        if (HTTP_PARSER_ERRNO(&hp) != HPE_OK || used != (size_t)n)
            return r->done;
    }
    return true;
}

static void send_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        len -= (size_t)w;
    }
}

/* keep: the client asked to keep the connection (no "Connection: close"
 * in the answer then). split: the head and the body in two writes. */
static void answer(int fd, bool keep, int status, const char *extra,
                   const char *body, bool split)
{
    /* one write, head and body, as Lambda's Go server flushes its
     * buffered answer */
    char msg[2048];
    int n = snprintf(msg, sizeof(msg),
                     "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n%s"
                     "Content-Length: %zu\r\n%s\r\n%s",
                     status, extra ? extra : "", strlen(body),
                     keep ? "" : "Connection: close\r\n", body);
    if (n <= 0)
        return;
    size_t len = (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1;
    size_t head = split ? (size_t)(strstr(msg, "\r\n\r\n") + 4 - msg) : len;
    send_all(fd, msg, head);
    if (head < len) /* apart: Nagle holds it until the head is acked */
        send_all(fd, msg + head, len - head);
}

/* ------------------------------------------------------------------------
 * Telemetry client
 */
static int post_to(int port, const char *json)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    char head[256];
    size_t len = strlen(json);
    int n = snprintf(head, sizeof(head),
                     "POST / HTTP/1.1\r\nHost: sandbox.localdomain:%d\r\n"
                     "Content-Type: application/json\r\nContent-Length: "
                     "%zu\r\n\r\n",
                     port, len);
    send_all(fd, head, (size_t)n);
    send_all(fd, json, len);
    char buf[512];
    size_t got = 0;
    while (got < sizeof(buf) - 1) {
        ssize_t r = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
        if (r <= 0)
            break;
        got += (size_t)r;
        buf[got] = '\0';
        if (strstr(buf, "\r\n\r\n") != NULL)
            break;
    }
    buf[got] = '\0';
    close(fd);
    int status = -1;
    if (strncmp(buf, "HTTP/1.1 ", 9) == 0)
        status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
    return status;
}

/* ------------------------------------------------------------------------
 * Handlers
 */
/* Copies a NUL-terminated string, cut to fit. */
static void put(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static bool split_answers(struct fl *fl)
{
    pthread_mutex_lock(&fl->mu);
    bool v = fl->split_answers;
    pthread_mutex_unlock(&fl->mu);
    return v;
}

static void handle_next(struct fl *fl, int fd, int conn, const struct fl_req *r)
{
    pthread_mutex_lock(&fl->mu);
    size_t i = fl->nnext;
    if (i < FL_MAX_NEXT) {
        fl->next_conn[i] = conn;
        fl->next_ns[fl->nnext++] = cmn_mono_ns();
    }
    put(fl->info.next_id, sizeof(fl->info.next_id), r->id);
    pthread_cond_broadcast(&fl->cv);
    while (!fl->stopping && fl->nsent >= fl->nevents)
        pthread_cond_wait(&fl->cv, &fl->mu);
    if (fl->stopping) {
        pthread_mutex_unlock(&fl->mu);
        return;
    }
    size_t e = fl->nsent++;
    int status = fl->status[e] ? fl->status[e] : 200;
    char body[1024];
    if (fl->shutdown_in[e] >= 0) {
        int64_t dl = (int64_t)(cmn_wall_ns() / 1000000u) + fl->shutdown_in[e];
        snprintf(body, sizeof(body),
                 "{\"eventType\":\"SHUTDOWN\",\"shutdownReason\":\"SPINDOWN\","
                 "\"deadlineMs\":%lld}",
                 (long long)dl);
    } else {
        snprintf(body, sizeof(body), "%s", fl->events[e]);
    }
    pthread_mutex_unlock(&fl->mu);
    answer(fd, r->keep, status,
           status == 200 ? "Lambda-Extension-Event-Identifier: ev\r\n" : NULL,
           body, split_answers(fl));
    pthread_mutex_lock(&fl->mu);
    if (i < FL_MAX_NEXT)
        fl->next_answered_ns[i] = cmn_mono_ns();
    pthread_mutex_unlock(&fl->mu);
}

static void handle(struct fl *fl, int fd, int conn, const struct fl_req *r)
{
    if (strcmp(r->url, "/2020-01-01/extension/event/next") == 0) {
        handle_next(fl, fd, conn, r);
        return;
    }
    bool split = split_answers(fl);
    pthread_mutex_lock(&fl->mu);
    struct fl_info *in = &fl->info;
    if (strcmp(r->url, "/2020-01-01/extension/register") == 0) {
        in->nregister++;
        in->register_ns = cmn_mono_ns();
        put(in->ext_name, sizeof(in->ext_name), r->name);
        put(in->ext_feature, sizeof(in->ext_feature), r->feature);
        put(in->reg_body, sizeof(in->reg_body), r->body);
        int st = fl->register_status ? fl->register_status : 200;
        pthread_mutex_unlock(&fl->mu);
        if (st == 200)
            answer(fd, r->keep, 200,
                   "Lambda-Extension-Identifier: " FL_EXT_ID "\r\n",
                   "{\"functionName\":\"orders\",\"functionVersion\":"
                   "\"$LATEST\",\"handler\":\"app.handler\","
                   "\"accountId\":\"123456789012\"}",
                   split);
        else
            answer(fd, r->keep, st, NULL,
                   "{\"errorMessage\":\"scripted failure\","
                   "\"errorType\":\"Extension.Scripted\"}",
                   split);
        return;
    }
    if (strcmp(r->url, "/2022-07-01/telemetry") == 0) {
        in->nsubscribe++;
        put(in->sub_body, sizeof(in->sub_body), r->body);
        put(in->sub_id, sizeof(in->sub_id), r->id);
        const char *p = strstr(r->body, "sandbox.localdomain:");
        uint64_t port = 0;
        if (p != NULL) {
            size_t nd = strspn(p + 20, "0123456789");
            if (cmn_parse_u64(cmn_slice(p + 20, nd), 65535, &port) != 0)
                port = 0;
        }
        char *post = fl->post_on_subscribe;
        fl->post_on_subscribe = NULL;
        pthread_mutex_unlock(&fl->mu);
        answer(fd, r->keep, 200, NULL, "\"OK\"", split);
        /* at once, like Lambda may: the listener must already be bound */
        int st = post != NULL ? post_to((int)port, post) : 0;
        free(post);
        pthread_mutex_lock(&fl->mu);
        fl->tel_port = (int)port;
        fl->post_on_subscribe_status = st;
        pthread_cond_broadcast(&fl->cv);
        pthread_mutex_unlock(&fl->mu);
        return;
    }
    bool init = strcmp(r->url, "/2020-01-01/extension/init/error") == 0;
    bool ex = strcmp(r->url, "/2020-01-01/extension/exit/error") == 0;
    if (init)
        in->ninit_error++;
    if (ex)
        in->nexit_error++;
    if (init || ex)
        put(in->error_type, sizeof(in->error_type), r->etype);
    pthread_mutex_unlock(&fl->mu);
    answer(fd, r->keep, init || ex ? 202 : 404, NULL, "{}", split);
}

struct conn_arg {
    struct fl *fl;
    int fd;
    int conn; /* 1-based, in accept order */
};

static void *conn_main(void *arg)
{
    struct conn_arg *ca = arg;
    struct fl *fl = ca->fl;
    struct fl_req *r = malloc(sizeof(*r));
    for (int nreq = 0; r != NULL; nreq++) {
        memset(r, 0, sizeof(*r));
        if (!read_request(fl, ca->fd, r))
            break;
        pthread_mutex_lock(&fl->mu);
        bool drop = fl->drop_reused && nreq > 0;
        pthread_mutex_unlock(&fl->mu);
        if (drop)
            break; /* as a server that closes an idle connection as the
                      client reuses it: no answer, nothing handled */
        handle(fl, ca->fd, ca->conn, r);
        if (!r->keep)
            break;
    }
    free(r);
    close(ca->fd);
    free(ca);
    pthread_mutex_lock(&fl->mu);
    fl->nthreads--;
    pthread_cond_broadcast(&fl->cv);
    pthread_mutex_unlock(&fl->mu);
    return NULL;
}

static void *accept_main(void *arg)
{
    struct fl *fl = arg;
    for (;;) {
        int fd = accept4(fl->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return NULL; /* fl_stop shut the socket down */
        }
        struct conn_arg *ca = malloc(sizeof(*ca));
        pthread_t th;
        pthread_mutex_lock(&fl->mu);
        fl->nthreads++;
        ca->conn = ++fl->nconns;
        pthread_mutex_unlock(&fl->mu);
        ca->fl = fl;
        ca->fd = fd;
        if (pthread_create(&th, NULL, conn_main, ca) != 0) {
            close(fd);
            free(ca);
            pthread_mutex_lock(&fl->mu);
            fl->nthreads--;
            pthread_mutex_unlock(&fl->mu);
            continue;
        }
        pthread_detach(th);
    }
}

/* ------------------------------------------------------------------------
 * Public
 */
int fl_start(int register_status, struct fl **out)
{
    struct fl *fl = calloc(1, sizeof(*fl));
    if (fl == NULL)
        return -ENOMEM;
    fl->register_status = register_status;
    pthread_mutex_init(&fl->mu, NULL);
    pthread_cond_init(&fl->cv, NULL);
    fl->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sa);
    if (fl->lfd < 0 || bind(fl->lfd, (struct sockaddr *)&sa, sizeof(sa)) ||
        listen(fl->lfd, 64) ||
        getsockname(fl->lfd, (struct sockaddr *)&sa, &sl)) {
        int err = -errno;
        if (fl->lfd >= 0)
            close(fl->lfd);
        free(fl);
        return err;
    }
    fl->port = ntohs(sa.sin_port);
    snprintf(fl->addr, sizeof(fl->addr), "127.0.0.1:%d", fl->port);
    pthread_create(&fl->accept_th, NULL, accept_main, fl);
    *out = fl;
    return 0;
}

void fl_stop(struct fl *fl)
{
    if (fl == NULL)
        return;
    pthread_mutex_lock(&fl->mu);
    fl->stopping = true;
    pthread_cond_broadcast(&fl->cv);
    pthread_mutex_unlock(&fl->mu);
    shutdown(fl->lfd, SHUT_RDWR);
    pthread_join(fl->accept_th, NULL);
    close(fl->lfd);
    pthread_mutex_lock(&fl->mu);
    while (fl->nthreads > 0)
        pthread_cond_wait(&fl->cv, &fl->mu);
    pthread_mutex_unlock(&fl->mu);
    for (size_t i = 0; i < fl->nevents; i++)
        free(fl->events[i]);
    free(fl->post_on_subscribe);
    pthread_mutex_destroy(&fl->mu);
    pthread_cond_destroy(&fl->cv);
    free(fl);
}

const char *fl_addr(const struct fl *fl)
{
    return fl->addr;
}

static void push(struct fl *fl, char *json, int64_t shutdown_in, int status)
{
    pthread_mutex_lock(&fl->mu);
    if (fl->nevents < FL_MAX_EVENTS) {
        fl->events[fl->nevents] = json;
        fl->shutdown_in[fl->nevents] = shutdown_in;
        fl->status[fl->nevents] = status;
        fl->nevents++;
        json = NULL;
    }
    pthread_cond_broadcast(&fl->cv);
    pthread_mutex_unlock(&fl->mu);
    free(json);
}

void fl_push_event(struct fl *fl, const char *json)
{
    push(fl, strdup(json), -1, 0);
}

void fl_push_invoke(struct fl *fl, const char *request_id,
                    int64_t deadline_in_ms)
{
    char buf[512];
    int64_t dl = (int64_t)(cmn_wall_ns() / 1000000u) + deadline_in_ms;
    snprintf(buf, sizeof(buf),
             "{\"eventType\":\"INVOKE\",\"deadlineMs\":%lld,\"requestId\":"
             "\"%s\",\"invokedFunctionArn\":\"arn:aws:lambda:eu-west-1:"
             "123456789012:function:orders\",\"tracing\":{\"type\":"
             "\"X-Amzn-Trace-Id\",\"value\":\"Root=1-5759e988-"
             "bd862e3fe1be46a994272793;Sampled=1\"}}",
             (long long)dl, request_id);
    push(fl, strdup(buf), -1, 0);
}

void fl_push_shutdown(struct fl *fl, int64_t deadline_in_ms)
{
    push(fl, NULL, deadline_in_ms, 0);
}

void fl_push_next_error(struct fl *fl, int status)
{
    push(fl,
         strdup("{\"errorMessage\":\"scripted\","
                "\"errorType\":\"Extension.Scripted\"}"),
         -1, status);
}

size_t fl_wait_next(struct fl *fl, size_t n, uint32_t timeout_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&fl->mu);
    while (fl->nnext < n &&
           pthread_cond_timedwait(&fl->cv, &fl->mu, &ts) != ETIMEDOUT)
        ;
    size_t got = fl->nnext;
    pthread_mutex_unlock(&fl->mu);
    return got;
}

uint64_t fl_next_ns(struct fl *fl, size_t i)
{
    pthread_mutex_lock(&fl->mu);
    uint64_t v = i < fl->nnext ? fl->next_ns[i] : 0;
    pthread_mutex_unlock(&fl->mu);
    return v;
}

int fl_next_conn(struct fl *fl, size_t i)
{
    pthread_mutex_lock(&fl->mu);
    int v = i < fl->nnext ? fl->next_conn[i] : 0;
    pthread_mutex_unlock(&fl->mu);
    return v;
}

int fl_connections(struct fl *fl)
{
    pthread_mutex_lock(&fl->mu);
    int v = fl->nconns;
    pthread_mutex_unlock(&fl->mu);
    return v;
}

void fl_set_drop_reused(struct fl *fl, bool on)
{
    pthread_mutex_lock(&fl->mu);
    fl->drop_reused = on;
    pthread_mutex_unlock(&fl->mu);
}

void fl_set_split_answers(struct fl *fl, bool on)
{
    pthread_mutex_lock(&fl->mu);
    fl->split_answers = on;
    pthread_mutex_unlock(&fl->mu);
}

uint64_t fl_next_answered_ns(struct fl *fl, size_t i)
{
    pthread_mutex_lock(&fl->mu);
    uint64_t v = i < fl->nnext ? fl->next_answered_ns[i] : 0;
    pthread_mutex_unlock(&fl->mu);
    return v;
}

int fl_wait_subscribed(struct fl *fl, uint32_t timeout_ms)
{
    uint64_t end = cmn_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    for (;;) {
        pthread_mutex_lock(&fl->mu);
        int port = fl->tel_port;
        pthread_mutex_unlock(&fl->mu);
        if (port != 0 || cmn_mono_ns() > end)
            return port;
        usleep(1000);
    }
}

int fl_post_telemetry(struct fl *fl, const char *json_array)
{
    int port = fl_wait_subscribed(fl, 5000);
    return port ? post_to(port, json_array) : -1;
}

void fl_set_post_on_subscribe(struct fl *fl, const char *json_array)
{
    pthread_mutex_lock(&fl->mu);
    free(fl->post_on_subscribe);
    fl->post_on_subscribe = strdup(json_array);
    pthread_mutex_unlock(&fl->mu);
}

int fl_post_on_subscribe_status(struct fl *fl)
{
    pthread_mutex_lock(&fl->mu);
    int v = fl->post_on_subscribe_status;
    pthread_mutex_unlock(&fl->mu);
    return v;
}

void fl_get_info(struct fl *fl, struct fl_info *out)
{
    pthread_mutex_lock(&fl->mu);
    *out = fl->info;
    pthread_mutex_unlock(&fl->mu);
}
