/*
 * fuzz_env.c - libFuzzer target: the whole environment configuration
 * (lc_pipeline_config_from_env: DD_LOG_LEVEL, the forwarder's, the
 * aggregator's and the dogstatsd server's variables, the sink) read from
 * an environment the input spells as NAME=VALUE lines. Invariants: it
 * returns 0 or UV_EINVAL, and whatever it returns the configuration frees
 * every byte it took from the project's allocator, secrets included (ASan
 * and LSan check the rest).
 */
#include <string.h>

#include "fuzz.h"
#include "lifecycle.h"

#define ENV_MAX 64

struct env {
    char *name[ENV_MAX];
    char *value[ENV_MAX];
    size_t n;
};

static const char *get(const char *name, void *data)
{
    const struct env *e = data;
    for (size_t i = e->n; i-- > 0;) { /* the last setting wins */
        if (strcmp(e->name[i], name) == 0)
            return e->value[i];
    }
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0'; /* an embedded NUL ends the environment */
    struct env e = {.n = 0};
    for (char *p = text; *p != '\0' && e.n < ENV_MAX;) {
        char *nl = strchr(p, '\n');
        if (nl != NULL)
            *nl = '\0';
        char *eq = strchr(p, '=');
        if (eq != NULL) {
            *eq = '\0';
            e.name[e.n] = p;
            e.value[e.n] = eq + 1;
            e.n++;
        }
        if (nl == NULL)
            break;
        p = nl + 1;
    }
    struct cmn_env env = {get, &e};
    size_t live = cmn_alloc_live_bytes();
    struct lc_pipeline_config c;
    lc_pipeline_config_defaults(&c);
    int rc = lc_pipeline_config_from_env(&c, &env);
    FUZZ_CHECK(rc == 0 || rc == UV_EINVAL);
    lc_pipeline_config_free(&c);
    /* secrets live in their own mappings, which LSan does not see */
    FUZZ_CHECK(cmn_alloc_live_bytes() == live);
    cmn_log_set_level(CMN_LOG_OFF); /* DD_LOG_LEVEL was applied */
    free(text);
    return 0;
}
