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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_CHECK(cond)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__,         \
                    __LINE__, #cond);                                          \
            abort();                                                           \
        }                                                                      \
    } while (0)

#endif /* DP_FUZZ_H */
