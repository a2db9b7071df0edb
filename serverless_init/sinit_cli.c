/*
 * sinit_cli.c - the command line of serverless-init: which action, which
 * child argv (spec/pipeline.md §5.1), and the mapping from the child's end
 * to our exit code.
 *
 * Invariant: a parsed argv is always NULL-terminated and owns its strings,
 * so it can be handed to uv_spawn as it is.
 */
#include "sinit.h"

#include <string.h>

static const char usage_text[] =
    "Usage: serverless-init [--] COMMAND [ARGS...]\n"
    "       serverless-init            (sidecar mode: run until SIGTERM)\n"
    "       serverless-init --help | --version\n"
    "\n"
    "Runs COMMAND as a child with a DogStatsD server (UDP 127.0.0.1:8125 by\n"
    "default) bound before the child starts, forwards every signal except\n"
    "SIGCHLD to it, and when it exits drains every metric received to the\n"
    "Datadog intake, then exits with the child's exit code. A single\n"
    "COMMAND argument containing spaces is split on whitespace.\n"
    "\n"
    "Exit codes: the child's exit status; 128+N when the child was killed\n"
    "by signal N (the shell convention; Datadog's serverless-init exits 255\n"
    "there); 127 when COMMAND cannot be found or executed. A bad setting\n"
    "or a listener that cannot bind turns metrics off (one error line) and\n"
    "COMMAND runs anyway; with DRAINPIPE_FAIL_CLOSED=true it exits 1\n"
    "instead, without running COMMAND.\n"
    "\n"
    "Environment (Datadog Agent names): DD_API_KEY, DD_SITE, DD_DD_URL,\n"
    "DD_DOGSTATSD_PORT, DD_DOGSTATSD_SOCKET, DD_ENV, DD_SERVICE, DD_VERSION,\n"
    "DD_TAGS, DD_EXTRA_TAGS, DD_LOG_LEVEL, DD_ENHANCED_METRICS, ...\n"
    "  DRAINPIPE_SHUTDOWN_BUDGET_MS  drain budget after the child exits or\n"
    "                                on SIGTERM (default 9000, 1..600000)\n"
    "  GCE_METADATA_HOST             host:port of the GCP metadata server\n"
    "  DRAINPIPE_FAIL_CLOSED         true: exit 1 on a bad setting (false)\n"
    "  DRAINPIPE_STRIP_API_KEY       true: the child does not get\n"
    "                                DD_API_KEY (false: it inherits it)\n"
    "Without DD_API_KEY nothing is sent: the metrics that would have been\n"
    "sent are shown on stderr (see the local sink settings of lifecycle).\n"
    "A second SIGTERM/SIGINT during the drain exits at once.\n";

const char *sinit_usage(void)
{
    return usage_text;
}

int sinit_exit_code(int64_t exit_status, int term_signal)
{
    if (term_signal > 0)
        return SINIT_EXIT_SIGNAL_BASE + term_signal;
    return (int)(exit_status & 0xff);
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' ||
           c == '\r';
}

void sinit_cli_free(struct sinit_cli *c)
{
    if (c == NULL || c->argv == NULL)
        return;
    for (size_t i = 0; i < c->argc; i++)
        cmn_free(c->argv[i]);
    cmn_free(c->argv);
    c->argv = NULL;
    c->argc = 0;
}

/* Splits s on whitespace into out (argc + 1 slots, NULL-terminated). */
static int split_fields(const char *s, struct sinit_cli *out)
{
    size_t n = 0;
    for (const char *p = s; *p != '\0';) {
        while (is_space(*p))
            p++;
        if (*p == '\0')
            break;
        n++;
        while (*p != '\0' && !is_space(*p))
            p++;
    }
    if (n == 0)
        return UV_EINVAL;
    out->argv = cmn_calloc(n + 1, sizeof(char *));
    if (out->argv == NULL)
        return UV_ENOMEM;
    for (const char *p = s; *p != '\0';) {
        while (is_space(*p))
            p++;
        if (*p == '\0')
            break;
        const char *start = p;
        while (*p != '\0' && !is_space(*p))
            p++;
        out->argv[out->argc] = cmn_strndup(start, (size_t)(p - start));
        if (out->argv[out->argc] == NULL) {
            sinit_cli_free(out);
            return UV_ENOMEM;
        }
        out->argc++;
    }
    return 0;
}

int sinit_cli_parse(int argc, char *const *argv, struct sinit_cli *out)
{
    memset(out, 0, sizeof(*out));
    out->action = SINIT_RUN;
    int first = 1;
    if (argc > 1) {
        if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
            out->action = SINIT_HELP;
            return 0;
        }
        if (strcmp(argv[1], "--version") == 0) {
            out->action = SINIT_VERSION;
            return 0;
        }
        if (strcmp(argv[1], "--") == 0)
            first = 2;
    }
    int n = argc - first;
    if (n <= 0)
        return 0; /* sidecar */
    if (n == 1)
        return split_fields(argv[first], out);
    out->argv = cmn_calloc((size_t)n + 1, sizeof(char *));
    if (out->argv == NULL)
        return UV_ENOMEM;
    for (int i = 0; i < n; i++) {
        out->argv[i] = cmn_strdup(argv[first + i]);
        if (out->argv[i] == NULL) {
            sinit_cli_free(out);
            return UV_ENOMEM;
        }
        out->argc++;
    }
    return 0;
}
