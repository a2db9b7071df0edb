/*
 * fuzz_util.c - linked into every fuzz target (libFuzzer or replay): the
 * one-time setup (logs off: a fuzzer would spend its time printing) and the
 * slice check the parser targets share.
 */
#include "fuzz.h"

#include "common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    cmn_log_set_level(CMN_LOG_OFF);
    return 0;
}

void fuzz_inside(struct cmn_slice s, const char *p, size_t n)
{
    if (s.len == 0)
        return;
    FUZZ_CHECK(s.p >= p && s.p + s.len <= p + n);
}
