/*
 * fuzz_service_check.c - libFuzzer target: dsd_parse_service_check on any
 * bytes. Invariants on success: the slices lie inside the input, the name
 * is not empty and the status is 0..3.
 */
#include <string.h>

#include "dogstatsd.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *line = malloc(size ? size : 1);
    if (line == NULL)
        return 0;
    memcpy(line, data, size);
    struct agg_service_check sc;
    if (dsd_parse_service_check(line, size, &sc) == DSD_OK) {
        FUZZ_CHECK(sc.status >= 0 && sc.status <= 3);
        FUZZ_CHECK(sc.name.len > 0);
        fuzz_inside(sc.name, line, size);
        fuzz_inside(sc.host, line, size);
        fuzz_inside(sc.message, line, size);
        fuzz_inside(sc.tags, line, size);
    }
    free(line);
    return 0;
}
