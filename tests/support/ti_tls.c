/*
 * ti_tls.c - a TLS front for a loopback HTTP server: socat OPENSSL-LISTEN
 * with the test certificates (tests/support/certs), spawned with
 * posix_spawnp in its own process group so that tt_stop ends socat and its
 * per-connection children together.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "intake.h"

extern char **environ;

/* An ephemeral port that was free a moment ago (socat binds it next). */
static int free_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

    if (fd < 0)
        return -1;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static bool can_connect(int port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok;

    if (fd < 0)
        return false;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

int tt_start(int backend_port, struct tt *out)
{
    char listen[1024], target[64];
    char *argv[] = {"socat", listen, target, NULL};
    posix_spawnattr_t attr;
    posix_spawn_file_actions_t fa;
    int rc, status;

    memset(out, 0, sizeof(*out));
    out->port = free_port();
    if (out->port < 0)
        return UV_EADDRINUSE;
    snprintf(listen, sizeof(listen),
             "OPENSSL-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork,verify=0,"
             "cert=%s/server.pem,key=%s/server.key",
             out->port, TI_CERT_DIR, TI_CERT_DIR);
    snprintf(target, sizeof(target), "TCP:127.0.0.1:%d", backend_port);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
    /* socat logs every failed handshake; tests provoke some on purpose */
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    rc = posix_spawnp(&out->pid, "socat", &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc != 0)
        return -rc;
    snprintf(out->url, sizeof(out->url), "https://127.0.0.1:%d", out->port);
    for (int i = 0; i < 500; i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        if (can_connect(out->port))
            return 0;
        if (waitpid(out->pid, &status, WNOHANG) == out->pid) {
            out->pid = 0;
            return UV_ESRCH;
        }
        nanosleep(&ts, NULL);
    }
    tt_stop(out);
    return UV_ETIMEDOUT;
}

void tt_stop(struct tt *tt)
{
    int status;

    if (tt->pid <= 0)
        return;
    kill(-tt->pid, SIGTERM);
    while (waitpid(tt->pid, &status, 0) < 0 && errno == EINTR)
        ;
    tt->pid = 0;
}
