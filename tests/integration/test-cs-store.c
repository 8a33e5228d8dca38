/* The consumer's store writes against a real server (CHAT_MONGO_URI;
 * FerretDB locally), in a database of this run's own that is dropped at the
 * end: event inserts in lanes, and what a write that fails in one lane
 * leaves stored. The retry after a failed write (cs-pipeline.c) relies on
 * each conversation's stored events being a prefix of its events in the
 * batch; these tests check exactly that, with one lane and with several. */
#include "chat-test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat-id.h"
#include "chat-mongo.h"
#include "cs-store.h"

#define CONVS  8
#define EVENTS 30 /* per conversation: over 100 per lane, so several bulks */

static chat_test_db_t fx;
static mongoc_client_t *client; /* from fx.pool, for the checks */

static int group_setup(void **state)
{
    (void)state;
    if (chat_test_db_open(&fx, "chat_cs_", "chat-cs-store-test") != 0)
        return -1;
    client = mongoc_client_pool_pop(fx.pool);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    mongoc_client_pool_push(fx.pool, client);
    return chat_test_db_close(&fx);
}

/* A fresh messages collection with the consumer's indexes. */
static mongoc_collection_t *fresh_messages(void)
{
    bson_error_t berr;
    chat_error_t err = {0};
    mongoc_collection_t *coll = mongoc_client_get_collection(client, fx.name, "messages");
    if (!mongoc_collection_drop_with_opts(coll, NULL, &berr))
        assert_int_equal(berr.code, 26); /* NamespaceNotFound: first use */
    assert_int_equal(chat_mongo_ensure_indexes(client, fx.name, &err), 0);
    return coll;
}

/* The events of a batch: EVENTS per conversation, interleaved as a batch
 * of busy conversations arrives. */
static chat_event_t events[CONVS][EVENTS];

static void make_events(const char *tag)
{
    int64_t now = 1700000000000;
    for (int k = 0; k < CONVS; k++) {
        for (int i = 0; i < EVENTS; i++) {
            chat_event_t *ev = &events[k][i];
            memset(ev, 0, sizeof(*ev));
            ev->type = CHAT_EV_MESSAGE;
            chat_id_new(ev->id, (uint64_t)now);
            snprintf(ev->conv, sizeof(ev->conv), "%s.c%d", tag, k);
            snprintf(ev->from, sizeof(ev->from), "%s.u%d", tag, k);
            ev->ts = now + i;
            ev->body = "hello";
            ev->body_len = 5;
        }
    }
}

static void queue_all(cs_store_t *store)
{
    chat_error_t err = {0};
    for (int i = 0; i < EVENTS; i++) {
        for (int k = 0; k < CONVS; k++)
            assert_int_equal(cs_store_add_event(store, &events[k][i], i + 1, &err), 0);
    }
}

/* How many of conv's events are stored, after checking that they are seqs
 * 1..n with the right ids: a prefix, no gap. */
static int stored_prefix(mongoc_collection_t *coll, int k)
{
    bson_t *filter = BCON_NEW("conv", BCON_UTF8(events[k][0].conv));
    bson_t *opts = BCON_NEW("sort", "{", "seq", BCON_INT32(1), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
    const bson_t *doc;
    bson_iter_t it;
    int n = 0;
    while (mongoc_cursor_next(cur, &doc)) {
        assert_true(n < EVENTS);
        assert_true(bson_iter_init_find(&it, doc, "seq"));
        assert_int_equal(bson_iter_as_int64(&it), n + 1);
        assert_true(bson_iter_init_find(&it, doc, "_id"));
        assert_string_equal(bson_iter_utf8(&it, NULL), events[k][n].id);
        n++;
    }
    bson_error_t berr;
    assert_false(mongoc_cursor_error(cur, &berr));
    mongoc_cursor_destroy(cur);
    bson_destroy(opts);
    bson_destroy(filter);
    return n;
}

static cs_store_t *store_new(int lanes)
{
    chat_error_t err = {0};
    cs_store_t *store = cs_store_new(fx.uri, "chat-cs-store-test", lanes, &err);
    if (store == NULL)
        printf("# store: %s\n", err.message);
    assert_non_null(store);
    return store;
}

static void check_whole_batch(int lanes)
{
    mongoc_collection_t *coll = fresh_messages();
    cs_store_t *store = store_new(lanes);
    cs_store_result_t res;
    chat_error_t err = {0};
    make_events("whole");
    queue_all(store);
    assert_int_equal(cs_store_write(store, &res, &err), 0);
    assert_int_equal(res.inserted, CONVS * EVENTS);
    for (int k = 0; k < CONVS; k++)
        assert_int_equal(stored_prefix(coll, k), EVENTS);
    cs_store_destroy(store);
    mongoc_collection_destroy(coll);
}

static void test_one_lane_stores_the_batch(void **state)
{
    (void)state;
    check_whole_batch(1);
}

static void test_lanes_store_the_batch(void **state)
{
    (void)state;
    check_whole_batch(2);
    check_whole_batch(3);
}

/* Conversation BAD's event DUP is already stored (another document with its
 * id): the write reports the duplicate; every conversation keeps a prefix;
 * BAD keeps exactly the events before DUP; with several lanes, those in
 * another lane than BAD's are stored whole, and their inserts count. The
 * batch is queued round by round (seq 1 of every conversation, then seq 2,
 * ...), as a busy batch arrives; each lane writes it sorted by {conv,
 * seq}. */
#define BAD 3
#define DUP 12

static void check_failed_lane(int lanes)
{
    mongoc_collection_t *coll = fresh_messages();
    cs_store_t *store = store_new(lanes);
    cs_store_result_t res;
    chat_error_t err = {0};
    bson_error_t berr;
    make_events("fail");
    bson_t *clash = BCON_NEW("_id", BCON_UTF8(events[BAD][DUP].id), "conv", BCON_UTF8("elsewhere"),
                             "seq", BCON_INT64(1));
    assert_true(mongoc_collection_insert_one(coll, clash, NULL, NULL, &berr));
    bson_destroy(clash);

    queue_all(store);
    assert_int_equal(cs_store_write(store, &res, &err), CHAT_EDUP);
    assert_int_equal(res.dup_id + res.dup_seq + res.dup_unknown, 1);
    printf("# %d lane(s): %s\n", lanes, err.message);

    size_t bad_lane = cs_store_lane(store, events[BAD][0].conv);
    int64_t stored = 0, other_lanes = 0;
    for (int k = 0; k < CONVS; k++) {
        int n = stored_prefix(coll, k);
        stored += n;
        if (k == BAD)
            assert_int_equal(n, DUP);
        else if (cs_store_lane(store, events[k][0].conv) != bad_lane) {
            assert_int_equal(n, EVENTS);
            other_lanes++;
        } else {
            /* A lane writes in {conv, seq} order (fail.c0 < fail.c1 < ...):
             * a lane-mate before BAD is stored whole, one after it not at
             * all, whatever order the batch queued them in. */
            assert_int_equal(n, k < BAD ? EVENTS : 0);
        }
    }
    assert_int_equal(res.inserted, stored);
    if (lanes > 1)
        assert_true(other_lanes > 0); /* the test's conversations do spread */
    else
        assert_int_equal(other_lanes, 0);
    cs_store_destroy(store);
    mongoc_collection_destroy(coll);
}

static void test_failed_write_leaves_one_lane_a_prefix(void **state)
{
    (void)state;
    check_failed_lane(1);
}

static void test_failed_lane_leaves_each_conversation_a_prefix(void **state)
{
    (void)state;
    check_failed_lane(2);
    check_failed_lane(3);
}

/* The same store writes again after a failure: the lanes' threads are
 * ready for the next round. */
static void test_lanes_write_again_after_a_failure(void **state)
{
    (void)state;
    mongoc_collection_t *coll = fresh_messages();
    cs_store_t *store = store_new(2);
    cs_store_result_t res;
    chat_error_t err = {0};
    make_events("again");
    queue_all(store);
    assert_int_equal(cs_store_write(store, &res, &err), 0);
    queue_all(store); /* every one a duplicate now */
    assert_int_equal(cs_store_write(store, &res, &err), CHAT_EDUP);
    assert_int_equal(res.inserted, 0);
    make_events("again2");
    for (int round = 0; round < 3; round++) {
        queue_all(store);
        assert_int_equal(cs_store_write(store, &res, &err), round == 0 ? 0 : CHAT_EDUP);
    }
    for (int k = 0; k < CONVS; k++)
        assert_int_equal(stored_prefix(coll, k), EVENTS);
    cs_store_destroy(store);
    mongoc_collection_destroy(coll);
}

/* A write with updates and no inserts, as the consumer's lazy last_seq
 * writes are: every lane, lane 0 included, has nothing to insert. */
static void test_write_without_inserts(void **state)
{
    (void)state;
    bson_error_t berr;
    cs_store_result_t res;
    chat_error_t err = {0};
    mongoc_collection_t *convs = mongoc_client_get_collection(client, fx.name, "conversations");
    bson_t *doc = BCON_NEW("_id", BCON_UTF8("updates.c0"), "last_seq", BCON_INT64(0));
    assert_true(mongoc_collection_insert_one(convs, doc, NULL, NULL, &berr));
    bson_destroy(doc);
    for (int lanes = 1; lanes <= 2; lanes++) {
        cs_store_t *store = store_new(lanes);
        assert_int_equal(cs_store_add_last_seq(store, "updates.c0", 7 * lanes, &err), 0);
        assert_int_equal(cs_store_write(store, &res, &err), 0);
        assert_int_equal(res.inserted, 0);
        cs_store_destroy(store);
    }
    bson_t *filter = BCON_NEW("_id", BCON_UTF8("updates.c0"));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(convs, filter, NULL, NULL);
    const bson_t *found;
    bson_iter_t it;
    assert_true(mongoc_cursor_next(cur, &found));
    assert_true(bson_iter_init_find(&it, found, "last_seq"));
    assert_int_equal(bson_iter_as_int64(&it), 14);
    mongoc_cursor_destroy(cur);
    bson_destroy(filter);
    mongoc_collection_destroy(convs);
}

static void test_lanes_out_of_range_are_refused(void **state)
{
    (void)state;
    chat_error_t err = {0};
    assert_null(cs_store_new(fx.uri, "t", 0, &err));
    assert_int_equal(err.code, CHAT_ERANGE);
    assert_null(cs_store_new(fx.uri, "t", CS_STORE_LANES_MAX + 1, &err));
    assert_int_equal(err.code, CHAT_ERANGE);
    cs_store_t *store = store_new(CS_STORE_LANES_MAX);
    for (int k = 0; k < 64; k++) {
        char conv[32];
        snprintf(conv, sizeof(conv), "c%d", k);
        assert_true(cs_store_lane(store, conv) < CS_STORE_LANES_MAX);
    }
    cs_store_destroy(store);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_lane_stores_the_batch),
        cmocka_unit_test(test_lanes_store_the_batch),
        cmocka_unit_test(test_failed_write_leaves_one_lane_a_prefix),
        cmocka_unit_test(test_failed_lane_leaves_each_conversation_a_prefix),
        cmocka_unit_test(test_lanes_write_again_after_a_failure),
        cmocka_unit_test(test_write_without_inserts),
        cmocka_unit_test(test_lanes_out_of_range_are_refused),
    };
    int failed = cmocka_run_group_tests_name("cs-store", tests, group_setup, group_teardown);
    mongoc_cleanup();
    return failed;
}
