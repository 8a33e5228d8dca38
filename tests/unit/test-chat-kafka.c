/* chat-kafka without a broker: configuration errors, and the libuv glue
 * delivering a (failed) delivery report on the loop thread. The address
 * below refuses connections, so nothing here needs the stack. */
#include "chat-test.h"

#include <string.h>

#include "chat-kafka.h"

#define NO_BROKER "127.0.0.1:9"

typedef struct dr_state_s {
    int calls;
    rd_kafka_resp_err_t err;
    void *opaque;
    uv_thread_t thread;
} dr_state_t;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *data)
{
    (void)rk;
    dr_state_t *st = data;
    st->calls++;
    st->err = rkm->err;
    st->opaque = rkm->_private;
    st->thread = uv_thread_self();
}

static void test_producer_rejects_unknown_property(void **state)
{
    (void)state;
    chat_error_t err = {0};
    const char *const extra[] = {"no.such.property", "1", NULL};
    rd_kafka_t *rk = chat_kafka_producer_new(NO_BROKER, 0, dr_cb, NULL, extra, &err);
    assert_null(rk);
    assert_int_equal(err.code, CHAT_EINVAL);
    assert_non_null(strstr(err.message, "no.such.property"));
}

static void test_producer_rejects_bad_value(void **state)
{
    (void)state;
    chat_error_t err = {0};
    rd_kafka_t *rk = chat_kafka_producer_new(NO_BROKER, -5, dr_cb, NULL, NULL, &err);
    assert_null(rk);
    assert_int_equal(err.code, CHAT_EINVAL);
    assert_non_null(strstr(err.message, "linger.ms"));
}

static void test_consumer_rejects_unknown_property(void **state)
{
    (void)state;
    chat_error_t err = {0};
    const char *const extra[] = {"no.such.property", "1", NULL};
    rd_kafka_t *rk = chat_kafka_consumer_new(NO_BROKER, "g", extra, &err);
    assert_null(rk);
    assert_int_equal(err.code, CHAT_EINVAL);
}

static void test_producer_applies_extra_last(void **state)
{
    (void)state;
    chat_error_t err = {0};
    const char *const extra[] = {"client.id", "chat-unit-test", NULL};
    rd_kafka_t *rk = chat_kafka_producer_new(NO_BROKER, 5, dr_cb, NULL, extra, &err);
    assert_non_null(rk);
    assert_non_null(strstr(rd_kafka_name(rk), "chat-unit-test"));
    rd_kafka_destroy(rk);
}

static void test_uv_start_stop_closes_loop_clean(void **state)
{
    (void)state;
    uv_loop_t loop;
    chat_kafka_uv_t *kuv = NULL;
    chat_error_t err;
    assert_int_equal(uv_loop_init(&loop), 0);
    rd_kafka_t *rk = chat_kafka_producer_new(NO_BROKER, 0, dr_cb, NULL, NULL, &err);
    assert_non_null(rk);
    assert_chat_ok(chat_kafka_uv_start(&loop, rk, &kuv));
    assert_non_null(kuv);
    uv_run(&loop, UV_RUN_NOWAIT);
    chat_kafka_uv_stop(kuv);
    assert_int_equal(chat_test_loop_close(&loop, 10), 0);
    rd_kafka_destroy(rk);
}

static void test_uv_stop_null_is_noop(void **state)
{
    (void)state;
    chat_kafka_uv_stop(NULL);
}

static int dr_arrived(void *data)
{
    return ((dr_state_t *)data)->calls > 0;
}

static void test_undeliverable_message_reports_on_loop_thread(void **state)
{
    (void)state;
    uv_loop_t loop;
    chat_kafka_uv_t *kuv = NULL;
    chat_error_t err;
    dr_state_t st = {0};
    int marker;
    const char *const extra[] = {"delivery.timeout.ms", "200", NULL};
    assert_int_equal(uv_loop_init(&loop), 0);
    rd_kafka_t *rk = chat_kafka_producer_new(NO_BROKER, 0, dr_cb, &st, extra, &err);
    assert_non_null(rk);
    assert_chat_ok(chat_kafka_uv_start(&loop, rk, &kuv));
    assert_int_equal(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("chat.events"), RD_KAFKA_V_KEY("k", 1),
                                       RD_KAFKA_V_VALUE("v", 1),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                       RD_KAFKA_V_OPAQUE(&marker), RD_KAFKA_V_END),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    /* At most 30 s of 100 ms guard wake-ups; the report comes after 200 ms. */
    assert_true(chat_test_run_until(&loop, dr_arrived, &st, 300, 100));
    assert_int_equal(st.calls, 1);
    assert_int_not_equal(st.err, RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_ptr_equal(st.opaque, &marker);
    uv_thread_t self = uv_thread_self();
    assert_true(uv_thread_equal(&st.thread, &self));
    chat_kafka_uv_stop(kuv);
    assert_int_equal(chat_test_loop_close(&loop, 10), 0);
    rd_kafka_destroy(rk);
    assert_int_equal(st.calls, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_producer_rejects_unknown_property),
        cmocka_unit_test(test_producer_rejects_bad_value),
        cmocka_unit_test(test_consumer_rejects_unknown_property),
        cmocka_unit_test(test_producer_applies_extra_last),
        cmocka_unit_test(test_uv_start_stop_closes_loop_clean),
        cmocka_unit_test(test_uv_stop_null_is_noop),
        cmocka_unit_test(test_undeliverable_message_reports_on_loop_thread),
    };
    int failed = cmocka_run_group_tests_name("chat-kafka", tests, NULL, NULL);
    /* librdkafka's background threads end shortly after rd_kafka_destroy. */
    rd_kafka_wait_destroyed(5000);
    return failed;
}
