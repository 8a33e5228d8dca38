/* One batch of events, from Kafka messages to store writes, dead letters
 * and live deliveries. Per batch, in Kafka order (which is per-partition
 * order, and a conversation lives on one partition):
 *
 *  1. decode every event; what cannot be decoded is a dead letter;
 *  2. load what the cache lacks, one query per kind: conversations, members'
 *     watermarks, the events that edits and deletes target, and (careful
 *     mode) which event ids are already stored;
 *  3. read the presence of every possible recipient (one Redis pipeline);
 *  4. apply in order: check the sender (and the rules of edits and
 *     membership changes) against the state at that event; a new event gets
 *     seq = ++last_seq of its conversation, a stored one (a replay or a
 *     client resend) keeps its seq; a receipt moves a watermark only forward
 *     and never past last_seq; each frame is gathered for the gateways of the
 *     conversation's members at that point;
 *  5. write everything (cs-store), send the dead letters, publish one
 *     message per gateway, and wait for the dead letters' acknowledgements.
 *
 * Modes. A batch first runs fast: no reads of the messages at all,
 * last_seq from the conversation document (or the cache). A duplicate (a
 * replay after a crash, a client's resend) then shows up as a duplicate-key
 * error of the ordered insert, which leaves a prefix stored, and the same
 * batch runs again at once in careful mode, which asks which event ids are
 * stored (they keep their seq) and raises last_seq to what it finds (see
 * cs_load_messages for when that is max(seq)). Should that conflict too, a
 * thorough run also reads max(seq) of each conversation's messages. The
 * escalation matters on FerretDB, which answers both reads by scanning the
 * whole collection; MongoDB serves them from indexes. Correctness rests on
 * the unique indexes in every mode, never on the reads.
 *
 * last_seq. The conversation document's last_seq is a hint for the next
 * owner, not the truth (the messages are): a busy conversation's is written
 * once it has lagged the cache for last_seq_ms, oldest first, after a
 * batch or while idle, in chunks of one update command that take at most a
 * tenth of the time; and every lagging one before its partition is handed
 * over, before the cache is dropped and when the consumer stops
 * (cs_pipeline_flush). One update per conversation per batch was most of
 * what a batch cost on FerretDB. Only a crash leaves it behind the
 * messages; the new owner's first seq for such a conversation then
 * conflicts on {conv, seq}, and the thorough mode finds max(seq).
 *
 * If a read or write fails, nothing is committed: cs_pipeline_run returns
 * CHAT_EAGAIN after dropping the cached state of the batch's conversations
 * (the only state an attempt changes), and the caller rewinds the
 * batch. Applying a batch again is idempotent: stored ids keep their seq,
 * watermarks are $max, edits are guarded by their seq, membership writes
 * are sets. */
#ifndef CS_PIPELINE_H
#define CS_PIPELINE_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#include "chat-envelope.h"
#include "cs-config.h"
#include "cs-dlq.h"
#include "cs-route.h"
#include "cs-state.h"
#include "cs-store.h"

#define CS_STATS_TYPES (CHAT_EV_CONV_DELETE + 1)
/* How many batches of messages after the current one a caller may hold and
 * pass as ahead to cs_pipeline_run. */
#define CS_AHEAD_BATCHES 3

/* Counters since start, for the periodic log line. */
typedef struct cs_stats_s {
    uint64_t events;          /* Kafka messages handled (retries count again) */
    uint64_t messages;        /* events stored for the first time (all with a seq) */
    uint64_t duplicates;      /* events already stored or repeated in a batch */
    uint64_t receipts;        /* watermarks moved forward */
    uint64_t stale;           /* receipts that moved nothing */
    uint64_t changes;         /* edits, deletes and membership changes applied */
    uint64_t dlq;             /* dead letters sent */
    uint64_t batches;         /* batches applied and committed-to-be */
    uint64_t conflicts;       /* batches run again carefully (a duplicate key or check) */
    uint64_t retries;         /* batches that failed and are read again */
    uint64_t published;       /* PUBLISHes to gateways */
    uint64_t last_seq_writes; /* conversations' stored last_seq raised */
    uint64_t loaded_ahead;    /* conversations loaded for the messages after a batch */
    uint64_t route_errors;
    /* Per event type (index chat_event_type_t; 0: undecodable), events of
     * applied batches that wrote something new (a seq given, a watermark
     * moved, a change queued for an event not yet stored) and dead letters
     * (sent, or in a dry run those that would be). */
    uint64_t applied_by_type[CS_STATS_TYPES];
    uint64_t dlq_by_type[CS_STATS_TYPES];
} cs_stats_t;

typedef struct cs_pipeline_s cs_pipeline_t;

/* Returns a pipeline over the given parts (borrowed: they must outlive it),
 * sized for cfg->batch_max events; or NULL with err set (no memory). route
 * may be NULL: nothing is routed (clients get the events through sync).
 * dlq may be NULL when cfg->dry_run is set. In a dry run the pipeline reads
 * the store but writes nothing and sends no dead letters; its cache then
 * runs ahead of the store, as the writes would have left it. */
cs_pipeline_t *cs_pipeline_new(const cs_config_t *cfg, cs_state_t *state, cs_store_t *store,
                               cs_route_t *route, cs_dlq_t *dlq, chat_error_t *err);

/* Frees the pipeline (not its parts). NULL is a no-op. */
void cs_pipeline_destroy(cs_pipeline_t *p);

/* Applies msgs[0..n) (n <= batch_max; still owned by the caller). Returns 0
 * when the batch may be committed, or CHAT_EAGAIN when it must be read again
 * (a store read or write failed, a dead letter was not acknowledged, or the
 * cache proved stale); the batch's conversations are then dropped from
 * the cache. ahead[0..n_ahead) (may be NULL; n_ahead <= CS_AHEAD_BATCHES *
 * batch_max) are messages the caller already holds after the batch: when
 * the batch must load conversations, those their events need are loaded
 * in the same query (cs_load_convs). */
int cs_pipeline_run(cs_pipeline_t *p, rd_kafka_message_t *const *msgs, size_t n,
                    rd_kafka_message_t *const *ahead, size_t n_ahead);

/* Writes the stored last_seq of lagging conversations (of parts[0..np)
 * only, when parts is not NULL): with all (or last_seq_ms 0), every one;
 * else, unless the last chunk's budget still runs, one update command's
 * worth of those that have lagged last_seq_ms. cs_pipeline_run calls it
 * after each batch; the caller, between batches: when idle, before
 * partitions are handed over and at the end. Returns 0, or the store's
 * error (logged; they stay lagging). A dry run writes nothing. */
int cs_pipeline_flush(cs_pipeline_t *p, const int32_t *parts, size_t np, int all);

/* The counters. */
const cs_stats_t *cs_pipeline_stats(const cs_pipeline_t *p);

#endif
