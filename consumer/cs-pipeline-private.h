/* What cs-pipeline.c and cs-load.c share: the per-batch items and the
 * pipeline's buffers. Not for other modules. */
#ifndef CS_PIPELINE_PRIVATE_H
#define CS_PIPELINE_PRIVATE_H

#include "chat-buf.h"
#include "chat-envelope.h"
#include "cs-map.h"
#include "cs-pipeline.h"

/* One Kafka message of the batch and what became of it. */
typedef struct cs_item_s {
    rd_kafka_message_t *rkm;
    chat_event_t ev;
    int dlq; /* 1: to the dead-letter topic, reason in why */
    char why[160];
    cs_conv_t *conv; /* set by cs_load_convs when the conversation exists */
    cs_mark_t *mark; /* receipts: the sender's watermarks, set by cs_load_marks */
    /* Receipts: "<conv>/<user>"; edits and deletes: "<conv>/<target>". */
    char key[2 * CHAT_NAME_MAX + 24];
    struct cs_item_s *first; /* a message repeated in the batch: its first copy */
    int64_t stored_seq;      /* an event already stored: its seq; else 0 (careful) */
    int64_t seq;             /* an event with a seq: the seq it has */
    int framed;              /* a frame was built for it */
    int applied;             /* it wrote something new (cs_stats_t.applied_by_type) */
    size_t frame_off, frame_len;
} cs_item_t;

/* An event that an edit or delete may target, by "<conv>/<seq>". */
typedef struct cs_target_s {
    char key[CHAT_NAME_MAX + 24];
    char from[CHAT_NAME_MAX + 1];
    int is_message; /* a plain message, not an edit, delete or membership event */
    int deleted;
} cs_target_t;

struct cs_pipeline_s {
    const cs_config_t *cfg;
    cs_state_t *state;
    cs_store_t *store;
    cs_route_t *route;
    cs_dlq_t *dlq;
    uint64_t batch; /* batch number, for the marks in cs_conv_t */
    /* The modes of cs-pipeline.h: careful reads which event ids are stored;
     * thorough also takes last_seq from max(seq) of the messages. */
    int careful;
    int thorough;
    int need_careful; /* the fast mode met something only careful mode decides */
    int routing;      /* presence was read: deliveries are gathered */

    cs_item_t *items;
    size_t n, cap;
    cs_map_t *ids;     /* message event id -> its first item */
    cs_map_t *want;    /* a load step's scratch index */
    const char **keys; /* a query's arguments, (1 + CS_AHEAD_BATCHES) * cap entries */
    int64_t *seqs;
    size_t nkeys;

    cs_target_t *targets; /* 2 * cap: those stored plus those inserted now */
    size_t n_targets;
    cs_map_t *target_map;

    uint64_t now;            /* when the attempt began, chat_mono_ms() */
    cs_conv_t **dirty_convs; /* conversations whose last_seq this write raises */
    size_t n_dirty_convs, cap_dirty_convs;
    uint64_t last_seq_next;  /* no last_seq chunk before (the budget) */
    cs_mark_t **dirty_marks; /* watermarks to write (those with batch == this batch) */
    size_t n_dirty_marks;

    chat_buf_t frames;  /* every frame of the batch, back to back */
    chat_buf_t scratch; /* the batch's envelopes, read in place (bodies point here) */

    /* The messages the caller holds after the batch (cs_pipeline_run),
     * and what cs_load_convs reads of them. */
    rd_kafka_message_t *const *ahead;
    size_t n_ahead;
    chat_buf_t ahead_ids; /* their conversation ids, back to back */
    cs_map_t *ahead_want; /* conversation id -> the first message that needs it */
    cs_stats_t stats;
    cs_stats_t pending; /* this attempt's counts, added to stats if it is applied */
};

/* Marks item as a dead letter with a formatted reason. */
void cs_item_reject(cs_item_t *item, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
