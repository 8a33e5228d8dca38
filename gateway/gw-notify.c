/* Ephemeral notifications that never touch Kafka: typing indicators,
 * presence changes and the presence query. Recipients are found in the
 * store (off the loop), their gateways in Redis, and each gateway gets one
 * PUBLISH in the routing format the consumers use (docs/design.md). */
#include <stdlib.h>
#include <string.h>

#include "chat-error.h"
#include "chat-log.h"
#include "chat-mongo.h"
#include "chat-redis.h"
#include "gw-private.h"

#define MEMBERS_CACHE_MAX 50000
#define QUERY_MAX         100

/* ---- routing to other gateways ------------------------------------------------ */

typedef struct route_out_s {
    char gw[CHAT_NAME_MAX + 1];
    chat_buf_t buf;
} route_out_t;

typedef struct route_s route_t;

typedef struct route_user_s {
    route_t *r;
    char name[CHAT_NAME_MAX + 1];
} route_user_t;

struct route_s {
    gw_t *gw;
    int pending;
    char *frame;
    size_t frame_len;
    route_out_t *out;
    size_t nout;
    route_user_t *users;
};

static void route_finish(route_t *r)
{
    for (size_t i = 0; i < r->nout; i++) {
        if (r->gw->redis != NULL && !r->gw->shutting_down)
            redisAsyncCommand(r->gw->redis, NULL, NULL,
                              "PUBLISH " CHAT_GATEWAY_CHANNEL_PREFIX "%s %b", r->out[i].gw,
                              r->out[i].buf.data, r->out[i].buf.len);
        chat_buf_close(&r->out[i].buf);
    }
    free(r->out);
    free(r->users);
    free(r->frame);
    free(r);
}

/* Returns 1 and the gateway id if field i of a presence HGETALL reply is a
 * live connection at now; 0 otherwise. */
static int live_field(const redisReply *reply, size_t i, uint64_t now, char *gwid, size_t size)
{
    const redisReply *v = reply->element[i + 1];
    return v->type == REDIS_REPLY_STRING &&
           chat_presence_parse(v->str, v->len, now, gwid, size) == 0;
}

static void route_cb(redisAsyncContext *ac, void *rep, void *privdata)
{
    route_user_t *u = privdata;
    route_t *r = u->r;
    redisReply *reply = rep;
    uint64_t now = chat_now_ms();
    (void)ac;
    if (reply != NULL && reply->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i + 1 < reply->elements; i += 2) {
            char gwid[CHAT_NAME_MAX + 1];
            if (!live_field(reply, i, now, gwid, sizeof(gwid)))
                continue;
            size_t k;
            for (k = 0; k < r->nout && strcmp(r->out[k].gw, gwid) != 0; k++)
                ;
            if (k == r->nout) {
                route_out_t *o = realloc(r->out, (r->nout + 1) * sizeof(*o));
                if (o == NULL)
                    continue;
                r->out = o;
                snprintf(o[k].gw, sizeof(o[k].gw), "%s", gwid);
                chat_buf_init(&o[k].buf, 16 << 20);
                r->nout++;
            }
            /* One line per user and gateway: the gateway fans out to all of
             * the user's local connections itself. */
            chat_buf_t *b = &r->out[k].buf;
            char head[CHAT_NAME_MAX + 4];
            int n = snprintf(head, sizeof(head), "%s -\t", u->name);
            if (b->len >= (size_t)n + r->frame_len + 1 &&
                memmem(b->data, b->len, head, (size_t)n) != NULL)
                continue;
            chat_buf_append(b, head, (size_t)n);
            chat_buf_append(b, r->frame, r->frame_len);
            chat_buf_append(b, "\n", 1);
        }
    }
    if (--r->pending == 0)
        route_finish(r);
}

void gw_notify_route(gw_t *gw, char **users, size_t n, const char *exclude_user, const char *frame,
                     size_t len)
{
    if (gw->redis == NULL || n == 0)
        return;
    route_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return;
    r->gw = gw;
    r->frame = malloc(len);
    r->users = calloc(n, sizeof(*r->users));
    if (r->frame == NULL || r->users == NULL) {
        free(r->frame);
        free(r->users);
        free(r);
        return;
    }
    memcpy(r->frame, frame, len);
    r->frame_len = len;
    r->pending = 1; /* held until every command is queued */
    for (size_t i = 0; i < n; i++) {
        if (exclude_user != NULL && strcmp(users[i], exclude_user) == 0)
            continue;
        route_user_t *u = &r->users[i];
        u->r = r;
        snprintf(u->name, sizeof(u->name), "%s", users[i]);
        if (redisAsyncCommand(gw->redis, route_cb, u, "HGETALL " CHAT_PRESENCE_PREFIX "%s",
                              u->name) == REDIS_OK)
            r->pending++;
    }
    if (--r->pending == 0)
        route_finish(r);
}

/* Splits the NUL-separated list data[0..len) into an array of pointers
 * into it. */
static char **split_list(char *data, size_t len, size_t *n)
{
    size_t count = 0;
    for (size_t i = 0; i < len; i++)
        count += data[i] == '\0';
    char **v = calloc(count + 1, sizeof(*v));
    if (v == NULL) {
        *n = 0;
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < len; i += strlen(data + i) + 1)
        v[k++] = data + i;
    *n = k;
    return v;
}

/* ---- store lookups -------------------------------------------------------------- */

/* Appends to out, NUL-separated, the members of conversation conv. */
static int conv_members(gw_job_t *job, mongoc_client_t *client, const char *conv, chat_buf_t *out)
{
    bson_error_t berr;
    const bson_t *doc;
    mongoc_collection_t *c = mongoc_client_get_collection(client, job->gw->db, "conversations");
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(conv));
    /* One document, one reply, only its members. */
    bson_t *opts = BCON_NEW("projection", "{", "members", BCON_INT32(1), "}", "limit",
                            BCON_INT64(1), "singleBatch", BCON_BOOL(true));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, filter, opts, NULL);
    bson_destroy(opts);
    if (mongoc_cursor_next(cur, &doc)) {
        bson_iter_t it, arr;
        if (bson_iter_init_find(&it, doc, "members") && BSON_ITER_HOLDS_ARRAY(&it) &&
            bson_iter_recurse(&it, &arr)) {
            while (bson_iter_next(&arr)) {
                uint32_t l;
                if (!BSON_ITER_HOLDS_UTF8(&arr))
                    continue;
                const char *u = bson_iter_utf8(&arr, &l);
                chat_buf_append(out, u, (size_t)l + 1);
            }
        }
    }
    int rc = mongoc_cursor_error(cur, &berr) ? chat_mongo_error(&job->err, &berr, "members") : 0;
    mongoc_cursor_destroy(cur);
    bson_destroy(filter);
    mongoc_collection_destroy(c);
    return rc;
}

/* ---- typing ------------------------------------------------------------------------ */

static void typing_work(gw_job_t *job)
{
    mongoc_client_t *client = mongoc_client_pool_pop(job->gw->pool);
    job->result = conv_members(job, client, job->conv, &job->in);
    mongoc_client_pool_push(job->gw->pool, client);
}

static void cache_put(gw_t *gw, const char *conv, const chat_buf_t *list)
{
    if (gw->conv_members.live > MEMBERS_CACHE_MAX)
        gw_notify_free_cache(gw);
    gw_map_entry_t *e = gw_map_put(&gw->conv_members, conv);
    if (e == NULL)
        return;
    chat_buf_t *copy = malloc(sizeof(*copy));
    if (copy == NULL)
        return;
    chat_buf_init(copy, list->len + 1);
    chat_buf_append(copy, list->data, list->len);
    if (e->value != NULL) {
        chat_buf_close(e->value);
        free(e->value);
    }
    e->value = copy;
    e->aux = uv_now(gw->loop) + 30000;
}

/* Routes frame to the users of the NUL-separated list[0..list_len) but
 * exclude. */
static void route_list(gw_t *gw, char *list, size_t list_len, const char *exclude,
                       const char *frame, size_t len)
{
    size_t n;
    char **users = split_list(list, list_len, &n);
    if (users != NULL)
        gw_notify_route(gw, users, n, exclude, frame, len);
    free(users);
}

static void typing_done(gw_job_t *job)
{
    if (job->result != 0) {
        CHAT_DEBUG("typing in %s: %s", job->conv, job->err.message);
        return;
    }
    cache_put(job->gw, job->conv, &job->in);
    route_list(job->gw, job->in.data, job->in.len, job->user, job->out.data, job->out.len);
}

void gw_notify_typing(gw_conn_t *conn, const char *conv, int start)
{
    gw_t *gw = conn->gw;
    chat_buf_t frame;
    chat_buf_init(&frame, 1024);
    chat_buf_append_str(&frame, "{\"t\":\"typing\",\"conv\":");
    chat_buf_append_json_str(&frame, conv, strlen(conv));
    chat_buf_append_str(&frame, ",\"user\":");
    chat_buf_append_json_str(&frame, conn->user, strlen(conn->user));
    chat_buf_printf(&frame, ",\"state\":\"%s\",\"ttl_ms\":%lld}", start ? "start" : "stop",
                    (long long)gw->cfg->typing_ttl_ms);
    gw_map_entry_t *e = gw_map_get(&gw->conv_members, conv);
    if (e != NULL && e->aux > uv_now(gw->loop)) {
        chat_buf_t *list = e->value;
        route_list(gw, list->data, list->len, conn->user, frame.data, frame.len);
    } else {
        gw_job_t *job = gw_job_new(conn, typing_work, typing_done);
        if (job != NULL) {
            snprintf(job->conv, sizeof(job->conv), "%s", conv);
            chat_buf_append(&job->out, frame.data, frame.len);
            gw_job_submit(job);
        }
    }
    chat_buf_close(&frame);
}

void gw_notify_free_cache(gw_t *gw)
{
    for (size_t i = 0; i < gw->conv_members.cap; i++) {
        gw_map_entry_t *e = &gw->conv_members.e[i];
        if (e->value != NULL) {
            chat_buf_close(e->value);
            free(e->value);
        }
    }
    gw_map_close(&gw->conv_members);
    gw_map_init(&gw->conv_members);
}

/* ---- presence changes ------------------------------------------------------------ */

/* A presence change is told to everyone who shares a conversation with the
 * user, found in the store. Changes are looked up in batches of up to
 * PRESENCE_BATCH users: one query finds all their conversations (on
 * FerretDB a scan of the members, whatever the number of users asked), then
 * each conversation's members by _id. Presence is the least urgent thing a
 * gateway does: at most PRESENCE_INFLIGHT batches run at once, so that a
 * storm of (re)connections leaves the lookup threads to membership checks
 * and syncs; the other changes wait in a ring of PRESENCE_QUEUED, and
 * beyond that are dropped and counted (clients still see presence through
 * GET /v1/presence and the user's next change). */
#define PRESENCE_BATCH    64
#define PRESENCE_INFLIGHT 1
#define PRESENCE_QUEUED   8192

struct gw_presence_change_s {
    char user[CHAT_NAME_MAX + 1];
    uint64_t when_ms;
    int online;
};

typedef struct presence_batch_s {
    size_t n;
    struct gw_presence_change_s change[PRESENCE_BATCH];
    /* Change i's co-members: NUL-separated in job->in, [start, end). */
    size_t start[PRESENCE_BATCH], end[PRESENCE_BATCH];
} presence_batch_t;

/* Appends u to out[from..] unless it is there already or is self. */
static void add_unique(chat_buf_t *out, size_t from, const char *u, const char *self)
{
    if (strcmp(u, self) == 0)
        return;
    for (size_t k = from; k < out->len; k += strlen(out->data + k) + 1) {
        if (strcmp(out->data + k, u) == 0)
            return;
    }
    chat_buf_append(out, u, strlen(u) + 1);
}

/* For each of users[0..n) (n <= PRESENCE_BATCH), appends to out,
 * NUL-separated and without repeats, everyone who shares a conversation
 * with that user (not the user), as out[start[i]..end[i]). One query finds
 * the conversations of all of them (on FerretDB one scan of the members,
 * whatever n is), then each conversation's members are read by _id. */
static int co_members(gw_job_t *job, mongoc_client_t *client, const char *const *users, size_t n,
                      chat_buf_t *out, size_t *start, size_t *end)
{
    bson_error_t berr;
    const bson_t *doc;
    chat_buf_t convs, members;
    /* (user index, conversation) pairs: the index as a byte before the name. */
    chat_buf_init(&convs, 1 << 20);
    chat_buf_init(&members, 1 << 20);
    mongoc_collection_t *m = mongoc_client_get_collection(client, job->gw->db, "members");
    bson_t filter = BSON_INITIALIZER, in, arr;
    BSON_APPEND_DOCUMENT_BEGIN(&filter, "user", &in);
    BSON_APPEND_ARRAY_BEGIN(&in, "$in", &arr);
    for (size_t i = 0; i < n; i++) {
        char key[16];
        snprintf(key, sizeof(key), "%u", (unsigned)i);
        BSON_APPEND_UTF8(&arr, key, users[i]);
    }
    bson_append_array_end(&in, &arr);
    bson_append_document_end(&filter, &in);
    bson_t *opts = BCON_NEW("projection", "{", "user", BCON_INT32(1), "conv", BCON_INT32(1), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(m, &filter, opts, NULL);
    while (mongoc_cursor_next(cur, &doc)) {
        bson_iter_t it;
        const char *user = NULL, *conv = NULL;
        if (bson_iter_init_find(&it, doc, "user") && BSON_ITER_HOLDS_UTF8(&it))
            user = bson_iter_utf8(&it, NULL);
        if (bson_iter_init_find(&it, doc, "conv") && BSON_ITER_HOLDS_UTF8(&it))
            conv = bson_iter_utf8(&it, NULL);
        for (size_t i = 0; user != NULL && conv != NULL && i < n; i++) {
            if (strcmp(users[i], user) == 0) {
                unsigned char idx = (unsigned char)i;
                chat_buf_append(&convs, (const char *)&idx, 1);
                chat_buf_append(&convs, conv, strlen(conv) + 1);
            }
        }
    }
    int rc = mongoc_cursor_error(cur, &berr) ? chat_mongo_error(&job->err, &berr, "members") : 0;
    mongoc_cursor_destroy(cur);
    bson_destroy(opts);
    bson_destroy(&filter);
    mongoc_collection_destroy(m);
    for (size_t i = 0; i < n; i++) {
        start[i] = out->len;
        for (size_t k = 0; rc == 0 && k < convs.len; k += strlen(convs.data + k + 1) + 2) {
            if ((unsigned char)convs.data[k] != i)
                continue;
            chat_buf_reset(&members);
            rc = conv_members(job, client, convs.data + k + 1, &members);
            for (size_t j = 0; rc == 0 && j < members.len; j += strlen(members.data + j) + 1)
                add_unique(out, start[i], members.data + j, users[i]);
        }
        end[i] = out->len;
    }
    chat_buf_close(&convs);
    chat_buf_close(&members);
    return rc;
}

static void presence_work(gw_job_t *job)
{
    presence_batch_t *b = job->ptr;
    const char *users[PRESENCE_BATCH];
    for (size_t i = 0; i < b->n; i++)
        users[i] = b->change[i].user;
    mongoc_client_t *client = mongoc_client_pool_pop(job->gw->pool);
    job->result = co_members(job, client, users, b->n, &job->in, b->start, b->end);
    mongoc_client_pool_push(job->gw->pool, client);
}

static void presence_start(gw_t *gw);

static void presence_done(gw_job_t *job)
{
    gw_t *gw = job->gw;
    presence_batch_t *b = job->ptr;
    gw->pres_inflight--;
    if (job->result != 0) {
        CHAT_WARN("presence of %zu users: %s", b->n, job->err.message);
    } else {
        for (size_t i = 0; i < b->n; i++) {
            const struct gw_presence_change_s *pc = &b->change[i];
            chat_buf_t *f = &gw->scratch;
            chat_buf_reset(f);
            chat_buf_append_str(f, "{\"t\":\"presence\",\"user\":");
            chat_buf_append_json_str(f, pc->user, strlen(pc->user));
            if (pc->online)
                chat_buf_append_str(f, ",\"online\":true}");
            else
                chat_buf_printf(f, ",\"online\":false,\"last_seen\":%llu}",
                                (unsigned long long)pc->when_ms);
            route_list(gw, job->in.data + b->start[i], b->end[i] - b->start[i], pc->user, f->data,
                       f->len);
        }
    }
    presence_start(gw);
}

/* Starts batches from the queue while fewer than PRESENCE_INFLIGHT run. */
static void presence_start(gw_t *gw)
{
    while (gw->pres_inflight < PRESENCE_INFLIGHT && gw->pres_len > 0 && !gw->shutting_down) {
        gw_job_t *job = gw_job_new_for(gw, presence_work, presence_done);
        presence_batch_t *b = job != NULL ? calloc(1, sizeof(*b)) : NULL;
        if (b == NULL) {
            if (job != NULL)
                gw_job_free(job);
            return;
        }
        while (b->n < PRESENCE_BATCH && gw->pres_len > 0) {
            b->change[b->n++] = gw->pres_ring[gw->pres_head];
            gw->pres_head = (gw->pres_head + 1) % PRESENCE_QUEUED;
            gw->pres_len--;
        }
        job->ptr = b;
        if (gw_job_submit(job) != 0)
            return;
        gw->pres_inflight++;
    }
}

void gw_notify_presence(gw_t *gw, const char *user, int online)
{
    if (gw->pres_ring == NULL)
        gw->pres_ring = malloc(PRESENCE_QUEUED * sizeof(*gw->pres_ring));
    if (gw->pres_ring == NULL || gw->pres_len == PRESENCE_QUEUED) {
        gw->metrics.presence_dropped++;
        return;
    }
    struct gw_presence_change_s *pc =
        &gw->pres_ring[(gw->pres_head + gw->pres_len) % PRESENCE_QUEUED];
    snprintf(pc->user, sizeof(pc->user), "%s", user);
    pc->online = online;
    pc->when_ms = chat_now_ms();
    gw->pres_len++;
    presence_start(gw);
}

void gw_notify_presence_free(gw_t *gw)
{
    free(gw->pres_ring);
    gw->pres_ring = NULL;
    gw->pres_head = gw->pres_len = 0;
}

/* ---- GET /v1/presence ---------------------------------------------------------------- */

typedef struct query_s {
    gw_t *gw;
    uint64_t serial;
    int pending;
    size_t n;
    char names[QUERY_MAX][CHAT_NAME_MAX + 1];
    int online[QUERY_MAX];
    long long last_seen[QUERY_MAX];
} query_t;

typedef struct query_ref_s {
    query_t *q;
    size_t i;
} query_ref_t;

static void query_finish(query_t *q)
{
    gw_conn_t *conn = gw_conn_find(q->gw, q->serial);
    if (conn != NULL) {
        chat_buf_t b;
        chat_buf_init(&b, 1 << 20);
        chat_buf_append_str(&b, "{\"presence\":[");
        for (size_t i = 0; i < q->n; i++) {
            if (i)
                chat_buf_append(&b, ",", 1);
            chat_buf_printf(&b, "{\"user\":\"%s\",\"online\":%s", q->names[i],
                            q->online[i] ? "true" : "false");
            if (!q->online[i] && q->last_seen[i] > 0)
                chat_buf_printf(&b, ",\"last_seen\":%lld", q->last_seen[i]);
            chat_buf_append(&b, "}", 1);
        }
        chat_buf_append_str(&b, "]}");
        gw_http_respond(conn, 200, b.data, b.len);
        chat_buf_close(&b);
        gw_http_resume(conn);
    }
    free(q);
}

static void query_hash_cb(redisAsyncContext *ac, void *rep, void *privdata)
{
    query_ref_t *ref = privdata;
    query_t *q = ref->q;
    redisReply *reply = rep;
    uint64_t now = chat_now_ms();
    (void)ac;
    if (reply != NULL && reply->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i + 1 < reply->elements; i += 2) {
            char gwid[CHAT_NAME_MAX + 1];
            if (live_field(reply, i, now, gwid, sizeof(gwid)))
                q->online[ref->i] = 1;
        }
    }
    if (--q->pending == 0)
        query_finish(q);
}

static void query_seen_cb(redisAsyncContext *ac, void *rep, void *privdata)
{
    query_ref_t *ref = privdata;
    query_t *q = ref->q;
    redisReply *reply = rep;
    (void)ac;
    if (reply != NULL && reply->type == REDIS_REPLY_STRING)
        q->last_seen[ref->i] = strtoll(reply->str, NULL, 10);
    if (--q->pending == 0)
        query_finish(q);
}

static void query_done(gw_job_t *job)
{
    gw_conn_t *conn = gw_conn_find(job->gw, job->serial);
    if (conn == NULL)
        return;
    if (job->result != 0) {
        gw_http_error(conn, 503, "unavailable", "the store did not answer; retry");
        gw_http_resume(conn);
        return;
    }
    query_t *q = calloc(1, sizeof(*q) + sizeof(query_ref_t) * 2 * QUERY_MAX);
    if (q == NULL || job->gw->redis == NULL) {
        free(q);
        gw_http_error(conn, 503, "unavailable", "presence is unavailable; retry");
        gw_http_resume(conn);
        return;
    }
    query_ref_t *refs = (query_ref_t *)(q + 1);
    q->gw = job->gw;
    q->serial = job->serial;
    /* Answer only for the requested users who share a conversation. */
    for (size_t i = 0; i < job->in.len && q->n < QUERY_MAX; i += strlen(job->in.data + i) + 1) {
        const char *u = job->in.data + i;
        int shared = 0;
        for (size_t k = 0; k < job->out.len && !shared; k += strlen(job->out.data + k) + 1)
            shared = strcmp(job->out.data + k, u) == 0;
        if (shared)
            snprintf(q->names[q->n++], sizeof(q->names[0]), "%s", u);
    }
    q->pending = 1;
    for (size_t i = 0; i < q->n; i++) {
        refs[2 * i].q = refs[2 * i + 1].q = q;
        refs[2 * i].i = refs[2 * i + 1].i = i;
        if (redisAsyncCommand(job->gw->redis, query_hash_cb, &refs[2 * i],
                              "HGETALL " CHAT_PRESENCE_PREFIX "%s", q->names[i]) == REDIS_OK)
            q->pending++;
        if (redisAsyncCommand(job->gw->redis, query_seen_cb, &refs[2 * i + 1], "GET lastseen:%s",
                              q->names[i]) == REDIS_OK)
            q->pending++;
    }
    if (--q->pending == 0)
        query_finish(q);
}

static void query_work(gw_job_t *job)
{
    const char *user = job->user;
    size_t start, end;
    mongoc_client_t *client = mongoc_client_pool_pop(job->gw->pool);
    job->result = co_members(job, client, &user, 1, &job->out, &start, &end);
    mongoc_client_pool_push(job->gw->pool, client);
}

int gw_notify_query(gw_conn_t *conn, const char *users, size_t len)
{
    gw_job_t *job = gw_job_new(conn, query_work, query_done);
    size_t count = 0;
    if (job == NULL) {
        gw_http_error(conn, 503, "unavailable", "busy; retry");
        return 0;
    }
    for (const char *s = users, *end = users + len; s != NULL && s < end && count < QUERY_MAX;) {
        const char *comma = memchr(s, ',', (size_t)(end - s));
        const char *e = comma ? comma : end;
        if (!chat_name_valid(s, (size_t)(e - s))) {
            gw_job_free(job);
            gw_http_error(conn, 400, "bad_request", "users must be comma-separated user ids");
            return 0;
        }
        chat_buf_append(&job->in, s, (size_t)(e - s));
        chat_buf_append(&job->in, "", 1);
        count++;
        s = e + 1;
    }
    if (count == 0) {
        gw_job_free(job);
        gw_http_respond(conn, 200, "{\"presence\":[]}", 15);
        return 0;
    }
    if (gw_job_submit(job) != 0) {
        gw_http_error(conn, 503, "unavailable", "busy; retry");
        return 0;
    }
    return 1;
}
