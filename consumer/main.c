/* chat-consumer: a member of the consumer group on the events topic. It
 * orders each conversation's messages (dense seq from 1), stores them and
 * the receipt watermarks in MongoDB with one bulk write per batch, routes
 * live deliveries to gateways through Redis, and commits Kafka offsets only
 * after the write, so that a crash at any point replays, idempotently, what
 * was not committed. See cs-pipeline.h for a batch's steps and cs-source.h
 * for rebalancing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat-id.h"
#include "chat-log.h"
#include "chat-mongo.h"
#include "cs-config.h"
#include "cs-dlq.h"
#include "cs-pipeline.h"
#include "cs-route.h"
#include "cs-source.h"
#include "cs-state.h"
#include "cs-stop.h"
#include "cs-store.h"

#define POLL_WAIT_MS   100
#define STATS_EVERY_MS 10000

typedef struct owner_s {
    cs_pipeline_t *p;
    cs_state_t *state;
} owner_t;

/* Partitions that arrive or leave take their cached state with them: a
 * partition we gain may have been written by another member meanwhile.
 * Those that leave first get their conversations' last_seq written, so
 * that the next owner starts from the right seqs without a scan. */
static void change_cb(const int32_t *parts, size_t n, int gained, void *data)
{
    owner_t *o = data;
    if (!gained)
        cs_pipeline_flush(o->p, parts, n, 1);
    if (parts == NULL)
        cs_state_clear(o->state);
    else
        cs_state_clear_partitions(o->state, parts, n);
}

static void log_stats(const cs_stats_t *s, const cs_state_t *state)
{
    CHAT_INFO("stats: events %llu, stored %llu, duplicates %llu, receipts %llu (stale %llu), "
              "edits/deletes/membership %llu, dead letters %llu, batches %llu, careful reruns "
              "%llu, store retries %llu, publishes %llu, route errors %llu, last_seq writes "
              "%llu (lagging %zu), cached %zu (%llu loaded ahead)",
              (unsigned long long)s->events, (unsigned long long)s->messages,
              (unsigned long long)s->duplicates, (unsigned long long)s->receipts,
              (unsigned long long)s->stale, (unsigned long long)s->changes,
              (unsigned long long)s->dlq, (unsigned long long)s->batches,
              (unsigned long long)s->conflicts, (unsigned long long)s->retries,
              (unsigned long long)s->published, (unsigned long long)s->route_errors,
              (unsigned long long)s->last_seq_writes, cs_state_dirty_count(state),
              cs_state_size(state), (unsigned long long)s->loaded_ahead);
}

/* Waits for the store and creates its indexes; the store may start after
 * us. Returns 0, or CHAT_ECLOSED when asked to stop first. */
static int prepare_store(cs_store_t *store)
{
    chat_error_t err;
    uint64_t backoff = 0;
    while (!cs_stopping()) {
        if (cs_store_prepare(store, &err) == 0)
            return 0;
        backoff = cs_stop_backoff(backoff);
        CHAT_WARN("store %s: %s; retrying in %llu ms", cs_store_db(store), err.message,
                  (unsigned long long)backoff);
        cs_stop_pause_ms(backoff);
    }
    return CHAT_ECLOSED;
}

/* The poll loop. Returns the exit status. It holds the batch it applies and
 * up to CS_AHEAD_BATCHES more that have already arrived: a batch that must
 * load conversations loads theirs in the same query (cs_load_convs). */
static int run(const cs_config_t *cfg, cs_source_t *src, cs_pipeline_t *p, cs_state_t *state)
{
    size_t batch = (size_t)cfg->batch_max, max = (1 + CS_AHEAD_BATCHES) * batch, have = 0;
    rd_kafka_message_t **msgs = calloc(max, sizeof(*msgs));
    uint64_t backoff = 0, next_stats = chat_mono_ms() + STATS_EVERY_MS;
    int status = 0;
    if (msgs == NULL) {
        CHAT_ERROR("out of memory");
        return 1;
    }
    while (!cs_stopping()) {
        cs_source_fill(src, msgs, batch, max, POLL_WAIT_MS, (int)cfg->batch_ms, &have);
        if (have > 0) {
            size_t n = have < batch ? have : batch, done = n;
            /* A signal during the batch lets it finish and commit: that is
             * the clean stop. SIGKILL is safe too: nothing is committed
             * before its write. */
            if (cs_pipeline_run(p, msgs, n, msgs + n, have - n) == 0) {
                cs_source_commit(src, msgs, n);
                backoff = 0;
            } else {
                /* Everything held is read again: the messages after the
                 * batch come back after the rewind too. */
                done = have;
                if (cs_source_rewind(src, msgs, have) != 0) {
                    CHAT_ERROR("cannot rewind a failed batch; exiting without commit so that "
                               "the group replays it");
                    status = 1;
                    cs_stop_request();
                } else {
                    backoff = cs_stop_backoff(backoff);
                    cs_stop_pause_ms(backoff);
                }
            }
            for (size_t i = 0; i < done; i++)
                rd_kafka_message_destroy(msgs[i]);
            memmove(msgs, msgs + done, (have - done) * sizeof(*msgs));
            have -= done;
        } else {
            cs_pipeline_flush(p, NULL, 0, 0); /* what waited its time, while idle */
        }
        if (chat_mono_ms() >= next_stats) {
            log_stats(cs_pipeline_stats(p), state);
            next_stats = chat_mono_ms() + STATS_EVERY_MS;
        }
    }
    /* Held past the last batch, never applied: their partitions' next
     * owners (or this consumer, restarted) read them from the commit. */
    for (size_t i = 0; i < have; i++)
        rd_kafka_message_destroy(msgs[i]);
    free(msgs);
    /* Everything lagging is written before we leave the group, so the
     * partitions' next owners start from exact last_seqs (the revocation
     * on leaving then finds nothing left to write). */
    cs_pipeline_flush(p, NULL, 0, 1);
    return status;
}

int main(int argc, char **argv)
{
    cs_config_t cfg;
    chat_error_t err = {0, ""};
    cs_state_t *state = NULL;
    cs_store_t *store = NULL;
    cs_route_t *route = NULL;
    cs_dlq_t *dlq = NULL;
    cs_pipeline_t *p = NULL;
    cs_source_t *src = NULL;
    owner_t owner;
    int status = 1;

    memset(&cfg, 0, sizeof(cfg));
    int rc = cs_config_load(&cfg, argc, argv, &err);
    if (rc == 1)
        return 0;
    if (rc != 0) {
        fprintf(stderr, "chat-consumer: %s\n", err.message);
        return 2;
    }
    chat_log_init("chat-consumer", chat_log_level_parse(cfg.log_level));

    cs_stop_install();

    CHAT_INFO("consumer %s: group %s, topic %s, batch %lld events / %lld ms, route %s the write, "
              "last_seq written after %lld ms, fetches wait %lld ms for %lld bytes",
              cfg.consumer_id, cfg.group, cfg.topic, (long long)cfg.batch_max,
              (long long)cfg.batch_ms, cfg.route_first ? "before" : "after",
              (long long)cfg.last_seq_ms, (long long)cfg.fetch_wait_ms,
              (long long)cfg.fetch_min_bytes);
    if ((state = cs_state_new()) == NULL) {
        CHAT_ERROR("out of memory");
        goto out;
    }
    if ((store = cs_store_new(cfg.mongo_uri, cfg.consumer_id, (int)cfg.store_lanes, &err)) ==
            NULL ||
        (route = cs_route_new(cfg.redis_host, (int)cfg.redis_port, &err)) == NULL ||
        (dlq = cs_dlq_new(cfg.kafka_brokers, cfg.dlq_topic, cfg.consumer_id, &err)) == NULL ||
        (p = cs_pipeline_new(&cfg, state, store, route, dlq, &err)) == NULL) {
        CHAT_ERROR("%s", err.message);
        goto out;
    }
    if (prepare_store(store) != 0) {
        status = 0;
        goto out;
    }
    CHAT_INFO("store: database %s ready", cs_store_db(store));
    owner = (owner_t){p, state};
    src = cs_source_new(cfg.kafka_brokers, cfg.group, cfg.topic, cfg.consumer_id,
                        (int)cfg.fetch_wait_ms, (int)cfg.fetch_min_bytes, change_cb, &owner, &err);
    if (src == NULL) {
        CHAT_ERROR("%s", err.message);
        goto out;
    }
    status = run(&cfg, src, p, state);
    CHAT_INFO("stopping: leaving the group");
out:
    cs_source_destroy(src);
    if (p != NULL)
        log_stats(cs_pipeline_stats(p), state);
    cs_pipeline_destroy(p);
    cs_dlq_destroy(dlq);
    cs_route_destroy(route);
    cs_store_destroy(store);
    cs_state_destroy(state);
    mongoc_cleanup();
    return status;
}
