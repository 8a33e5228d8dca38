/* Kafka, for real (CHAT_KAFKA_BROKERS): the producer served by a libuv loop
 * as the gateway runs it, and a consumer in a group of its own reading the
 * events back as the consumer service does. Each run uses a conversation id
 * of its own as the key, so runs and other users of the topic do not meet. */
#include "chat-test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat-envelope.h"
#include "chat-kafka.h"

#define TOPIC       "chat.events"
#define GUARD_MS    100
#define MAX_ITER    600 /* waits of at most GUARD_MS each */
#define MAX_POLLS   60  /* consumer polls that may come back empty */
#define POLL_MS     1000
#define MAX_REPORTS 4

typedef struct report_s {
    rd_kafka_resp_err_t err;
    int32_t partition;
    int64_t offset;
    char key[CHAT_NAME_MAX + 1];
    intptr_t index; /* the per-message opaque: which produce() it was */
} report_t;

typedef struct fixture_s {
    uv_loop_t loop;
    rd_kafka_t *rk;
    chat_kafka_uv_t *kuv;
    char conv[CHAT_NAME_MAX + 1];
    char ids[MAX_REPORTS][CHAT_ID_LEN + 1];
    int produced;
    int calls;
    report_t reports[MAX_REPORTS];
} fixture_t;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *data)
{
    (void)rk;
    fixture_t *fx = data;
    if (fx->calls < MAX_REPORTS) {
        report_t *r = &fx->reports[fx->calls];
        r->err = rkm->err;
        r->partition = rkm->partition;
        r->offset = rkm->offset;
        r->index = (intptr_t)rkm->_private;
        snprintf(r->key, sizeof(r->key), "%.*s", (int)rkm->key_len, (const char *)rkm->key);
    }
    fx->calls++;
}

static int setup(void **state)
{
    chat_error_t err = {0};
    fixture_t *fx = calloc(1, sizeof(*fx));
    if (fx == NULL || uv_loop_init(&fx->loop) != 0)
        return -1;
    chat_test_unique(fx->conv, sizeof(fx->conv), "it.kafka.");
    fx->rk = chat_kafka_producer_new(chat_test_kafka_brokers(), 2, dr_cb, fx, NULL, &err);
    if (fx->rk == NULL) {
        printf("# producer: %s\n", err.message);
        return -1;
    }
    if (chat_kafka_uv_start(&fx->loop, fx->rk, &fx->kuv) != 0)
        return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *fx = *state;
    chat_kafka_uv_stop(fx->kuv);
    int rc = chat_test_loop_close(&fx->loop, 10);
    rd_kafka_flush(fx->rk, 10000);
    rd_kafka_destroy(fx->rk);
    free(fx);
    return rc == 0 ? 0 : -1;
}

/* Produces a message event in the fixture's conversation, keyed by it. */
static void produce_message(fixture_t *fx, const char *body)
{
    chat_event_t ev;
    chat_buf_t buf;
    chat_error_t err;
    int i = fx->produced++;
    assert_true(i < MAX_REPORTS);
    memset(&ev, 0, sizeof(ev));
    ev.type = CHAT_EV_MESSAGE;
    chat_id_new(fx->ids[i], chat_now_ms());
    memcpy(ev.id, fx->ids[i], sizeof(ev.id));
    snprintf(ev.conv, sizeof(ev.conv), "%s", fx->conv);
    snprintf(ev.from, sizeof(ev.from), "alice");
    snprintf(ev.dev, sizeof(ev.dev), "c-it");
    snprintf(ev.cid, sizeof(ev.cid), "m-%d", i);
    ev.ts = (int64_t)chat_now_ms();
    ev.body = body;
    ev.body_len = strlen(body);
    assert_chat_ok(chat_event_validate(&ev, CHAT_BODY_MAX_DEFAULT, &err));
    chat_buf_init(&buf, 1 << 16);
    assert_chat_ok(chat_event_encode(&ev, &buf));
    rd_kafka_resp_err_t kerr = rd_kafka_producev(
        fx->rk, RD_KAFKA_V_TOPIC(TOPIC), RD_KAFKA_V_KEY(fx->conv, strlen(fx->conv)),
        RD_KAFKA_V_VALUE(buf.data, buf.len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_OPAQUE((void *)(intptr_t)i), RD_KAFKA_V_END);
    chat_buf_close(&buf);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR)
        fail_msg("produce: %s", rd_kafka_err2str(kerr));
}

static int all_reported(void *data)
{
    fixture_t *fx = data;
    return fx->calls >= fx->produced;
}

/* Runs the loop until every produced message has its delivery report. */
static void wait_reports(fixture_t *fx)
{
    if (!chat_test_run_until(&fx->loop, all_reported, fx, MAX_ITER, GUARD_MS))
        fail_msg("%d of %d delivery reports after %d loop iterations", fx->calls, fx->produced,
                 MAX_ITER);
    for (int i = 0; i < fx->calls; i++) {
        if (fx->reports[i].err != RD_KAFKA_RESP_ERR_NO_ERROR)
            fail_msg("delivery report %d: %s", i, rd_kafka_err2str(fx->reports[i].err));
    }
}

static void test_delivery_report_arrives_without_error(void **state)
{
    fixture_t *fx = *state;
    produce_message(fx, "hello from the integration test");
    wait_reports(fx);
    assert_int_equal(fx->calls, 1);
    assert_int_equal(fx->reports[0].err, RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(fx->reports[0].index, 0);
    assert_string_equal(fx->reports[0].key, fx->conv);
    assert_true(fx->reports[0].partition >= 0);
    assert_true(fx->reports[0].offset >= 0);
}

static void test_same_key_lands_on_same_partition_in_order(void **state)
{
    fixture_t *fx = *state;
    produce_message(fx, "first");
    produce_message(fx, "second");
    wait_reports(fx);
    assert_int_equal(fx->calls, 2);
    /* Reports come in produce order for one partition. */
    assert_int_equal(fx->reports[0].index, 0);
    assert_int_equal(fx->reports[1].index, 1);
    assert_int_equal(fx->reports[0].partition, fx->reports[1].partition);
    assert_true(fx->reports[0].offset < fx->reports[1].offset);
}

/* Commits, for a group nobody has used, where each partition of the topic
 * should start: the first of our events on its partition, the end of the
 * log elsewhere. The consumer then reads what this run produced (and what
 * others produce meanwhile) instead of the whole topic's history. */
static void commit_start_offsets(rd_kafka_t *rk, int32_t partition, int64_t offset)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, TOPIC, NULL);
    assert_non_null(rkt);
    rd_kafka_resp_err_t kerr = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR)
        fail_msg("metadata: %s", rd_kafka_err2str(kerr));
    assert_int_equal(md->topic_cnt, 1);
    int n = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    assert_true(partition < n);

    rd_kafka_topic_partition_list_t *offsets = rd_kafka_topic_partition_list_new(n);
    for (int32_t p = 0; p < n; p++) {
        int64_t lo, hi = 0;
        if (p != partition) {
            kerr = rd_kafka_query_watermark_offsets(rk, TOPIC, p, &lo, &hi, 10000);
            if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR)
                fail_msg("watermarks of partition %d: %s", p, rd_kafka_err2str(kerr));
        }
        rd_kafka_topic_partition_list_add(offsets, TOPIC, p)->offset = p == partition ? offset : hi;
    }
    kerr = rd_kafka_commit(rk, offsets, 0);
    rd_kafka_topic_partition_list_destroy(offsets);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR)
        fail_msg("commit start offsets: %s", rd_kafka_err2str(kerr));
}

static void test_consumer_reads_events_back(void **state)
{
    fixture_t *fx = *state;
    chat_error_t err = {0};
    char group[64];

    produce_message(fx, "read me back");
    produce_message(fx, "and me, after");
    wait_reports(fx);
    assert_int_equal(fx->reports[0].partition, fx->reports[1].partition);

    chat_test_unique(group, sizeof(group), "chat-it-");
    rd_kafka_t *rk = chat_kafka_consumer_new(chat_test_kafka_brokers(), group, NULL, &err);
    if (rk == NULL)
        fail_msg("consumer: %s", err.message);
    commit_start_offsets(rk, fx->reports[0].partition, fx->reports[0].offset);
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, TOPIC, RD_KAFKA_PARTITION_UA);
    assert_int_equal(rd_kafka_subscribe(rk, topics), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(topics);

    /* Bounded: MAX_POLLS empty polls, and a cap on foreign messages. */
    int found = 0, empty = 0, foreign = 0;
    int32_t partitions[2] = {-1, -1};
    int64_t offsets[2] = {-1, -1};
    while (found < 2 && empty < MAX_POLLS && foreign < 100000) {
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(rk, POLL_MS);
        if (rkm == NULL) {
            empty++;
            continue;
        }
        if (rkm->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            printf("# consumer event: %s\n", rd_kafka_message_errstr(rkm));
            rd_kafka_message_destroy(rkm);
            empty++;
            continue;
        }
        if (rkm->key_len != strlen(fx->conv) || memcmp(rkm->key, fx->conv, rkm->key_len) != 0) {
            foreign++;
            rd_kafka_message_destroy(rkm);
            continue;
        }
        chat_event_t ev;
        int rc = chat_event_decode(rkm->payload, rkm->len, CHAT_BODY_MAX_DEFAULT, &ev, &err);
        if (rc != 0) {
            rd_kafka_message_destroy(rkm);
            fail_msg("decode: %s: %s", chat_err_name(rc), err.message);
        }
        /* Events of one key arrive in the order they were produced. */
        assert_string_equal(ev.id, fx->ids[found]);
        assert_string_equal(ev.conv, fx->conv);
        assert_string_equal(ev.from, "alice");
        assert_int_equal(ev.type, CHAT_EV_MESSAGE);
        const char *want = found == 0 ? "read me back" : "and me, after";
        assert_int_equal(ev.body_len, strlen(want));
        assert_memory_equal(ev.body, want, ev.body_len);
        chat_event_clear(&ev);
        partitions[found] = rkm->partition;
        offsets[found] = rkm->offset;
        found++;
        rd_kafka_message_destroy(rkm);
    }
    printf("# consumer: %d events found, %d empty polls, %d other messages\n", found, empty,
           foreign);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);

    assert_int_equal(found, 2);
    assert_int_equal(partitions[0], fx->reports[0].partition);
    assert_int_equal(partitions[1], fx->reports[0].partition);
    assert_int_equal(offsets[0], fx->reports[0].offset);
    assert_int_equal(offsets[1], fx->reports[1].offset);
}

#define KAFKA_TEST(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        KAFKA_TEST(test_delivery_report_arrives_without_error),
        KAFKA_TEST(test_same_key_lands_on_same_partition_in_order),
        KAFKA_TEST(test_consumer_reads_events_back),
    };
    int failed = cmocka_run_group_tests_name("kafka", tests, NULL, NULL);
    rd_kafka_wait_destroyed(10000);
    return failed;
}
