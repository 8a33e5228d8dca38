/* chat-mongo without a server: creating a pool does not connect, so URI
 * handling can be checked alone. */
#include "chat-test.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "chat-log.h"
#include "chat-mongo.h"

static void test_pool_rejects_invalid_uri(void **state)
{
    (void)state;
    chat_error_t err = {0};
    assert_null(chat_mongo_pool_new("http://127.0.0.1/chat", "test", &err));
    assert_int_equal(err.code, CHAT_EMONGO);
    assert_non_null(strstr(err.message, "uri"));
}

static void test_db_name_comes_from_uri(void **state)
{
    (void)state;
    chat_error_t err;
    mongoc_client_pool_t *pool =
        chat_mongo_pool_new("mongodb://127.0.0.1:1/chat_unit_db", "test", &err);
    assert_non_null(pool);
    assert_string_equal(chat_mongo_db_name(pool), "chat_unit_db");
    chat_mongo_pool_destroy(pool);
}

static void test_db_name_defaults_to_chat(void **state)
{
    (void)state;
    chat_error_t err;
    mongoc_client_pool_t *pool = chat_mongo_pool_new("mongodb://127.0.0.1:1", "test", &err);
    assert_non_null(pool);
    assert_string_equal(chat_mongo_db_name(pool), "chat");
    chat_mongo_pool_destroy(pool);
}

static void test_db_name_is_per_pool(void **state)
{
    (void)state;
    chat_error_t err;
    mongoc_client_pool_t *a = chat_mongo_pool_new("mongodb://127.0.0.1:1/db_a", "test", &err);
    mongoc_client_pool_t *b = chat_mongo_pool_new("mongodb://127.0.0.1:1/db_b", "test", &err);
    assert_non_null(a);
    assert_non_null(b);
    assert_string_equal(chat_mongo_db_name(a), "db_a");
    assert_string_equal(chat_mongo_db_name(b), "db_b");
    chat_mongo_pool_destroy(a);
    chat_mongo_pool_destroy(b);
}

static void test_appname_is_set_unless_in_uri(void **state)
{
    (void)state;
    chat_error_t err;
    mongoc_client_pool_t *pool =
        chat_mongo_pool_new("mongodb://127.0.0.1:1/chat?appname=from-uri", "test", &err);
    assert_non_null(pool);
    mongoc_client_t *client = mongoc_client_pool_pop(pool);
    assert_string_equal(mongoc_uri_get_appname(mongoc_client_get_uri(client)), "from-uri");
    mongoc_client_pool_push(pool, client);
    chat_mongo_pool_destroy(pool);

    pool = chat_mongo_pool_new("mongodb://127.0.0.1:1/chat", "chat-unit", &err);
    assert_non_null(pool);
    client = mongoc_client_pool_pop(pool);
    assert_string_equal(mongoc_uri_get_appname(mongoc_client_get_uri(client)), "chat-unit");
    mongoc_client_pool_push(pool, client);
    chat_mongo_pool_destroy(pool);
}

static void test_error_fills_message_with_domain_and_code(void **state)
{
    (void)state;
    chat_error_t err;
    bson_error_t berr;
    bson_set_error(&berr, MONGOC_ERROR_SERVER, CHAT_MONGO_DUPLICATE_KEY, "E11000 dup");
    assert_int_equal(chat_mongo_error(&err, &berr, "insert"), CHAT_EMONGO);
    assert_int_equal(err.code, CHAT_EMONGO);
    assert_non_null(strstr(err.message, "insert: E11000 dup"));
    assert_non_null(strstr(err.message, "11000"));
}

static void test_pool_destroy_null_is_noop(void **state)
{
    (void)state;
    chat_mongo_pool_destroy(NULL);
}

static void test_db_name_of_destroyed_pool_is_forgotten(void **state)
{
    (void)state;
    /* More pools over a process's life than the registry has slots. */
    chat_error_t err;
    for (int i = 0; i < 40; i++) {
        char uri[64], want[16];
        snprintf(want, sizeof(want), "db_%d", i);
        snprintf(uri, sizeof(uri), "mongodb://127.0.0.1:1/%s", want);
        mongoc_client_pool_t *pool = chat_mongo_pool_new(uri, "test", &err);
        assert_non_null(pool);
        assert_string_equal(chat_mongo_db_name(pool), want);
        chat_mongo_pool_destroy(pool);
    }
}

static void test_global_init_twice_is_safe(void **state)
{
    (void)state;
    chat_mongo_global_init();
    chat_mongo_global_init();
}

/* The driver's own log lines go through chat-log, at its levels: at warn a
 * driver debug line (it prints one per failed heartbeat while the store is
 * down) is dropped, a warning is written as ours. */
static void test_driver_logs_at_our_levels(void **state)
{
    (void)state;
    char text[4096];
    FILE *captured = tmpfile();
    assert_non_null(captured);
    chat_mongo_global_init();
    chat_log_init("test-chat-mongo", CHAT_LOG_WARN);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fileno(captured), STDERR_FILENO) >= 0);
    mongoc_log(MONGOC_LOG_LEVEL_DEBUG, "cluster", "heartbeat failed (not to be shown)");
    mongoc_log(MONGOC_LOG_LEVEL_INFO, "cluster", "an info line (not to be shown)");
    mongoc_log(MONGOC_LOG_LEVEL_WARNING, "cluster", "a warning to show");
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    chat_log_init("test-chat-mongo", CHAT_LOG_INFO);
    rewind(captured);
    size_t n = fread(text, 1, sizeof(text) - 1, captured);
    text[n] = '\0';
    fclose(captured);
    assert_non_null(strstr(text, "mongoc cluster: a warning to show"));
    assert_null(strstr(text, "not to be shown"));
}

static int only_dups(const char *json)
{
    bson_error_t berr;
    bson_t *reply = bson_new_from_json((const uint8_t *)json, -1, &berr);
    assert_non_null(reply);
    int r = chat_mongo_only_duplicates(reply);
    bson_destroy(reply);
    return r;
}

static void test_only_duplicates_reads_every_write_error(void **state)
{
    (void)state;
    assert_true(
        only_dups("{\"nInserted\": 1, \"writeErrors\": [{\"index\": 0, \"code\": 11000}]}"));
    assert_true(only_dups("{\"writeErrors\": [{\"index\": 0, \"code\": 11000}, "
                          "{\"index\": 2, \"code\": {\"$numberLong\": \"11000\"}}]}"));
    /* Any other error, a write concern error, or no write error at all
     * (a failure the reply does not explain): not only duplicates. */
    assert_false(only_dups("{\"writeErrors\": [{\"index\": 0, \"code\": 11000}, "
                           "{\"index\": 1, \"code\": 121}]}"));
    assert_false(only_dups("{\"writeErrors\": [{\"index\": 0, \"code\": 11000}], "
                           "\"writeConcernErrors\": [{\"code\": 64}]}"));
    assert_false(only_dups("{\"writeErrors\": [{\"index\": 0}]}"));
    assert_false(only_dups("{\"writeErrors\": []}"));
    assert_false(only_dups("{}"));
    assert_true(only_dups("{\"writeErrors\": [{\"code\": 11000}], \"writeConcernErrors\": []}"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_rejects_invalid_uri),
        cmocka_unit_test(test_db_name_comes_from_uri),
        cmocka_unit_test(test_db_name_defaults_to_chat),
        cmocka_unit_test(test_db_name_is_per_pool),
        cmocka_unit_test(test_appname_is_set_unless_in_uri),
        cmocka_unit_test(test_error_fills_message_with_domain_and_code),
        cmocka_unit_test(test_only_duplicates_reads_every_write_error),
        cmocka_unit_test(test_pool_destroy_null_is_noop),
        cmocka_unit_test(test_db_name_of_destroyed_pool_is_forgotten),
        cmocka_unit_test(test_global_init_twice_is_safe),
        cmocka_unit_test(test_driver_logs_at_our_levels),
    };
    int failed = cmocka_run_group_tests_name("chat-mongo", tests, NULL, NULL);
    mongoc_cleanup();
    return failed;
}
