/*
 * lsan_runner.c - linked into every Criterion test program. Criterion's
 * runner (the parent process) leaks a 48-byte block by design, allocated
 * in a libcriterion function that has no symbol, and libcriterion has no
 * frame pointers, so LeakSanitizer's stack for it is one anonymous
 * libcriterion frame: no suppression can name it (only the module, which
 * would also hide every leak of every test, since every test's stack goes
 * through libcriterion; unwinding slowly to find a name makes TLS tests 9
 * times slower). The runner runs no test code: every test body, .init and
 * .fini runs in a worker process that Criterion (boxfort) starts with
 * BXFI_MAP in its environment. So the runner alone makes its leak check
 * at start, when nothing can have leaked, which also turns off its check
 * at exit (__lsan_do_leak_check runs once per process); every worker keeps
 * its check at exit. tests/leakcheck/check_planted_leak.sh proves a leak
 * in a test still fails the suite.
 */
#include <stdlib.h>

#if defined(__SANITIZE_ADDRESS__)
#define DP_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DP_LSAN 1
#endif
#endif

#ifdef DP_LSAN
#include <sanitizer/lsan_interface.h>

__attribute__((constructor)) static void dp_lsan_runner(void)
{
    if (getenv("BXFI_MAP") == NULL) /* the runner, not a worker */
        __lsan_do_leak_check();
}
#endif
