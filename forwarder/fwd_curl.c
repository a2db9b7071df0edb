/*
 * fwd_curl.c - loads libcurl at run time, off the loop thread.
 *
 * Why: linking libcurl pulls about 35 shared libraries (OpenSSL, nghttp2,
 * krb5, ldap, ...) into the process, and the dynamic loader maps and
 * relocates all of them before main() runs: tens of milliseconds on a
 * small VM, all of it on serverless-init's critical path to spawning the
 * child. The forwarder needs curl only for its first request, so fwd_start
 * queues fwd__curl_load on the libuv thread pool and the loop carries on;
 * payloads submitted meanwhile wait in the queue.
 *
 * Invariant: fwd__curl is filled completely before fwd__curl_load returns
 * 0; the load runs at most once per process (uv_once). curl_global_init runs
 * once, on the loop thread (fwd__curl_global_init): OpenSSL keeps per-thread
 * state for the thread that initialises it, and a thread-pool thread is
 * never joined before exit, so that state would leak. It is never undone
 * (curl_global_cleanup is not thread-safe; OpenSSL frees its own state at
 * exit).
 */
#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>

#include "fwd_internal.h"

struct fwd_curl_api fwd__curl;

static uv_once_t load_once = UV_ONCE_INIT;
static int load_rc;
static char load_err[512];

#define FWD_LIBCURL "libcurl.so.4"
#define FWD_LIBCURL_ENV "DRAINPIPE_LIBCURL"
/* drainpipe's own libcurl (scripts/build-libcurl.sh), relative to the
 * directory of the running program: bin/../lib/drainpipe in an install
 * prefix and a build tree, extensions/../lib/drainpipe in the Lambda layer.
 * Not on any library path, so a program that links libcurl itself (the
 * Lambda function's runtime) never picks it up. */
#define FWD_LIBCURL_PRIVATE "/../lib/drainpipe/libcurl.so.4"

/* The libraries to try, in order: $DRAINPIPE_LIBCURL alone when set (an
 * explicit choice is not second-guessed); else the private build next to
 * the program, then the system's FWD_LIBCURL. Debian's libcurl links about
 * 30 libraries, and loading them costs several milliseconds and about
 * 8 MiB; the private build links three (bench/README.md). Filled by
 * fwd__curl_choose on the loop thread before the load is queued, so the
 * loading thread never reads the environment or the file system's names. */
static char lib_names[2][512] = {FWD_LIBCURL};
static size_t nlib_names = 1;
static const char *lib_name = lib_names[0]; /* the one loaded or tried */

/* Sets dst (cap bytes) to a then b; false when that does not fit. */
static bool join(char *dst, size_t cap, const char *a, const char *b)
{
    size_t n = 0;
    cmn_fcat(dst, cap, &n, a);
    cmn_fcat(dst, cap, &n, b);
    return n < cap;
}

/* The CA bundle when the configuration names none: $SSL_CERT_FILE (as the
 * Agent, a Go program, and OpenSSL read it), else the first that exists of
 * the distributions' usual bundles (the list of Go's crypto/x509 on Linux):
 * a libcurl built on Debian looks for Debian's path only, which Amazon
 * Linux (the Lambda runtimes) does not have. "" = libcurl's own default. */
static char ca_default[512];

static void choose_ca(void)
{
    static const char *const bundles[] = {
        "/etc/ssl/certs/ca-certificates.crt", /* Debian, Ubuntu, Arch */
        "/etc/pki/tls/certs/ca-bundle.crt",   /* Fedora, RHEL, Amazon Linux */
        "/etc/ssl/ca-bundle.pem",             /* openSUSE */
        "/etc/pki/tls/cacert.pem",            /* OpenELEC */
        "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", /* RHEL 7 */
        "/etc/ssl/cert.pem",                                 /* Alpine */
    };
    const char *v = getenv("SSL_CERT_FILE");
    if (v != NULL && v[0] != '\0' &&
        join(ca_default, sizeof(ca_default), v, ""))
        return;
    ca_default[0] = '\0';
    for (size_t i = 0; i < sizeof(bundles) / sizeof(bundles[0]); i++) {
        if (access(bundles[i], R_OK) == 0) {
            (void)join(ca_default, sizeof(ca_default), bundles[i], "");
            return;
        }
    }
}

const char *fwd__ca_default(void)
{
    return ca_default[0] != '\0' ? ca_default : NULL;
}

static void choose(void)
{
    choose_ca();
    const size_t cap = sizeof(lib_names[0]);
    const char *v = getenv(FWD_LIBCURL_ENV);
    if (v != NULL && v[0] != '\0' && join(lib_names[0], cap, v, ""))
        return; /* nlib_names stays 1 */
    /* the program's directory: /proc/self/exe up to its last '/' */
    char exe[400];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe));
    while (n > 0 && (size_t)n < sizeof(exe) && exe[n - 1] != '/')
        n--;
    nlib_names = 0;
    if (n > 1 && (size_t)n < sizeof(exe)) {
        exe[n - 1] = '\0';
        nlib_names = join(lib_names[0], cap, exe, FWD_LIBCURL_PRIVATE);
    }
    (void)join(lib_names[nlib_names++], cap, FWD_LIBCURL, "");
}

void fwd__curl_choose(void)
{
    /* once per process, as the load: forwarders on two loops may start at
     * once */
    static uv_once_t choose_once = UV_ONCE_INIT;
    uv_once(&choose_once, choose);
}

static void load(void)
{
    /* RTLD_NOW: RTLD_LAZY measured no faster (Debian's libcurl and its
     * dependencies are mapped and relocated either way). */
    void *h = NULL;
    for (size_t i = 0; i < nlib_names && h == NULL; i++) {
        lib_name = lib_names[i];
        /* a private build that is not there: one failed open() */
        if (i + 1 < nlib_names && access(lib_name, F_OK) != 0)
            continue;
        /* announced: the receive threads fault their rings in without
         * waiting for the address-space lock meanwhile (common.h) */
        cmn_mm_rewrite_begin();
        h = dlopen(lib_name, RTLD_NOW | RTLD_LOCAL);
        cmn_mm_rewrite_end();
    }
    if (h == NULL) {
        const char *e = dlerror();
        snprintf(load_err, sizeof(load_err), "%s", e ? e : lib_name);
        load_rc = UV_ENOENT;
        return;
    }
    /* One entry per libcurl function the forwarder calls. */
    static const struct {
        const char *name;
        size_t off;
    } syms[] = {
#define SYM(field, fn) {#fn, offsetof(struct fwd_curl_api, field)}
        SYM(global_init, curl_global_init),
        SYM(global_init_mem, curl_global_init_mem),
        SYM(easy_init, curl_easy_init),
        SYM(easy_setopt, curl_easy_setopt),
        SYM(easy_getinfo, curl_easy_getinfo),
        SYM(easy_cleanup, curl_easy_cleanup),
        SYM(easy_strerror, curl_easy_strerror),
        SYM(multi_init, curl_multi_init),
        SYM(multi_setopt, curl_multi_setopt),
        SYM(multi_add_handle, curl_multi_add_handle),
        SYM(multi_remove_handle, curl_multi_remove_handle),
        SYM(multi_assign, curl_multi_assign),
        SYM(multi_socket_action, curl_multi_socket_action),
        SYM(multi_info_read, curl_multi_info_read),
        SYM(multi_cleanup, curl_multi_cleanup),
        SYM(slist_append, curl_slist_append),
        SYM(slist_free_all, curl_slist_free_all),
        SYM(version_info, curl_version_info),
#undef SYM
    };
    struct fwd_curl_api api;
    for (size_t i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
        void *fn = dlsym(h, syms[i].name);
        if (fn == NULL) {
            snprintf(load_err, sizeof(load_err), "%s: no symbol %s", lib_name,
                     syms[i].name);
            load_rc = UV_ENOSYS;
            return;
        }
        memcpy((char *)&api + syms[i].off, &fn, sizeof(fn));
    }
    fwd__curl = api;
    load_rc = 0;
}

int fwd__curl_load(void)
{
    uv_once(&load_once, load);
    return load_rc;
}

int fwd__curl_global_init(void)
{
    static bool done;

    if (done)
        return 0;
    /* libcurl copies the DD-Api-Key header into its own buffers: they are
     * zeroed when freed, so a core dump holds no key in freed memory. The
     * TLS library's record buffers are outside this (docs/security.md). */
    if (fwd__curl.global_init_mem(CURL_GLOBAL_DEFAULT, cmn_scrub_malloc,
                                  cmn_scrub_free, cmn_scrub_realloc,
                                  cmn_scrub_strdup,
                                  cmn_scrub_calloc) != CURLE_OK) {
        snprintf(load_err, sizeof(load_err), "curl_global_init failed");
        return UV_EINVAL;
    }
    done = true;
    return 0;
}

const char *fwd__curl_load_error(void)
{
    return load_err;
}

const char *fwd__curl_loaded_name(void)
{
    return lib_name;
}
