/* MongoDB, for real (CHAT_MONGO_URI; FerretDB locally): the pool, ping,
 * indexes, and the bulk writes the consumer relies on, in a database of this
 * run's own that is dropped at the end. */
#include "chat-test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat-id.h"
#include "chat-mongo.h"

static chat_test_db_t fx;

static int group_setup(void **state)
{
    (void)state;
    return chat_test_db_open(&fx, "chat_it_", "chat-integration-test");
}

static int group_teardown(void **state)
{
    (void)state;
    return chat_test_db_close(&fx);
}

/* Each test gets a client from the pool and gives it back. */
static int setup(void **state)
{
    *state = mongoc_client_pool_pop(fx.pool);
    return *state != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    mongoc_client_pool_push(fx.pool, *state);
    return 0;
}

/* Appends a messages document as the consumer writes it. */
static bson_t *message_doc(const char *id, const char *conv, int64_t seq)
{
    char body[64];
    snprintf(body, sizeof(body), "message %lld", (long long)seq);
    return BCON_NEW("_id", BCON_UTF8(id), "conv", BCON_UTF8(conv), "seq", BCON_INT64(seq), "from",
                    BCON_UTF8("alice"), "dev", BCON_UTF8("c-it"), "cid", BCON_UTF8(""), "ts",
                    BCON_INT64((int64_t)chat_now_ms()), "body", BCON_UTF8(body));
}

static mongoc_collection_t *messages(mongoc_client_t *client)
{
    return mongoc_client_get_collection(client, fx.name, "messages");
}

static void print_reply(const char *what, const bson_t *reply)
{
    char *json = bson_as_relaxed_extended_json(reply, NULL);
    printf("# %s: %s\n", what, json);
    bson_free(json);
}

/* Inserts seq values into conv with one unordered bulk write; ids[i] gets
 * the _id of the i-th document. Returns the bulk's result. */
static bool insert_seqs(mongoc_client_t *client, const char *conv, const int64_t *seqs, int n,
                        char (*ids)[CHAT_ID_LEN + 1], bson_t *reply, bson_error_t *berr)
{
    mongoc_collection_t *coll = messages(client);
    bson_t *opts = BCON_NEW("ordered", BCON_BOOL(false));
    mongoc_bulk_operation_t *bulk = mongoc_collection_create_bulk_operation_with_opts(coll, opts);
    for (int i = 0; i < n; i++) {
        chat_id_new(ids[i], chat_now_ms());
        bson_t *doc = message_doc(ids[i], conv, seqs[i]);
        assert_true(mongoc_bulk_operation_insert_with_opts(bulk, doc, NULL, berr));
        bson_destroy(doc);
    }
    bool ok = mongoc_bulk_operation_execute(bulk, reply, berr) != 0;
    mongoc_bulk_operation_destroy(bulk);
    bson_destroy(opts);
    mongoc_collection_destroy(coll);
    return ok;
}

static int64_t count_conv(mongoc_client_t *client, const char *conv)
{
    bson_error_t berr;
    mongoc_collection_t *coll = messages(client);
    bson_t *filter = BCON_NEW("conv", BCON_UTF8(conv));
    int64_t n = mongoc_collection_count_documents(coll, filter, NULL, NULL, NULL, &berr);
    if (n < 0)
        printf("# count: %s\n", berr.message);
    bson_destroy(filter);
    mongoc_collection_destroy(coll);
    return n;
}

static int64_t reply_int(const bson_t *reply, const char *key)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, reply, key) && BSON_ITER_HOLDS_NUMBER(&it)
               ? bson_iter_as_int64(&it)
               : -1;
}

static void test_ping(void **state)
{
    chat_error_t err = {0};
    int rc = chat_mongo_ping(*state, &err);
    if (rc != 0)
        fail_msg("ping %s: %s (is the stack up? scripts/stack.sh status)", chat_test_mongo_uri(),
                 err.message);
}

static void test_ensure_indexes_is_idempotent(void **state)
{
    mongoc_client_t *client = *state;
    chat_error_t err = {0};
    int rc = chat_mongo_ensure_indexes(client, fx.name, &err);
    if (rc != 0)
        fail_msg("first ensure_indexes: %s", err.message);
    rc = chat_mongo_ensure_indexes(client, fx.name, &err);
    if (rc != 0)
        fail_msg("second ensure_indexes: %s", err.message);

    /* The unique {conv, seq} index is what makes a replayed batch safe. */
    bson_error_t berr;
    const bson_t *idx;
    mongoc_collection_t *coll = messages(client);
    mongoc_cursor_t *cursor = mongoc_collection_find_indexes_with_opts(coll, NULL);
    int found = 0;
    while (mongoc_cursor_next(cursor, &idx)) {
        bson_iter_t it;
        if (bson_iter_init_find(&it, idx, "name") && BSON_ITER_HOLDS_UTF8(&it) &&
            strcmp(bson_iter_utf8(&it, NULL), "conv_seq") == 0) {
            print_reply("conv_seq index", idx);
            found++;
            assert_true(bson_iter_init_find(&it, idx, "unique") && bson_iter_as_bool(&it));
        }
    }
    bool cursor_ok = !mongoc_cursor_error(cursor, &berr);
    mongoc_cursor_destroy(cursor);
    mongoc_collection_destroy(coll);
    if (!cursor_ok)
        fail_msg("listIndexes: %s", berr.message);
    assert_int_equal(found, 1);
}

static void test_bulk_insert_then_find_sorted_by_seq(void **state)
{
    mongoc_client_t *client = *state;
    chat_error_t err = {0};
    bson_error_t berr;
    bson_t reply;
    char conv[64], ids[5][CHAT_ID_LEN + 1];
    static const int64_t seqs[] = {3, 1, 5, 2, 4};

    assert_chat_ok(chat_mongo_ensure_indexes(client, fx.name, &err));
    chat_test_unique(conv, sizeof(conv), "it.sorted.");
    bool ok = insert_seqs(client, conv, seqs, 5, ids, &reply, &berr);
    if (!ok)
        print_reply("bulk reply", &reply);
    assert_true(ok);
    assert_int_equal(reply_int(&reply, "nInserted"), 5);
    bson_destroy(&reply);

    mongoc_collection_t *coll = messages(client);
    bson_t *filter = BCON_NEW("conv", BCON_UTF8(conv));
    bson_t *opts = BCON_NEW("sort", "{", "seq", BCON_INT32(1), "}");
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
    const bson_t *doc;
    int64_t want = 1;
    while (mongoc_cursor_next(cursor, &doc)) {
        bson_iter_t it;
        assert_true(bson_iter_init_find(&it, doc, "seq"));
        assert_int_equal(bson_iter_as_int64(&it), want);
        /* seqs[] maps a seq back to the position, hence to its _id. */
        int pos = 0;
        while (seqs[pos] != want)
            pos++;
        assert_true(bson_iter_init_find(&it, doc, "_id") && BSON_ITER_HOLDS_UTF8(&it));
        assert_string_equal(bson_iter_utf8(&it, NULL), ids[pos]);
        assert_true(bson_iter_init_find(&it, doc, "body") && BSON_ITER_HOLDS_UTF8(&it));
        want++;
    }
    bool cursor_ok = !mongoc_cursor_error(cursor, &berr);
    mongoc_cursor_destroy(cursor);
    bson_destroy(opts);
    bson_destroy(filter);
    mongoc_collection_destroy(coll);
    if (!cursor_ok)
        fail_msg("find: %s", berr.message);
    assert_int_equal(want, 6);
}

/* Checks one entry of writeErrors: its index in the bulk and code 11000. */
static void assert_duplicate_key_error(const bson_t *reply, int entry, int32_t index)
{
    bson_iter_t it, errors, e;
    char path[32];
    assert_true(bson_iter_init_find(&it, reply, "writeErrors") && BSON_ITER_HOLDS_ARRAY(&it));
    assert_true(bson_iter_recurse(&it, &errors));
    snprintf(path, sizeof(path), "%d.index", entry);
    assert_true(bson_iter_find_descendant(&errors, path, &e));
    assert_int_equal(bson_iter_as_int64(&e), index);
    assert_true(bson_iter_recurse(&it, &errors));
    snprintf(path, sizeof(path), "%d.code", entry);
    assert_true(bson_iter_find_descendant(&errors, path, &e));
    assert_int_equal(bson_iter_as_int64(&e), CHAT_MONGO_DUPLICATE_KEY);
}

static void test_unordered_bulk_reports_duplicates_and_inserts_the_rest(void **state)
{
    mongoc_client_t *client = *state;
    chat_error_t err = {0};
    bson_error_t berr;
    bson_t reply;
    char conv[64], ids[2][CHAT_ID_LEN + 1], fresh[2][CHAT_ID_LEN + 1];
    static const int64_t first[] = {1, 2};

    assert_chat_ok(chat_mongo_ensure_indexes(client, fx.name, &err));
    chat_test_unique(conv, sizeof(conv), "it.dup.");
    assert_true(insert_seqs(client, conv, first, 2, ids, &reply, &berr));
    bson_destroy(&reply);

    /* A replayed batch: a new _id for a {conv, seq} already taken, an _id
     * already taken, and one new event between them. */
    mongoc_collection_t *coll = messages(client);
    bson_t *opts = BCON_NEW("ordered", BCON_BOOL(false));
    mongoc_bulk_operation_t *bulk = mongoc_collection_create_bulk_operation_with_opts(coll, opts);
    chat_id_new(fresh[0], chat_now_ms());
    chat_id_new(fresh[1], chat_now_ms());
    bson_t *dup_seq = message_doc(fresh[0], conv, 1);
    bson_t *valid = message_doc(fresh[1], conv, 3);
    bson_t *dup_id = message_doc(ids[1], conv, 9);
    assert_true(mongoc_bulk_operation_insert_with_opts(bulk, dup_seq, NULL, &berr));
    assert_true(mongoc_bulk_operation_insert_with_opts(bulk, valid, NULL, &berr));
    assert_true(mongoc_bulk_operation_insert_with_opts(bulk, dup_id, NULL, &berr));
    uint32_t server = mongoc_bulk_operation_execute(bulk, &reply, &berr);
    print_reply("duplicate bulk reply", &reply);
    printf("# duplicate bulk error: domain %u code %u message \"%s\"\n", berr.domain, berr.code,
           berr.message);
    bson_destroy(dup_seq);
    bson_destroy(valid);
    bson_destroy(dup_id);
    mongoc_bulk_operation_destroy(bulk);
    bson_destroy(opts);
    mongoc_collection_destroy(coll);

    assert_int_equal(server, 0); /* the bulk as a whole failed */
    assert_int_equal(berr.domain, MONGOC_ERROR_SERVER);
    assert_int_equal(berr.code, CHAT_MONGO_DUPLICATE_KEY);
    assert_int_equal(reply_int(&reply, "nInserted"), 1);
    bson_iter_t it;
    assert_true(bson_iter_init_find(&it, &reply, "writeErrors"));
    bson_iter_t errors;
    assert_true(bson_iter_recurse(&it, &errors));
    int n_errors = 0;
    while (bson_iter_next(&errors))
        n_errors++;
    assert_int_equal(n_errors, 2);
    assert_duplicate_key_error(&reply, 0, 0);
    assert_duplicate_key_error(&reply, 1, 2);
    bson_destroy(&reply);

    /* The valid event of the same bulk is stored; the duplicates are not. */
    assert_int_equal(count_conv(client, conv), 3);
    coll = messages(client);
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(fresh[1]));
    assert_int_equal(mongoc_collection_count_documents(coll, filter, NULL, NULL, NULL, &berr), 1);
    bson_destroy(filter);
    filter = BCON_NEW("_id", BCON_UTF8(ids[1]), "seq", BCON_INT64(2));
    assert_int_equal(mongoc_collection_count_documents(coll, filter, NULL, NULL, NULL, &berr), 1);
    bson_destroy(filter);
    mongoc_collection_destroy(coll);
}

#define MONGO_TEST(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        MONGO_TEST(test_ping),
        MONGO_TEST(test_ensure_indexes_is_idempotent),
        MONGO_TEST(test_bulk_insert_then_find_sorted_by_seq),
        MONGO_TEST(test_unordered_bulk_reports_duplicates_and_inserts_the_rest),
    };
    int failed = cmocka_run_group_tests_name("mongo", tests, group_setup, group_teardown);
    mongoc_cleanup();
    return failed;
}
