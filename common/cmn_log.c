/*
 * cmn_log.c - leveled logging to stderr, one write(2) per line so lines
 * from several threads never interleave. The level is a global read without
 * locks (an int store is atomic enough for a log threshold).
 */
#include "common.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static atomic_int level = CMN_LOG_INFO;
static const char *logger = "DRAINPIPE";

static const char *const names[] = {"TRACE", "DEBUG",    "INFO", "WARN",
                                    "ERROR", "CRITICAL", "OFF"};

int cmn_log_level_parse(const char *s, enum cmn_log_level *out)
{
    static const struct {
        const char *n;
        enum cmn_log_level l;
    } map[] = {{"trace", CMN_LOG_TRACE},       {"debug", CMN_LOG_DEBUG},
               {"info", CMN_LOG_INFO},         {"warn", CMN_LOG_WARN},
               {"warning", CMN_LOG_WARN},      {"error", CMN_LOG_ERROR},
               {"critical", CMN_LOG_CRITICAL}, {"off", CMN_LOG_OFF}};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        if (strcasecmp(s, map[i].n) == 0) {
            *out = map[i].l;
            return 0;
        }
    }
    return CMN_EPARSE;
}

void cmn_log_set_level(enum cmn_log_level lvl)
{
    atomic_store(&level, (int)lvl);
}

enum cmn_log_level cmn_log_get_level(void)
{
    return (enum cmn_log_level)atomic_load(&level);
}

void cmn_log_set_logger(const char *name)
{
    logger = name;
}

bool cmn_log_enabled(enum cmn_log_level lvl)
{
    return lvl != CMN_LOG_OFF && (int)lvl >= atomic_load(&level);
}

/* Where error lines go instead of stderr (cmn_log_divert_errors). */
static char *divert_buf;
static size_t divert_cap;

void cmn_log_divert_errors(char *buf, size_t cap)
{
    divert_buf = cap > 0 ? buf : NULL;
    divert_cap = cap;
    if (divert_buf != NULL)
        divert_buf[0] = '\0';
}

void cmn_utc_fields(int64_t sec, int f[6])
{
    /* days from civil, inverted (H. Hinnant's algorithm): 400-year eras
     * of 146097 days, years starting on March 1 so leap days come last */
    int64_t days = sec / 86400, rem = sec % 86400;
    if (rem < 0) {
        rem += 86400;
        days--;
    }
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097; /* 0..146096 */
    int64_t yoe =
        (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* 0..399 */
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);     /* 0..365 */
    int64_t mp = (5 * doy + 2) / 153;                          /* 0..11 */
    int64_t mon = mp < 10 ? mp + 3 : mp - 9;
    f[0] = (int)(yoe + era * 400 + (mon <= 2));
    f[1] = (int)mon;
    f[2] = (int)(doy - (153 * mp + 2) / 5 + 1);
    f[3] = (int)(rem / 3600);
    f[4] = (int)(rem / 60 % 60);
    f[5] = (int)(rem % 60);
}

void cmn_vlog(enum cmn_log_level lvl, const char *comp, const char *fmt,
              va_list ap)
{
    if (divert_buf != NULL && lvl == CMN_LOG_ERROR) {
        vsnprintf(divert_buf, divert_cap, fmt, ap);
        return;
    }
    if (!cmn_log_enabled(lvl))
        return;
    char line[2048];
    uint64_t now = cmn_wall_ns();
    int tm[6];
    cmn_utc_fields((int64_t)(now / 1000000000ull), tm);
    int n = snprintf(line, sizeof(line),
                     "%04d-%02d-%02d %02d:%02d:%02d.%03u UTC | %s | %s | (%s) ",
                     tm[0], tm[1], tm[2], tm[3], tm[4], tm[5],
                     (unsigned)(now / 1000000ull % 1000), logger, names[lvl],
                     comp ? comp : "-");
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
    int m = vsnprintf(line + len, sizeof(line) - len - 1, fmt, ap);
    if (m > 0)
        len += (size_t)m < sizeof(line) - len - 1 ? (size_t)m
                                                  : sizeof(line) - len - 2;
    line[len++] = '\n';
    ssize_t w;
    do {
        w = write(STDERR_FILENO, line, len);
    } while (w < 0 && errno == EINTR);
}

void cmn_log(enum cmn_log_level lvl, const char *comp, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cmn_vlog(lvl, comp, fmt, ap);
    va_end(ap);
}

void cmn_log_rl(struct cmn_ratelimit *rl, enum cmn_log_level lvl,
                const char *comp, const char *fmt, ...)
{
    if (!cmn_log_enabled(lvl))
        return;
    uint64_t now = cmn_mono_ns();
    if (rl->window_start_ns == 0 ||
        now - rl->window_start_ns >= (uint64_t)rl->interval_ms * 1000000ull) {
        rl->window_start_ns = now;
        rl->printed = 0;
    }
    if (rl->printed >= rl->burst) {
        rl->suppressed++;
        return;
    }
    rl->printed++;
    if (rl->suppressed) {
        cmn_log(lvl, comp, "(%llu similar messages suppressed)",
                (unsigned long long)rl->suppressed);
        rl->suppressed = 0;
    }
    va_list ap;
    va_start(ap, fmt);
    cmn_vlog(lvl, comp, fmt, ap);
    va_end(ap);
}

void cmn_checkpoint_log(const char *comp, const char *phase, const char *name,
                        uint64_t took_ns)
{
    if (!cmn_log_enabled(CMN_LOG_DEBUG))
        return;
    uint64_t now = cmn_mono_ns();
    uint64_t start = cmn_process_start_ns();
    uint64_t cum_us = now > start ? (now - start) / 1000u : 0;
    uint64_t took_us = took_ns / 1000u;
    cmn_log(CMN_LOG_DEBUG, comp,
            "checkpoint %s %s: took %llu.%03llu ms, cumulative %llu.%03llu ms",
            phase, name, (unsigned long long)(took_us / 1000),
            (unsigned long long)(took_us % 1000),
            (unsigned long long)(cum_us / 1000),
            (unsigned long long)(cum_us % 1000));
}
