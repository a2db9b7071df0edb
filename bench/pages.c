/*
 * pages.c - what a fresh page of anonymous memory costs the thread that
 * first writes it: the price of a receive ring that grows during a burst
 * (dogstatsd/dsd_ring.c ring_populate). A benchmark program, never a test.
 *
 *   bench_pages [--mib N] [--rounds R] [--cpu C]
 *
 * Each round maps N MiB (64) and measures, per 4 KiB page:
 *   fault:     the first write to a page never mapped (a page fault each);
 *   populate:  MADV_POPULATE_WRITE of the whole range (cmn_populate), and
 *   then:      the first write to each page after it;
 *   resident:  a second write to each page;
 *   refault:   the first write after MADV_DONTNEED gave the pages back.
 * On bare metal or a hardware-paged guest, "then" costs about what
 * "resident" does: the populate did the work. A guest whose page tables
 * the host shadows pays a trap to the host on the first user access of
 * each page even after the populate (the test VM: ~5 us a page), so a
 * ring that grows during a burst pays that much per page whatever it does
 * ahead of the write on its own side.
 */
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bench.h"
#include "common.h"

#define PG 4096u

static const char usage_s[] =
    "usage: bench_pages [--mib N] [--rounds R] [--cpu C]\n";

/* The value of option a, a whole number up to max; exits on anything
 * else, naming the option. */
static uint64_t opt_u64(const char *a, const char *v, uint64_t max)
{
    uint64_t x;
    if (v != NULL && cmn_parse_u64(cmn_slice(v, strlen(v)), max, &x) == 0)
        return x;
    fprintf(stderr, "bench_pages: %s wants a number up to %llu\n%s", a,
            (unsigned long long)max, usage_s);
    exit(2);
}

/* ns a page of len bytes, since t0 */
static double per_page(uint64_t t0, size_t len)
{
    return (double)(cmn_mono_ns() - t0) / (double)(len / PG);
}

/* Writes one byte in each page; returns ns a page. */
static double write_pages(volatile char *p, size_t len, char v)
{
    uint64_t t0 = cmn_mono_ns();
    for (size_t i = 0; i < len; i += PG)
        p[i] = v;
    return per_page(t0, len);
}

int main(int argc, char **argv)
{
    uint64_t mib = 64, rounds = 3;
    int cpu = -1;
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--mib") == 0)
            mib = opt_u64(a, v, 4096);
        else if (strcmp(a, "--rounds") == 0)
            rounds = opt_u64(a, v, 1000);
        else if (strcmp(a, "--cpu") == 0)
            cpu = (int)opt_u64(a, v, 1023);
        else {
            fputs(usage_s, stderr);
            return 2;
        }
    }
    if (mib == 0 || rounds == 0) {
        fputs(usage_s, stderr);
        return 2;
    }
    bench_pin_cpu(cpu);
    size_t len = (size_t)mib << 20;
    printf("bench_pages: %llu MiB, ns per 4 KiB page\n",
           (unsigned long long)mib);
    for (uint64_t r = 0; r < rounds; r++) {
        char *a = mmap(NULL, len, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        char *b = mmap(NULL, len, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (a == MAP_FAILED || b == MAP_FAILED) {
            perror("mmap");
            return 1;
        }
        double fault = write_pages(a, len, 1);
        uint64_t t0 = cmn_mono_ns();
        int pe = cmn_populate(b, len);
        double populate = per_page(t0, len);
        double then = write_pages(b, len, 1);
        double resident = write_pages(b, len, 2);
        double refault = -1;
        if (madvise(b, len, MADV_DONTNEED) == 0)
            refault = write_pages(b, len, 3);
        printf("round %llu fault=%.0f populate=%.0f%s then=%.0f "
               "resident=%.0f refault=%.0f\n",
               (unsigned long long)r + 1, fault, populate,
               pe != 0 ? "(failed)" : "", then, resident, refault);
        munmap(a, len);
        munmap(b, len);
    }
    return 0;
}
