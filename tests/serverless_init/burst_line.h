/*
 * burst_line.h - the lines of the burst tests, shared by the child that
 * sends them (sinit_test_child.c) and the tests that compute what must
 * arrive (test_e2e_burst.c). Line g of a burst over nctx contexts goes to
 * context c = g % nctx, and c % 5 picks its type:
 *
 *   0  b.count:1|c        every line counts 1
 *   1  b.gauge:G|g        the last line of the context wins: G = g
 *   2  b.hist:V|h         V = g % 97
 *   3  b.dist:V|d         V = g % 97
 *   4  b.set:G|s          every member is new
 *
 * each with the tags "ctx:C,t2:vC%7,t3:T" (three tags; T is "z" unless a
 * test separates phases with another value).
 */
#ifndef SINIT_TEST_BURST_LINE_H
#define SINIT_TEST_BURST_LINE_H

#include <stdio.h>

static const char *const burst_names[5] = {"b.count", "b.gauge", "b.hist",
                                           "b.dist", "b.set"};
static const char burst_types[5] = {'c', 'g', 'h', 'd', 's'};

static inline long burst_value(long g, long nctx)
{
    long t = (g % nctx) % 5;
    return t == 0 ? 1 : (t == 2 || t == 3) ? g % 97 : g;
}

/* Writes line g (no newline) into buf; returns its length. */
static inline size_t burst_line(char *buf, size_t cap, long g, long nctx,
                                const char *t3)
{
    long c = g % nctx, t = c % 5;
    int n =
        snprintf(buf, cap, "%s:%ld|%c|#ctx:%ld,t2:v%ld,t3:%s", burst_names[t],
                 burst_value(g, nctx), burst_types[t], c, c % 7, t3);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

#endif
