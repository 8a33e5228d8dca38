#include "chat-kafka.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "chat-log.h"

struct chat_kafka_uv_s {
    uv_poll_t poll;
    uv_timer_t timer; /* a safety net should a wake-up ever be missed */
    rd_kafka_t *rk;
    rd_kafka_queue_t *rkqu;
    int fds[2];
    int closing;
};

static int conf_set(rd_kafka_conf_t *conf, const char *k, const char *v, chat_error_t *err)
{
    char errstr[256];
    if (rd_kafka_conf_set(conf, k, v, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
        return chat_error_set(err, CHAT_EINVAL, "kafka config %s: %s", k, errstr);
    return 0;
}

static int conf_apply(rd_kafka_conf_t *conf, const char *const *kv, chat_error_t *err)
{
    for (; kv != NULL && kv[0] != NULL; kv += 2) {
        int rc = conf_set(conf, kv[0], kv[1], err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void error_cb(rd_kafka_t *rk, int code, const char *reason, void *data)
{
    (void)data;
    /* Only fatal errors need action; the rest librdkafka retries itself. */
    if (code == RD_KAFKA_RESP_ERR__FATAL) {
        char buf[256];
        rd_kafka_fatal_error(rk, buf, sizeof(buf));
        CHAT_ERROR("kafka %s: fatal error: %s", rd_kafka_name(rk), buf);
    } else {
        CHAT_WARN("kafka %s: %s: %s", rd_kafka_name(rk), rd_kafka_err2name(code), reason);
    }
}

rd_kafka_t *chat_kafka_producer_new(const char *brokers, int linger_ms, chat_kafka_dr_cb dr_cb,
                                    void *data, const char *const *extra, chat_error_t *err)
{
    char errstr[512], linger[16];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    snprintf(linger, sizeof(linger), "%d", linger_ms);
    const char *const base[] = {"bootstrap.servers",
                                brokers,
                                "enable.idempotence",
                                "true",
                                "acks",
                                "all",
                                "linger.ms",
                                linger,
                                "delivery.timeout.ms",
                                "30000",
                                "queue.buffering.max.messages",
                                "1000000",
                                "batch.num.messages",
                                "10000",
                                "socket.nagle.disable",
                                "true",
                                NULL};
    if (conf_apply(conf, base, err) != 0 || conf_apply(conf, extra, err) != 0)
        goto fail;
    rd_kafka_conf_set_dr_msg_cb(conf,
                                (void (*)(rd_kafka_t *, const rd_kafka_message_t *, void *))dr_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_opaque(conf, data);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        chat_error_set(err, CHAT_EKAFKA, "kafka producer: %s", errstr);
        goto fail;
    }
    return rk; /* rd_kafka_new owns conf now */
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

rd_kafka_t *chat_kafka_consumer_new(const char *brokers, const char *group,
                                    const char *const *extra, chat_error_t *err)
{
    return chat_kafka_consumer_new_with_rebalance(brokers, group, extra, NULL, NULL, err);
}

rd_kafka_t *chat_kafka_consumer_new_with_rebalance(const char *brokers, const char *group,
                                                   const char *const *extra,
                                                   chat_kafka_rebalance_cb rebalance_cb, void *data,
                                                   chat_error_t *err)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *const base[] = {"bootstrap.servers",
                                brokers,
                                "group.id",
                                group,
                                "enable.auto.commit",
                                "false",
                                "enable.auto.offset.store",
                                "false",
                                "auto.offset.reset",
                                "earliest",
                                "partition.assignment.strategy",
                                "cooperative-sticky",
                                "fetch.wait.max.ms",
                                "100",
                                "socket.nagle.disable",
                                "true",
                                NULL};
    if (conf_apply(conf, base, err) != 0 || conf_apply(conf, extra, err) != 0)
        goto fail;
    rd_kafka_conf_set_error_cb(conf, error_cb);
    if (rebalance_cb != NULL) {
        rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
        rd_kafka_conf_set_opaque(conf, data);
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        chat_error_set(err, CHAT_EKAFKA, "kafka consumer: %s", errstr);
        goto fail;
    }
    rd_kafka_poll_set_consumer(rk);
    return rk;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

static void serve(chat_kafka_uv_t *kuv)
{
    char drain[256];
    while (read(kuv->fds[0], drain, sizeof(drain)) > 0)
        ;
    /* Bounded so that a flood of reports cannot starve the loop's sockets. */
    for (int i = 0; i < 64 && rd_kafka_poll(kuv->rk, 0) > 0; i++)
        ;
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    serve(h->data);
}

static void timer_cb(uv_timer_t *t)
{
    serve(t->data);
}

int chat_kafka_uv_start(uv_loop_t *loop, rd_kafka_t *rk, chat_kafka_uv_t **out)
{
    chat_kafka_uv_t *kuv = calloc(1, sizeof(*kuv));
    int rc;
    if (kuv == NULL)
        return CHAT_ENOMEM;
    kuv->rk = rk;
    if (pipe2(kuv->fds, O_NONBLOCK | O_CLOEXEC) != 0) {
        free(kuv);
        return CHAT_EIO;
    }
    kuv->rkqu = rd_kafka_queue_get_main(rk);
    rd_kafka_queue_io_event_enable(kuv->rkqu, kuv->fds[1], "1", 1);
    if ((rc = uv_poll_init(loop, &kuv->poll, kuv->fds[0])) != 0)
        goto fail;
    kuv->poll.data = kuv;
    uv_timer_init(loop, &kuv->timer);
    kuv->timer.data = kuv;
    uv_poll_start(&kuv->poll, UV_READABLE, poll_cb);
    uv_timer_start(&kuv->timer, timer_cb, 100, 100);
    *out = kuv;
    return 0;
fail:
    rd_kafka_queue_io_event_enable(kuv->rkqu, -1, NULL, 0);
    rd_kafka_queue_destroy(kuv->rkqu);
    close(kuv->fds[0]);
    close(kuv->fds[1]);
    free(kuv);
    return rc;
}

static void close_cb(uv_handle_t *h)
{
    chat_kafka_uv_t *kuv = h->data;
    if (--kuv->closing == 0) {
        close(kuv->fds[0]);
        close(kuv->fds[1]);
        free(kuv);
    }
}

void chat_kafka_uv_stop(chat_kafka_uv_t *kuv)
{
    if (kuv == NULL)
        return;
    rd_kafka_queue_io_event_enable(kuv->rkqu, -1, NULL, 0);
    rd_kafka_queue_destroy(kuv->rkqu);
    kuv->closing = 2;
    uv_close((uv_handle_t *)&kuv->poll, close_cb);
    uv_close((uv_handle_t *)&kuv->timer, close_cb);
}
