/*
 * main.c - entry point of the serverless-init binary; everything is in
 * sinit_run.c so that tests can link the parts.
 */
#include "sinit.h"
#include "sinit_lambda.h"

#define SINIT_HEAP_WARM ((size_t)64 << 10)

int main(int argc, char **argv)
{
    /* every checkpoint counts from here (cmn_process_start_ns) */
    cmn_process_start_set(cmn_mono_ns());
    /* The start-up's small allocations (configuration, listeners, loop:
     * about 60 KB before the child is spawned or the first /next) land on
     * pages mapped in one call, not on a page fault each. */
    void *first = cmn_malloc(1);
    cmn_heap_warm(first, SINIT_HEAP_WARM);
    cmn_free(first);
    /* Lambda starts external extensions from /opt/extensions with no
     * arguments and AWS_LAMBDA_RUNTIME_API set (sinit_lambda.c). */
    if (sinit_lambda_detect(argc, argv))
        return sinit_lambda_main(argc, argv);
    return sinit_main(argc, argv);
}
