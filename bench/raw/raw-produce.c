/* chat-bench-produce: how fast librdkafka alone produces what the gateway
 * produces, with the gateway's own producer configuration. It is the
 * reference the gateway's ingest rate is compared to, an equivalent of
 * rdkafka_performance -P: the gap between the two figures is what the
 * gateway (WebSocket, JSON, membership checks, acknowledgements) costs.
 *
 * Each message is, by default, a real event envelope exactly as the gateway
 * encodes it (chat_event_encode), keyed by its conversation, and all of them
 * are encoded before the clock starts, so that the figure is librdkafka's
 * and the broker's alone. The clock runs from the first produce to the last
 * delivery report. Exit status: 0 when every message was acknowledged, 1
 * when any failed, 2 when the run could not be done as asked. */
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat-buf.h"
#include "chat-config.h"
#include "chat-envelope.h"
#include "chat-error.h"
#include "chat-id.h"
#include "chat-kafka.h"
#include "chat-log.h"
#include "raw-common.h"

#define PROGRAM "chat-bench-produce"

/* How long produce may keep finding the queue full, and how long the final
 * flush may take: twice the producer's delivery.timeout.ms (30 s), by which
 * time every message has been either acknowledged or failed. */
#define STALL_US    60000000u
#define FLUSH_MS    60000
#define POLL_EVERY  1000 /* produces between two polls for delivery reports */
#define RANDOM_POOL 4096 /* raw payloads start at varying offsets of this many bytes */

typedef struct rp_config_s {
    const char *kafka_brokers;
    const char *topic;
    int create_topic;
    int64_t partitions;
    int64_t count;
    int64_t size;
    int64_t convs;
    const char *conv_prefix;
    int64_t linger_ms;
    int envelope;
    int pre_encode;
    const char *json;
    const char *log_level;
} rp_config_t;

#define T rp_config_t
static const chat_conf_entry_t table[] = {
    /* The gateway's defaults (gateway/gw-config.c), so that both talk to
     * the same broker with the same batching unless told otherwise. */
    CHAT_CONF_STR_ENTRY(T, kafka_brokers, "127.0.0.1:19092", "Kafka bootstrap servers"),
    CHAT_CONF_STR_ENTRY(T, topic, "bench.raw",
                        "topic to produce to (not chat.events: no consumer should apply these)"),
    CHAT_CONF_BOOL_ENTRY(T, create_topic, "true",
                         "create the topic if it does not exist (the stack disables auto-create)"),
    CHAT_CONF_INT_ENTRY(T, partitions, "0", 0, 10000,
                        "partitions of a topic this tool creates (0: the broker's num.partitions, "
                        "which scripts/stack.sh sets to chat.events' count)"),
    CHAT_CONF_INT_ENTRY(T, count, "200000", 1, 10000000, "messages to produce"),
    CHAT_CONF_INT_ENTRY(T, size, "100", 1, 1048576, "message body (envelope) or payload, bytes"),
    CHAT_CONF_INT_ENTRY(T, convs, "1000", 1, 1000000,
                        "distinct conversations, the message keys (round-robin)"),
    CHAT_CONF_STR_ENTRY(T, conv_prefix, "bench",
                        "conversations are <prefix>.c<k>, senders <prefix>.u<k>a"),
    CHAT_CONF_INT_ENTRY(T, linger_ms, "2", 0, 1000,
                        "producer linger in ms (the gateway's kafka_linger_ms default)"),
    CHAT_CONF_BOOL_ENTRY(T, envelope, "true",
                         "real event envelopes as the gateway makes them (--envelope=false: "
                         "payloads of --size random bytes)"),
    CHAT_CONF_BOOL_ENTRY(T, pre_encode, "true",
                         "encode every envelope before the clock starts (--pre-encode=false: "
                         "encode each just before its produce, as the gateway does)"),
    CHAT_CONF_STR_ENTRY(T, json, "", "write the result to this file as JSON"),
    CHAT_CONF_STR_ENTRY(T, log_level, "warn", "error, warn, info or debug"),
};
#undef T

/* What the delivery reports said. They are served by rd_kafka_poll and
 * rd_kafka_flush on this thread only, so no locking is needed. */
typedef struct rp_counts_s {
    int64_t delivered;
    int64_t failed;
    uint64_t last_us; /* when the latest report was served */
    rd_kafka_resp_err_t first_err;
} rp_counts_t;

/* The payloads: pre-encoded envelopes back to back in one arena, or a pool
 * of random bytes that raw payloads are cut from. */
typedef struct rp_payloads_s {
    chat_buf_t arena;
    size_t *end; /* pre-encoded: message i is arena[end[i - 1] .. end[i]) */
    char *body;  /* --size bytes of 'x' */
    chat_buf_t scratch;
    uint64_t bytes; /* payload bytes produced, for the averages */
} rp_payloads_t;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *data)
{
    rp_counts_t *counts = data;
    (void)rk;
    if (rkm->err) {
        if (counts->failed++ == 0)
            counts->first_err = rkm->err;
    } else {
        counts->delivered++;
    }
    counts->last_us = raw_mono_us();
}

/* Appends message i as the gateway would encode it: a fresh id, the
 * sender's connection as dev, the index as the client's id, now as ts. */
static int encode_one(const raw_sender_t *s, int64_t i, const char *body, size_t body_len,
                      chat_buf_t *out)
{
    chat_event_t ev;
    memset(&ev, 0, sizeof(ev));
    ev.type = CHAT_EV_MESSAGE;
    ev.ts = (int64_t)chat_now_ms();
    chat_id_new(ev.id, (uint64_t)ev.ts);
    memcpy(ev.conv, s->conv, sizeof(ev.conv));
    memcpy(ev.from, s->from, sizeof(ev.from));
    memcpy(ev.dev, s->dev, sizeof(ev.dev));
    snprintf(ev.cid, sizeof(ev.cid), "%lld", (long long)i);
    ev.body = body;
    ev.body_len = body_len;
    return chat_event_encode(&ev, out);
}

static int payloads_init(rp_payloads_t *p, const rp_config_t *cfg, const raw_sender_t *senders,
                         chat_error_t *err)
{
    size_t size = (size_t)cfg->size;
    memset(p, 0, sizeof(p[0]));
    chat_buf_init(&p->arena, SIZE_MAX);
    /* An envelope is its body escaped plus about 200 bytes of fields. */
    chat_buf_init(&p->scratch, 2 * size + 1024);
    if ((p->body = malloc(size)) == NULL)
        return chat_error_set(err, CHAT_ENOMEM, "out of memory for the body");
    memset(p->body, 'x', size);
    if (!cfg->envelope) {
        /* No two consecutive payloads alike, in case a codec is ever
         * configured; without one the bytes do not matter. */
        if (chat_buf_reserve(&p->arena, size + RANDOM_POOL) != 0)
            return chat_error_set(err, CHAT_ENOMEM, "out of memory for the payload pool");
        randombytes_buf(p->arena.data, size + RANDOM_POOL);
        p->arena.len = size + RANDOM_POOL;
        return 0;
    }
    /* The first envelope is checked by the decoder the consumer uses, so a
     * change to the encoder cannot make this tool produce what the
     * consumer would refuse. */
    chat_event_t ev;
    chat_error_t derr;
    int rc = encode_one(&senders[0], 0, p->body, size, &p->scratch);
    if (rc != 0)
        return chat_error_set(err, rc, "encoding an envelope: %s", chat_strerror(rc));
    memset(&ev, 0, sizeof(ev));
    if ((rc = chat_event_decode(p->scratch.data, p->scratch.len, size, &ev, &derr)) != 0)
        return chat_error_set(err, rc, "the envelope does not decode: %s", derr.message);
    chat_event_clear(&ev);
    if (!cfg->pre_encode)
        return 0;
    size_t n = (size_t)cfg->count;
    if ((p->end = malloc(n * sizeof(p->end[0]))) == NULL ||
        chat_buf_reserve(&p->arena, n * (p->scratch.len + 16)) != 0)
        return chat_error_set(err, CHAT_ENOMEM, "out of memory for %zu pre-encoded envelopes", n);
    for (size_t i = 0; i < n; i++) {
        if ((rc = encode_one(&senders[i % (size_t)cfg->convs], (int64_t)i, p->body, size,
                             &p->arena)) != 0)
            return chat_error_set(err, rc, "encoding envelope %zu: %s", i, chat_strerror(rc));
        p->end[i] = p->arena.len;
    }
    return 0;
}

static void payloads_close(rp_payloads_t *p)
{
    chat_buf_close(&p->arena);
    chat_buf_close(&p->scratch);
    free(p->end);
    free(p->body);
}

/* Points *data and *len at message i's payload, encoding it now unless it
 * was pre-encoded. Returns 0 or what chat_event_encode returns. */
static int payload_get(rp_payloads_t *p, const rp_config_t *cfg, const raw_sender_t *s, size_t i,
                       const char **data, size_t *len)
{
    if (!cfg->envelope) {
        *data = p->arena.data + (i * 61) % RANDOM_POOL;
        *len = (size_t)cfg->size;
    } else if (p->end != NULL) {
        size_t start = i == 0 ? 0 : p->end[i - 1];
        *data = p->arena.data + start;
        *len = p->end[i] - start;
    } else {
        chat_buf_reset(&p->scratch);
        int rc = encode_one(s, (int64_t)i, p->body, (size_t)cfg->size, &p->scratch);
        if (rc != 0)
            return rc;
        *data = p->scratch.data;
        *len = p->scratch.len;
    }
    p->bytes += *len;
    return 0;
}

/* Creates the topic unless it exists. partitions 0 and a replication
 * factor of -1 ask for the broker's defaults (KIP-464, Kafka 2.4).
 * Returns 0 or CHAT_EKAFKA with err set. */
static int topic_create(rd_kafka_t *rk, const char *topic, int partitions, chat_error_t *err)
{
    char errstr[256];
    int rc = 0;
    rd_kafka_NewTopic_t *nt =
        rd_kafka_NewTopic_new(topic, partitions > 0 ? partitions : -1, -1, errstr, sizeof(errstr));
    if (nt == NULL)
        return chat_error_set(err, CHAT_EKAFKA, "topic %s: %s", topic, errstr);
    rd_kafka_queue_t *rkqu = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_request_timeout(opts, 15000, errstr, sizeof(errstr));
    rd_kafka_AdminOptions_set_operation_timeout(opts, 10000, errstr, sizeof(errstr));
    rd_kafka_CreateTopics(rk, &nt, 1, opts, rkqu);
    rd_kafka_event_t *rkev = rd_kafka_queue_poll(rkqu, 20000);
    if (rkev == NULL) {
        rc = chat_error_set(err, CHAT_EKAFKA, "creating topic %s: no answer in 20 s", topic);
    } else if (rd_kafka_event_error(rkev)) {
        rc = chat_error_set(err, CHAT_EKAFKA, "creating topic %s: %s", topic,
                            rd_kafka_event_error_string(rkev));
    } else {
        size_t n;
        const rd_kafka_topic_result_t **res =
            rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(rkev), &n);
        for (size_t i = 0; i < n && rc == 0; i++) {
            rd_kafka_resp_err_t e = rd_kafka_topic_result_error(res[i]);
            if (e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
                continue;
            if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
                rc = chat_error_set(err, CHAT_EKAFKA, "creating topic %s: %s", topic,
                                    rd_kafka_topic_result_error_string(res[i]));
            else
                CHAT_INFO("topic %s: created", topic);
        }
    }
    if (rkev != NULL)
        rd_kafka_event_destroy(rkev);
    rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_queue_destroy(rkqu);
    rd_kafka_NewTopic_destroy(nt);
    return rc;
}

/* Waits until every partition of the topic has a leader, so that the
 * clock does not time metadata lookups and connection set-up. Returns 0
 * with *partitions set, or CHAT_EKAFKA after 30 s. */
static int topic_wait(rd_kafka_t *rk, rd_kafka_topic_t *rkt, int *partitions, chat_error_t *err)
{
    uint64_t deadline = raw_mono_us() + 30000000u;
    char why[160] = "no answer";
    for (;;) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, 5000);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(why, sizeof(why), "%s", rd_kafka_err2str(e));
        } else if (md->topic_cnt != 1 || md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR ||
                   md->topics[0].partition_cnt == 0) {
            snprintf(why, sizeof(why), "%s",
                     md->topic_cnt == 1 ? rd_kafka_err2str(md->topics[0].err) : "not listed");
        } else {
            int ready = 1;
            for (int i = 0; i < md->topics[0].partition_cnt; i++)
                ready &= md->topics[0].partitions[i].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
                         md->topics[0].partitions[i].leader >= 0;
            *partitions = md->topics[0].partition_cnt;
            snprintf(why, sizeof(why), "a partition has no leader");
            if (ready) {
                rd_kafka_metadata_destroy(md);
                return 0;
            }
        }
        if (md != NULL)
            rd_kafka_metadata_destroy(md);
        if (raw_mono_us() > deadline)
            return chat_error_set(err, CHAT_EKAFKA, "topic %s: not ready after 30 s: %s",
                                  rd_kafka_topic_name(rkt), why);
        rd_kafka_poll(rk, 200);
    }
}

/* Produces one message; a full queue is served and retried until it has
 * stayed full for STALL_US. Returns 0 or the librdkafka error. */
static rd_kafka_resp_err_t produce_one(rd_kafka_t *rk, rd_kafka_topic_t *rkt, const raw_sender_t *s,
                                       const char *data, size_t len, int64_t *full_waits)
{
    uint64_t since = 0;
    for (;;) {
        if (rd_kafka_produce(rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, (void *)data, len,
                             s->conv, s->conv_len, NULL) == 0)
            return RD_KAFKA_RESP_ERR_NO_ERROR;
        rd_kafka_resp_err_t e = rd_kafka_last_error();
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            return e;
        uint64_t now = raw_mono_us();
        if (since == 0)
            since = now;
        else if (now - since > STALL_US)
            return e;
        (*full_waits)++;
        /* Delivery reports free queue space: serve some, then retry. */
        rd_kafka_poll(rk, 10);
    }
}

static int write_json(const rp_config_t *cfg, int partitions, const rp_counts_t *counts, double avg,
                      double secs, double msgs_s, double mb_s, chat_error_t *err)
{
    json_t *obj = json_object();
    json_object_set_new(obj, "tool", json_string(PROGRAM));
    json_object_set_new(obj, "count", json_integer(cfg->count));
    json_object_set_new(obj, "size", json_integer(cfg->size));
    json_object_set_new(obj, "payload_bytes", json_real(avg));
    json_object_set_new(obj, "delivered", json_integer(counts->delivered));
    json_object_set_new(obj, "failed", json_integer(cfg->count - counts->delivered));
    json_object_set_new(obj, "seconds", json_real(secs));
    json_object_set_new(obj, "msgs_per_s", json_real(msgs_s));
    json_object_set_new(obj, "mb_per_s", json_real(mb_s));
    /* The conditions of the figure, so that a result file stands alone. */
    json_object_set_new(obj, "envelope", json_boolean(cfg->envelope));
    json_object_set_new(obj, "pre_encode", json_boolean(cfg->envelope && cfg->pre_encode));
    json_object_set_new(obj, "convs", json_integer(cfg->convs));
    json_object_set_new(obj, "linger_ms", json_integer(cfg->linger_ms));
    json_object_set_new(obj, "topic", json_string(cfg->topic));
    json_object_set_new(obj, "partitions", json_integer(partitions));
    return raw_json_write(obj, cfg->json, err);
}

/* Produces cfg->count messages as fast as librdkafka takes them, waits
 * for every report, prints the summary and writes --json. Returns the exit
 * status: 0 when all were acknowledged, 1 when any was not, 2 when the
 * result file could not be written. */
static int measure(rd_kafka_t *rk, rd_kafka_topic_t *rkt, const rp_config_t *cfg,
                   const raw_sender_t *senders, rp_payloads_t *pl, rp_counts_t *counts,
                   int partitions)
{
    chat_error_t err;
    int64_t sent = 0, full_waits = 0;
    uint64_t t0 = raw_mono_us();
    for (; sent < cfg->count; sent++) {
        const raw_sender_t *s = &senders[sent % cfg->convs];
        const char *data;
        size_t len;
        int rc = payload_get(pl, cfg, s, (size_t)sent, &data, &len);
        if (rc != 0) {
            chat_error_set(&err, rc, "encoding envelope %lld: %s", (long long)sent,
                           chat_strerror(rc));
            break;
        }
        rd_kafka_resp_err_t e = produce_one(rk, rkt, s, data, len, &full_waits);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            chat_error_set(&err, CHAT_EKAFKA, "produce %lld to %s: %s", (long long)sent, s->conv,
                           rd_kafka_err2str(e));
            break;
        }
        if (sent % POLL_EVERY == 0)
            rd_kafka_poll(rk, 0);
    }
    uint64_t t_sent = raw_mono_us();
    if (sent < cfg->count)
        fprintf(stderr, PROGRAM ": %s; waiting for the %lld produced\n", err.message,
                (long long)sent);
    rd_kafka_flush(rk, FLUSH_MS);
    int left = rd_kafka_outq_len(rk);

    uint64_t t1 = counts->last_us > t0 ? counts->last_us : raw_mono_us();
    double secs = (double)(t1 - t0) / 1e6;
    double avg = sent > 0 ? (double)pl->bytes / (double)sent : 0.0;
    double msgs_s = secs > 0 ? (double)counts->delivered / secs : 0.0;
    double mb_s = secs > 0 ? avg * (double)counts->delivered / 1e6 / secs : 0.0;
    const char *how = !cfg->envelope    ? "random"
                      : cfg->pre_encode ? "pre-encoded envelope"
                                        : "in-loop encoded envelope";
    printf("%s: %lld of %lld messages acknowledged in %.3f s: %.0f msg/s, %.2f MB/s of %.1f-byte "
           "%s payloads (%lld keys, %d partitions, linger %lld ms; produce calls %.3f s, queue "
           "full %lld times)\n",
           PROGRAM, (long long)counts->delivered, (long long)cfg->count, secs, msgs_s, mb_s, avg,
           how, (long long)cfg->convs, partitions, (long long)cfg->linger_ms,
           (double)(t_sent - t0) / 1e6, (long long)full_waits);
    if (counts->failed > 0)
        fprintf(stderr, PROGRAM ": %lld deliveries failed, the first with %s\n",
                (long long)counts->failed, rd_kafka_err2str(counts->first_err));
    if (left > 0)
        fprintf(stderr, PROGRAM ": %d messages still unreported after %d s\n", left,
                FLUSH_MS / 1000);
    int status = counts->delivered == cfg->count ? 0 : 1;
    if (cfg->json[0] && write_json(cfg, partitions, counts, avg, secs, msgs_s, mb_s, &err) != 0) {
        fprintf(stderr, PROGRAM ": %s\n", err.message);
        status = status ? status : 2;
    }
    return status;
}

int main(int argc, char **argv)
{
    rp_config_t cfg;
    rp_counts_t counts;
    rp_payloads_t pl;
    chat_error_t err;
    raw_sender_t *senders = NULL;
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_t *rkt = NULL;
    int partitions = 0, status = 2;

    memset(&cfg, 0, sizeof(cfg));
    memset(&counts, 0, sizeof(counts));
    memset(&pl, 0, sizeof(pl));
    int rc = raw_start(PROGRAM, table, sizeof(table) / sizeof(table[0]), &cfg, &cfg.log_level, argc,
                       argv);
    if (rc != 0)
        return rc == 1 ? 0 : 2;
    if ((senders = raw_senders_new(cfg.conv_prefix, cfg.convs, &err)) == NULL ||
        payloads_init(&pl, &cfg, senders, &err) != 0)
        goto fail;

    /* The gateway's producer exactly (acks=all, idempotence, linger, batch
     * size), its reports counted by dr_cb. */
    if ((rk = chat_kafka_producer_new(cfg.kafka_brokers, (int)cfg.linger_ms, dr_cb, &counts, NULL,
                                      &err)) == NULL)
        goto fail;
    if (cfg.create_topic && topic_create(rk, cfg.topic, (int)cfg.partitions, &err) != 0)
        goto fail;
    if ((rkt = rd_kafka_topic_new(rk, cfg.topic, NULL)) == NULL) {
        chat_error_set(&err, CHAT_EKAFKA, "kafka topic %s: %s", cfg.topic,
                       rd_kafka_err2str(rd_kafka_last_error()));
        goto fail;
    }
    if (topic_wait(rk, rkt, &partitions, &err) != 0)
        goto fail;
    status = measure(rk, rkt, &cfg, senders, &pl, &counts, partitions);
    goto done;
fail:
    fprintf(stderr, PROGRAM ": %s\n", err.message);
done:
    if (rkt != NULL)
        rd_kafka_topic_destroy(rkt);
    if (rk != NULL)
        rd_kafka_destroy(rk);
    payloads_close(&pl);
    free(senders);
    return status;
}
