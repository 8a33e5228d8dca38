/* Everything the gateway asks of MongoDB, run in libuv's thread pool with
 * a client popped from a mongoc_client_pool_t: never on the loop. Workers
 * build the frames they return, so the loop only copies them out. */
#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "chat-error.h"
#include "chat-log.h"
#include "chat-mongo.h"
#include "gw-api.h"
#include "gw-private.h"

#define MEMBER_CACHE_MAX 200000

gw_job_t *gw_job_new_for(gw_t *gw, gw_job_fn work, gw_job_fn done)
{
    gw_job_t *job = calloc(1, sizeof(*job));
    if (job == NULL)
        return NULL;
    job->gw = gw;
    job->work = work;
    job->done = done;
    job->req.data = job;
    chat_buf_init(&job->in, 1 << 20);
    chat_buf_init(&job->out, 4 << 20);
    return job;
}

gw_job_t *gw_job_new(gw_conn_t *conn, gw_job_fn work, gw_job_fn done)
{
    gw_job_t *job = gw_job_new_for(conn->gw, work, done);
    if (job != NULL) {
        job->serial = conn->serial;
        memcpy(job->user, conn->user, sizeof(job->user));
    }
    return job;
}

size_t gw_first_of(const void *base, size_t n, size_t size, const char *key)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(*(const char *const *)((const char *)base + mid * size), key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int gw_cursor_end(gw_job_t *job, mongoc_cursor_t *cur, const char *what, int rc)
{
    bson_error_t berr;
    if (rc == 0 && mongoc_cursor_error(cur, &berr))
        rc = chat_mongo_error(&job->err, &berr, what);
    mongoc_cursor_destroy(cur);
    return rc;
}

gw_job_t *gw_round_new(gw_t *gw, size_t size, gw_job_fn work, gw_job_fn done)
{
    gw_job_t *job = gw_job_new_for(gw, work, done);
    if (job != NULL && (job->ptr = calloc(1, size)) == NULL) {
        gw_job_free(job);
        job = NULL;
    }
    return job;
}

int gw_round_submit(gw_job_t *job, int *running)
{
    (*running)++;
    int rc = gw_job_submit(job); /* frees the job and its round on failure */
    if (rc != 0)
        (*running)--;
    return rc;
}

void gw_job_free(gw_job_t *job)
{
    /* in may hold a password that never reached its hash (a job refused or
     * cancelled at stop); it is a few bytes otherwise. */
    if (job->in.data != NULL)
        sodium_memzero(job->in.data, job->in.len);
    chat_buf_close(&job->in);
    chat_buf_close(&job->out);
    free(job->ptr);
    free(job);
}

/* ---- membership ---------------------------------------------------------- */

static void member_key(char *key, size_t size, const char *conv, const char *user)
{
    snprintf(key, size, "%s/%s", conv, user);
}

int gw_store_member_cached(gw_t *gw, const char *conv, const char *user)
{
    char key[2 * CHAT_NAME_MAX + 2];
    member_key(key, sizeof(key), conv, user);
    gw_map_entry_t *e = gw_map_get(&gw->members, key);
    if (e == NULL)
        return -1;
    if (e->aux < uv_now(gw->loop)) {
        gw_map_del(&gw->members, e);
        return -1;
    }
    return e->value == (void *)1 ? 1 : 0;
}

/* Lookups the member cache could not answer wait in one queue per gateway
 * process and go to the store in rounds, as syncs do (gw-sync.c): at most
 * MEMBER_ROUNDS at a time, each taking up to MEMBER_BATCH. A round of at
 * most MEMBER_EACH asks each by _id, a bigger one asks one _id $in. On
 * MongoDB both are index lookups and the $in saves round trips. FerretDB
 * 1.24 over SQLite hands a find by _id to SQLite, which reads the whole
 * table for it (its query's expression is not its index's:
 * bench/sqlite-id-index.py), and reads the whole collection into Go for an
 * $in, which costs about as much as 16 finds by _id and answers a
 * thousand. A find by _id with limit 1, not count_documents: a count is an
 * aggregation that FerretDB runs in Go over every document. */
#define MEMBER_ROUNDS 2
#define MEMBER_BATCH  1024
#define MEMBER_EACH   8

struct gw_lookup_s {
    gw_lookup_t *next;
    uint64_t serial; /* the connection waiting */
    int member;
    char key[2 * CHAT_NAME_MAX + 2]; /* "conv/user": the member's _id */
};

typedef struct lookup_round_s {
    gw_lookup_t *list;
    size_t n;
} lookup_round_t;

static int cmp_lookup(const void *a, const void *b)
{
    return strcmp((*(gw_lookup_t *const *)a)->key, (*(gw_lookup_t *const *)b)->key);
}

static int lookups_each(gw_job_t *job, mongoc_collection_t *coll, lookup_round_t *r)
{
    bson_error_t berr;
    bson_t *opts = BCON_NEW("projection", "{", "_id", BCON_INT32(1), "}", "limit", BCON_INT64(1),
                            "singleBatch", BCON_BOOL(true));
    int rc = 0;
    for (gw_lookup_t *l = r->list; l != NULL && rc == 0; l = l->next) {
        bson_t *filter = BCON_NEW("_id", BCON_UTF8(l->key));
        mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
        const bson_t *doc;
        l->member = mongoc_cursor_next(cur, &doc);
        if (!l->member && mongoc_cursor_error(cur, &berr))
            rc = chat_mongo_error(&job->err, &berr, "membership");
        mongoc_cursor_destroy(cur);
        bson_destroy(filter);
    }
    bson_destroy(opts);
    return rc;
}

static int lookups_in(gw_job_t *job, mongoc_collection_t *coll, lookup_round_t *r)
{
    gw_lookup_t **byk = malloc(r->n * sizeof(*byk));
    const char **keys = malloc(r->n * sizeof(*keys));
    if (byk == NULL || keys == NULL) {
        free(byk);
        free(keys);
        return chat_error_set(&job->err, CHAT_ENOMEM, "membership: out of memory");
    }
    size_t n = 0;
    for (gw_lookup_t *l = r->list; l != NULL; l = l->next)
        byk[n++] = l;
    qsort(byk, n, sizeof(*byk), cmp_lookup);
    for (size_t i = 0; i < n; i++)
        keys[i] = byk[i]->key;
    bson_t filter = BSON_INITIALIZER;
    chat_mongo_append_in(&filter, "_id", keys, n);
    bson_t *opts = BCON_NEW("projection", "{", "_id", BCON_INT32(1), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter, opts, NULL);
    const bson_t *doc;
    bson_iter_t it;
    while (mongoc_cursor_next(cur, &doc)) {
        if (!bson_iter_init_find(&it, doc, "_id") || !BSON_ITER_HOLDS_UTF8(&it))
            continue;
        /* Every lookup of that member (two devices may ask alike). */
        const char *id = bson_iter_utf8(&it, NULL);
        for (size_t i = gw_first_of(keys, n, sizeof(*keys), id); i < n && strcmp(keys[i], id) == 0;
             i++)
            byk[i]->member = 1;
    }
    int rc = gw_cursor_end(job, cur, "membership", 0);
    bson_destroy(opts);
    bson_destroy(&filter);
    free(byk);
    free(keys);
    return rc;
}

static void lookups_work(gw_job_t *job)
{
    lookup_round_t *r = job->ptr;
    mongoc_client_t *client = mongoc_client_pool_pop(job->gw->pool);
    mongoc_collection_t *coll = mongoc_client_get_collection(client, job->gw->db, "members");
    job->result = r->n <= MEMBER_EACH ? lookups_each(job, coll, r) : lookups_in(job, coll, r);
    mongoc_collection_destroy(coll);
    mongoc_client_pool_push(job->gw->pool, client);
}

/* Caches each lookup's answer and lets its connection go on. */
static void lookups_deliver(gw_t *gw, gw_lookup_t *list, int result, const char *why)
{
    gw_lookup_t *next;
    for (gw_lookup_t *l = list; l != NULL; l = next) {
        next = l->next;
        if (result >= 0) {
            if (gw->members.live > MEMBER_CACHE_MAX) {
                /* Bounded: start over rather than grow. */
                gw_map_close(&gw->members);
                gw_map_init(&gw->members);
            }
            /* Cached even with member_cache_s = 0: an entry that expires
             * "now" still answers the frames replayed in this loop
             * iteration. */
            gw_map_entry_t *e = gw_map_put(&gw->members, l->key);
            if (e != NULL) {
                e->value = l->member ? (void *)1 : (void *)2;
                e->aux = uv_now(gw->loop) + (uint64_t)gw->cfg->member_cache_s * 1000;
            }
        }
        gw_conn_t *conn = gw_conn_find(gw, l->serial);
        free(l);
        if (conn == NULL)
            continue;
        if (result < 0) {
            CHAT_WARN("conn %s: %s", conn->id, why);
            /* Answer the frame that waited and move on. */
            gw_frame_t *f = conn->pending_head;
            if (f != NULL) {
                conn->pending_head = f->next;
                if (conn->pending_head == NULL)
                    conn->pending_tail = NULL;
                conn->pending_n--;
                free(f);
            }
            gw_conn_send_error(conn, "unavailable", "the store did not answer; retry", NULL, 1);
        }
        gw_frames_unblock(conn);
    }
}

static void lookups_kick(gw_t *gw);

static void lookups_done(gw_job_t *job)
{
    gw_t *gw = job->gw;
    lookup_round_t *r = job->ptr;
    gw->lookup_rounds--;
    gw->metrics.member_rounds++;
    lookups_deliver(gw, r->list, job->result, job->err.message);
    r->list = NULL;
    lookups_kick(gw);
}

/* Starts rounds for the waiting lookups, as many as may run. */
static void lookups_kick(gw_t *gw)
{
    while (gw->lookup_rounds < MEMBER_ROUNDS && gw->lookup_head != NULL) {
        gw_lookup_t *taken = gw->lookup_head, *last = taken;
        size_t n = 1;
        while (n < MEMBER_BATCH && last->next != NULL) {
            last = last->next;
            n++;
        }
        gw->lookup_head = last->next;
        if (gw->lookup_head == NULL)
            gw->lookup_tail = NULL;
        last->next = NULL;
        gw->metrics.member_waiting -= n;
        gw_job_t *job = gw_round_new(gw, sizeof(lookup_round_t), lookups_work, lookups_done);
        int rc = CHAT_ENOMEM;
        if (job != NULL) {
            *(lookup_round_t *)job->ptr = (lookup_round_t){taken, n};
            rc = gw_round_submit(job, &gw->lookup_rounds);
        }
        if (rc != 0)
            lookups_deliver(gw, taken, CHAT_EAGAIN, "membership lookup could not run");
    }
}

/* ---- conversations --------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void create_conv_work(gw_job_t *job)
{
    json_error_t jerr;
    bson_error_t berr;
    chat_buf_t *out = &job->out;
    const char *members[1024];
    size_t n = 0;
    int group = 0;
    json_t *root = json_loadb(job->in.data ? job->in.data : "", job->in.len, 0, &jerr);
    json_t *arr = json_object_get(root, "members");
    const char *kind = json_string_value(json_object_get(root, "kind"));
    const char *title = json_string_value(json_object_get(root, "title"));
    job->status = 400;
    if (!json_is_object(root) || !json_is_array(arr)) {
        chat_buf_append_str(out, "members must be an array of user ids");
        goto done;
    }
    if (kind != NULL && strcmp(kind, "group") != 0 && strcmp(kind, "direct") != 0) {
        chat_buf_append_str(out, "kind must be direct or group");
        goto done;
    }
    group = kind != NULL && strcmp(kind, "group") == 0;
    members[n++] = job->user;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *v = json_array_get(arr, i);
        const char *u = json_string_value(v);
        if (u == NULL || !chat_name_valid(u, json_string_length(v))) {
            chat_buf_append_str(out, "each member must be a user id");
            goto done;
        }
        int dup = 0;
        for (size_t k = 0; k < n; k++)
            dup |= strcmp(members[k], u) == 0;
        if (dup)
            continue;
        if (n >= (size_t)job->gw->cfg->group_max || n >= sizeof(members) / sizeof(members[0])) {
            job->status = 413;
            snprintf(job->arg, sizeof(job->arg), "too_large");
            chat_buf_printf(out, "a group has at most %lld members",
                            (long long)job->gw->cfg->group_max);
            goto done;
        }
        members[n++] = u;
    }
    if (!group && n != 2) {
        chat_buf_append_str(out, "a direct conversation has exactly one other member");
        goto done;
    }
    if (title != NULL && json_string_length(json_object_get(root, "title")) > 200) {
        chat_buf_append_str(out, "title is at most 200 bytes");
        goto done;
    }
    char id[CHAT_NAME_MAX + 1], hash[CHAT_ID_LEN + 1];
    if (group) {
        chat_id_new(hash, chat_now_ms());
        snprintf(id, sizeof(id), "g.%s", hash);
    } else {
        /* The same two users always get the same conversation. */
        qsort(members, n, sizeof(members[0]), cmp_str);
        chat_id_for_client(hash, members[0], members[1], "direct");
        snprintf(id, sizeof(id), "d.%s", hash);
    }

    mongoc_client_t *client = mongoc_client_pool_pop(job->gw->pool);
    mongoc_collection_t *convs = mongoc_client_get_collection(client, job->gw->db, "conversations");
    mongoc_collection_t *mem = mongoc_client_get_collection(client, job->gw->db, "members");
    bson_t doc = BSON_INITIALIZER, ma;
    BSON_APPEND_UTF8(&doc, "_id", id);
    BSON_APPEND_UTF8(&doc, "kind", group ? "group" : "direct");
    BSON_APPEND_ARRAY_BEGIN(&doc, "members", &ma);
    for (size_t i = 0; i < n; i++) {
        char k[24];
        snprintf(k, sizeof(k), "%zu", i);
        BSON_APPEND_UTF8(&ma, k, members[i]);
    }
    bson_append_array_end(&doc, &ma);
    if (group)
        BSON_APPEND_UTF8(&doc, "owner", job->user);
    if (title != NULL)
        BSON_APPEND_UTF8(&doc, "title", title);
    BSON_APPEND_INT64(&doc, "created_ts", (int64_t)chat_now_ms());
    BSON_APPEND_INT64(&doc, "last_seq", 0);
    int created = 1;
    /* Members first: a conversation visible to the consumer has them all.
     * Inserted, not upserted by _id: a member already there (the same
     * direct conversation asked for again) is a duplicate key and stays as
     * it is, as an upsert's $setOnInsert would leave it, and an insert is
     * checked by the unique index where FerretDB answers an update by _id
     * by reading the whole collection (docs/performance.md). */
    bson_t *bopts = BCON_NEW("ordered", BCON_BOOL(false));
    mongoc_bulk_operation_t *bulk = mongoc_collection_create_bulk_operation_with_opts(mem, bopts);
    bson_destroy(bopts);
    for (size_t i = 0; i < n; i++) {
        char mid[2 * CHAT_NAME_MAX + 2];
        member_key(mid, sizeof(mid), id, members[i]);
        bson_t *m =
            BCON_NEW("_id", BCON_UTF8(mid), "conv", BCON_UTF8(id), "user", BCON_UTF8(members[i]),
                     "delivered_seq", BCON_INT64(0), "read_seq", BCON_INT64(0));
        mongoc_bulk_operation_insert_with_opts(bulk, m, NULL, NULL);
        bson_destroy(m);
    }
    bson_t reply;
    bool ok = mongoc_bulk_operation_execute(bulk, &reply, &berr) != 0 ||
              chat_mongo_only_duplicates(&reply);
    bson_destroy(&reply);
    mongoc_bulk_operation_destroy(bulk);
    if (ok && !mongoc_collection_insert_one(convs, &doc, NULL, NULL, &berr)) {
        if (berr.code == CHAT_MONGO_DUPLICATE_KEY)
            created = 0;
        else
            ok = false;
    }
    if (!ok) {
        job->status = 503;
        snprintf(job->arg, sizeof(job->arg), "unavailable");
        chat_mongo_error(&job->err, &berr, "create conversation");
        chat_buf_append_str(out, "the store did not answer; retry");
    } else {
        job->status = created ? 201 : 200;
        chat_buf_printf(out, "{\"id\":\"%s\",\"kind\":\"%s\",\"created\":%s,\"members\":[", id,
                        group ? "group" : "direct", created ? "true" : "false");
        for (size_t i = 0; i < n; i++) {
            if (i)
                chat_buf_append(out, ",", 1);
            chat_buf_append_json_str(out, members[i], strlen(members[i]));
        }
        chat_buf_append_str(out, "]}");
    }
    bson_destroy(&doc);
    mongoc_collection_destroy(convs);
    mongoc_collection_destroy(mem);
    mongoc_client_pool_push(job->gw->pool, client);
done:
    json_decref(root);
}

/* ---- plumbing -------------------------------------------------------------- */

static void work_cb(uv_work_t *req)
{
    gw_job_t *job = req->data;
    job->work(job);
}

static void after_cb(uv_work_t *req, int status)
{
    gw_job_t *job = req->data;
    gw_t *gw = job->gw;
    gw->jobs--;
    if (job->prev != NULL)
        job->prev->next = job->next;
    else
        gw->inflight = job->next;
    if (job->next != NULL)
        job->next->prev = job->prev;
    if (status == UV_ECANCELED) {
        /* Never ran (the gateway is stopping): done answers as on a store
         * failure, which also frees what the job held (a sync's state, a
         * presence batch). */
        chat_error_set(&job->err, CHAT_EAGAIN, "the gateway is stopping");
        job->result = CHAT_EAGAIN;
        job->status = 503;
        snprintf(job->arg, sizeof(job->arg), "unavailable");
        chat_buf_reset(&job->out);
        chat_buf_append_str(&job->out, "the gateway is stopping; retry");
    }
    job->done(job);
    gw_job_free(job);
}

int gw_job_submit(gw_job_t *job)
{
    gw_t *gw = job->gw;
    int rc =
        gw->jobs_refused ? UV_ECANCELED : uv_queue_work(gw->loop, &job->req, work_cb, after_cb);
    if (rc != 0) {
        gw_job_free(job);
        return rc;
    }
    job->prev = NULL;
    job->next = gw->inflight;
    if (gw->inflight != NULL)
        gw->inflight->prev = job;
    gw->inflight = job;
    gw->jobs++;
    gw->metrics.store_jobs++;
    return 0;
}

int gw_store_cancel_queued(gw_t *gw)
{
    int n = 0;
    /* Nor are new ones started: a cancelled job's done may unblock frames
     * that would ask again. */
    gw->jobs_refused = 1;
    /* uv_cancel only marks a job; its after_cb runs on a later loop turn,
     * so the list holds still while it is walked. */
    for (gw_job_t *job = gw->inflight; job != NULL; job = job->next)
        if (uv_cancel((uv_req_t *)&job->req) == 0)
            n++;
    return n;
}

int gw_store_check_member(gw_conn_t *conn, const char *conv)
{
    gw_t *gw = conn->gw;
    gw_lookup_t *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return CHAT_ENOMEM;
    l->serial = conn->serial;
    member_key(l->key, sizeof(l->key), conv, conn->user);
    if (gw->lookup_tail != NULL)
        gw->lookup_tail->next = l;
    else
        gw->lookup_head = l;
    gw->lookup_tail = l;
    gw->metrics.member_waiting++;
    conn->blocked = 1;
    lookups_kick(gw);
    return 0;
}

int gw_store_create_conversation(gw_conn_t *conn, const char *body, size_t len)
{
    gw_job_t *job = gw_job_new(conn, create_conv_work, gw_api_answer);
    if (job == NULL)
        return CHAT_ENOMEM;
    if (chat_buf_append(&job->in, body, len) != 0) {
        gw_job_free(job);
        return CHAT_ETOOBIG;
    }
    return gw_job_submit(job);
}

int gw_store_start(gw_t *gw, chat_error_t *err)
{
    gw->pool = chat_mongo_pool_new(gw->cfg->mongo_uri, "chat-gateway", err);
    if (gw->pool == NULL)
        return CHAT_EMONGO;
    gw->db = chat_mongo_db_name(gw->pool);
    mongoc_client_t *client = mongoc_client_pool_pop(gw->pool);
    int rc = chat_mongo_ensure_indexes(client, gw->db, err);
    mongoc_client_pool_push(gw->pool, client);
    return rc;
}

void gw_store_stop(gw_t *gw)
{
    /* Lookups wait only while a round runs, and each round's end starts
     * the next or refuses them at stop: none is left here but by a bug. */
    gw_lookup_t *next;
    for (gw_lookup_t *l = gw->lookup_head; l != NULL; l = next) {
        next = l->next;
        free(l);
    }
    gw->lookup_head = gw->lookup_tail = NULL;
    if (gw->pool != NULL)
        chat_mongo_pool_destroy(gw->pool);
    gw->pool = NULL;
}
