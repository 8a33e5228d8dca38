/* The dead-letter producer: an event that cannot be applied (undecodable,
 * unknown conversation, sender not a member, ...) is copied to the
 * dead-letter topic with the same key and value and a "reason" header, so
 * that its partition moves on and an operator can see why. The batch's
 * offsets are committed only after cs_dlq_flush reports every copy
 * delivered. */
#ifndef CS_DLQ_H
#define CS_DLQ_H

#include <librdkafka/rdkafka.h>

#include "chat-error.h"

typedef struct cs_dlq_s cs_dlq_t;

/* Creates the producer (idempotent, acks=all). topic is copied. Returns the
 * handle, or NULL with err set. */
cs_dlq_t *cs_dlq_new(const char *brokers, const char *topic, const char *client_id,
                     chat_error_t *err);

/* Flushes what is pending (bounded) and frees. NULL is a no-op. */
void cs_dlq_destroy(cs_dlq_t *dlq);

/* Queues a copy of rkm (key, value; copied) with header "reason" = reason and
 * header "source" = "<topic>/<partition>@<offset>". Returns 0, or CHAT_EKAFKA
 * when librdkafka refused it even after waiting for room (about a second). */
int cs_dlq_send(cs_dlq_t *dlq, const rd_kafka_message_t *rkm, const char *reason);

/* Waits (at most timeout_ms) until every queued copy is acknowledged.
 * Returns 0 if all copies sent since the last call were delivered, or
 * CHAT_EKAFKA (one failed or the wait timed out). */
int cs_dlq_flush(cs_dlq_t *dlq, int timeout_ms);

#endif
