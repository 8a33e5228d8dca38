/* The consumer's Kafka side: a member of the consumer group on one topic
 * that hands out batches, commits a batch's offsets once it is applied, and
 * rewinds a batch that must be applied again.
 *
 * Rebalancing: the group uses cooperative-sticky (lib/chat-kafka.c), so a
 * rebalance moves only the partitions that change owner and the others keep
 * their warm caches. The rebalance callback does the incremental
 * assign/unassign itself, tells the owner through change_cb which
 * partitions came or went (the pipeline drops their cached state), and
 * drops from the batch being collected any message of a partition it lost.
 * Eager strategies (set partition.assignment.strategy in extra conf) work
 * too: then every partition is revoked and assigned again, and all state is
 * dropped. */
#ifndef CS_SOURCE_H
#define CS_SOURCE_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#include "chat-error.h"

typedef struct cs_source_s cs_source_t;

/* Called from inside cs_source_fill when partitions are assigned (gained=1)
 * or revoked or lost (gained=0). */
typedef void (*cs_source_change_cb)(const int32_t *parts, size_t n, int gained, void *data);

/* Joins group on topic. The broker may hold a fetch up to fetch_wait_ms
 * until it has fetch_min_bytes for it. Strings are used during the call
 * only. Returns the source, or NULL with err set. */
cs_source_t *cs_source_new(const char *brokers, const char *group, const char *topic,
                           const char *client_id, int fetch_wait_ms, int fetch_min_bytes,
                           cs_source_change_cb change_cb, void *data, chat_error_t *err);

/* An assign-based source for chat-replay: a consumer that joins no group
 * (its group.id, group, is never joined and nothing is committed) and reads
 * the partitions of start (a list of topic, partition and starting offset;
 * copied) from those offsets. change_cb is never called. Returns the
 * source, or NULL with err set (CHAT_ENOMEM, CHAT_EKAFKA). */
cs_source_t *cs_source_new_assigned(const char *brokers, const char *group, const char *topic,
                                    const char *client_id,
                                    const rd_kafka_topic_partition_list_t *start,
                                    chat_error_t *err);

/* The source's handle, for metadata and positions (borrowed). */
rd_kafka_t *cs_source_handle(cs_source_t *src);

/* Leaves the group cleanly (the revocation runs change_cb) and frees. NULL
 * is a no-op. */
void cs_source_destroy(cs_source_t *src);

/* Tops up msgs[*n..max) (the caller holds msgs[0..*n) already and owns
 * every message: rd_kafka_message_destroy each): waits up to wait_ms for a
 * first message when it holds none, then up to batch_ms more while it holds
 * fewer than want; past want it takes only what has already arrived. A
 * revocation during the call takes the lost partitions' messages out of
 * msgs[0..*n) (all of them, not only the new ones). Returns 0. */
int cs_source_fill(cs_source_t *src, rd_kafka_message_t **msgs, size_t want, size_t max,
                   int wait_ms, int batch_ms, size_t *n);

/* Commits each partition of msgs[0..n) at its last offset + 1:
 * asynchronously for a group member (a failure is logged when the next
 * fill serves its result; the offsets are committed again, synchronously,
 * when their partitions are revoked, so a clean hand-over or stop loses
 * none), synchronously otherwise. Returns 0 or CHAT_EKAFKA (the batch is
 * applied anyway; a later commit or a replay covers it). */
int cs_source_commit(cs_source_t *src, rd_kafka_message_t *const *msgs, size_t n);

/* Seeks each partition of msgs[0..n) back to its first offset in msgs, so
 * that the next fills return the same messages again. Partitions no longer
 * assigned are skipped. Returns 0, or CHAT_EKAFKA when a partition still
 * assigned could not be rewound: the caller must then not commit again
 * (exiting is the safe way out: the group replays from the last commit). */
int cs_source_rewind(cs_source_t *src, rd_kafka_message_t *const *msgs, size_t n);

#endif
