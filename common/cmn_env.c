/*
 * cmn_env.c - reading configuration from DD_* environment variables.
 *
 * Every reader leaves its output untouched when the variable is unset or
 * empty (the Agent treats an empty variable as unset), and refuses a
 * malformed value with an error line that names the variable: a bad value
 * never silently becomes a default.
 */
#include "common.h"

#include <stdlib.h>
#include <string.h>

extern char **environ;

#define COMP "config"

const char *cmn_env_get(const struct cmn_env *env, const char *name)
{
    const char *v;
    if (env != NULL && env->get != NULL)
        v = env->get(name, env->data);
    else
        v = getenv(name);
    return (v != NULL && *v != '\0') ? v : NULL;
}

int cmn_env_protect(const char *name)
{
    /* entries already moved: environ may be copied by setenv, but the
     * pointers we installed stay the same */
    static char *moved[8];
    size_t nl = strlen(name);

    for (char **e = environ; e != NULL && *e != NULL; e++) {
        if (strncmp(*e, name, nl) != 0 || (*e)[nl] != '=')
            continue;
        for (size_t i = 0; i < sizeof(moved) / sizeof(moved[0]); i++)
            if (moved[i] == *e)
                return 0;
        char *old = *e, *copy = cmn_secret_strndup(old, strlen(old));
        if (copy == NULL)
            return UV_ENOMEM;
        *e = copy;
        cmn_wipe(old + nl + 1, strlen(old + nl + 1));
        for (size_t i = 0; i < sizeof(moved) / sizeof(moved[0]); i++) {
            if (moved[i] == NULL) {
                moved[i] = copy;
                break;
            }
        }
        return 0;
    }
    return 0;
}

int cmn_env_bool(const struct cmn_env *env, const char *name, bool *out)
{
    const char *v = cmn_env_get(env, name);
    if (v == NULL)
        return 0;
    if (cmn_parse_bool(cmn_slice_cstr(v), out) != 0) {
        CMN_LOGE(COMP, "%s: expected true or false, got \"%s\"", name, v);
        return UV_EINVAL;
    }
    return 0;
}

int cmn_env_i64(const struct cmn_env *env, const char *name, int64_t min,
                int64_t max, int64_t *out)
{
    const char *v = cmn_env_get(env, name);
    if (v == NULL)
        return 0;
    int64_t x;
    if (cmn_parse_i64(cmn_slice_cstr(v), &x) != 0 || x < min || x > max) {
        CMN_LOGE(COMP, "%s: expected an integer from %lld to %lld, got \"%s\"",
                 name, (long long)min, (long long)max, v);
        return UV_EINVAL;
    }
    *out = x;
    return 0;
}

int cmn_env_f64(const struct cmn_env *env, const char *name, double min,
                double max, double *out)
{
    const char *v = cmn_env_get(env, name);
    if (v == NULL)
        return 0;
    double x;
    if (cmn_parse_f64(cmn_slice_cstr(v), &x) != 0 || !(x >= min && x <= max)) {
        CMN_LOGE(COMP, "%s: expected a number from %g to %g, got \"%s\"", name,
                 min, max, v);
        return UV_EINVAL;
    }
    *out = x;
    return 0;
}

int cmn_env_str(const struct cmn_env *env, const char *name, const char **out)
{
    const char *v = cmn_env_get(env, name);
    if (v != NULL)
        *out = v;
    return 0;
}
