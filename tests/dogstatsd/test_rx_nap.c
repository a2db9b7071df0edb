/*
 * test_rx_nap.c - the UDP receive thread's nap in a steady stream
 * (dsd_dgram.c, DSD_NAP_FILL): how long it sleeps before reading the
 * next batch, learnt from how full the socket buffer was after the last
 * nap. The socket-level behaviour is in test_listeners.c.
 */
#include <criterion/criterion.h>
#include <stdint.h>

#include "dsd_int.h"

/* sk_rcvbuf of SO_RCVBUF 212992: the kernel doubles what is asked */
#define RCVBUF 425984u

Test(rx_nap, aims_to_find_the_buffer_a_quarter_full)
{
    /* figures of (a) at 15 M lines/s on the test VM: 0.29 ms after the
     * socket was emptied it held 123 607 bytes (29 %), 422 357 bytes a
     * ms */
    struct dsd__nap n = {260938, 0, 0};
    cr_expect_eq(dsd__nap_next(&n, 292660, 123607, RCVBUF), 252146);
    cr_expect_eq(n.ns, 252146);
    cr_expect_eq(n.peak, 422357);
    /* exactly a quarter full: the same nap again */
    n = (struct dsd__nap){100000, 0, 0};
    cr_expect_eq(dsd__nap_next(&n, 100000, RCVBUF / 4, RCVBUF), 100000);
}

Test(rx_nap, half_full_halves_the_nap)
{
    struct dsd__nap n = {200000, 0, 0};
    cr_expect_eq(dsd__nap_next(&n, 200000, RCVBUF / 2, RCVBUF), 100000);
    /* full after a late wake-up (the rate is then unknown, at least
     * this): halved, not lengthened */
    n = (struct dsd__nap){100000, 0, 0};
    cr_expect_eq(dsd__nap_next(&n, 5000000, RCVBUF, RCVBUF), 50000);
}

Test(rx_nap, the_fastest_fill_lately_sets_the_nap)
{
    /* a nap that found the buffer filling at 1 064 960 bytes a ms (a
     * quarter in 0.1 ms), then one that saw a tenth of that (the loop
     * ran meanwhile): the second nap is set by the held peak, less a
     * sixteenth, not by the slow rate */
    struct dsd__nap n = {100000, 0, 0};
    cr_expect_eq(dsd__nap_next(&n, 100000, RCVBUF / 4, RCVBUF), 100000);
    cr_expect_eq(n.peak, 1064960);
    cr_expect_eq(dsd__nap_next(&n, 100000, RCVBUF / 40, RCVBUF), 106666);
    cr_expect_eq(n.peak, 998400);
    /* the peak decays a sixteenth a nap while the fill stays slow */
    dsd__nap_next(&n, 100000, RCVBUF / 40, RCVBUF);
    cr_expect_eq(n.peak, 936000);
}

Test(rx_nap, grows_at_most_twofold_and_never_past_the_cap)
{
    /* a trickle would allow a nap of seconds */
    struct dsd__nap n = {50000, 0, 0};
    cr_expect_eq(dsd__nap_next(&n, 60000, 1000, RCVBUF), 100000);
    cr_expect_eq(dsd__nap_next(&n, 110000, 1000, RCVBUF), 200000);
    n = (struct dsd__nap){400000, 0, 0};
    cr_expect_eq(dsd__nap_next(&n, 410000, 1000, RCVBUF), 500000);
    /* no nap yet: the first grows from the minimum */
    n = (struct dsd__nap){0, 0, 0};
    cr_expect_eq(dsd__nap_next(&n, 30000, 1000, RCVBUF), 40000);
    /* the largest values SO_MEMINFO can give cannot overflow */
    n = (struct dsd__nap){500000, 0, 0};
    cr_expect_eq(dsd__nap_next(&n, UINT64_MAX, 1, UINT32_MAX), 500000);
    n = (struct dsd__nap){500000, 0, 0};
    cr_expect_eq(dsd__nap_next(&n, 1, UINT32_MAX, UINT32_MAX), 0);
}

/* A socket group of 16 (dsd_dgram.c, reader_main) naps up to 2 ms: a
 * trickle grows the nap past the single socket's 0.5 ms to that cap. */
Test(rx_nap, a_groups_cap_is_its_own)
{
    struct dsd__nap n = {400000, 0, 2000000};
    cr_expect_eq(dsd__nap_next(&n, 410000, 1000, RCVBUF), 800000);
    cr_expect_eq(dsd__nap_next(&n, 810000, 1000, RCVBUF), 1600000);
    cr_expect_eq(dsd__nap_next(&n, 1610000, 1000, RCVBUF), 2000000);
    cr_expect_eq(dsd__nap_next(&n, 2010000, 1000, RCVBUF), 2000000);
    /* half full still halves it */
    cr_expect_eq(dsd__nap_next(&n, 2010000, RCVBUF / 2, RCVBUF), 1000000);
}

Test(rx_nap, a_buffer_too_small_for_the_rate_is_read_at_once)
{
    /* 94 % full after 10 us: a nap would need under 20 us */
    struct dsd__nap n = {50000, 0, 0};
    cr_expect_eq(dsd__nap_next(&n, 10000, 400000, RCVBUF), 0);
}

Test(rx_nap, nothing_queued_keeps_the_nap)
{
    /* the stream stopped: the next read finds the socket empty and the
     * thread sleeps in poll */
    struct dsd__nap n = {120000, 5000, 0};
    cr_expect_eq(dsd__nap_next(&n, 130000, 0, RCVBUF), 120000);
    cr_expect_eq(n.peak, 5000);
    /* SO_MEMINFO unreadable (zeros) */
    cr_expect_eq(dsd__nap_next(&n, 130000, 0, 0), 120000);
}
