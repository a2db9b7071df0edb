/*
 * fuzz_metric.c - libFuzzer target: dsd_parse_metric (and the type
 * sniffer) on any bytes, with every option combination. Invariants on
 * success: the slices lie inside the input, the values fit the array, the
 * rate is above 0 (spec §1.3 as tightened in docs/limits.md), a set has no
 * values and a number type has at least one.
 */
#include <string.h>

#include "dogstatsd.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a private copy of exactly size bytes: ASan sees any overread */
    char *line = malloc(size ? size : 1);
    if (line == NULL)
        return 0;
    memcpy(line, data, size);
    (void)dsd_msg_type(line, size);
    for (int o = 0; o < 4; o++) {
        struct dsd_parse_opts opts = {(o & 1) != 0, (o & 2) != 0};
        double vals[8];
        size_t max = o == 3 ? 1 : 8; /* also a one-value array */
        struct dsd_metric m;
        enum dsd_err e = dsd_parse_metric(line, size, &opts, &m, vals, max);
        FUZZ_CHECK(e >= DSD_OK && e < DSD_ERR_MAX);
        FUZZ_CHECK(dsd_err_str(e) != NULL);
        if (e != DSD_OK)
            continue;
        FUZZ_CHECK(m.m.name.len > 0);
        fuzz_inside(m.m.name, line, size);
        fuzz_inside(m.m.tags, line, size);
        fuzz_inside(m.m.set_member, line, size);
        fuzz_inside(m.local_data, line, size);
        fuzz_inside(m.external_data, line, size);
        fuzz_inside(m.cardinality, line, size);
        FUZZ_CHECK(m.m.rate > 0);
        FUZZ_CHECK(m.m.timestamp >= 0);
        if (m.m.type == AGG_SET) {
            FUZZ_CHECK(m.m.nvalues == 0);
        } else {
            FUZZ_CHECK(m.m.nvalues >= 1 && m.m.nvalues <= max);
            FUZZ_CHECK(m.m.values == vals);
        }
    }
    free(line);
    return 0;
}
