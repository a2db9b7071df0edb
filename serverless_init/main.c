/*
 * main.c - entry point of the serverless-init binary; everything is in
 * sinit_run.c so that tests can link the parts.
 */
#include "sinit.h"
#include "sinit_lambda.h"

int main(int argc, char **argv)
{
    /* every checkpoint counts from here (cmn_process_start_ns) */
    cmn_process_start_set(cmn_mono_ns());
    /* Lambda starts external extensions from /opt/extensions with no
     * arguments and AWS_LAMBDA_RUNTIME_API set (sinit_lambda.c). */
    if (sinit_lambda_detect(argc, argv))
        return sinit_lambda_main(argc, argv);
    return sinit_main(argc, argv);
}
