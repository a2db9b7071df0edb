/*
 * cmn_err.c - names for the project's error codes; everything else is a
 * libuv code and goes to uv_strerror.
 */
#include "common.h"

const char *cmn_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
    case CMN_EPARSE:
        return "malformed input";
    case CMN_ETOOBIG:
        return "input or request over its size limit";
    case CMN_ECAP:
        return "capacity reached";
    case CMN_ESTOPPED:
        return "component is stopped";
    default:
        return uv_strerror(err);
    }
}
