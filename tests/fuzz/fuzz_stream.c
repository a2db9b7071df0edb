/*
 * fuzz_stream.c - libFuzzer target: Unix-stream framing (4-byte LE length,
 * then the packet) as dsd_stream.c does it, over a real server object with
 * a counting sink and a small dogstatsd_buffer_size (64), so frames that
 * are too big, exact and partial all occur. The input is cut into reads:
 * each read is 1 + (next byte % 61) bytes, appended to the connection
 * buffer as the read callback does. Invariants: the buffer never holds
 * more than its capacity, a refused frame ends the connection, and every
 * complete frame is counted as a packet with its bytes.
 */
#include <string.h>

#include "dsd_int.h"
#include "fuzz.h"

#define BUF_SIZE 64

static int sink_metric(void *d, const struct agg_metric *m)
{
    (void)m;
    ++*(size_t *)d;
    return 0;
}
static int sink_event(void *d, const struct agg_event *e)
{
    (void)e;
    ++*(size_t *)d;
    return 0;
}
static int sink_check(void *d, const struct agg_service_check *c)
{
    (void)c;
    ++*(size_t *)d;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0)
        return 0;
    size_t items = 0;
    struct dsd_sink sink = {sink_metric, sink_event, sink_check, &items};
    struct dsd_config cfg;
    dsd_config_defaults(&cfg);
    cfg.port = 0;
    cfg.buffer_size = BUF_SIZE;
    struct dsd *s = NULL;
    if (dsd_create(&loop, &cfg, &sink, &s) != 0)
        goto out;
    size_t cap = 4 + BUF_SIZE, used = 0;
    char buf[4 + BUF_SIZE];
    uint64_t frames = 0, bytes = 0;
    /* a model of the framing: what must come out */
    size_t i = 0;
    bool open = true;
    while (i < size && open) {
        size_t want = 1 + data[i++] % 61;
        if (want > cap - used)
            want = cap - used;
        if (want > size - i)
            want = size - i;
        memcpy(buf + used, data + i, want);
        used += want;
        i += want;
        /* the expected frames in buf before the call */
        size_t off = 0;
        uint64_t f = 0, b = 0;
        bool too_big = false;
        while (used - off >= 4) {
            uint32_t len = (uint32_t)(unsigned char)buf[off] |
                           (uint32_t)(unsigned char)buf[off + 1] << 8 |
                           (uint32_t)(unsigned char)buf[off + 2] << 16 |
                           (uint32_t)(unsigned char)buf[off + 3] << 24;
            if (len > BUF_SIZE) {
                too_big = true;
                break;
            }
            if (used - off - 4 < len)
                break;
            f++;
            b += len;
            off += 4 + len;
        }
        open = dsd__stream_frames(s, buf, &used);
        FUZZ_CHECK(open == !too_big);
        FUZZ_CHECK(used <= cap);
        FUZZ_CHECK(!open || used == 0 || used < 4 + BUF_SIZE);
        frames += f;
        bytes += b;
        struct dsd_stats st;
        dsd_get_stats(s, &st);
        FUZZ_CHECK(st.packets == frames);
        FUZZ_CHECK(st.bytes == bytes);
        FUZZ_CHECK(st.stream_frames_too_big == (open ? 0u : 1u));
        FUZZ_CHECK(items <=
                   st.metric_lines + st.event_lines + st.service_check_lines);
    }
    dsd_destroy(s);
out:
    dsd_config_free(&cfg);
    FUZZ_CHECK(uv_loop_close(&loop) == 0);
    return 0;
}
