/*
 * md_server.h - a fake GCP metadata server for the serverless-init tests:
 * HTTP/1.0 on 127.0.0.1:<ephemeral>, its own thread, blocking sockets.
 * It answers GET /computeMetadata/v1/{instance/id, instance/region,
 * project/project-id} with the configured bodies, but only when the request
 * carries "Metadata-Flavor: Google" (403 otherwise, as GCP does). A path
 * listed in `hang` is accepted and never answered. Header-only (static
 * functions) so each test file carries its own copy.
 */
#ifndef SINIT_TEST_MD_SERVER_H
#define SINIT_TEST_MD_SERVER_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

struct mds {
    int fd;
    int port;
    pthread_t th;
    atomic_bool stop;
    atomic_int requests;    /* requests read */
    atomic_int with_flavor; /* ... carrying Metadata-Flavor: Google */
    const char *id, *region, *project; /* bodies */
    const char *hang;                  /* path never answered, or NULL */
    int held[16];                      /* hung connections, closed at stop */
    int nheld;
};

static inline void mds__serve(struct mds *s, int c)
{
    char buf[4096];
    size_t n = 0;
    while (n < sizeof(buf) - 1) {
        struct pollfd p = {c, POLLIN, 0};
        if (poll(&p, 1, 1000) <= 0)
            break;
        ssize_t r = read(c, buf + n, sizeof(buf) - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        buf[n] = '\0';
        if (strstr(buf, "\r\n\r\n"))
            break;
    }
    buf[n] = '\0';
    atomic_fetch_add(&s->requests, 1);
    bool flavor = strcasestr(buf, "\r\nMetadata-Flavor: Google\r\n") != NULL;
    if (flavor)
        atomic_fetch_add(&s->with_flavor, 1);
    const char *body = NULL;
    if (strncmp(buf, "GET /computeMetadata/v1/instance/id ", 36) == 0)
        body = s->id;
    else if (strncmp(buf, "GET /computeMetadata/v1/instance/region ", 40) == 0)
        body = s->region;
    else if (strncmp(buf, "GET /computeMetadata/v1/project/project-id ", 43) ==
             0)
        body = s->project;
    if (s->hang && strncmp(buf + 4, s->hang, strlen(s->hang)) == 0 &&
        buf[4 + strlen(s->hang)] == ' ' && s->nheld < 16) {
        s->held[s->nheld++] = c;
        return;
    }
    char out[4096];
    int len;
    if (!flavor)
        len = snprintf(out, sizeof(out), "HTTP/1.0 403 Forbidden\r\n\r\n");
    else if (body == NULL)
        len = snprintf(out, sizeof(out), "HTTP/1.0 404 Not Found\r\n\r\n");
    else
        len = snprintf(out, sizeof(out),
                       "HTTP/1.0 200 OK\r\nMetadata-Flavor: Google\r\n"
                       "Content-Type: application/text\r\n\r\n%s",
                       body);
    if (write(c, out, (size_t)len) < 0) {
        /* the client gave up: nothing to do */
    }
    close(c);
}

static inline void *mds__thread(void *arg)
{
    struct mds *s = arg;
    while (!atomic_load(&s->stop)) {
        struct pollfd p = {s->fd, POLLIN, 0};
        if (poll(&p, 1, 20) <= 0)
            continue;
        int c = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC);
        if (c >= 0)
            mds__serve(s, c);
    }
    return NULL;
}

/* Starts the server; returns 0 or -1. */
static inline int mds_start(struct mds *s)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s->fd < 0 || bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(s->fd, 16) != 0 ||
        getsockname(s->fd, (struct sockaddr *)&sa, &sl) != 0)
        return -1;
    s->port = ntohs(sa.sin_port);
    atomic_store(&s->stop, false);
    return pthread_create(&s->th, NULL, mds__thread, s) == 0 ? 0 : -1;
}

static inline void mds_stop(struct mds *s)
{
    atomic_store(&s->stop, true);
    pthread_join(s->th, NULL);
    for (int i = 0; i < s->nheld; i++)
        close(s->held[i]);
    close(s->fd);
}

#endif
