/*
 * main.c - entry point of the serverless-init binary; everything is in
 * sinit_run.c so that tests can link the parts.
 */
#include "sinit.h"

int main(int argc, char **argv)
{
    return sinit_main(argc, argv);
}
