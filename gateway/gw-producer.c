/* Producing client events to Kafka. Each produce carries a small record
 * from a free list (no malloc per message once warm) naming the connection
 * by serial; the delivery report, served on the loop thread, answers that
 * connection with `sent` or a retryable error, if it is still open. */
#include <stdlib.h>
#include <string.h>

#include "chat-error.h"
#include "chat-log.h"
#include "gw-private.h"

typedef struct gw_pending_s {
    struct gw_pending_s *next_free;
    uint64_t serial;
    int64_t ts;
    gw_reply_t reply;
    char id[CHAT_ID_LEN + 1];
    char cid[CHAT_NAME_MAX + 1];
    char conv[CHAT_NAME_MAX + 1];
} gw_pending_t;

static gw_pending_t *free_list;

static gw_pending_t *pending_get(void)
{
    gw_pending_t *p = free_list;
    if (p != NULL) {
        free_list = p->next_free;
        return p;
    }
    return malloc(sizeof(*p));
}

static void pending_put(gw_pending_t *p)
{
    p->next_free = free_list;
    free_list = p;
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *data)
{
    gw_t *gw = data;
    gw_pending_t *p = rkm->_private;
    (void)rk;
    if (p == NULL)
        return;
    gw_conn_t *conn = gw_conn_find(gw, p->serial);
    if (rkm->err) {
        gw->metrics.produce_failures++;
        CHAT_WARN("event %s conv %s: not acknowledged: %s", p->id, p->conv,
                  rd_kafka_err2str(rkm->err));
        if (conn != NULL && p->reply == GW_REPLY_HTTP) {
            gw_http_error(conn, 503, "unavailable", "the event was not stored; retry");
            gw_http_resume(conn);
        } else if (conn != NULL) {
            gw_conn_send_error(conn, "unavailable", "the event was not stored; retry", p->cid, 1);
        }
    } else {
        gw->metrics.events_produced++;
        if (conn != NULL && p->reply == GW_REPLY_HTTP) {
            char body[64];
            int n = snprintf(body, sizeof(body), "{\"id\":\"%s\"}", p->id);
            gw_http_respond(conn, 202, body, (size_t)n);
            gw_http_resume(conn);
        } else if (conn != NULL && p->reply == GW_REPLY_SENT) {
            chat_buf_t *b = &gw->scratch;
            chat_buf_reset(b);
            chat_buf_append_str(b, "{\"t\":\"sent\"");
            if (p->cid[0]) {
                chat_buf_append_str(b, ",\"cid\":");
                chat_buf_append_json_str(b, p->cid, strlen(p->cid));
            }
            /* Ids are [A-Za-z0-9_.:-] (checked at the edge): no escaping. */
            chat_buf_append_str(b, ",\"id\":\"");
            chat_buf_append_str(b, p->id);
            chat_buf_append_str(b, "\",\"conv\":\"");
            chat_buf_append_str(b, p->conv);
            chat_buf_append_str(b, "\",\"ts\":");
            chat_buf_append_i64(b, p->ts);
            chat_buf_append(b, "}", 1);
            gw_conn_send_text(conn, b->data, b->len);
        }
    }
    pending_put(p);
}

int gw_producer_start(gw_t *gw, chat_error_t *err)
{
    gw->rk = chat_kafka_producer_new(gw->cfg->kafka_brokers, (int)gw->cfg->kafka_linger_ms, dr_cb,
                                     gw, NULL, err);
    if (gw->rk == NULL)
        return err ? err->code : CHAT_EKAFKA;
    gw->rkt = rd_kafka_topic_new(gw->rk, gw->cfg->topic, NULL);
    if (gw->rkt == NULL)
        return chat_error_set(err, CHAT_EKAFKA, "kafka topic %s: %s", gw->cfg->topic,
                              rd_kafka_err2str(rd_kafka_last_error()));
    int rc = chat_kafka_uv_start(gw->loop, gw->rk, &gw->kuv);
    if (rc != 0)
        return chat_error_set(err, rc, "kafka loop glue: %s", chat_strerror(rc));
    return 0;
}

void gw_producer_stop(gw_t *gw)
{
    if (gw->rk == NULL)
        return;
    chat_kafka_uv_stop(gw->kuv);
    gw->kuv = NULL;
    /* Let in-flight events finish; their reports find closed connections. */
    rd_kafka_flush(gw->rk, 5000);
    rd_kafka_topic_destroy(gw->rkt);
    rd_kafka_destroy(gw->rk);
    gw->rk = NULL;
    while (free_list != NULL) {
        gw_pending_t *p = free_list;
        free_list = p->next_free;
        free(p);
    }
}

/* Copies s into dst[size], cut to fit (the names here are checked at the
 * edge and always fit); cheaper than snprintf per message. */
static void copy_name(char *dst, size_t size, const char *s)
{
    size_t n = strlen(s);
    if (n >= size)
        n = size - 1;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

int gw_producer_send(gw_t *gw, gw_conn_t *conn, gw_reply_t reply, const char *conv, const char *id,
                     const char *cid, int64_t ts, const char *data, size_t len)
{
    gw_pending_t *p = pending_get();
    if (p == NULL)
        return CHAT_ENOMEM;
    p->serial = conn->serial;
    p->ts = ts;
    p->reply = reply;
    copy_name(p->id, sizeof(p->id), id);
    copy_name(p->cid, sizeof(p->cid), cid ? cid : "");
    copy_name(p->conv, sizeof(p->conv), conv);
    for (int attempt = 0;; attempt++) {
        int rc = rd_kafka_produce(gw->rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, (void *)data,
                                  len, conv, strlen(conv), p);
        if (rc == 0)
            return 0;
        rd_kafka_resp_err_t e = rd_kafka_last_error();
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL || attempt == 3) {
            CHAT_WARN("conn %s: produce to %s failed: %s", conn->id, conv, rd_kafka_err2str(e));
            pending_put(p);
            return CHAT_EKAFKA;
        }
        /* A full queue drains as reports are served: serve some, retry. */
        rd_kafka_poll(gw->rk, 10);
    }
}
