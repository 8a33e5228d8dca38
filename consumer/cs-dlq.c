#include "cs-dlq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat-kafka.h"
#include "chat-log.h"

struct cs_dlq_s {
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    char topic[256];
    int failed; /* delivery failures since the last flush */
};

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *data)
{
    cs_dlq_t *dlq = data;
    (void)rk;
    if (rkm->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        dlq->failed++;
        CHAT_ERROR("dlq %s: delivery failed: %s", dlq->topic, rd_kafka_err2str(rkm->err));
    }
}

cs_dlq_t *cs_dlq_new(const char *brokers, const char *topic, const char *client_id,
                     chat_error_t *err)
{
    cs_dlq_t *dlq = calloc(1, sizeof(*dlq));
    if (dlq == NULL) {
        chat_error_set(err, CHAT_ENOMEM, "dlq: out of memory");
        return NULL;
    }
    snprintf(dlq->topic, sizeof(dlq->topic), "%s", topic);
    const char *const extra[] = {"client.id", client_id, NULL};
    dlq->rk = chat_kafka_producer_new(brokers, 5, dr_cb, dlq, extra, err);
    if (dlq->rk == NULL)
        goto fail;
    dlq->rkt = rd_kafka_topic_new(dlq->rk, topic, NULL);
    if (dlq->rkt == NULL) {
        chat_error_set(err, CHAT_EKAFKA, "dlq %s: %s", topic,
                       rd_kafka_err2str(rd_kafka_last_error()));
        goto fail;
    }
    return dlq;
fail:
    cs_dlq_destroy(dlq);
    return NULL;
}

void cs_dlq_destroy(cs_dlq_t *dlq)
{
    if (dlq == NULL)
        return;
    if (dlq->rk != NULL && rd_kafka_flush(dlq->rk, 5000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        CHAT_WARN("dlq %s: %d copies still unsent at exit", dlq->topic, rd_kafka_outq_len(dlq->rk));
    if (dlq->rkt != NULL)
        rd_kafka_topic_destroy(dlq->rkt);
    if (dlq->rk != NULL)
        rd_kafka_destroy(dlq->rk);
    free(dlq);
}

int cs_dlq_send(cs_dlq_t *dlq, const rd_kafka_message_t *rkm, const char *reason)
{
    char source[320];
    snprintf(source, sizeof(source), "%s/%d@%lld", rd_kafka_topic_name(rkm->rkt),
             (int)rkm->partition, (long long)rkm->offset);
    /* A full queue means poll and retry, bounded (STYLE.md). */
    for (int tries = 0; tries < 100; tries++) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            dlq->rk, RD_KAFKA_V_RKT(dlq->rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY(rkm->key, rkm->key_len), RD_KAFKA_V_VALUE(rkm->payload, rkm->len),
            RD_KAFKA_V_HEADER("reason", reason, -1), RD_KAFKA_V_HEADER("source", source, -1),
            RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            return 0;
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            CHAT_ERROR("dlq %s: produce of %s failed: %s", dlq->topic, source, rd_kafka_err2str(e));
            return CHAT_EKAFKA;
        }
        rd_kafka_poll(dlq->rk, 10);
    }
    CHAT_ERROR("dlq %s: queue still full, %s not sent", dlq->topic, source);
    return CHAT_EKAFKA;
}

int cs_dlq_flush(cs_dlq_t *dlq, int timeout_ms)
{
    rd_kafka_resp_err_t e = rd_kafka_flush(dlq->rk, timeout_ms);
    int failed = dlq->failed;
    dlq->failed = 0;
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        CHAT_ERROR("dlq %s: %d copies unacknowledged after %d ms", dlq->topic,
                   rd_kafka_outq_len(dlq->rk), timeout_ms);
        return CHAT_EKAFKA;
    }
    return failed > 0 ? CHAT_EKAFKA : 0;
}
