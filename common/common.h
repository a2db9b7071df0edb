/*
 * common.h - the leaf utilities every drainpipe component uses: errors,
 * checked allocation, byte slices and bounded number parsing, bounded
 * buffers, logging, clocks and environment configuration.
 *
 * Nothing here depends on any other drainpipe folder. Everything here may be
 * called from any thread unless its comment says otherwise.
 */
#ifndef DP_COMMON_H
#define DP_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#define CMN_MUST_CHECK __attribute__((warn_unused_result))
#define CMN_PRINTF(a, b) __attribute__((format(printf, a, b)))

/* drainpipe's own version, and the Datadog Agent version whose behaviour and
 * headers (DD-Agent-Version, User-Agent) it reproduces. */
#define CMN_VERSION "0.3.1"
#define CMN_AGENT_VERSION "7.60.0"

/* ------------------------------------------------------------------------
 * Errors (STYLE.md rule 3): 0 is success, negative is an error. libuv's
 * UV_E* codes are used as they are; these are the project's own additions.
 */
#define CMN_EPARSE (-4001)   /* input does not follow the grammar */
#define CMN_ETOOBIG (-4002)  /* input or request larger than a cap */
#define CMN_ECAP (-4003)     /* a table or queue is full: counted drop */
#define CMN_ESTOPPED (-4004) /* component is stopping or stopped */

/* Returns a static, human-readable string for any error code above or any
 * libuv code. Never NULL. */
const char *cmn_strerror(int err);

/* ------------------------------------------------------------------------
 * Allocation (STYLE.md rule 10). All project memory goes through these.
 * They check n * size for overflow, reject 0-byte and oversize (> 1 GiB)
 * requests, and count live bytes. cmn_free(NULL) is a no-op.
 */
void *cmn_malloc(size_t size) CMN_MUST_CHECK;
void *cmn_calloc(size_t n, size_t size) CMN_MUST_CHECK;
/* Grows or shrinks p to n * size bytes; on failure p is untouched. */
void *cmn_reallocarray(void *p, size_t n, size_t size) CMN_MUST_CHECK;
void cmn_free(void *p);
/* The size p was allocated with (0 for NULL). */
size_t cmn_alloc_size(const void *p);
/* For many small objects whose size their owner can compute again (the
 * aggregator's contexts): as cmn_malloc, without the 16-byte header that
 * records the size, so freed with cmn_free_sized(p, size) and the same
 * size only (at 100 000 contexts the headers were 1.6 MB). */
void *cmn_malloc_sized(size_t size) CMN_MUST_CHECK;
void cmn_free_sized(void *p, size_t size);
/* For one array that doubles to many MiB (a bucket's entries): as
 * cmn_reallocarray, but from CMN_BIG_MIN bytes the block is a mapping of
 * its own with address space reserved for its growth, so a doubling
 * copies, moves and faults nothing (glibc keeps a block that started small
 * on the heap, where each doubling copies it into fresh pages, and an
 * mremap moves page tables: milliseconds at a million entries). Freed
 * with cmn_free_big only. */
#define CMN_BIG_MIN ((size_t)256 << 10)
void *cmn_realloc_big(void *p, size_t n, size_t size) CMN_MUST_CHECK;
void cmn_free_big(void *p);
/* The process exits once the drain under way ends (serverless-init after
 * its child or SIGTERM): from now on, up to CMN_EXIT_KEEP_MAX bytes of
 * blocks that are mappings of their own (cmn_calloc's, cmn_realloc_big's,
 * malloc's from its mmap threshold, CMN_EXIT_KEEP_MIN) are not given back
 * to the kernel when freed; exit takes them all at once. Each munmap costs
 * a system call and a TLB flush: about 0.26 ms between a trivial child's
 * exit and serverless-init's (bench/coldstart.sh). The cap bounds what a
 * long drain (a final flush of 100 000 contexts) keeps resident beyond
 * its live memory. Live-byte counts and the memory budget go on as if the
 * blocks were freed. Under AddressSanitizer it does nothing, so
 * LeakSanitizer still checks every block. Not for a library host: its
 * process goes on. */
#define CMN_EXIT_KEEP_MIN ((size_t)256 << 10)
#define CMN_EXIT_KEEP_MAX ((size_t)2 << 20)
void cmn_alloc_exiting(void);
/* After cmn_alloc_exiting: whether a freed mapping of bytes resident
 * bytes may be left to the exit (counted against CMN_EXIT_KEEP_MAX).
 * Always false before, and under AddressSanitizer. */
bool cmn_alloc_keep_at_exit(size_t bytes);
/* Maps the pages of [p, p + len) in ahead of their first write
 * (MADV_POPULATE_WRITE, Linux 5.14+), contents unchanged. One call costs
 * far less than the page faults it replaces: on the test VM, where a
 * fault is an exit to the hypervisor, 128 pages took 0.08 ms against
 * 0.65 ms for 64 faults. Returns 0, or a negative errno (-EINVAL on older
 * kernels: the pages are then faulted in as they are written). The caller
 * must own the range; the pages must be writable. */
int cmn_populate(void *p, size_t len);
/* A long rewrite of this process's address space (a dlopen: dozens of
 * mmap and mprotect calls over 15-70 ms) is under way between
 * cmn_mm_rewrite_begin and cmn_mm_rewrite_end (nested calls count). Each
 * of those calls holds the address-space lock, and its thread, an ordinary
 * one, may be preempted while it does: a receive thread at real-time
 * priority whose cmn_populate waits for that lock then waits for the
 * preempted thread (7-11.5 ms in three lossy one-CPU bursts beside two busy
 * processes on the test VM, seen as madvise waiting in
 * rwsem_down_read_slowpath). */
void cmn_mm_rewrite_begin(void);
void cmn_mm_rewrite_end(void);
/* Whether a rewrite is announced now. The receive threads then fault the
 * pages of their rings in by touching them (cmn_touch_pages), which takes
 * only the mapping's own lock (the per-VMA locks of Linux 6.4+), instead
 * of cmn_populate: ~9 us a page on the test VM against ~0.7 us. */
bool cmn_mm_rewriting(void);
/* Faults the pages of [p, p + len) in by writing to each, contents
 * unchanged (one write fault a page). The mapping must have faulted once
 * before (cmn_prime_register) for that fault to skip the address-space
 * lock. */
void cmn_touch_pages(void *p, size_t len);
/* The first fault of an anonymous mapping sets it up for the ones after
 * (its anon_vma) under the address-space lock; later faults need only the
 * mapping's own. cmn_mm_rewrite_begin primes each mapping registered
 * here so before the rewrite starts: page, a page of the mapping that
 * never holds data, is faulted in and given back. Only then, and only
 * for what registered: a job that never loads libcurl pays nothing.
 * Registered until cmn_prime_unregister, which must come before the
 * mapping goes. At most CMN_PRIME_MAX at once; false when full (that
 * mapping's first fault in a rewrite may then wait for the lock). */
#define CMN_PRIME_MAX 8
bool cmn_prime_register(void *page);
void cmn_prime_unregister(void *page);
/* Maps in the first len bytes of the malloc heap, from a block that was
 * just allocated (the first of the process) up to the heap's end at most:
 * a start-up's small allocations then write to mapped pages instead of
 * taking a page fault each (~11 us on the test VM; cmn_populate). Nothing
 * when the block is not in the brk heap (a sanitizer's allocator). */
void cmn_heap_warm(const void *first, size_t len);
/* Copies len bytes and adds a NUL. */
char *cmn_strndup(const char *s, size_t len) CMN_MUST_CHECK;
char *cmn_strdup(const char *s) CMN_MUST_CHECK;
void *cmn_memdup(const void *p, size_t len) CMN_MUST_CHECK;
/* Bytes currently allocated through this module, and allocation calls. */
size_t cmn_alloc_live_bytes(void);
uint64_t cmn_alloc_count(void);
/* Test hook for OOM loops: the n-th allocation from now (1 = the next one)
 * and every one after it fail until cmn_alloc_fail_reset(). 0 disables. */
void cmn_alloc_fail_after(uint64_t n);
/* Test hook: only the n-th allocation from now fails (the ones after it
 * succeed), so a caller's handling of one failure in the middle of a
 * multi-step build is exercised. */
void cmn_alloc_fail_once(uint64_t n);
void cmn_alloc_fail_reset(void);
/* Tunes the system allocator for a bounded RSS (a fixed mmap threshold of
 * 256 KiB, at most two arenas). Call once at start, before threads. */
void cmn_alloc_tune(void);

/* Adapters for libraries that take an allocator, so their working memory
 * is counted and can fail like ours: jansson (json_set_alloc_funcs takes
 * cmn_lib_malloc and cmn_free), zstd (ZSTD_customMem: cmn_zstd_alloc,
 * cmn_zstd_free, opaque unused) and zlib (z_stream zalloc/zfree:
 * cmn_zlib_alloc, cmn_zlib_free). A 0-byte request gets 1 byte. */
void *cmn_lib_malloc(size_t size);
void *cmn_zstd_alloc(void *opaque, size_t size);
void cmn_zstd_free(void *opaque, void *p);
void *cmn_zlib_alloc(void *opaque, unsigned items, unsigned size);
void cmn_zlib_free(void *opaque, void *p);

/* Secrets (API keys). A secret copy lives in its own page-aligned
 * anonymous mapping marked MADV_DONTDUMP, so a core dump of the process
 * never contains it, and is zeroed before it is unmapped. Costs one page
 * per secret: meant for a handful of keys, not for data. Counted in the
 * live bytes and subject to the OOM test hook. cmn_secret_free(NULL) is a
 * no-op. */
char *cmn_secret_strndup(const char *s, size_t len) CMN_MUST_CHECK;
void cmn_secret_free(char *s);
/* Zeroes len bytes in a way the compiler cannot drop. */
void cmn_wipe(void *p, size_t len);

/* A malloc-compatible allocator for third-party libraries that handle
 * secrets (libcurl builds the DD-Api-Key header into its own buffers,
 * jansson parses DD_ADDITIONAL_ENDPOINTS): plain malloc, but every block is
 * zeroed before it is freed, so freed memory in a core dump holds no key.
 * Not counted (the library owns the memory). */
void *cmn_scrub_malloc(size_t size);
void *cmn_scrub_calloc(size_t n, size_t size);
void *cmn_scrub_realloc(void *p, size_t size);
char *cmn_scrub_strdup(const char *s);
void cmn_scrub_free(void *p);

/* ------------------------------------------------------------------------
 * frexp and ldexp without libm (cmn_fp.c), with C's results: the binary
 * links no libm, and libc's own copies bind to libm wherever -lm comes
 * first on the link line.
 */
double cmn_frexp(double x, int *e);
double cmn_ldexp(double x, int e);
/* rint in the default rounding mode (half to even), without libm: GCC
 * inlines rint and floor only when optimizing, and an -O0 build then
 * needed libm (and failed to link where nothing else named it). Every
 * double of magnitude 2^52 or more (Inf, NaN too) is already integral;
 * below, adding 2^52 rounds the fraction away in the current rounding
 * mode and subtracting it back is exact; the sign goes back on after, so
 * -0.4 gives -0 as rint does. fabs and copysign are bit operations the
 * compilers expand inline at every level. */
static inline double cmn_rint(double x)
{
    const double two52 = 4503599627370496.0;
    double a = __builtin_fabs(x);
    if (!(a < two52))
        return x;
    return __builtin_copysign((a + two52) - two52, x);
}

/* ------------------------------------------------------------------------
 * Byte slices and parsing (STYLE.md rule 7). Parsers never need a NUL and
 * never write to their input.
 */
struct cmn_slice {
    const char *p; /* borrowed; may be NULL when len == 0 */
    size_t len;
};

#define CMN_SLICE_LIT(s) ((struct cmn_slice){(s), sizeof(s) - 1})
static inline struct cmn_slice cmn_slice(const char *p, size_t len)
{
    struct cmn_slice s = {p, len};
    return s;
}
struct cmn_slice cmn_slice_cstr(const char *s);
bool cmn_slice_eq(struct cmn_slice a, struct cmn_slice b);
bool cmn_slice_eq_cstr(struct cmn_slice a, const char *s);
bool cmn_slice_has_prefix(struct cmn_slice a, const char *prefix);

/* Parses a float64 the way Go's strconv.ParseFloat(s, 64) does: optional
 * sign, decimal with optional fraction and exponent, hex floats, and
 * NaN/Inf/Infinity in any case. No spaces, no trailing bytes. An overflowing
 * value is an error (CMN_ETOOBIG); underflow gives 0 or a subnormal. Inputs
 * longer than 64 bytes are rejected (CMN_ETOOBIG). Returns 0 or
 * CMN_EPARSE. A fast exact path handles plain decimals. */
int cmn_parse_f64(struct cmn_slice s, double *out) CMN_MUST_CHECK;
/* Base-10 signed 64-bit integer with optional sign; no spaces; overflow is
 * CMN_ETOOBIG. */
int cmn_parse_i64(struct cmn_slice s, int64_t *out) CMN_MUST_CHECK;
/* Base-10 unsigned integer no larger than max, no sign. */
int cmn_parse_u64(struct cmn_slice s, uint64_t max,
                  uint64_t *out) CMN_MUST_CHECK;
/* Go strconv.ParseBool: 1 t T TRUE true True 0 f F FALSE false False. */
int cmn_parse_bool(struct cmn_slice s, bool *out) CMN_MUST_CHECK;

/* ------------------------------------------------------------------------
 * Bounded growable buffer (curl dynbuf): appends past max fail with
 * CMN_ETOOBIG and leave the buffer as it was.
 */
struct cmn_buf {
    char *p;    /* owned; NULL until the first append */
    size_t len; /* bytes used */
    size_t cap; /* bytes allocated */
    size_t max; /* hard cap on len */
};
void cmn_buf_init(struct cmn_buf *b, size_t max);
int cmn_buf_append(struct cmn_buf *b, const void *p, size_t n) CMN_MUST_CHECK;
int cmn_buf_printf(struct cmn_buf *b, const char *fmt, ...)
    CMN_PRINTF(2, 3) CMN_MUST_CHECK;
/* Makes room for n more bytes without changing len. */
int cmn_buf_reserve(struct cmn_buf *b, size_t n) CMN_MUST_CHECK;
/* Hands the bytes to the caller (who frees them with cmn_free) and resets
 * the buffer to empty. */
char *cmn_buf_steal(struct cmn_buf *b, size_t *len);
void cmn_buf_reset(struct cmn_buf *b);
void cmn_buf_free(struct cmn_buf *b);

/* ------------------------------------------------------------------------
 * Logging. Lines go to stderr as
 *   2026-11-25 12:00:00.123 UTC | DRAINPIPE | INFO | (forwarder) message
 * The level comes from DD_LOG_LEVEL (trace, debug, info, warn, error,
 * critical, off; default info). Thread-safe: one write(2) per line.
 */
enum cmn_log_level {
    CMN_LOG_TRACE,
    CMN_LOG_DEBUG,
    CMN_LOG_INFO,
    CMN_LOG_WARN,
    CMN_LOG_ERROR,
    CMN_LOG_CRITICAL,
    CMN_LOG_OFF
};
/* Parses a DD_LOG_LEVEL value (case-insensitive; "warning" = warn). */
int cmn_log_level_parse(const char *s, enum cmn_log_level *out) CMN_MUST_CHECK;
void cmn_log_set_level(enum cmn_log_level lvl);
enum cmn_log_level cmn_log_get_level(void);
/* Name printed in the second column (default "DRAINPIPE"); borrowed. */
void cmn_log_set_logger(const char *name);
bool cmn_log_enabled(enum cmn_log_level lvl);
/* Diverts error-level lines into buf (the message only, without the
 * header; the last one wins, cut to cap) instead of stderr, until called
 * again with cap 0. For a caller that reports a failure in its own words,
 * in one line rather than two. Other levels are unaffected. Not
 * thread-safe: only while no other thread logs (start-up). */
void cmn_log_divert_errors(char *buf, size_t cap);
/* Logs one start/stop step at debug level, in the one format every phase
 * uses (lifecycle's registry, the wrapper, the forwarder's libcurl load):
 * "checkpoint <phase> <name>: took X.XXX ms, cumulative Y.YYY ms", the
 * cumulative time counted from cmn_process_start_ns. Any thread. */
void cmn_checkpoint_log(const char *comp, const char *phase, const char *name,
                        uint64_t took_ns);
void cmn_log(enum cmn_log_level lvl, const char *comp, const char *fmt, ...)
    CMN_PRINTF(3, 4);
void cmn_vlog(enum cmn_log_level lvl, const char *comp, const char *fmt,
              va_list ap);

/* A rate limiter for logs fed by input: at most `burst` lines per
 * `interval_ms`; the number suppressed is reported on the next line. */
struct cmn_ratelimit {
    uint64_t window_start_ns;
    uint32_t interval_ms;
    uint32_t burst;
    uint32_t printed;
    uint64_t suppressed;
};
#define CMN_RATELIMIT_INIT(ms, n)                                              \
    {                                                                          \
        0, (ms), (n), 0, 0                                                     \
    }
/* Logs like cmn_log when the limiter allows it. Not thread-safe per
 * limiter: use one limiter per thread (they live on the loop thread). */
void cmn_log_rl(struct cmn_ratelimit *rl, enum cmn_log_level lvl,
                const char *comp, const char *fmt, ...) CMN_PRINTF(4, 5);

#define CMN_LOGT(comp, ...) cmn_log(CMN_LOG_TRACE, comp, __VA_ARGS__)
#define CMN_LOGD(comp, ...) cmn_log(CMN_LOG_DEBUG, comp, __VA_ARGS__)
#define CMN_LOGI(comp, ...) cmn_log(CMN_LOG_INFO, comp, __VA_ARGS__)
#define CMN_LOGW(comp, ...) cmn_log(CMN_LOG_WARN, comp, __VA_ARGS__)
#define CMN_LOGE(comp, ...) cmn_log(CMN_LOG_ERROR, comp, __VA_ARGS__)

/* ------------------------------------------------------------------------
 * Clocks. Monotonic for intervals, wall clock only for timestamps.
 */
uint64_t cmn_mono_ns(void);
uint64_t cmn_wall_ns(void);
/* Seconds since the epoch -> UTC date and time (year, mon 1-12, day, hour,
 * minute, second), by arithmetic: unlike gmtime_r, it never loads the time
 * zone file (glibc's first gmtime_r opens /etc/localtime, which was on the
 * wrapper's start-up path through its first log line). Proleptic
 * Gregorian calendar; any int64_t seconds whose year fits an int. */
void cmn_utc_fields(int64_t sec, int f[6]);
/* CPU time of the calling thread (user + system): a busy span measured
 * with it leaves out the time other processes held the CPU. */
uint64_t cmn_thread_cpu_ns(void);
/* Monotonic time of the first call to cmn_process_start_set (or of the
 * first call to this function), for "cumulative since start" figures. */
void cmn_process_start_set(uint64_t mono_ns);
uint64_t cmn_process_start_ns(void);

/* A deadline: the monotonic time (cmn_mono_ns) by which a bounded step,
 * such as a stop, must end. One is made where a budget starts and passed
 * down, so that every part reads the same end instead of counting its own
 * budget from when it happened to be called. Copied by value. */
struct cmn_deadline {
    uint64_t at_ns; /* cmn_mono_ns time; UINT64_MAX = none (unbounded) */
};
#define CMN_NO_DEADLINE ((struct cmn_deadline){UINT64_MAX})
/* ms from now; UINT64_MAX (or a sum past the clock's range) = none. */
struct cmn_deadline cmn_deadline_in_ms(uint64_t ms);
/* The earlier of a and b. */
struct cmn_deadline cmn_deadline_min(struct cmn_deadline a,
                                     struct cmn_deadline b);
/* Milliseconds left, rounded up (a timer armed with them does not fire
 * early), 0 once passed, UINT64_MAX for none. */
uint64_t cmn_deadline_remaining_ms(struct cmn_deadline d);
/* Nanoseconds left, 0 once passed, UINT64_MAX for none. */
uint64_t cmn_deadline_remaining_ns(struct cmn_deadline d);
/* True once the deadline has passed; never for none. */
bool cmn_deadline_expired(struct cmn_deadline d);
/* Fills buf with n random bytes from getrandom (the kernel's CSPRNG), for
 * hash seeds. If the pool is not ready yet (early boot, GRND_NONBLOCK
 * says EAGAIN) or getrandom fails, falls back to a mix of the clocks, the
 * pid and an address (weaker, but different per process) and returns
 * UV_EAGAIN; 0 otherwise. Any thread. */
int cmn_random_bytes(void *buf, size_t n);

/* ------------------------------------------------------------------------
 * Environment configuration with the Agent's names. Each reader leaves
 * *out unchanged when the variable is unset (or set to the empty string),
 * and on a malformed value logs an error naming the variable and returns
 * UV_EINVAL. The getenv used is replaceable for tests (NULL = getenv).
 */
typedef const char *(*cmn_getenv_fn)(const char *name, void *data);
struct cmn_env {
    cmn_getenv_fn get; /* NULL: process environment */
    void *data;        /* passed to get */
};
const char *cmn_env_get(const struct cmn_env *env, const char *name);
/* Moves the process environment's NAME=value entry into a secret page
 * (cmn_secret_strndup), points environ at the copy and zeroes the value in
 * the original string (which lives on the initial stack, part of every
 * core dump). getenv, /proc and children see the same value as before,
 * /proc/<pid>/environ shows zeros. Idempotent; a no-op when NAME is unset.
 * Main thread, before other threads read the environment. 0 or
 * UV_ENOMEM. */
int cmn_env_protect(const char *name) CMN_MUST_CHECK;
int cmn_env_bool(const struct cmn_env *env, const char *name,
                 bool *out) CMN_MUST_CHECK;
/* Integer within [min, max]. */
int cmn_env_i64(const struct cmn_env *env, const char *name, int64_t min,
                int64_t max, int64_t *out) CMN_MUST_CHECK;
/* Float within [min, max]. */
int cmn_env_f64(const struct cmn_env *env, const char *name, double min,
                double max, double *out) CMN_MUST_CHECK;
/* String: *out points into the environment (borrowed, valid while the
 * environment is not modified). */
int cmn_env_str(const struct cmn_env *env, const char *name,
                const char **out) CMN_MUST_CHECK;

/* Splits a list value the way the Agent reads list variables: on spaces
 * and/or commas, empty items skipped. Calls fn for each item. */
void cmn_split_list(const char *s, void (*fn)(struct cmn_slice item, void *),
                    void *data);

/* ------------------------------------------------------------------------
 * Owned string lists (config lists: tags, prefixes, aggregates).
 */
struct cmn_strv {
    char **v; /* owned array of owned strings */
    size_t n;
    int err; /* first error of cmn_strv_add (UV_ENOMEM), sticky */
};
/* cmn_split_list callback: appends a copy of item to the struct cmn_strv
 * in data; on failure sets its err and ignores further items. */
void cmn_strv_add(struct cmn_slice item, void *data);
/* Copies n strings into a new owned array (*out = NULL when n == 0). */
int cmn_strv_dup(char *const *src, size_t n, char ***out) CMN_MUST_CHECK;
/* Frees n strings and the array. NULL is a no-op. */
void cmn_strv_free(char **v, size_t n);
/* Appends to buf (cap bytes, NUL-terminated, *len bytes used) without
 * printf, whose first call costs a short-lived process 0.07-0.15 ms of
 * cold code on a VM: cmn_fcat copies s, cmn_fcat_u64 the decimal digits of
 * v. What does not fit is cut, buf stays NUL-terminated and *len becomes
 * cap: *len >= cap after the last append means truncated. */
void cmn_fcat(char *buf, size_t cap, size_t *len, const char *s);
void cmn_fcat_u64(char *buf, size_t cap, size_t *len, uint64_t v);
/* Sorts the list and frees duplicates, as the Agent does once with its
 * configured tags. */
void cmn_strv_sort_unique(char **v, size_t *n);
/* The configured tags (DD_DOGSTATSD_TAGS, then DD_TAGS; space or comma
 * separated) appended to the owned list *v of *n, which is then sorted
 * with duplicates removed: the aggregator's extra tags, and the base of
 * serverless-init's tag maps. 0 or UV_ENOMEM (the list keeps what was
 * added; free it as usual). */
int cmn_env_tags_add(const struct cmn_env *env, char ***v,
                     size_t *n) CMN_MUST_CHECK;

/* ------------------------------------------------------------------------
 * The memory budget (cmn_budget.c): DRAINPIPE_MEMORY_LIMIT, one limit for
 * everything fed by input.
 *
 *   used = cmn_alloc_live_bytes() + reserved
 *
 * where reserved is memory a component holds outside cmn_alloc (e.g. the
 * receive ring's touched pages, or a ring's whole capacity claimed at
 * start). The limit is process-wide; 0 means unlimited (the library's
 * default until cmn_budget_set_limit; the pipeline sets it from the
 * environment, default 64 MiB). Components degrade in step order as used
 * passes each step's share of the limit; each time a step acts, the
 * component calls cmn_budget_note(step), which counts it and logs a
 * rate-limited warning. Any thread, except cmn_budget_note (loop thread).
 */
#define CMN_BUDGET_ENV "DRAINPIPE_MEMORY_LIMIT"
#define CMN_BUDGET_DEFAULT ((size_t)64 << 20) /* 64 MiB */
#define CMN_BUDGET_MIN ((size_t)4 << 20)      /* smallest accepted limit */
enum cmn_budget_step {
    CMN_BUDGET_SKETCH,         /* > 50 %: histogram samples go to sketches */
    CMN_BUDGET_NO_NEW_CONTEXT, /* > 75 %: new contexts are refused */
    CMN_BUDGET_EVICT_RETRY,    /* > 90 %: oldest attempted retries evicted */
    CMN_BUDGET_RESERVE,        /* 100 %: cmn_budget_reserve refuses */
    CMN_BUDGET_STEP_MAX
};
void cmn_budget_set_limit(size_t bytes);
size_t cmn_budget_limit(void);
size_t cmn_budget_used(void);
size_t cmn_budget_reserved(void);
/* The used-byte count past which step applies (SIZE_MAX: unlimited). */
size_t cmn_budget_step_bytes(enum cmn_budget_step step);
/* True when used is past step's share of the limit. */
bool cmn_budget_over(enum cmn_budget_step step);
/* Claims n bytes held outside cmn_alloc. 0, or CMN_ECAP (counted under
 * CMN_BUDGET_RESERVE; nothing claimed) when used + n would pass the
 * limit. Release the same n with cmn_budget_release. Any thread. */
int cmn_budget_reserve(size_t n) CMN_MUST_CHECK;
void cmn_budget_release(size_t n);
/* Counts one action of step and logs it (at most one line per 10 s per
 * step, with the number suppressed). Loop thread. */
void cmn_budget_note(enum cmn_budget_step step);
uint64_t cmn_budget_count(enum cmn_budget_step step);
void cmn_budget_reset_counts(void); /* tests */
/* "65536", "64KiB", "64MiB", "1GiB" (suffix case-insensitive, "B" allowed),
 * at most 1 TiB. 0 or CMN_EPARSE. */
int cmn_parse_bytes(struct cmn_slice s, size_t *out) CMN_MUST_CHECK;
/* Reads DRAINPIPE_MEMORY_LIMIT into *out (unchanged when unset); below
 * 4 MiB or malformed: logs the variable and returns UV_EINVAL. */
int cmn_budget_from_env(const struct cmn_env *env, size_t *out) CMN_MUST_CHECK;

#endif /* DP_COMMON_H */
