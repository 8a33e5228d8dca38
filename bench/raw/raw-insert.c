/* chat-bench-insert: how fast the store takes message documents from
 * mongo-c-driver alone. It is the reference the consumer's persist rate is
 * compared to: the same documents (the fields and types of
 * cs_store_add_event for a message), the same unique {conv, seq} index, the
 * same ordered bulks of at most 100 inserts run one after the other, and
 * the same URI defaults and write concern (w:majority) as the consumer's
 * store. The gap between the two figures is what the consumer (Kafka,
 * decoding, seq assignment, conversation and member updates, Redis) costs.
 *
 * Every document is built before the clock starts; the clock times the
 * bulks alone. Exit status: 0 when every document was inserted, 1 on any
 * write error, 2 when the run could not be done as asked. */
#include <mongoc/mongoc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat-config.h"
#include "chat-error.h"
#include "chat-id.h"
#include "chat-mongo.h"
#include "raw-common.h"

#define PROGRAM "chat-bench-insert"

typedef struct ri_config_s {
    const char *mongo_uri;
    int64_t count;
    int64_t size;
    int64_t convs;
    const char *conv_prefix;
    int64_t batch;
    int64_t last_seq_every;
    int drop;
    int indexes;
    const char *json;
    const char *log_level;
} ri_config_t;

#define T ri_config_t
static const chat_conf_entry_t table[] = {
    /* The consumer's server (consumer/cs-config.c) with a database of our
     * own, since --drop empties its messages collection. */
    CHAT_CONF_STR_ENTRY(T, mongo_uri, "mongodb://127.0.0.1:27018/benchraw",
                        "MongoDB URI; its path names the database (default benchraw)"),
    CHAT_CONF_INT_ENTRY(T, count, "100000", 1, 10000000, "documents to insert"),
    CHAT_CONF_INT_ENTRY(T, size, "100", 1, 1048576, "message body, bytes"),
    CHAT_CONF_INT_ENTRY(T, convs, "1000", 1, 1000000,
                        "distinct conversations (round-robin; seq dense per conversation)"),
    CHAT_CONF_STR_ENTRY(T, conv_prefix, "bench",
                        "conversations are <prefix>.c<k>, senders <prefix>.u<k>a"),
    CHAT_CONF_INT_ENTRY(T, batch, "100", 1, 100000,
                        "documents per ordered bulk (the consumer's chunk is 100: FerretDB keeps "
                        "ordered:true only within 100 documents)"),
    CHAT_CONF_INT_ENTRY(T, last_seq_every, "0", 0, 100000,
                        "also do the consumer's other writes: after every N documents (its batch), "
                        "one $max last_seq update per conversation among them, in ordered bulks "
                        "of 32 (0: inserts only)"),
    CHAT_CONF_BOOL_ENTRY(T, drop, "true",
                         "drop the messages collection first (--drop=false keeps it; refused on "
                         "the database chat)"),
    CHAT_CONF_BOOL_ENTRY(T, indexes, "true",
                         "create the consumer's indexes first (unique {conv, seq}), as the "
                         "consumer does at start-up"),
    CHAT_CONF_STR_ENTRY(T, json, "", "write the result to this file as JSON"),
    CHAT_CONF_STR_ENTRY(T, log_level, "warn", "error, warn, info or debug"),
};
#undef T

#define NS_NOT_FOUND 26 /* the server's NamespaceNotFound */

/* Applies the consumer store's URI defaults (consumer/cs-store.c,
 * uri_with_defaults): bounded timeouts, and w:majority unless the URI sets
 * a write concern, because the consumer commits offsets once a write
 * returns. The options are set on the parsed URI, which the client is made
 * from directly. Returns the URI, or NULL with err set. */
static mongoc_uri_t *uri_new(const char *uri_str, chat_error_t *err)
{
    bson_error_t berr;
    mongoc_uri_t *uri = mongoc_uri_new_with_error(uri_str, &berr);
    if (uri == NULL) {
        chat_mongo_error(err, &berr, "mongo_uri");
        return NULL;
    }
    static const struct {
        const char *name;
        int32_t value;
    } opts[] = {
        {MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 5000},
        {MONGOC_URI_CONNECTTIMEOUTMS, 5000},
        {MONGOC_URI_SOCKETTIMEOUTMS, 30000},
    };
    for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
        if (!mongoc_uri_has_option(uri, opts[i].name))
            mongoc_uri_set_option_as_int32(uri, opts[i].name, opts[i].value);
    }
    const mongoc_write_concern_t *wc = mongoc_uri_get_write_concern(uri);
    if (wc == NULL || mongoc_write_concern_get_w(wc) == MONGOC_WRITE_CONCERN_W_DEFAULT) {
        mongoc_write_concern_t *majority = mongoc_write_concern_new();
        mongoc_write_concern_set_wmajority(majority, 0);
        mongoc_uri_set_write_concern(uri, majority);
        mongoc_write_concern_destroy(majority);
    }
    if (!mongoc_uri_has_option(uri, MONGOC_URI_APPNAME))
        mongoc_uri_set_appname(uri, PROGRAM);
    return uri;
}

/* Builds document i exactly as cs_store_add_event builds a message: the
 * same fields, in the same order, of the same types. */
static void doc_build(bson_t *doc, const raw_sender_t *s, int64_t i, int64_t seq, const char *body,
                      size_t body_len)
{
    char id[CHAT_ID_LEN + 1], cid[24];
    int64_t ts = (int64_t)chat_now_ms();
    chat_id_new(id, (uint64_t)ts);
    snprintf(cid, sizeof(cid), "%lld", (long long)i);
    bson_init(doc);
    BSON_APPEND_UTF8(doc, "_id", id);
    BSON_APPEND_UTF8(doc, "conv", s->conv);
    BSON_APPEND_INT64(doc, "seq", seq);
    BSON_APPEND_UTF8(doc, "from", s->from);
    BSON_APPEND_UTF8(doc, "dev", s->dev);
    BSON_APPEND_UTF8(doc, "cid", cid);
    BSON_APPEND_INT64(doc, "ts", ts);
    bson_append_utf8(doc, "body", 4, body, (int)body_len);
}

/* Builds all documents; seq counts from 1 in each conversation. Returns
 * the array (docs_destroy it) or NULL when out of memory. */
static bson_t *docs_new(const ri_config_t *cfg, const raw_sender_t *senders)
{
    bson_t *docs = calloc((size_t)cfg->count, sizeof(*docs));
    int64_t *seqs = calloc((size_t)cfg->convs, sizeof(*seqs));
    char *body = malloc((size_t)cfg->size);
    if (docs == NULL || seqs == NULL || body == NULL) {
        free(docs);
        docs = NULL;
        goto done;
    }
    memset(body, 'x', (size_t)cfg->size);
    for (int64_t i = 0; i < cfg->count; i++) {
        int64_t k = i % cfg->convs;
        doc_build(&docs[i], &senders[k], i, ++seqs[k], body, (size_t)cfg->size);
    }
done:
    free(seqs);
    free(body);
    return docs;
}

static void docs_destroy(bson_t *docs, int64_t n)
{
    if (docs == NULL)
        return;
    for (int64_t i = 0; i < n; i++)
        bson_destroy(&docs[i]);
    free(docs);
}

/* Empties the collection and creates the consumer's indexes, as asked.
 * Returns 0 or CHAT_EMONGO with err set. */
static int prepare(mongoc_client_t *client, mongoc_collection_t *coll, const char *db,
                   const ri_config_t *cfg, chat_error_t *err)
{
    bson_error_t berr;
    int rc = chat_mongo_ping(client, err);
    if (rc != 0)
        return rc;
    /* A collection that does not exist yet is already empty. */
    if (cfg->drop && !mongoc_collection_drop_with_opts(coll, NULL, &berr) &&
        berr.code != NS_NOT_FOUND && strstr(berr.message, "ns not found") == NULL)
        return chat_mongo_error(err, &berr, "drop messages");
    rc = cfg->indexes ? chat_mongo_ensure_indexes(client, db, err) : 0;
    if (rc != 0 || cfg->last_seq_every == 0)
        return rc;
    /* The conversations the last_seq updates find, as the consumer's do. */
    mongoc_collection_t *convs = mongoc_client_get_collection(client, db, "conversations");
    if (!mongoc_collection_drop_with_opts(convs, NULL, &berr) && berr.code != NS_NOT_FOUND &&
        strstr(berr.message, "ns not found") == NULL)
        rc = chat_mongo_error(err, &berr, "drop conversations");
    mongoc_bulk_operation_t *bulk = mongoc_collection_create_bulk_operation_with_opts(convs, NULL);
    for (int64_t k = 0; k < cfg->convs && rc == 0; k++) {
        char id[CHAT_NAME_MAX + 1];
        snprintf(id, sizeof(id), "%s.c%lld", cfg->conv_prefix, (long long)k);
        bson_t *doc =
            BCON_NEW("_id", BCON_UTF8(id), "kind", BCON_UTF8("group"), "last_seq", BCON_INT64(0));
        mongoc_bulk_operation_insert_with_opts(bulk, doc, NULL, NULL);
        bson_destroy(doc);
    }
    bson_t reply;
    if (rc == 0 && !mongoc_bulk_operation_execute(bulk, &reply, &berr))
        rc = chat_mongo_error(err, &berr, "insert conversations");
    if (rc == 0)
        bson_destroy(&reply);
    mongoc_bulk_operation_destroy(bulk);
    mongoc_collection_destroy(convs);
    return rc;
}

/* The consumer's per-batch conversation writes for docs[from..to): one
 * {$max: {last_seq}} update per conversation, in ordered bulks of 32 (its
 * CHUNK_UPDATES). Returns 0 or CHAT_EMONGO with err set. */
static int update_last_seqs(mongoc_collection_t *convs, const bson_t *docs, int64_t from,
                            int64_t to, const ri_config_t *cfg, chat_error_t *err)
{
    bson_t *opts = BCON_NEW("ordered", BCON_BOOL(true));
    int64_t *last = calloc((size_t)cfg->convs, sizeof(*last));
    const char **names = calloc((size_t)cfg->convs, sizeof(*names));
    int rc = last == NULL || names == NULL ? chat_error_set(err, CHAT_ENOMEM, "out of memory") : 0;
    for (int64_t i = from; i < to && rc == 0; i++) {
        bson_iter_t it;
        int64_t k = i % cfg->convs, seq = 0;
        if (bson_iter_init_find(&it, &docs[i], "seq"))
            seq = bson_iter_as_int64(&it);
        if (bson_iter_init_find(&it, &docs[i], "conv"))
            names[k] = bson_iter_utf8(&it, NULL);
        last[k] = seq;
    }
    mongoc_bulk_operation_t *bulk = NULL;
    int in_bulk = 0;
    for (int64_t k = 0; k <= cfg->convs && rc == 0; k++) {
        if (bulk != NULL && (k == cfg->convs || in_bulk == 32)) {
            bson_t reply;
            bson_error_t berr;
            if (!mongoc_bulk_operation_execute(bulk, &reply, &berr))
                rc = chat_mongo_error(err, &berr, "last_seq updates");
            bson_destroy(&reply);
            mongoc_bulk_operation_destroy(bulk);
            bulk = NULL;
            in_bulk = 0;
        }
        if (k == cfg->convs || last[k] == 0 || rc != 0)
            continue;
        if (bulk == NULL)
            bulk = mongoc_collection_create_bulk_operation_with_opts(convs, opts);
        bson_t *sel = BCON_NEW("_id", BCON_UTF8(names[k]));
        bson_t *upd = BCON_NEW("$max", "{", "last_seq", BCON_INT64(last[k]), "}");
        bson_error_t berr;
        if (!mongoc_bulk_operation_update_one_with_opts(bulk, sel, upd, NULL, &berr))
            rc = chat_error_set(err, CHAT_EMONGO, "last_seq update: %s", berr.message);
        in_bulk++;
        bson_destroy(sel);
        bson_destroy(upd);
    }
    mongoc_bulk_operation_destroy(bulk);
    free(last);
    free(names);
    bson_destroy(opts);
    return rc;
}

/* Inserts docs[0..n) in ordered bulks of cfg->batch, one after the other.
 * Returns 0, or CHAT_EMONGO with err set at the first bulk that failed;
 * *inserted counts what the server reported inserted either way. */
static int insert_all(mongoc_collection_t *coll, mongoc_collection_t *convs, const bson_t *docs,
                      const ri_config_t *cfg, int64_t *inserted, chat_error_t *err)
{
    int64_t updated_to = 0;
    bson_t *opts = BCON_NEW("ordered", BCON_BOOL(true));
    int rc = 0;
    *inserted = 0;
    for (int64_t off = 0; off < cfg->count && rc == 0; off += cfg->batch) {
        int64_t n = cfg->count - off < cfg->batch ? cfg->count - off : cfg->batch;
        bson_error_t berr;
        bson_t reply;
        bson_iter_t it;
        /* The collection's write concern (w:majority from the URI) applies,
         * as it does to the consumer's bulks. */
        mongoc_bulk_operation_t *bulk =
            mongoc_collection_create_bulk_operation_with_opts(coll, opts);
        for (int64_t j = 0; j < n && rc == 0; j++) {
            if (!mongoc_bulk_operation_insert_with_opts(bulk, &docs[off + j], NULL, &berr))
                rc = chat_error_set(err, CHAT_EMONGO, "document %lld: %s", (long long)(off + j),
                                    berr.message);
        }
        if (rc == 0) {
            uint32_t ok = mongoc_bulk_operation_execute(bulk, &reply, &berr);
            int64_t done = 0;
            if (bson_iter_init_find(&it, &reply, "nInserted"))
                done = bson_iter_as_int64(&it);
            *inserted += done;
            if (!ok)
                rc = chat_mongo_error(err, &berr, "bulk insert");
            else if (done != n)
                rc = chat_error_set(err, CHAT_EMONGO,
                                    "bulk insert at %lld: %lld of %lld documents inserted",
                                    (long long)off, (long long)done, (long long)n);
            bson_destroy(&reply);
        }
        mongoc_bulk_operation_destroy(bulk);
        int64_t end = off + n;
        if (rc == 0 && cfg->last_seq_every > 0 &&
            (end - updated_to >= cfg->last_seq_every || end == cfg->count)) {
            rc = update_last_seqs(convs, docs, updated_to, end, cfg, err);
            updated_to = end;
        }
    }
    bson_destroy(opts);
    return rc;
}

static int write_json(const ri_config_t *cfg, int64_t inserted, double secs, double docs_s,
                      const char *db, chat_error_t *err)
{
    json_t *obj = json_object();
    json_object_set_new(obj, "tool", json_string(PROGRAM));
    json_object_set_new(obj, "count", json_integer(cfg->count));
    json_object_set_new(obj, "size", json_integer(cfg->size));
    json_object_set_new(obj, "batch", json_integer(cfg->batch));
    json_object_set_new(obj, "seconds", json_real(secs));
    json_object_set_new(obj, "docs_per_s", json_real(docs_s));
    /* The conditions of the figure, so that a result file stands alone. */
    json_object_set_new(obj, "inserted", json_integer(inserted));
    json_object_set_new(obj, "convs", json_integer(cfg->convs));
    json_object_set_new(obj, "indexes", json_boolean(cfg->indexes));
    json_object_set_new(obj, "database", json_string(db));
    return raw_json_write(obj, cfg->json, err);
}

/* Times the inserts, prints the summary and writes --json. Returns the
 * exit status: 0 when all were inserted, 1 on a write error, 2 when the
 * result file could not be written. */
static int measure(mongoc_client_t *client, mongoc_collection_t *coll, const bson_t *docs,
                   const ri_config_t *cfg, const char *db)
{
    mongoc_collection_t *convs = mongoc_client_get_collection(client, db, "conversations");
    chat_error_t err;
    int64_t inserted = 0;
    uint64_t t0 = raw_mono_us();
    int rc = insert_all(coll, convs, docs, cfg, &inserted, &err);
    uint64_t t1 = raw_mono_us();
    mongoc_collection_destroy(convs);
    double secs = (double)(t1 - t0) / 1e6;
    double docs_s = secs > 0 ? (double)inserted / secs : 0.0;
    if (rc != 0)
        fprintf(stderr, PROGRAM ": %s\n", err.message);
    printf("%s: %lld of %lld documents inserted in %.3f s: %.0f docs/s (%lld-byte bodies, "
           "ordered bulks of %lld, %lld conversations, %s, %s.messages%s)\n",
           PROGRAM, (long long)inserted, (long long)cfg->count, secs, docs_s, (long long)cfg->size,
           (long long)cfg->batch, (long long)cfg->convs,
           cfg->indexes ? "unique {conv, seq}" : "no index made", db,
           cfg->last_seq_every > 0 ? ", with the consumer's last_seq updates" : "");
    int status = rc == 0 ? 0 : 1;
    if (cfg->json[0] && write_json(cfg, inserted, secs, docs_s, db, &err) != 0) {
        fprintf(stderr, PROGRAM ": %s\n", err.message);
        status = status ? status : 2;
    }
    return status;
}

int main(int argc, char **argv)
{
    ri_config_t cfg;
    chat_error_t err;
    bson_error_t berr;
    raw_sender_t *senders = NULL;
    bson_t *docs = NULL;
    mongoc_uri_t *uri = NULL;
    mongoc_client_t *client = NULL;
    mongoc_collection_t *coll = NULL;
    const char *db = NULL;
    int status = 2;

    memset(&cfg, 0, sizeof(cfg));
    int rc = raw_start(PROGRAM, table, sizeof(table) / sizeof(table[0]), &cfg, &cfg.log_level, argc,
                       argv);
    if (rc != 0)
        return rc == 1 ? 0 : 2;
    chat_mongo_global_init();
    if ((uri = uri_new(cfg.mongo_uri, &err)) == NULL)
        goto fail;
    db = mongoc_uri_get_database(uri);
    if (db == NULL || db[0] == '\0')
        db = "benchraw";
    /* CHAT_MONGO_URI is also the gateway's and consumer's variable: a
     * stray export must not make this tool empty the real messages. */
    if (cfg.drop && strcmp(db, "chat") == 0) {
        chat_error_set(&err, CHAT_EINVAL,
                       "refusing to drop chat.messages: point --mongo-uri at a scratch database "
                       "(or pass --drop=false)");
        goto fail;
    }
    if ((senders = raw_senders_new(cfg.conv_prefix, cfg.convs, &err)) == NULL)
        goto fail;
    if ((client = mongoc_client_new_from_uri_with_error(uri, &berr)) == NULL) {
        chat_mongo_error(&err, &berr, "mongodb client");
        goto fail;
    }
    mongoc_client_set_error_api(client, MONGOC_ERROR_API_VERSION_2);
    coll = mongoc_client_get_collection(client, db, "messages");
    if (prepare(client, coll, db, &cfg, &err) != 0)
        goto fail;
    if ((docs = docs_new(&cfg, senders)) == NULL) {
        chat_error_set(&err, CHAT_ENOMEM, "out of memory for %lld documents", (long long)cfg.count);
        goto fail;
    }

    status = measure(client, coll, docs, &cfg, db);
    goto done;
fail:
    fprintf(stderr, PROGRAM ": %s\n", err.message);
done:
    docs_destroy(docs, cfg.count);
    if (coll != NULL)
        mongoc_collection_destroy(coll);
    if (client != NULL)
        mongoc_client_destroy(client);
    if (uri != NULL)
        mongoc_uri_destroy(uri);
    free(senders);
    mongoc_cleanup();
    return status;
}
