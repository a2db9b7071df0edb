/*
 * fuzz_event.c - libFuzzer target: dsd_parse_event on any bytes (the
 * first byte says whether the scratch is one byte short of the line).
 * Invariants on success: borrowed slices lie inside the input, title and
 * text inside the scratch and within its size.
 */
#include <string.h>

#include "dogstatsd.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    cmn_log_set_level(CMN_LOG_OFF);
    return 0;
}

static void inside(struct cmn_slice s, const char *p, size_t n)
{
    if (s.len == 0)
        return;
    FUZZ_CHECK(s.p >= p && s.p + s.len <= p + n);
}

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
            inside(ev.title, scratch, cap);
            inside(ev.text, scratch, cap);
            FUZZ_CHECK(ev.title.len + ev.text.len <= cap);
            inside(ev.host, line, n);
            inside(ev.aggregation_key, line, n);
            inside(ev.source_type_name, line, n);
            inside(ev.tags, line, n);
        }
        free(scratch);
    }
    free(line);
    return 0;
}
