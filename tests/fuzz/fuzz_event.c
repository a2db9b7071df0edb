/*
 * fuzz_event.c - libFuzzer target: dsd_parse_event on any bytes (the
 * first byte says whether the scratch is one byte short of the line).
 * Invariants on success: borrowed slices lie inside the input, title and
 * text inside the scratch and within its size.
 */
#include <string.h>

#include "dogstatsd.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t mode = data[0];
    size_t n = size - 1;
    char *line = malloc(n ? n : 1);
    if (line == NULL)
        return 0;
    memcpy(line, data + 1, n);
    {
        size_t cap = (mode & 1) && n > 0 ? n - 1 : n;
        char *scratch = malloc(cap ? cap : 1);
        struct agg_event ev;
        if (scratch != NULL &&
            dsd_parse_event(line, n, &ev, scratch, cap) == DSD_OK) {
            fuzz_inside(ev.title, scratch, cap);
            fuzz_inside(ev.text, scratch, cap);
            FUZZ_CHECK(ev.title.len + ev.text.len <= cap);
            fuzz_inside(ev.host, line, n);
            fuzz_inside(ev.aggregation_key, line, n);
            fuzz_inside(ev.source_type_name, line, n);
            fuzz_inside(ev.tags, line, n);
        }
        free(scratch);
    }
    free(line);
    return 0;
}
