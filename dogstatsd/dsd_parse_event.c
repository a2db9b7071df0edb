/*
 * dsd_parse_event.c - parsers for DogStatsD events (spec/pipeline.md §1.6)
 * and service checks (§1.7).
 *
 * Pure functions over (ptr, len) slices like the metric parser. The one
 * difference: an event's title and text have the two-byte sequence
 * backslash-n turned into a newline, so they are copied into the caller's
 * scratch buffer; every other slice points into the line. Lengths taken from
 * the wire are checked against the bytes present before any arithmetic that
 * could overflow. A malformed optional field (bad d:, p:, t:) is ignored and
 * the item is still accepted, as the Agent does.
 */
#include "dogstatsd.h"

#include <string.h>

static bool has_prefix(const char *f, size_t len, const char *pfx, size_t n)
{
    return len >= n && memcmp(f, pfx, n) == 0;
}

/* Copies src to dst turning "\\n" (backslash, 'n') into '\n'; returns the
 * bytes written (never more than len). */
static size_t unescape(char *dst, const char *src, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\\' && i + 1 < len && src[i + 1] == 'n') {
            dst[o++] = '\n';
            i++;
        } else {
            dst[o++] = src[i];
        }
    }
    return o;
}

/* Calls fn on every '|'-separated field of [p, end), the empty ones
 * included (fn ignores them by prefix). */
static void for_each_field(const char *p, const char *end,
                           void (*fn)(const char *f, size_t len, void *out),
                           void *out)
{
    for (;;) {
        const char *fe = memchr(p, '|', (size_t)(end - p));
        if (fe == NULL)
            fe = end;
        fn(p, (size_t)(fe - p), out);
        if (fe == end)
            return;
        p = fe + 1;
    }
}

static void event_field(const char *f, size_t len, void *arg)
{
    struct agg_event *ev = arg;
    int64_t ts;
    if (has_prefix(f, len, "d:", 2)) {
        if (cmn_parse_i64(cmn_slice(f + 2, len - 2), &ts) == 0)
            ev->timestamp = ts;
    } else if (has_prefix(f, len, "h:", 2)) {
        ev->host = cmn_slice(f + 2, len - 2);
    } else if (has_prefix(f, len, "k:", 2)) {
        ev->aggregation_key = cmn_slice(f + 2, len - 2);
    } else if (has_prefix(f, len, "p:", 2)) {
        struct cmn_slice v = cmn_slice(f + 2, len - 2);
        if (cmn_slice_eq_cstr(v, "normal"))
            ev->priority = AGG_PRIO_NORMAL;
        else if (cmn_slice_eq_cstr(v, "low"))
            ev->priority = AGG_PRIO_LOW;
    } else if (has_prefix(f, len, "s:", 2)) {
        ev->source_type_name = cmn_slice(f + 2, len - 2);
    } else if (has_prefix(f, len, "t:", 2)) {
        struct cmn_slice v = cmn_slice(f + 2, len - 2);
        if (cmn_slice_eq_cstr(v, "error"))
            ev->alert_type = AGG_ALERT_ERROR;
        else if (cmn_slice_eq_cstr(v, "warning"))
            ev->alert_type = AGG_ALERT_WARNING;
        else if (cmn_slice_eq_cstr(v, "info"))
            ev->alert_type = AGG_ALERT_INFO;
        else if (cmn_slice_eq_cstr(v, "success"))
            ev->alert_type = AGG_ALERT_SUCCESS;
    } else if (has_prefix(f, len, "#", 1)) {
        ev->tags = cmn_slice(f + 1, len - 1);
    }
    /* c:, e:, card: and unknown prefixes: ignored */
}

/*
 * An event:
 *
 *     _e{5,4}:title|text|d:21|h:host|k:key|p:low|s:src|t:warning|#a,b
 *     ^  ^ ^ ^^    ^^   ^
 *     |  | | ||    ||   optional fields, by prefix, any order
 *     |  | | ||    |text: text_len bytes after the separator byte
 *     |  | | ||    separator byte (not checked)
 *     |  | | |title: title_len bytes (may hold '|')
 *     |  | | header ends at the first ':'
 *     |  | text_len (header[3..len-1) split at the first ',')
 *     |  title_len
 *     header, at least 7 bytes; its last byte ('}') is not checked
 */
enum dsd_err dsd_parse_event(const char *line, size_t len,
                             struct agg_event *out, char *scratch,
                             size_t scratch_len)
{
    const char *colon = len ? memchr(line, ':', len) : NULL;
    if (colon == NULL)
        return DSD_ERR_BAD_EVENT;
    size_t hlen = (size_t)(colon - line);
    if (hlen < 7)
        return DSD_ERR_BAD_EVENT;
    const char *lens = line + 3;
    size_t lens_len = hlen - 4;
    const char *comma = memchr(lens, ',', lens_len);
    if (comma == NULL)
        return DSD_ERR_BAD_EVENT;
    int64_t tl, xl;
    if (cmn_parse_i64(cmn_slice(lens, (size_t)(comma - lens)), &tl) != 0 ||
        cmn_parse_i64(
            cmn_slice(comma + 1, (size_t)(lens + lens_len - comma - 1)), &xl) !=
            0 ||
        tl < 0 || xl < 0)
        return DSD_ERR_BAD_EVENT;
    if (tl == 0)
        return DSD_ERR_BAD_EVENT; /* empty title */
    const char *rest = colon + 1;
    size_t rlen = len - hlen - 1;
    /* rlen >= tl + 1 + xl, written so that nothing can overflow */
    if ((uint64_t)tl >= rlen || (uint64_t)xl > rlen - (size_t)tl - 1)
        return DSD_ERR_BAD_EVENT;
    size_t title_len = (size_t)tl, text_len = (size_t)xl;
    if (scratch_len < title_len + text_len)
        return DSD_ERR_BAD_EVENT;

    memset(out, 0, sizeof(*out));
    size_t n = unescape(scratch, rest, title_len);
    out->title = cmn_slice(scratch, n);
    size_t m = unescape(scratch + n, rest + title_len + 1, text_len);
    out->text = cmn_slice(scratch + n, m);
    out->priority = AGG_PRIO_NORMAL;
    out->alert_type = AGG_ALERT_INFO;

    const char *p = rest + title_len + 1 + text_len;
    const char *end = line + len;
    if (end - p > 1) {
        for_each_field(p + 1, end, event_field, out);
    }
    return DSD_OK;
}

static void sc_field(const char *f, size_t len, void *arg)
{
    struct agg_service_check *sc = arg;
    int64_t ts;
    if (has_prefix(f, len, "d:", 2)) {
        if (cmn_parse_i64(cmn_slice(f + 2, len - 2), &ts) == 0)
            sc->timestamp = ts;
    } else if (has_prefix(f, len, "h:", 2)) {
        sc->host = cmn_slice(f + 2, len - 2);
    } else if (has_prefix(f, len, "#", 1)) {
        sc->tags = cmn_slice(f + 1, len - 1);
    } else if (has_prefix(f, len, "m:", 2)) {
        sc->message = cmn_slice(f + 2, len - 2);
    }
    /* c:, e:, card: and unknown prefixes: ignored */
}

/*
 * A service check:
 *
 *     _sc|agent.up|0|d:21|h:host|#a,b|m:message
 *     ^   ^        ^ ^
 *     |   name     | optional fields, by prefix, any order
 *     |            status: exactly 0, 1, 2 or 3
 *     first 4 bytes dropped unchecked; at least two '|' in the line
 */
enum dsd_err dsd_parse_service_check(const char *line, size_t len,
                                     struct agg_service_check *out)
{
    if (len < 4)
        return DSD_ERR_BAD_SERVICE_CHECK;
    const char *end = line + len;
    const char *b1 = memchr(line, '|', len);
    const char *b2 = b1 ? memchr(b1 + 1, '|', (size_t)(end - b1 - 1)) : NULL;
    if (b2 == NULL)
        return DSD_ERR_BAD_SERVICE_CHECK;
    const char *name = line + 4;
    const char *ne = memchr(name, '|', (size_t)(end - name));
    if (ne == NULL || ne == name)
        return DSD_ERR_BAD_SERVICE_CHECK;
    const char *st = ne + 1;
    const char *se = memchr(st, '|', (size_t)(end - st));
    if (se == NULL)
        se = end;
    if (se - st != 1 || st[0] < '0' || st[0] > '3')
        return DSD_ERR_BAD_SERVICE_CHECK;

    memset(out, 0, sizeof(*out));
    out->name = cmn_slice(name, (size_t)(ne - name));
    out->status = st[0] - '0';
    if (se < end) {
        for_each_field(se + 1, end, sc_field, out);
    }
    return DSD_OK;
}
