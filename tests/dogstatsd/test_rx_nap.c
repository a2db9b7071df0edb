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
     * socket was emptied it held 123 607 bytes (29 %) */
    cr_expect_eq(dsd__nap_next(260938, 292660, 123607, RCVBUF), 252146);
    /* exactly a quarter full: the same nap again */
    cr_expect_eq(dsd__nap_next(100000, 100000, RCVBUF / 4, RCVBUF), 100000);
    /* half full: half as long */
    cr_expect_eq(dsd__nap_next(200000, 200000, RCVBUF / 2, RCVBUF), 100000);
}

Test(rx_nap, grows_at_most_twofold_and_never_past_the_cap)
{
    /* a trickle would allow a nap of seconds */
    cr_expect_eq(dsd__nap_next(50000, 60000, 1000, RCVBUF), 100000);
    cr_expect_eq(dsd__nap_next(100000, 110000, 1000, RCVBUF), 200000);
    cr_expect_eq(dsd__nap_next(400000, 410000, 1000, RCVBUF), 500000);
    /* no nap yet: the first grows from the minimum */
    cr_expect_eq(dsd__nap_next(0, 30000, 1000, RCVBUF), 40000);
    /* a very late wake-up cannot overflow the arithmetic */
    cr_expect_eq(dsd__nap_next(500000, UINT64_MAX, 1, UINT32_MAX), 500000);
}

Test(rx_nap, a_buffer_too_small_for_the_rate_is_read_at_once)
{
    /* 94 % full after 10 us: a nap would need under 20 us */
    cr_expect_eq(dsd__nap_next(50000, 10000, 400000, RCVBUF), 0);
}

Test(rx_nap, nothing_queued_keeps_the_nap)
{
    /* the stream stopped: the next read finds the socket empty and the
     * thread sleeps in poll */
    cr_expect_eq(dsd__nap_next(120000, 130000, 0, RCVBUF), 120000);
    /* SO_MEMINFO unreadable (zeros) */
    cr_expect_eq(dsd__nap_next(120000, 130000, 0, 0), 120000);
}
