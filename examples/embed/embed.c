/*
 * embed.c - a program that embeds drainpipe through its installed library
 * alone (include/drainpipe.h, libdrainpipe, pkg-config):
 *
 *   cc embed.c $(pkg-config --cflags --libs drainpipe) -pthread -o embed
 *
 * It reads the Agent's DD_* variables (DD_API_KEY, DD_SITE or DD_DD_URL,
 * DD_TAGS, ...), turns the UDP listener off (in-process submission only),
 * submits metrics from two threads - DogStatsD text from one, the typed
 * helpers from the other - flushes (everything so far is delivered when
 * dp_flush returns), sends one more gauge and stops, which delivers that
 * too. With no API key the metrics go to a summary on stderr.
 *
 * Exit status: 0 when every call succeeded and nothing was dropped.
 */
#include <drainpipe.h>

#include <pthread.h>
#include <sched.h>
#include <stdio.h>

#define N 1000 /* samples per thread */

/* dp_submit never blocks: when its queue is full it refuses (and counts)
 * the text. This program would rather wait. */
static int submit(dp_pipeline *p, const char *line, size_t len)
{
    int rc;
    while ((rc = dp_submit(p, line, len)) == DP_EFULL)
        sched_yield();
    return rc;
}

static void *text_worker(void *arg)
{
    static const char line[] = "embed.requests:1|c|#worker:text\n";
    dp_pipeline *p = arg;
    for (int i = 0; i < N; i++)
        if (submit(p, line, sizeof(line) - 1) != 0)
            return (void *)1;
    return NULL;
}

static void *typed_worker(void *arg)
{
    dp_pipeline *p = arg;
    const char *tags[] = {"worker:typed"};
    for (int i = 0; i < N; i++) {
        int rc;
        while ((rc = dp_count(p, "embed.requests", 1, tags, 1, 1)) == DP_EFULL)
            sched_yield();
        while ((rc = dp_distribution(p, "embed.latency", i % 10, NULL, 0, 1)) ==
               DP_EFULL)
            sched_yield();
        if (rc != 0)
            return (void *)1;
    }
    return NULL;
}

int main(void)
{
    dp_config *cfg;
    dp_pipeline *p;
    int rc = dp_config_new(&cfg);
    if (rc == 0)
        rc = dp_config_from_env(cfg);
    if (rc == 0)
        rc = dp_config_set(cfg, "dogstatsd_port", "0");
    if (rc == 0)
        rc = dp_start(cfg, &p);
    dp_config_free(cfg);
    if (rc != 0) {
        fprintf(stderr, "embed: cannot start: %s\n", dp_strerror(rc));
        return 1;
    }

    pthread_t t[2];
    void *res[2] = {NULL, NULL};
    pthread_create(&t[0], NULL, text_worker, p);
    pthread_create(&t[1], NULL, typed_worker, p);
    pthread_join(t[0], &res[0]);
    pthread_join(t[1], &res[1]);
    int failed = res[0] != NULL || res[1] != NULL;

    rc = dp_flush(p, 5000);
    if (rc != 0) {
        fprintf(stderr, "embed: flush: %s\n", dp_strerror(rc));
        failed = 1;
    }
    struct dp_stats st;
    if (dp_stats(p, &st, sizeof(st)) == 0)
        printf("after flush: %llu submitted, %llu lines, %llu delivered\n",
               (unsigned long long)st.submitted,
               (unsigned long long)st.metric_lines,
               (unsigned long long)st.delivered);

    /* delivered by the stop's drain (the open bucket is flushed) */
    if (dp_gauge(p, "embed.phase", 2, NULL, 0, 1) != 0)
        failed = 1;
    rc = dp_stop(p, 2000, &st, sizeof(st));
    printf("stopped: %s, %llu payloads delivered, %llu dropped\n",
           dp_strerror(rc), (unsigned long long)st.delivered,
           (unsigned long long)st.dropped_payloads);
    if (rc != 0 || st.dropped_payloads != 0 || st.dropped_queue_full != 0)
        failed = 1;
    return failed;
}
