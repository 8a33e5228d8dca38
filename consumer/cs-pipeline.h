/* One batch of events, from Kafka messages to store writes, dead letters
 * and live deliveries. Per batch, in Kafka order (which is per-partition
 * order, and a conversation lives on one partition):
 *
 *  1. decode every event; what cannot be decoded is a dead letter;
 *  2. load what the cache lacks, one query per kind: conversations (members)
 *     and their last seq, which message ids are already stored, members'
 *     watermarks, and the messages that edits and deletes target;
 *  3. apply in order: a new message gets seq = ++last_seq of its
 *     conversation, a stored one (a replay or a client resend) keeps its
 *     seq, a receipt moves a watermark only forward and never past last_seq;
 *  4. write everything in one bulk per collection (cs-store), send the dead
 *     letters and route the frames (one PUBLISH per gateway), then wait for
 *     the dead letters to be acknowledged.
 *
 * If a read or write fails, nothing is committed: cs_pipeline_run returns
 * CHAT_EAGAIN after dropping all cached state, and the caller rewinds the
 * batch. Applying a batch again is idempotent: stored ids keep their seq,
 * watermarks are $max, edits set the same values. */
#ifndef CS_PIPELINE_H
#define CS_PIPELINE_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#include "cs-config.h"
#include "cs-dlq.h"
#include "cs-route.h"
#include "cs-state.h"
#include "cs-store.h"

/* Counters since start, for the periodic log line. */
typedef struct cs_stats_s {
    uint64_t events;     /* Kafka messages handled (retries count again) */
    uint64_t messages;   /* messages stored for the first time */
    uint64_t duplicates; /* messages already stored or repeated in a batch */
    uint64_t receipts;   /* watermarks moved forward */
    uint64_t stale;      /* receipts that moved nothing */
    uint64_t changes;    /* edits and deletes applied */
    uint64_t dlq;        /* dead letters sent */
    uint64_t batches;    /* batches applied and committed-to-be */
    uint64_t retries;    /* batches that failed and are read again */
    uint64_t published;  /* PUBLISHes to gateways */
    uint64_t route_errors;
} cs_stats_t;

typedef struct cs_pipeline_s cs_pipeline_t;

/* Returns a pipeline over the given parts (borrowed: they must outlive it),
 * sized for cfg->batch_max events; or NULL with err set (no memory). */
cs_pipeline_t *cs_pipeline_new(const cs_config_t *cfg, cs_state_t *state, cs_store_t *store,
                               cs_route_t *route, cs_dlq_t *dlq, chat_error_t *err);

/* Frees the pipeline (not its parts). NULL is a no-op. */
void cs_pipeline_destroy(cs_pipeline_t *p);

/* Applies msgs[0..n) (n <= batch_max; still owned by the caller). Returns 0
 * when the batch may be committed, or CHAT_EAGAIN when it must be read again
 * (a store read or write failed, a dead letter was not acknowledged, or the
 * cache proved stale); the cache is then empty. */
int cs_pipeline_run(cs_pipeline_t *p, rd_kafka_message_t *const *msgs, size_t n);

/* The counters. */
const cs_stats_t *cs_pipeline_stats(const cs_pipeline_t *p);

#endif
