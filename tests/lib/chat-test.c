#include "chat-test.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *chat_test_env(const char *name, const char *def)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : def;
}

const char *chat_test_kafka_brokers(void)
{
    return chat_test_env("CHAT_KAFKA_BROKERS", "127.0.0.1:19092");
}

const char *chat_test_redis_host(void)
{
    return chat_test_env("CHAT_REDIS_HOST", "127.0.0.1");
}

int chat_test_redis_port(void)
{
    return atoi(chat_test_env("CHAT_REDIS_PORT", "16379"));
}

const char *chat_test_mongo_uri(void)
{
    return chat_test_env("CHAT_MONGO_URI", "mongodb://127.0.0.1:27018/chat");
}

int chat_test_db_open(chat_test_db_t *db, const char *prefix, const char *appname)
{
    chat_error_t err = {0, ""};
    chat_test_unique(db->name, sizeof(db->name), prefix);
    const char *base = chat_test_mongo_uri();
    const char *hosts = strstr(base, "://");
    hosts = hosts != NULL ? hosts + 3 : base;
    const char *path = strchr(hosts, '/');
    const char *query = strchr(hosts, '?');
    size_t head = path != NULL    ? (size_t)(path - base)
                  : query != NULL ? (size_t)(query - base)
                                  : strlen(base);
    snprintf(db->uri, sizeof(db->uri), "%.*s/%s%s", (int)head, base, db->name,
             query != NULL ? query : "");
    if ((db->pool = chat_mongo_pool_new(db->uri, appname, &err)) == NULL) {
        printf("# pool on %s: %s\n", db->uri, err.message);
        return -1;
    }
    printf("# database %s\n", db->name);
    return 0;
}

int chat_test_db_close(chat_test_db_t *db)
{
    bson_error_t berr;
    int rc = 0;
    mongoc_client_t *client = mongoc_client_pool_pop(db->pool);
    mongoc_database_t *d = mongoc_client_get_database(client, db->name);
    if (!mongoc_database_drop_with_opts(d, NULL, &berr)) {
        printf("# drop %s: %s\n", db->name, berr.message);
        rc = -1;
    }
    mongoc_database_destroy(d);
    mongoc_client_pool_push(db->pool, client);
    mongoc_client_pool_destroy(db->pool);
    db->pool = NULL;
    return rc;
}

void chat_test_unique(char *out, size_t size, const char *prefix)
{
    unsigned char raw[8];
    char hex[2 * sizeof(raw) + 1];
    if (sodium_init() < 0)
        abort();
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2hex(hex, sizeof(hex), raw, sizeof(raw));
    snprintf(out, size, "%s%s", prefix, hex);
}

static void guard_cb(uv_timer_t *t)
{
    /* Nothing to do: firing is enough to make uv_run(UV_RUN_ONCE) return. */
    (void)t;
}

int chat_test_run_until(uv_loop_t *loop, chat_test_cond_cb cond, void *data, int max_iterations,
                        unsigned guard_ms)
{
    uv_timer_t guard;
    int held = cond(data);
    if (uv_timer_init(loop, &guard) != 0)
        return 0;
    uv_timer_start(&guard, guard_cb, guard_ms, guard_ms);
    for (int i = 0; i < max_iterations && !held; i++) {
        uv_run(loop, UV_RUN_ONCE);
        held = cond(data);
    }
    /* The guard lives on this stack frame: close it and let its close
     * callback run before returning. */
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return held;
}

static void dump_cb(uv_handle_t *h, void *arg)
{
    (void)arg;
    printf("# open handle %p: %s%s\n", (void *)h, uv_handle_type_name(uv_handle_get_type(h)),
           uv_is_closing(h) ? " (closing)" : "");
}

void chat_test_loop_dump(uv_loop_t *loop)
{
    uv_walk(loop, dump_cb, NULL);
}

int chat_test_loop_close(uv_loop_t *loop, int max_iterations)
{
    for (int i = 0; i < max_iterations && uv_loop_alive(loop); i++)
        uv_run(loop, UV_RUN_NOWAIT);
    int rc = uv_loop_close(loop);
    if (rc != 0)
        chat_test_loop_dump(loop);
    return rc;
}
