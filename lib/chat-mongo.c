#include "chat-mongo.h"

#include <pthread.h>

#include "chat-log.h"

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

/* The database each pool's URI names, so callers need not parse URIs. */
#define MAX_POOLS 16
static struct {
    mongoc_client_pool_t *pool;
    char db[128];
} pool_dbs[MAX_POOLS];
static pthread_mutex_t pool_dbs_lock = PTHREAD_MUTEX_INITIALIZER;

/* The driver logs through ours, at our levels: its own handler prints
 * debug lines (a heartbeat failure every half second while the store is
 * down) whatever --log-level says. */
static void log_cb(mongoc_log_level_t level, const char *domain, const char *message, void *data)
{
    (void)data;
    int ours = level <= MONGOC_LOG_LEVEL_CRITICAL  ? CHAT_LOG_ERROR
               : level == MONGOC_LOG_LEVEL_WARNING ? CHAT_LOG_WARN
               : level <= MONGOC_LOG_LEVEL_INFO    ? CHAT_LOG_INFO
                                                   : CHAT_LOG_DEBUG;
    CHAT_LOG(ours, "mongoc %s: %s", domain, message);
}

static void do_init(void)
{
    mongoc_init();
    mongoc_log_set_handler(log_cb, NULL);
}

void chat_mongo_global_init(void)
{
    pthread_once(&init_once, do_init);
}

int chat_mongo_error(chat_error_t *err, const bson_error_t *berr, const char *what)
{
    return chat_error_set(err, CHAT_EMONGO, "%s: %s (domain %u, code %u)", what, berr->message,
                          berr->domain, berr->code);
}

void chat_mongo_append_in(bson_t *doc, const char *key, const char *const *values, size_t n)
{
    bson_t in, arr;
    char idx[16];
    const char *k;
    BSON_APPEND_DOCUMENT_BEGIN(doc, key, &in);
    BSON_APPEND_ARRAY_BEGIN(&in, "$in", &arr);
    for (size_t i = 0; i < n; i++) {
        bson_uint32_to_string((uint32_t)i, &k, idx, sizeof(idx));
        bson_append_utf8(&arr, k, -1, values[i], -1);
    }
    bson_append_array_end(&in, &arr);
    bson_append_document_end(doc, &in);
}

int chat_mongo_only_duplicates(const bson_t *reply)
{
    bson_iter_t it, arr, e;
    int n = 0;
    if (bson_iter_init_find(&it, reply, "writeConcernErrors") && BSON_ITER_HOLDS_ARRAY(&it) &&
        bson_iter_recurse(&it, &arr) && bson_iter_next(&arr))
        return 0;
    if (!bson_iter_init_find(&it, reply, "writeErrors") || !BSON_ITER_HOLDS_ARRAY(&it) ||
        !bson_iter_recurse(&it, &arr))
        return 0;
    while (bson_iter_next(&arr)) {
        if (!BSON_ITER_HOLDS_DOCUMENT(&arr) || !bson_iter_recurse(&arr, &e) ||
            !bson_iter_find(&e, "code") || bson_iter_as_int64(&e) != CHAT_MONGO_DUPLICATE_KEY)
            return 0;
        n++;
    }
    return n > 0;
}

mongoc_client_pool_t *chat_mongo_pool_new(const char *uri_str, const char *appname,
                                          chat_error_t *err)
{
    bson_error_t berr;
    chat_mongo_global_init();
    mongoc_uri_t *uri = mongoc_uri_new_with_error(uri_str, &berr);
    if (uri == NULL) {
        chat_mongo_error(err, &berr, "mongodb uri");
        return NULL;
    }
    if (!mongoc_uri_has_option(uri, MONGOC_URI_APPNAME))
        mongoc_uri_set_appname(uri, appname);
    const char *db = mongoc_uri_get_database(uri);
    mongoc_client_pool_t *pool = mongoc_client_pool_new(uri);
    if (pool != NULL) {
        pthread_mutex_lock(&pool_dbs_lock);
        for (int i = 0; i < MAX_POOLS; i++) {
            if (pool_dbs[i].pool == NULL) {
                pool_dbs[i].pool = pool;
                snprintf(pool_dbs[i].db, sizeof(pool_dbs[i].db), "%s",
                         db != NULL && db[0] ? db : "chat");
                break;
            }
        }
        pthread_mutex_unlock(&pool_dbs_lock);
    }
    mongoc_uri_destroy(uri);
    if (pool == NULL) {
        chat_error_set(err, CHAT_EMONGO, "mongodb: cannot create a client pool");
        return NULL;
    }
    mongoc_client_pool_set_error_api(pool, MONGOC_ERROR_API_VERSION_2);
    return pool;
}

const char *chat_mongo_db_name(mongoc_client_pool_t *pool)
{
    const char *name = "chat";
    pthread_mutex_lock(&pool_dbs_lock);
    for (int i = 0; i < MAX_POOLS; i++) {
        if (pool_dbs[i].pool == pool)
            name = pool_dbs[i].db;
    }
    pthread_mutex_unlock(&pool_dbs_lock);
    return name;
}

void chat_mongo_pool_destroy(mongoc_client_pool_t *pool)
{
    if (pool == NULL)
        return;
    pthread_mutex_lock(&pool_dbs_lock);
    for (int i = 0; i < MAX_POOLS; i++) {
        if (pool_dbs[i].pool == pool)
            pool_dbs[i].pool = NULL;
    }
    pthread_mutex_unlock(&pool_dbs_lock);
    mongoc_client_pool_destroy(pool);
}

int chat_mongo_ping(mongoc_client_t *client, chat_error_t *err)
{
    bson_error_t berr;
    bson_t cmd = BSON_INITIALIZER;
    BSON_APPEND_INT32(&cmd, "ping", 1);
    bool ok = mongoc_client_command_simple(client, "admin", &cmd, NULL, NULL, &berr);
    bson_destroy(&cmd);
    return ok ? 0 : chat_mongo_error(err, &berr, "ping");
}

static int create_index(mongoc_client_t *client, const char *db, const char *coll, const char *name,
                        const bson_t *keys, bool unique, chat_error_t *err)
{
    bson_error_t berr;
    bson_t cmd = BSON_INITIALIZER, indexes, index;
    BSON_APPEND_UTF8(&cmd, "createIndexes", coll);
    BSON_APPEND_ARRAY_BEGIN(&cmd, "indexes", &indexes);
    BSON_APPEND_DOCUMENT_BEGIN(&indexes, "0", &index);
    BSON_APPEND_DOCUMENT(&index, "key", keys);
    BSON_APPEND_UTF8(&index, "name", name);
    if (unique)
        BSON_APPEND_BOOL(&index, "unique", true);
    bson_append_document_end(&indexes, &index);
    bson_append_array_end(&cmd, &indexes);
    bool ok = mongoc_client_write_command_with_opts(client, db, &cmd, NULL, NULL, &berr);
    bson_destroy(&cmd);
    return ok ? 0 : chat_mongo_error(err, &berr, name);
}

int chat_mongo_ensure_indexes(mongoc_client_t *client, const char *db, chat_error_t *err)
{
    int rc;
    bson_t *k = BCON_NEW("conv", BCON_INT32(1), "seq", BCON_INT32(1));
    rc = create_index(client, db, "messages", "conv_seq", k, true, err);
    bson_destroy(k);
    if (rc != 0)
        return rc;
    k = BCON_NEW("user", BCON_INT32(1));
    rc = create_index(client, db, "members", "user", k, false, err);
    bson_destroy(k);
    return rc;
}
