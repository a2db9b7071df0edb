/*
 * test_cpu_quota.c - the CPUs a cgroup's CPU quota grants, which decide
 * whether the receive thread may spin through a burst (a container of one
 * vCPU or less must not burn its own quota; dsd_dgram.c).
 */
#include <criterion/criterion.h>

#include "dsd_int.h"

Test(cpu_quota, cpu_max_text_in_cpus_rounded_up)
{
    cr_expect_eq(dsd__cpu_max_cpus("max 100000\n"), 0);
    cr_expect_eq(dsd__cpu_max_cpus("100000 100000\n"), 1);
    cr_expect_eq(dsd__cpu_max_cpus("50000 100000\n"), 1);
    cr_expect_eq(dsd__cpu_max_cpus("150000 100000"), 2);
    cr_expect_eq(dsd__cpu_max_cpus("200000 100000\n"), 2);
    cr_expect_eq(dsd__cpu_max_cpus("8000 1000\n"), 8);
    /* what cgroup v1's two files give, joined by a space */
    cr_expect_eq(dsd__cpu_max_cpus("250000 100000\n"), 3);
}

Test(cpu_quota, unparsable_text_is_no_quota)
{
    cr_expect_eq(dsd__cpu_max_cpus(""), 0);
    cr_expect_eq(dsd__cpu_max_cpus("abc"), 0);
    cr_expect_eq(dsd__cpu_max_cpus("100000"), 0);
    cr_expect_eq(dsd__cpu_max_cpus("100000 0\n"), 0);
    cr_expect_eq(dsd__cpu_max_cpus("0 100000\n"), 0);
    cr_expect_eq(dsd__cpu_max_cpus("100000 x"), 0);
    cr_expect_eq(dsd__cpu_max_cpus("18446744073709551615 1\n"), 4096);
    cr_expect_eq(dsd__cpu_max_cpus("18446744073709551615 2\n"), 4096);
}
