/*
 * cmn_buf.c - bounded growable byte buffer (curl's dynbuf). Invariant:
 * len <= cap and len <= max; a failed append leaves the buffer unchanged.
 */
#include "common.h"

#include <stdio.h>
#include <string.h>

void cmn_buf_init(struct cmn_buf *b, size_t max)
{
    b->p = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

int cmn_buf_reserve(struct cmn_buf *b, size_t n)
{
    if (n > b->max - b->len)
        return CMN_ETOOBIG;
    size_t need = b->len + n;
    if (need <= b->cap)
        return 0;
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap < need)
        ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
    if (ncap > b->max)
        ncap = b->max;
    if (ncap < need)
        ncap = need;
    char *np = cmn_reallocarray(b->p, ncap + 1, 1); /* +1: room for NUL */
    if (np == NULL)
        return UV_ENOMEM;
    b->p = np;
    b->cap = ncap;
    return 0;
}

int cmn_buf_append(struct cmn_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    int rc = cmn_buf_reserve(b, n);
    if (rc)
        return rc;
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int cmn_buf_printf(struct cmn_buf *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return CMN_EPARSE;
    if ((size_t)n < sizeof(small))
        return cmn_buf_append(b, small, (size_t)n);
    int rc = cmn_buf_reserve(b, (size_t)n + 1);
    if (rc)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

char *cmn_buf_steal(struct cmn_buf *b, size_t *len)
{
    char *p = b->p;
    if (len)
        *len = b->len;
    b->p = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}

void cmn_buf_reset(struct cmn_buf *b)
{
    b->len = 0;
    if (b->p)
        b->p[0] = '\0';
}

void cmn_buf_free(struct cmn_buf *b)
{
    cmn_free(b->p);
    b->p = NULL;
    b->len = 0;
    b->cap = 0;
}
