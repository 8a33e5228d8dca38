/* Thin helpers over librdkafka: configured producer and consumer handles,
 * and the glue that lets a libuv loop serve a Kafka queue without blocking
 * (rd_kafka_queue_io_event_enable writes to a pipe that a uv_poll_t reads). */
#ifndef CHAT_KAFKA_H
#define CHAT_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <uv.h>

#include "chat-error.h"

typedef void (*chat_kafka_dr_cb)(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *data);

/* Creates an idempotent producer (acks=all, retries bounded by
 * delivery.timeout.ms) with the given linger. dr_cb receives each delivery
 * report with data as opaque. extra is NULL or a NULL-terminated list of
 * key, value pairs applied last. Returns the handle, or NULL with err set. */
rd_kafka_t *chat_kafka_producer_new(const char *brokers, int linger_ms, chat_kafka_dr_cb dr_cb,
                                    void *data, const char *const *extra, chat_error_t *err);

/* Creates a consumer in group (auto commit off, offsets committed by the
 * caller after its writes; earliest offset when the group has none) and
 * redirects the main queue to the consumer queue. extra as above. */
rd_kafka_t *chat_kafka_consumer_new(const char *brokers, const char *group,
                                    const char *const *extra, chat_error_t *err);

/* librdkafka's rebalance callback, with the handle's opaque as data. */
typedef void (*chat_kafka_rebalance_cb)(rd_kafka_t *rk, rd_kafka_resp_err_t code,
                                        rd_kafka_topic_partition_list_t *parts, void *data);

/* As chat_kafka_consumer_new, and installs rebalance_cb (NULL: librdkafka
 * assigns by itself) with data as the handle's opaque. A program that keeps
 * per-partition state needs the callback to learn what it gained and lost;
 * the callback must then do the (incremental_)assign itself, as librdkafka
 * requires. Returns the handle, or NULL with err set. */
rd_kafka_t *chat_kafka_consumer_new_with_rebalance(const char *brokers, const char *group,
                                                   const char *const *extra,
                                                   chat_kafka_rebalance_cb rebalance_cb, void *data,
                                                   chat_error_t *err);

typedef struct chat_kafka_uv_s chat_kafka_uv_t;

/* Serves rk's main queue from loop: delivery reports and error callbacks run
 * on the loop thread. Returns 0, CHAT_ENOMEM or a libuv error. */
int chat_kafka_uv_start(uv_loop_t *loop, rd_kafka_t *rk, chat_kafka_uv_t **out);

/* Stops serving and closes the handles; the memory is freed in their close
 * callbacks. NULL is a no-op. */
void chat_kafka_uv_stop(chat_kafka_uv_t *kuv);

#endif
