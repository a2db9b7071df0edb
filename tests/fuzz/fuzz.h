/*
 * fuzz.h - shared by the libFuzzer targets of tests/fuzz and their
 * standalone replay driver (fuzz_driver.c): the entry points and the
 * invariant check. A failed invariant aborts, which both libFuzzer and the
 * replay test report as a crash with the input that caused it.
 */
#ifndef DP_FUZZ_H
#define DP_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* fuzz_util.c: logs off. */
int LLVMFuzzerInitialize(int *argc, char ***argv);
/* fuzz_util.c: aborts unless s (when not empty) lies inside [p, p + n). */
void fuzz_inside(struct cmn_slice s, const char *p, size_t n);

#define FUZZ_CHECK(cond)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__,         \
                    __LINE__, #cond);                                          \
            abort();                                                           \
        }                                                                      \
    } while (0)

#endif /* DP_FUZZ_H */
