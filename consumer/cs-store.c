#include "cs-store.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "chat-buf.h"
#include "chat-log.h"
#include "chat-mongo.h"
#include "cs-map.h"

enum { B_MESSAGES, B_CHANGES, B_CONVS, B_MARKS, B_COUNT };

/* The most writes sent in one command. FerretDB 1.24 applies ordered:true
 * only within chunks of 100 documents of a command: given 200 inserts with
 * a duplicate at index 1, it stores index 0 and then all of 100..199. That
 * breaks the prefix that the retry relies on (cs_store_write), so no
 * command carries more than one such chunk; MongoDB keeps order across a
 * whole command either way, and pays a few more round trips per batch. */
#define CHUNK 100

/* Updates go in smaller commands still. FerretDB 1.24 holds one pooled
 * backend connection per statement of an update command until the command
 * ends: update commands running at once that hold about 100 statements in
 * all (over SQLite) or 50 (over PostgreSQL: 48 pass, 64 hang) wait for
 * each other forever, and the whole server with them (see
 * docs/performance.md). With 16, three consumers' batches and stops of any
 * size stay clear of both (32 hung two consumers stopping at once over
 * PostgreSQL); MongoDB only pays a few round trips more. */
#define CHUNK_UPDATES 16

/* A lane's queued documents of one batch may take this much at most (the
 * consumer's frames of a batch have the same bound). */
#define ARENA_MAX (512u << 20)

/* The queued writes of one kind: ordered bulks of at most CHUNK writes,
 * executed in turn until one fails. */
typedef struct kind_s {
    mongoc_bulk_operation_t **bulks;
    size_t n, cap;
    size_t in_last; /* writes in bulks[n - 1] */
} kind_t;

/* One queued insert of a lane: its document in the lane's arena, followed
 * there by its conversation's id (NUL-terminated), by which and then by
 * seq the lane sorts its inserts before it writes them. */
typedef struct staged_s {
    size_t off;   /* of the document in the arena */
    uint32_t len; /* the document's */
    int64_t seq;
    const char *conv; /* set once the round's arena stops growing */
} staged_t;

/* One lane of event inserts (see cs_store_new): its own connection, the
 * round's inserts as queued, its ordered bulks, and what executing them
 * gave. Lane 0 is the store's own client and runs on the caller's thread;
 * each other lane has a thread that runs its round when cs_store_write
 * hands it one. The arena and the staged array grow to the largest batch
 * and are reused: queuing an insert allocates nothing after that. */
typedef struct lane_s {
    cs_store_t *store;
    mongoc_client_t *client;
    mongoc_collection_t *messages;
    chat_buf_t arena;
    staged_t *staged;
    size_t n_staged, staged_cap;
    kind_t inserts;
    int assigned; /* the caller gave it this round's inserts; the lane clears it */
    int rc;
    cs_store_result_t res;
    chat_error_t err;
    pthread_t thread;
    int started;
} lane_t;

struct cs_store_s {
    mongoc_client_pool_t *pool;
    mongoc_client_t *client; /* popped once: every read and write but lanes 1.. */
    char db[64];
    mongoc_collection_t *messages;
    mongoc_collection_t *conversations;
    mongoc_collection_t *members;
    kind_t kinds[B_COUNT]; /* B_MESSAGES unused: the lanes hold the inserts */
    lane_t lanes[CS_STORE_LANES_MAX];
    size_t n_lanes;
    /* The lanes' threads wait on go for a new round and the caller on done
     * until busy (lanes still running) is 0. */
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    uint64_t round;
    size_t busy;
    int quit;
    int sync_made;
    bson_t doc, sel;    /* reused for every queued write; the bulk copies them */
    const char **names; /* scratch for a conversation's members */
    size_t names_cap;
};

static void run_lane(lane_t *lane);

static void *lane_main(void *arg)
{
    lane_t *lane = arg;
    cs_store_t *store = lane->store;
    uint64_t seen = 0;
    pthread_mutex_lock(&store->mu);
    for (;;) {
        while (!store->quit && store->round == seen)
            pthread_cond_wait(&store->go, &store->mu);
        if (store->quit)
            break;
        seen = store->round;
        if (!lane->assigned)
            continue;
        pthread_mutex_unlock(&store->mu);
        run_lane(lane);
        pthread_mutex_lock(&store->mu);
        lane->assigned = 0;
        if (--store->busy == 0)
            pthread_cond_signal(&store->done);
    }
    pthread_mutex_unlock(&store->mu);
    return NULL;
}

/* Bounded timeouts matter more than speed here: a store that hangs must
 * fail a batch (which is then retried) well before Kafka's
 * max.poll.interval.ms expels us from the group. Majority write concern
 * because offsets are committed once the write returns: a write a failing
 * primary could roll back would be a lost message. */
static char *uri_with_defaults(const char *uri_str, char *db, size_t dbsize, chat_error_t *err)
{
    bson_error_t berr;
    mongoc_uri_t *uri = mongoc_uri_new_with_error(uri_str, &berr);
    if (uri == NULL) {
        chat_mongo_error(err, &berr, "mongo_uri");
        return NULL;
    }
    const char *name = mongoc_uri_get_database(uri);
    snprintf(db, dbsize, "%s", name != NULL && name[0] ? name : "chat");
    static const char *const opts[][2] = {
        {MONGOC_URI_SERVERSELECTIONTIMEOUTMS, "5000"},
        {MONGOC_URI_CONNECTTIMEOUTMS, "5000"},
        {MONGOC_URI_SOCKETTIMEOUTMS, "30000"},
    };
    size_t len = strlen(uri_str) + 160;
    char *out = malloc(len);
    if (out == NULL) {
        mongoc_uri_destroy(uri);
        chat_error_set(err, CHAT_ENOMEM, "mongo_uri: out of memory");
        return NULL;
    }
    /* mongoc_uri_get_string does not reflect options set on a parsed URI,
     * and the pool is made from a string, so the defaults are appended. */
    const char *hosts = strstr(uri_str, "://");
    hosts = hosts != NULL ? hosts + 3 : uri_str;
    memcpy(out, uri_str, strlen(uri_str) + 1);
    char sep = strchr(hosts, '?') != NULL ? '&' : '?';
    if (strchr(hosts, '/') == NULL)
        strcat(out, "/");
    for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
        if (!mongoc_uri_has_option(uri, opts[i][0])) {
            size_t l = strlen(out);
            snprintf(out + l, len - l, "%c%s=%s", sep, opts[i][0], opts[i][1]);
            sep = '&';
        }
    }
    const mongoc_write_concern_t *wc = mongoc_uri_get_write_concern(uri);
    if (wc == NULL || mongoc_write_concern_get_w(wc) == MONGOC_WRITE_CONCERN_W_DEFAULT) {
        size_t l = strlen(out);
        snprintf(out + l, len - l, "%cw=majority", sep);
    }
    mongoc_uri_destroy(uri);
    return out;
}

cs_store_t *cs_store_new(const char *uri, const char *appname, int lanes, chat_error_t *err)
{
    cs_store_t *store = calloc(1, sizeof(*store));
    char *full = NULL;
    if (store == NULL) {
        chat_error_set(err, CHAT_ENOMEM, "store: out of memory");
        return NULL;
    }
    bson_init(&store->doc);
    bson_init(&store->sel);
    for (size_t i = 0; i < CS_STORE_LANES_MAX; i++)
        chat_buf_init(&store->lanes[i].arena, ARENA_MAX);
    if (lanes < 1 || lanes > CS_STORE_LANES_MAX) {
        chat_error_set(err, CHAT_ERANGE, "store: %d lanes (1 to %d)", lanes, CS_STORE_LANES_MAX);
        goto fail;
    }
    if ((full = uri_with_defaults(uri, store->db, sizeof(store->db), err)) == NULL)
        goto fail;
    if ((store->pool = chat_mongo_pool_new(full, appname, err)) == NULL)
        goto fail;
    free(full);
    full = NULL;
    if (pthread_mutex_init(&store->mu, NULL) != 0 || pthread_cond_init(&store->go, NULL) != 0 ||
        pthread_cond_init(&store->done, NULL) != 0) {
        chat_error_set(err, CHAT_ENOMEM, "store: cannot make the lanes' locks");
        goto fail;
    }
    store->sync_made = 1;
    /* Pop never connects; the first command does, and fails within the
     * timeouts above while the server is down. */
    store->client = mongoc_client_pool_pop(store->pool);
    store->messages = mongoc_client_get_collection(store->client, store->db, "messages");
    store->conversations = mongoc_client_get_collection(store->client, store->db, "conversations");
    store->members = mongoc_client_get_collection(store->client, store->db, "members");
    store->lanes[0].store = store;
    store->lanes[0].messages = store->messages;
    for (int i = 1; i < lanes; i++) {
        lane_t *lane = &store->lanes[i];
        lane->store = store;
        lane->client = mongoc_client_pool_pop(store->pool);
        lane->messages = mongoc_client_get_collection(lane->client, store->db, "messages");
        store->n_lanes = (size_t)i + 1;
        if (pthread_create(&lane->thread, NULL, lane_main, lane) != 0) {
            chat_error_set(err, CHAT_ENOMEM, "store: cannot start lane %d's thread", i);
            goto fail;
        }
        lane->started = 1;
    }
    store->n_lanes = (size_t)lanes;
    return store;
fail:
    free(full);
    cs_store_destroy(store);
    return NULL;
}

void cs_store_destroy(cs_store_t *store)
{
    if (store == NULL)
        return;
    if (store->sync_made) {
        pthread_mutex_lock(&store->mu);
        store->quit = 1;
        pthread_cond_broadcast(&store->go);
        pthread_mutex_unlock(&store->mu);
    }
    for (size_t i = 1; i < store->n_lanes; i++) {
        if (store->lanes[i].started)
            pthread_join(store->lanes[i].thread, NULL);
    }
    cs_store_write_abort(store);
    for (int which = 0; which < B_COUNT; which++)
        free(store->kinds[which].bulks);
    for (size_t i = 0; i < store->n_lanes; i++) {
        lane_t *lane = &store->lanes[i];
        free(lane->inserts.bulks);
        chat_buf_close(&lane->arena);
        free(lane->staged);
        if (i > 0 && lane->messages != NULL)
            mongoc_collection_destroy(lane->messages);
        if (lane->client != NULL)
            mongoc_client_pool_push(store->pool, lane->client);
    }
    if (store->sync_made) {
        pthread_mutex_destroy(&store->mu);
        pthread_cond_destroy(&store->go);
        pthread_cond_destroy(&store->done);
    }
    if (store->messages != NULL)
        mongoc_collection_destroy(store->messages);
    if (store->conversations != NULL)
        mongoc_collection_destroy(store->conversations);
    if (store->members != NULL)
        mongoc_collection_destroy(store->members);
    if (store->client != NULL)
        mongoc_client_pool_push(store->pool, store->client);
    if (store->pool != NULL)
        mongoc_client_pool_destroy(store->pool);
    bson_destroy(&store->doc);
    bson_destroy(&store->sel);
    free(store->names);
    free(store);
}

const char *cs_store_db(const cs_store_t *store)
{
    return store->db;
}

int cs_store_prepare(cs_store_t *store, chat_error_t *err)
{
    int rc = chat_mongo_ping(store->client, err);
    return rc != 0 ? rc : chat_mongo_ensure_indexes(store->client, store->db, err);
}

/* Builds {field: {$in: [values...]}} in the reused selector. */
static void in_filter(bson_t *sel, const char *field, const char *const *values, size_t n)
{
    bson_reinit(sel);
    chat_mongo_append_in(sel, field, values, n);
}

/* Runs a find and hands each document to row. Returns 0 or CHAT_EMONGO. */
typedef void (*row_fn)(const bson_t *doc, void *ctx);
static int find_each(mongoc_collection_t *coll, const bson_t *filter, const bson_t *opts,
                     row_fn row, void *ctx, const char *what, chat_error_t *err)
{
    bson_error_t berr;
    const bson_t *doc;
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
    while (mongoc_cursor_next(cur, &doc))
        row(doc, ctx);
    int rc = 0;
    if (mongoc_cursor_error(cur, &berr))
        rc = chat_mongo_error(err, &berr, what);
    mongoc_cursor_destroy(cur);
    return rc;
}

static int64_t get_i64(const bson_t *doc, const char *key)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_NUMBER(&it))
        return bson_iter_as_int64(&it);
    return 0;
}

static const char *get_str(const bson_t *doc, const char *key)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_UTF8(&it))
        return bson_iter_utf8(&it, NULL);
    return NULL;
}

typedef struct conv_ctx_s {
    cs_store_t *store;
    cs_store_conv_cb cb;
    void *data;
} conv_ctx_t;

static void conv_row(const bson_t *doc, void *p)
{
    conv_ctx_t *ctx = p;
    cs_store_t *store = ctx->store;
    cs_store_conv_t conv;
    bson_iter_t it, arr;
    size_t n = 0;
    memset(&conv, 0, sizeof(conv));
    if ((conv.id = get_str(doc, "_id")) == NULL)
        return;
    const char *kind = get_str(doc, "kind");
    conv.group = kind != NULL && strcmp(kind, "group") == 0;
    conv.owner = get_str(doc, "owner");
    conv.deleted = bson_iter_init_find(&it, doc, "deleted") && bson_iter_as_bool(&it);
    conv.last_seq = get_i64(doc, "last_seq");
    if (bson_iter_init_find(&it, doc, "members") && BSON_ITER_HOLDS_ARRAY(&it) &&
        bson_iter_recurse(&it, &arr)) {
        while (bson_iter_next(&arr)) {
            if (!BSON_ITER_HOLDS_UTF8(&arr))
                continue;
            if (n == store->names_cap) {
                size_t cap = store->names_cap ? store->names_cap * 2 : 64;
                const char **p2 = realloc(store->names, cap * sizeof(*p2));
                if (p2 == NULL)
                    break; /* the members we have; the caller's checks refuse the rest */
                store->names = p2;
                store->names_cap = cap;
            }
            store->names[n++] = bson_iter_utf8(&arr, NULL);
        }
    }
    conv.members = store->names;
    conv.n_members = n;
    ctx->cb(&conv, ctx->data);
}

int cs_store_find_convs(cs_store_t *store, const char *const *ids, size_t n, cs_store_conv_cb cb,
                        void *data, chat_error_t *err)
{
    conv_ctx_t ctx = {store, cb, data};
    bson_t *opts =
        BCON_NEW("projection", "{", "members", BCON_INT32(1), "kind", BCON_INT32(1), "owner",
                 BCON_INT32(1), "deleted", BCON_INT32(1), "last_seq", BCON_INT32(1), "}");
    in_filter(&store->sel, "_id", ids, n);
    int rc = find_each(store->conversations, &store->sel, opts, conv_row, &ctx,
                       "find conversations", err);
    bson_destroy(opts);
    return rc;
}

static void seq_row(const bson_t *doc, void *p)
{
    *(int64_t *)p = get_i64(doc, "seq");
}

int cs_store_last_seq(cs_store_t *store, const char *conv, int64_t *seq, chat_error_t *err)
{
    bson_t *filter = BCON_NEW("conv", BCON_UTF8(conv));
    bson_t *opts = BCON_NEW("projection", "{", "seq", BCON_INT32(1), "_id", BCON_INT32(0), "}",
                            "sort", "{", "seq", BCON_INT32(-1), "}", "limit", BCON_INT64(1));
    *seq = 0;
    int rc = find_each(store->messages, filter, opts, seq_row, seq, "last seq", err);
    bson_destroy(filter);
    bson_destroy(opts);
    return rc;
}

typedef struct msg_ctx_s {
    cs_store_seq_cb cb;
    void *data;
} msg_ctx_t;

static void msg_row(const bson_t *doc, void *p)
{
    msg_ctx_t *ctx = p;
    const char *id = get_str(doc, "_id");
    if (id != NULL)
        ctx->cb(id, get_i64(doc, "seq"), ctx->data);
}

int cs_store_find_messages(cs_store_t *store, const char *const *ids, size_t n, cs_store_seq_cb cb,
                           void *data, chat_error_t *err)
{
    msg_ctx_t ctx = {cb, data};
    bson_t *opts = BCON_NEW("projection", "{", "seq", BCON_INT32(1), "}");
    in_filter(&store->sel, "_id", ids, n);
    int rc = find_each(store->messages, &store->sel, opts, msg_row, &ctx, "find messages", err);
    bson_destroy(opts);
    return rc;
}

typedef struct mark_ctx_s {
    cs_store_mark_cb cb;
    void *data;
} mark_ctx_t;

static void mark_row(const bson_t *doc, void *p)
{
    mark_ctx_t *ctx = p;
    const char *id = get_str(doc, "_id");
    if (id != NULL)
        ctx->cb(id, get_i64(doc, "delivered_seq"), get_i64(doc, "read_seq"), ctx->data);
}

int cs_store_find_marks(cs_store_t *store, const char *const *keys, size_t n, cs_store_mark_cb cb,
                        void *data, chat_error_t *err)
{
    mark_ctx_t ctx = {cb, data};
    in_filter(&store->sel, "_id", keys, n);
    return find_each(store->members, &store->sel, NULL, mark_row, &ctx, "find members", err);
}

typedef struct target_ctx_s {
    cs_store_target_cb cb;
    void *data;
} target_ctx_t;

static void target_row(const bson_t *doc, void *p)
{
    target_ctx_t *ctx = p;
    const char *conv = get_str(doc, "conv"), *from = get_str(doc, "from");
    const char *t = get_str(doc, "t");
    bson_iter_t it;
    int deleted = bson_iter_init_find(&it, doc, "deleted") && bson_iter_as_bool(&it);
    int is_message = t == NULL || strcmp(t, "message") == 0;
    if (conv != NULL && from != NULL)
        ctx->cb(conv, get_i64(doc, "seq"), from, is_message, deleted, ctx->data);
}

int cs_store_find_targets(cs_store_t *store, const char *const *convs, const int64_t *seqs,
                          size_t n, cs_store_target_cb cb, void *data, chat_error_t *err)
{
    /* {$or: [{conv, seq}, ...]}: edits are rare, so one clause per target
     * keeps this simple; both MongoDB and FerretDB serve $or. */
    target_ctx_t ctx = {cb, data};
    bson_t arr, clause;
    char idx[16];
    const char *key;
    bson_reinit(&store->sel);
    BSON_APPEND_ARRAY_BEGIN(&store->sel, "$or", &arr);
    for (size_t i = 0; i < n; i++) {
        bson_uint32_to_string((uint32_t)i, &key, idx, sizeof(idx));
        bson_append_document_begin(&arr, key, -1, &clause);
        BSON_APPEND_UTF8(&clause, "conv", convs[i]);
        BSON_APPEND_INT64(&clause, "seq", seqs[i]);
        bson_append_document_end(&arr, &clause);
    }
    bson_append_array_end(&store->sel, &arr);
    bson_t *opts = BCON_NEW("projection", "{", "conv", BCON_INT32(1), "seq", BCON_INT32(1), "from",
                            BCON_INT32(1), "deleted", BCON_INT32(1), "t", BCON_INT32(1), "}");
    int rc = find_each(store->messages, &store->sel, opts, target_row, &ctx, "find targets", err);
    bson_destroy(opts);
    return rc;
}

/* Returns the bulk of k (on coll) that takes the next write, starting a
 * new one when the last holds chunk writes; NULL when out of memory. */
static mongoc_bulk_operation_t *bulk_in(kind_t *k, mongoc_collection_t *coll, size_t chunk)
{
    if (k->n == 0 || k->in_last == chunk) {
        if (k->n == k->cap) {
            size_t cap = k->cap ? k->cap * 2 : 8;
            mongoc_bulk_operation_t **b = realloc(k->bulks, cap * sizeof(*b));
            if (b == NULL)
                return NULL;
            k->bulks = b;
            k->cap = cap;
        }
        bson_t *opts = BCON_NEW("ordered", BCON_BOOL(true));
        k->bulks[k->n++] = mongoc_collection_create_bulk_operation_with_opts(coll, opts);
        k->in_last = 0;
        bson_destroy(opts);
    }
    k->in_last++;
    return k->bulks[k->n - 1];
}

/* The bulk that takes the next update of kind which (not B_MESSAGES). */
static mongoc_bulk_operation_t *bulk_for(cs_store_t *store, int which)
{
    mongoc_collection_t *coll = which == B_CHANGES ? store->messages
                                : which == B_CONVS ? store->conversations
                                                   : store->members;
    return bulk_in(&store->kinds[which], coll, CHUNK_UPDATES);
}

size_t cs_store_lane(const cs_store_t *store, const char *conv)
{
    return store->n_lanes > 1 ? cs_map_hash(conv) % store->n_lanes : 0;
}

/* Copies doc and conv into lane's arena as its next insert. Returns 0,
 * CHAT_ETOOBIG or CHAT_ENOMEM. */
static int stage(lane_t *lane, const bson_t *doc, const char *conv, int64_t seq)
{
    size_t off = lane->arena.len;
    int rc = 0;
    if (lane->n_staged == lane->staged_cap) {
        size_t cap = lane->staged_cap ? lane->staged_cap * 2 : 256;
        staged_t *st = realloc(lane->staged, cap * sizeof(*st));
        if (st == NULL)
            return CHAT_ENOMEM;
        lane->staged = st;
        lane->staged_cap = cap;
    }
    if ((rc = chat_buf_append(&lane->arena, bson_get_data(doc), doc->len)) != 0 ||
        (rc = chat_buf_append(&lane->arena, conv, strlen(conv) + 1)) != 0) {
        lane->arena.len = off;
        return rc;
    }
    lane->staged[lane->n_staged++] = (staged_t){.off = off, .len = doc->len, .seq = seq};
    return 0;
}

int cs_store_add_event(cs_store_t *store, const chat_event_t *ev, int64_t seq, chat_error_t *err)
{
    bson_t *d = &store->doc;
    bson_reinit(d);
    BSON_APPEND_UTF8(d, "_id", ev->id);
    switch (ev->type) {
    case CHAT_EV_EDIT:
        BSON_APPEND_UTF8(d, "t", "edit");
        break;
    case CHAT_EV_DELETE:
        BSON_APPEND_UTF8(d, "t", "delete");
        break;
    case CHAT_EV_MEMBER_ADD:
    case CHAT_EV_MEMBER_REMOVE:
        BSON_APPEND_UTF8(d, "t", "member");
        break;
    case CHAT_EV_CONV_DELETE:
        BSON_APPEND_UTF8(d, "t", "conv_deleted");
        break;
    default:
        break;
    }
    BSON_APPEND_UTF8(d, "conv", ev->conv);
    BSON_APPEND_INT64(d, "seq", seq);
    BSON_APPEND_UTF8(d, "from", ev->from);
    /* Absent rather than empty: an id is 1..64 characters wherever it
     * appears, and readers copy these fields into frames as they are. */
    if (ev->dev[0])
        BSON_APPEND_UTF8(d, "dev", ev->dev);
    if (ev->cid[0])
        BSON_APPEND_UTF8(d, "cid", ev->cid);
    BSON_APPEND_INT64(d, "ts", ev->ts);
    if (ev->type == CHAT_EV_EDIT || ev->type == CHAT_EV_DELETE)
        BSON_APPEND_INT64(d, "target", ev->target);
    if (ev->type == CHAT_EV_MEMBER_ADD || ev->type == CHAT_EV_MEMBER_REMOVE) {
        BSON_APPEND_UTF8(d, "action", ev->type == CHAT_EV_MEMBER_ADD ? "add" : "remove");
        BSON_APPEND_UTF8(d, "user", ev->user);
    }
    if (ev->type == CHAT_EV_MESSAGE || ev->type == CHAT_EV_EDIT)
        bson_append_utf8(d, "body", 4, ev->body, (int)ev->body_len);
    lane_t *lane = &store->lanes[cs_store_lane(store, ev->conv)];
    int rc = stage(lane, d, ev->conv, seq);
    return rc == 0 ? 0 : chat_error_set(err, rc, "event %s: %s", ev->id, chat_strerror(rc));
}

static int add_update(cs_store_t *store, int which, const bson_t *sel, const bson_t *update,
                      int upsert, const char *what, chat_error_t *err)
{
    bson_error_t berr;
    mongoc_bulk_operation_t *bulk = bulk_for(store, which);
    if (bulk == NULL)
        return chat_error_set(err, CHAT_ENOMEM, "%s: out of memory", what);
    bson_t *opts = upsert ? BCON_NEW("upsert", BCON_BOOL(true)) : NULL;
    bool ok = mongoc_bulk_operation_update_one_with_opts(bulk, sel, update, opts, &berr);
    bson_destroy(opts);
    return ok ? 0 : chat_error_set(err, CHAT_EINVAL, "%s: %s", what, berr.message);
}

int cs_store_add_last_seq(cs_store_t *store, const char *conv, int64_t seq, chat_error_t *err)
{
    bson_reinit(&store->sel);
    BSON_APPEND_UTF8(&store->sel, "_id", conv);
    bson_reinit(&store->doc);
    BCON_APPEND(&store->doc, "$max", "{", "last_seq", BCON_INT64(seq), "}");
    /* No upsert: a conversation exists before it has messages, and making
     * a stub here would hide a bug elsewhere. */
    return add_update(store, B_CONVS, &store->sel, &store->doc, 0, conv, err);
}

int cs_store_add_marks(cs_store_t *store, const char *conv, const char *user, int64_t delivered,
                       int64_t read, chat_error_t *err)
{
    char key[2 * CHAT_NAME_MAX + 2];
    bson_t max;
    if (delivered <= 0 && read <= 0)
        return 0; /* an empty $max is an error on the server */
    snprintf(key, sizeof(key), "%s/%s", conv, user);
    bson_reinit(&store->sel);
    BSON_APPEND_UTF8(&store->sel, "_id", key);
    bson_reinit(&store->doc);
    BCON_APPEND(&store->doc, "$set", "{", "conv", BCON_UTF8(conv), "user", BCON_UTF8(user), "}");
    BSON_APPEND_DOCUMENT_BEGIN(&store->doc, "$max", &max);
    if (delivered > 0)
        BSON_APPEND_INT64(&max, "delivered_seq", delivered);
    if (read > 0)
        BSON_APPEND_INT64(&max, "read_seq", read);
    bson_append_document_end(&store->doc, &max);
    return add_update(store, B_MARKS, &store->sel, &store->doc, 1, key, err);
}

int cs_store_add_change(cs_store_t *store, const chat_event_t *ev, int64_t seq, chat_error_t *err)
{
    bson_t set;
    bson_reinit(&store->sel);
    BCON_APPEND(&store->sel, "conv", BCON_UTF8(ev->conv), "seq", BCON_INT64(ev->target), "from",
                BCON_UTF8(ev->from), "deleted", "{", "$ne", BCON_BOOL(true), "}", "$or", "[", "{",
                "edit_seq", "{", "$exists", BCON_BOOL(false), "}", "}", "{", "edit_seq", "{", "$lt",
                BCON_INT64(seq), "}", "}", "]");
    bson_reinit(&store->doc);
    BSON_APPEND_DOCUMENT_BEGIN(&store->doc, "$set", &set);
    if (ev->type == CHAT_EV_EDIT) {
        bson_append_utf8(&set, "body", 4, ev->body, (int)ev->body_len);
    } else {
        BSON_APPEND_BOOL(&set, "deleted", true);
        BSON_APPEND_UTF8(&set, "body", "");
    }
    BSON_APPEND_INT64(&set, "edited_ts", ev->ts);
    BSON_APPEND_INT64(&set, "edit_seq", seq);
    bson_append_document_end(&store->doc, &set);
    return add_update(store, B_CHANGES, &store->sel, &store->doc, 0, ev->id, err);
}

int cs_store_add_member(cs_store_t *store, const char *conv, const char *user, int add,
                        chat_error_t *err)
{
    char key[2 * CHAT_NAME_MAX + 2];
    bson_error_t berr;
    int rc;
    bson_reinit(&store->sel);
    BSON_APPEND_UTF8(&store->sel, "_id", conv);
    bson_reinit(&store->doc);
    BCON_APPEND(&store->doc, add ? "$addToSet" : "$pull", "{", "members", BCON_UTF8(user), "}");
    if ((rc = add_update(store, B_CONVS, &store->sel, &store->doc, 0, conv, err)) != 0)
        return rc;
    snprintf(key, sizeof(key), "%s/%s", conv, user);
    bson_reinit(&store->sel);
    BSON_APPEND_UTF8(&store->sel, "_id", key);
    if (!add) {
        mongoc_bulk_operation_t *bulk = bulk_for(store, B_MARKS);
        if (bulk == NULL)
            return chat_error_set(err, CHAT_ENOMEM, "%s: out of memory", key);
        if (!mongoc_bulk_operation_remove_one_with_opts(bulk, &store->sel, NULL, &berr))
            return chat_error_set(err, CHAT_EINVAL, "%s: %s", key, berr.message);
        return 0;
    }
    bson_reinit(&store->doc);
    BCON_APPEND(&store->doc, "$setOnInsert", "{", "conv", BCON_UTF8(conv), "user", BCON_UTF8(user),
                "delivered_seq", BCON_INT64(0), "read_seq", BCON_INT64(0), "}");
    return add_update(store, B_MARKS, &store->sel, &store->doc, 1, key, err);
}

int cs_store_add_conv_delete(cs_store_t *store, const char *conv, chat_error_t *err)
{
    bson_error_t berr;
    int rc;
    bson_reinit(&store->sel);
    BSON_APPEND_UTF8(&store->sel, "_id", conv);
    bson_reinit(&store->doc);
    BCON_APPEND(&store->doc, "$set", "{", "deleted", BCON_BOOL(true), "}");
    if ((rc = add_update(store, B_CONVS, &store->sel, &store->doc, 0, conv, err)) != 0)
        return rc;
    bson_reinit(&store->sel);
    BSON_APPEND_UTF8(&store->sel, "conv", conv);
    mongoc_bulk_operation_t *bulk = bulk_for(store, B_MARKS);
    if (bulk == NULL)
        return chat_error_set(err, CHAT_ENOMEM, "%s: out of memory", conv);
    if (!mongoc_bulk_operation_remove_many_with_opts(bulk, &store->sel, NULL, &berr))
        return chat_error_set(err, CHAT_EINVAL, "%s: %s", conv, berr.message);
    return 0;
}

/* Sorts the duplicate-key errors of a bulk reply by index. MongoDB names
 * the index in keyPattern (and in errmsg); FerretDB 1.24 says only
 * "E11000 duplicate key error collection: <db>.messages", so there it stays
 * unknown. The caller retries either way; this only makes the log precise. */
static void classify(const bson_t *reply, cs_store_result_t *res, char *first, size_t size)
{
    bson_iter_t it, arr, e;
    if (!bson_iter_init_find(&it, reply, "writeErrors") || !BSON_ITER_HOLDS_ARRAY(&it) ||
        !bson_iter_recurse(&it, &arr))
        return;
    while (bson_iter_next(&arr)) {
        if (!BSON_ITER_HOLDS_DOCUMENT(&arr) || !bson_iter_recurse(&arr, &e))
            continue;
        int64_t code = 0;
        const char *msg = "";
        int on_id = 0, on_seq = 0;
        while (bson_iter_next(&e)) {
            const char *k = bson_iter_key(&e);
            if (strcmp(k, "code") == 0)
                code = bson_iter_as_int64(&e);
            else if (strcmp(k, "errmsg") == 0 && BSON_ITER_HOLDS_UTF8(&e))
                msg = bson_iter_utf8(&e, NULL);
            else if (strcmp(k, "keyPattern") == 0 && BSON_ITER_HOLDS_DOCUMENT(&e)) {
                bson_iter_t kp;
                if (bson_iter_recurse(&e, &kp) && bson_iter_find(&kp, "_id"))
                    on_id = 1;
                if (bson_iter_recurse(&e, &kp) && bson_iter_find(&kp, "seq"))
                    on_seq = 1;
            }
        }
        if (first[0] == '\0')
            snprintf(first, size, "%s", msg);
        if (code != CHAT_MONGO_DUPLICATE_KEY)
            continue;
        if (!on_id && !on_seq) {
            on_id = strstr(msg, "index: _id_") != NULL;
            on_seq = strstr(msg, "conv_seq") != NULL;
        }
        if (on_seq)
            res->dup_seq++;
        else if (on_id)
            res->dup_id++;
        else
            res->dup_unknown++;
    }
}

/* Executes one bulk; adds what it inserted to res. Returns 0, CHAT_EDUP
 * or CHAT_EMONGO with err set. */
static int run_bulk(mongoc_bulk_operation_t *bulk, const char *what, cs_store_result_t *res,
                    chat_error_t *err)
{
    bson_error_t berr;
    bson_t reply;
    bson_iter_t it;
    uint32_t ok = mongoc_bulk_operation_execute(bulk, &reply, &berr);
    int rc = 0;
    if (bson_iter_init_find(&it, &reply, "nInserted"))
        res->inserted += bson_iter_as_int64(&it);
    if (!ok) {
        char first[160] = "";
        int dups = res->dup_id + res->dup_seq + res->dup_unknown;
        classify(&reply, res, first, sizeof(first));
        dups = res->dup_id + res->dup_seq + res->dup_unknown - dups;
        rc = chat_error_set(err, dups > 0 ? CHAT_EDUP : CHAT_EMONGO, "%s: %s%s%s", what,
                            berr.message, first[0] ? ": " : "", first);
    }
    bson_destroy(&reply);
    return rc;
}

static int staged_cmp(const void *a, const void *b)
{
    const staged_t *x = a, *y = b;
    int c = strcmp(x->conv, y->conv);
    return c != 0 ? c : (x->seq > y->seq) - (x->seq < y->seq);
}

/* Puts lane's queued inserts in ordered bulks of CHUNK, sorted by {conv,
 * seq}: the order of the index every insert goes into, so that a batch's
 * inserts walk it from one end to the other rather than jump about in the
 * order their partitions were polled (on FerretDB over SQLite the same
 * documents go in faster so; docs/performance.md, section 4). Each
 * conversation's inserts keep their seq order, which is what the prefix
 * of cs_store_write needs. Returns 0, CHAT_ENOMEM or CHAT_EINVAL (a
 * document the driver refused) with err set. */
static int lane_bulks(lane_t *lane, chat_error_t *err)
{
    bson_error_t berr = {0};
    if (lane->n_staged == 0)
        return 0; /* lane 0 runs every round, and staged is NULL until used */
    for (size_t i = 0; i < lane->n_staged; i++) {
        staged_t *st = &lane->staged[i];
        st->conv = lane->arena.data + st->off + st->len;
    }
    qsort(lane->staged, lane->n_staged, sizeof(*lane->staged), staged_cmp);
    for (size_t i = 0; i < lane->n_staged; i++) {
        const staged_t *st = &lane->staged[i];
        bson_t doc;
        mongoc_bulk_operation_t *bulk = bulk_in(&lane->inserts, lane->messages, CHUNK);
        if (bulk == NULL)
            return chat_error_set(err, CHAT_ENOMEM, "insert events: out of memory");
        if (!bson_init_static(&doc, (const uint8_t *)lane->arena.data + st->off, st->len) ||
            !mongoc_bulk_operation_insert_with_opts(bulk, &doc, NULL, &berr))
            return chat_error_set(err, CHAT_EINVAL, "insert events: %s seq %lld: %s", st->conv,
                                  (long long)st->seq, berr.message);
    }
    return 0;
}

/* Executes lane's inserts in turn until one fails. */
static void run_lane(lane_t *lane)
{
    memset(&lane->res, 0, sizeof(lane->res));
    lane->err.code = 0;
    lane->err.message[0] = '\0';
    lane->rc = lane_bulks(lane, &lane->err);
    for (size_t i = 0; i < lane->inserts.n && lane->rc == 0; i++)
        lane->rc = run_bulk(lane->inserts.bulks[i], "insert events", &lane->res, &lane->err);
}

/* Runs every lane's inserts at once (lane 0 on this thread) and waits for
 * all of them. Returns 0, or the error of a failed lane (any other before
 * CHAT_EDUP, which only asks for a careful rerun) in err; res sums them. */
static int write_lanes(cs_store_t *store, cs_store_result_t *res, chat_error_t *err)
{
    size_t others = 0;
    if (store->n_lanes > 1) {
        pthread_mutex_lock(&store->mu);
        for (size_t i = 1; i < store->n_lanes; i++) {
            lane_t *lane = &store->lanes[i];
            lane->assigned = lane->n_staged > 0;
            others += (size_t)lane->assigned;
        }
        if (others > 0) {
            store->busy = others;
            store->round++;
            pthread_cond_broadcast(&store->go);
        }
        pthread_mutex_unlock(&store->mu);
    }
    run_lane(&store->lanes[0]);
    if (others > 0) {
        pthread_mutex_lock(&store->mu);
        while (store->busy > 0)
            pthread_cond_wait(&store->done, &store->mu);
        pthread_mutex_unlock(&store->mu);
    }
    int rc = 0;
    for (size_t i = 0; i < store->n_lanes; i++) {
        lane_t *lane = &store->lanes[i];
        if (lane->n_staged == 0)
            continue;
        res->inserted += lane->res.inserted;
        res->dup_id += lane->res.dup_id;
        res->dup_seq += lane->res.dup_seq;
        res->dup_unknown += lane->res.dup_unknown;
        if (lane->rc != 0 && (rc == 0 || (rc == CHAT_EDUP && lane->rc != CHAT_EDUP))) {
            rc = lane->rc;
            *err = lane->err;
        }
    }
    return rc;
}

int cs_store_write(cs_store_t *store, cs_store_result_t *res, chat_error_t *err)
{
    static const char *const names[B_COUNT] = {"insert events", "change messages",
                                               "update conversations", "update members"};
    memset(res, 0, sizeof(*res));
    /* In this order: an edit may change a message inserted in this batch,
     * and the denormalised last_seq must never run ahead of the messages. */
    int rc = write_lanes(store, res, err);
    for (int which = B_MESSAGES + 1; which < B_COUNT && rc == 0; which++) {
        kind_t *k = &store->kinds[which];
        for (size_t i = 0; i < k->n && rc == 0; i++)
            rc = run_bulk(k->bulks[i], names[which], res, err);
    }
    cs_store_write_abort(store);
    return rc;
}

static void kind_abort(kind_t *k)
{
    for (size_t i = 0; i < k->n; i++)
        mongoc_bulk_operation_destroy(k->bulks[i]);
    k->n = 0;
    k->in_last = 0;
}

void cs_store_write_abort(cs_store_t *store)
{
    for (size_t i = 0; i < store->n_lanes; i++) {
        lane_t *lane = &store->lanes[i];
        kind_abort(&lane->inserts);
        lane->n_staged = 0;
        chat_buf_reset(&lane->arena);
    }
    for (int which = 0; which < B_COUNT; which++)
        kind_abort(&store->kinds[which]);
}
