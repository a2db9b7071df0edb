/*
 * ti_proc.c - process figures for benchmarks and tests (intake.h).
 */
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "intake.h"

long ti_proc_status_kib(pid_t pid, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long v = -1;
    if (f == NULL)
        return -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, key, kl) != 0)
            continue;
        const char *p = line + kl;
        p += strspn(p, " \t");
        uint64_t u;
        if (cmn_parse_u64(cmn_slice(p, strspn(p, "0123456789")), UINT64_MAX,
                          &u) == 0)
            v = (long)u;
        break;
    }
    fclose(f);
    return v;
}
