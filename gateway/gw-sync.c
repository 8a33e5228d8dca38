/* sync: what a reconnecting client missed, read from the store in rounds
 * that serve many connections at once.
 *
 * A connection's sync waits in the gateway's queue whenever it needs the
 * store: for its first page, and for each next one once the previous page
 * has left the socket (flow control). At most SYNC_ROUNDS rounds run at a
 * time; each takes up to SYNC_BATCH waiting syncs and asks the store, on
 * one pooled client in the thread pool, at most three questions for all of
 * them together:
 *
 *  1. the conversations of the users whose sync starts (members by user
 *     $in), sorted per sync;
 *  2. one page of events for each sync: for each conversation it still
 *     has to read (up to SYNC_ROUND_CONVS each, SYNC_CLAUSES in all), the
 *     range {seq: {$gt: have, $lte: have + page + 1}}, the ranges that
 *     start alike asked together as one band of an $or (round_filter),
 *     sorted by conv then seq. Seqs are dense from 1, so that range holds
 *     the next page and one more row, which says whether the conversation
 *     goes on; fewer rows than the range means it ends there (or its
 *     remaining events are not stored yet, as with a limit);
 *  3. for the syncs that read their last conversation, the other members'
 *     receipt watermarks (members by conv $in, in chunks).
 *
 * A sync takes at most `sync_page` events per round, walking its
 * conversations in order; the rows arrive in that order, so it stops at
 * the first row past its page, and where it stops is where its next round
 * starts. During a reconnect storm this asks the store three queries per
 * round instead of two plus one per conversation per connection: on MongoDB
 * fewer round trips through the pool's threads; on FerretDB, which reads a
 * whole collection for any of these queries, one read for a whole round
 * (docs/design.md, "Sync in rounds"). */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat-error.h"
#include "chat-log.h"
#include "chat-mongo.h"
#include "gw-private.h"

#define SYNC_ROUNDS      2    /* rounds running at once */
#define SYNC_BATCH       1024 /* syncs served by one round */
#define SYNC_ROUND_CONVS 16   /* conversations one sync asks for in a round */
#define SYNC_CLAUSES     4096 /* conversations a round asks for, in all */
#define RECEIPT_CONVS    1024 /* conversations per receipts query */
#define SYNC_OUT_MAX     (4 << 20)

enum { SYNC_IDLE, SYNC_WAITING, SYNC_RUNNING };

struct gw_sync_s {
    gw_sync_t *next; /* on the gateway's queue, or in a round */
    uint64_t serial; /* the connection */
    char user[CHAT_NAME_MAX + 1];
    json_t *have; /* the client's {conv: seq} */
    char **convs; /* the user's conversations, sorted; loaded by the first round */
    size_t nconvs, cap;
    size_t idx;     /* the conversation being read */
    int64_t cursor; /* last seq read in it */
    uint64_t count;
    chat_buf_t out; /* the round's frames, each after its length */
    int where;      /* SYNC_IDLE, SYNC_WAITING or SYNC_RUNNING */
    int loaded;
    int done;
    int orphan; /* the connection closed while the sync waited or ran */
    /* The current round, on its thread: */
    size_t c0, c1;  /* its clauses */
    size_t at;      /* the clause rows are being taken from */
    int64_t last;   /* the last seq taken from it */
    int64_t budget; /* rows it may still take */
    int stopped;
};

/* One conversation of one sync in a round's $or. */
typedef struct clause_s {
    gw_sync_t *s;
    size_t j; /* index into s->convs */
    int64_t lo, hi;
} clause_t;

/* A clause by its conversation, for finding the clauses of a row. */
typedef struct by_conv_s {
    const char *conv;
    size_t k;
} by_conv_t;

/* A clause by where it starts, for grouping clauses into bands. */
typedef struct by_lo_s {
    int64_t lo;
    size_t k;
} by_lo_t;

/* A sync by a name: its user, or a conversation it reads. */
typedef struct named_s {
    const char *name;
    gw_sync_t *s;
} named_t;

typedef struct round_s {
    gw_job_t *job;
    gw_sync_t *syncs;
    clause_t cl[SYNC_CLAUSES];
    by_conv_t order[SYNC_CLAUSES]; /* sorted by conversation */
    by_lo_t by_lo[SYNC_CLAUSES];   /* the clauses by where they start */
    const char *names[SYNC_CLAUSES > SYNC_BATCH ? SYNC_CLAUSES : SYNC_BATCH];
    named_t by_user[SYNC_BATCH]; /* the syncs that start, by user */
    size_t ncl;
    chat_buf_t frame;
} round_t;

static void sync_destroy(gw_sync_t *s)
{
    if (s == NULL)
        return;
    json_decref(s->have);
    for (size_t i = 0; i < s->nconvs; i++)
        free(s->convs[i]);
    free(s->convs);
    chat_buf_close(&s->out);
    free(s);
}

static int put_frame(chat_buf_t *out, const chat_buf_t *frame)
{
    uint32_t n = (uint32_t)frame->len;
    int rc = chat_buf_append(out, &n, sizeof(n));
    return rc ? rc : chat_buf_append(out, frame->data, frame->len);
}

static const char *utf8_field(const bson_t *doc, const char *key, uint32_t *len)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_UTF8(&it))
        return bson_iter_utf8(&it, len);
    return NULL;
}

static void str_field(chat_buf_t *b, const char *name, const bson_t *doc, const char *key)
{
    uint32_t len;
    const char *s = utf8_field(doc, key, &len);
    if (s != NULL) {
        chat_buf_append_str(b, name);
        chat_buf_append_json_str(b, s, len);
    }
}

static int64_t int_field(const bson_t *doc, const char *key)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_NUMBER(&it))
        return bson_iter_as_int64(&it);
    return 0;
}

/* Rebuilds the frame the consumer routed for a stored event: a message
 * has no "t"; edits, deletes and membership events name theirs. */
static void message_frame(chat_buf_t *b, const bson_t *doc)
{
    bson_iter_t it;
    const char *t = utf8_field(doc, "t", NULL);
    if (t == NULL)
        t = "message";
    chat_buf_reset(b);
    chat_buf_append_str(b, "{\"t\":");
    chat_buf_append_json_str(b, t, strlen(t));
    str_field(b, ",\"id\":", doc, "_id");
    str_field(b, ",\"conv\":", doc, "conv");
    chat_buf_printf(b, ",\"seq\":%lld", (long long)int_field(doc, "seq"));
    str_field(b, ",\"from\":", doc, "from");
    str_field(b, ",\"dev\":", doc, "dev");
    str_field(b, ",\"cid\":", doc, "cid");
    chat_buf_printf(b, ",\"ts\":%lld", (long long)int_field(doc, "ts"));
    if (bson_iter_init_find(&it, doc, "target") && BSON_ITER_HOLDS_NUMBER(&it))
        chat_buf_printf(b, ",\"target\":%lld", (long long)bson_iter_as_int64(&it));
    str_field(b, ",\"action\":", doc, "action");
    str_field(b, ",\"user\":", doc, "user");
    if (int_field(doc, "edited_ts"))
        chat_buf_printf(b, ",\"edited_ts\":%lld", (long long)int_field(doc, "edited_ts"));
    if (bson_iter_init_find(&it, doc, "deleted") && bson_iter_as_bool(&it))
        chat_buf_append_str(b, ",\"deleted\":true");
    str_field(b, ",\"body\":", doc, "body");
    chat_buf_append(b, "}", 1);
}

static int64_t have_for(const gw_sync_t *s, const char *conv)
{
    json_t *v = json_object_get(s->have, conv);
    return json_is_integer(v) ? json_integer_value(v) : 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_named(const void *a, const void *b)
{
    return strcmp(((const named_t *)a)->name, ((const named_t *)b)->name);
}

/* 1. The conversations of every user whose sync starts in this round. */
static int round_convs(round_t *r, mongoc_client_t *client)
{
    gw_job_t *job = r->job;
    size_t n = 0, nu = 0;
    int rc = 0;
    for (gw_sync_t *s = r->syncs; s != NULL; s = s->next) {
        if (!s->loaded)
            r->by_user[n++] = (named_t){s->user, s};
    }
    if (n == 0)
        return 0;
    qsort(r->by_user, n, sizeof(r->by_user[0]), cmp_named);
    for (size_t i = 0; i < n; i++) {
        /* A user's devices syncing together: named once. */
        if (nu == 0 || strcmp(r->names[nu - 1], r->by_user[i].name) != 0)
            r->names[nu++] = r->by_user[i].name;
    }
    bson_t filter = BSON_INITIALIZER;
    chat_mongo_append_in(&filter, "user", r->names, nu);
    bson_t *opts = BCON_NEW("projection", "{", "user", BCON_INT32(1), "conv", BCON_INT32(1), "}");
    mongoc_collection_t *coll = mongoc_client_get_collection(client, job->gw->db, "members");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter, opts, NULL);
    const bson_t *doc;
    while (rc == 0 && mongoc_cursor_next(cur, &doc)) {
        const char *user = utf8_field(doc, "user", NULL);
        const char *conv = utf8_field(doc, "conv", NULL);
        if (user == NULL || conv == NULL)
            continue;
        for (size_t i = gw_first_of(r->by_user, n, sizeof(r->by_user[0]), user);
             i < n && rc == 0 && strcmp(r->by_user[i].name, user) == 0; i++) {
            gw_sync_t *s = r->by_user[i].s;
            if (s->nconvs == s->cap) {
                size_t cap = s->cap ? s->cap * 2 : 16;
                char **p = realloc(s->convs, cap * sizeof(*p));
                if (p == NULL) {
                    rc = chat_error_set(&job->err, CHAT_ENOMEM, "sync: out of memory");
                    break;
                }
                s->convs = p;
                s->cap = cap;
            }
            if ((s->convs[s->nconvs] = strdup(conv)) == NULL)
                rc = chat_error_set(&job->err, CHAT_ENOMEM, "sync: out of memory");
            else
                s->nconvs++;
        }
    }
    rc = gw_cursor_end(job, cur, "sync: conversations", rc);
    mongoc_collection_destroy(coll);
    bson_destroy(opts);
    bson_destroy(&filter);
    for (gw_sync_t *s = r->syncs; s != NULL && rc == 0; s = s->next) {
        if (s->loaded)
            continue;
        if (s->nconvs > 1)
            qsort(s->convs, s->nconvs, sizeof(*s->convs), cmp_str);
        s->loaded = 1;
        s->idx = 0;
        s->cursor = s->nconvs > 0 ? have_for(s, s->convs[0]) : 0;
    }
    return rc;
}

static int cmp_by_conv(const void *a, const void *b)
{
    const by_conv_t *x = a, *y = b;
    int c = strcmp(x->conv, y->conv);
    return c != 0 ? c : (x->k > y->k) - (x->k < y->k);
}

/* A stored event arrived for clause k of the round: the sync takes it
 * unless its page is full, which is where its next round starts. */
static void take(round_t *r, size_t k, int64_t seq, const bson_t *doc, int *built)
{
    const clause_t *c = &r->cl[k];
    gw_sync_t *s = c->s;
    if (s->stopped || k < s->at)
        return;
    if (k != s->at) {
        /* Rows come in conversation order: clauses before k are complete. */
        s->at = k;
        s->last = c->lo;
    }
    if (s->budget == 0) {
        s->stopped = 1;
        s->idx = c->j;
        s->cursor = s->last;
        return;
    }
    if (!*built) {
        message_frame(&r->frame, doc);
        *built = 1;
    }
    put_frame(&s->out, &r->frame);
    s->budget--;
    s->count++;
    s->last = seq;
}

static int cmp_by_lo(const void *a, const void *b)
{
    const by_lo_t *x = a, *y = b;
    return (x->lo > y->lo) - (x->lo < y->lo);
}

/* The round's page query: {$or: [band, ...]}, each band
 * {seq: {$gt: L, $lte: H}, conv: {$in: [...]}} for the clauses that start
 * within a page of the band's first (L, the lowest start; H, the highest
 * end). A conversation's rows in its band are at most twice its own range,
 * and the rows outside that range are dropped as they arrive.
 *
 * Where the clauses start alike (clients about as far behind in
 * conversations about as long) a round is one band however many syncs it
 * serves; at worst there is a band per clause. On MongoDB each band is a range of
 * the {conv, seq} index per conversation. FerretDB evaluates filters in Go,
 * key by key, after reading the whole collection: a band rejects a row at
 * its seq range before its $in, and a round's cost is one read of the
 * collection plus a $in per row, where one $or clause per conversation
 * cost each matching row a pass over all the clauses (a round of 1,024 at
 * 100,000 messages: 17 s in bands, 264 s as clauses; bench/store-probe.py). */
static void round_filter(round_t *r, int64_t page, bson_t *filter)
{
    bson_t ors, band, range;
    char key[24];
    size_t nb = 0;
    for (size_t i = 0; i < r->ncl; i++)
        r->by_lo[i] = (by_lo_t){r->cl[i].lo, i};
    qsort(r->by_lo, r->ncl, sizeof(r->by_lo[0]), cmp_by_lo);
    BSON_APPEND_ARRAY_BEGIN(filter, "$or", &ors);
    for (size_t i = 0, j; i < r->ncl; i = j) {
        int64_t lo = r->by_lo[i].lo, hi = lo;
        size_t n = 0;
        for (j = i; j < r->ncl && (uint64_t)r->by_lo[j].lo - (uint64_t)lo <= (uint64_t)page; j++) {
            const clause_t *c = &r->cl[r->by_lo[j].k];
            hi = c->hi > hi ? c->hi : hi;
            r->names[n++] = c->s->convs[c->j];
        }
        qsort(r->names, n, sizeof(r->names[0]), cmp_str);
        size_t u = 0;
        for (size_t k = 0; k < n; k++) {
            if (u == 0 || strcmp(r->names[u - 1], r->names[k]) != 0)
                r->names[u++] = r->names[k];
        }
        snprintf(key, sizeof(key), "%zu", nb++);
        BSON_APPEND_DOCUMENT_BEGIN(&ors, key, &band);
        BSON_APPEND_DOCUMENT_BEGIN(&band, "seq", &range);
        BSON_APPEND_INT64(&range, "$gt", lo);
        BSON_APPEND_INT64(&range, "$lte", hi);
        bson_append_document_end(&band, &range);
        chat_mongo_append_in(&band, "conv", r->names, u);
        bson_append_document_end(&ors, &band);
    }
    bson_append_array_end(filter, &ors);
}

/* 2. One page for every sync of the round that has conversations left. */
static int round_pages(round_t *r, mongoc_client_t *client)
{
    gw_job_t *job = r->job;
    int64_t page = job->gw->cfg->sync_page;
    int rc = 0;
    r->ncl = 0;
    for (gw_sync_t *s = r->syncs; s != NULL; s = s->next) {
        s->c0 = s->c1 = s->at = r->ncl;
        s->budget = page;
        s->stopped = 0;
        s->last = s->cursor;
        for (size_t j = s->idx;
             j < s->nconvs && j - s->idx < SYNC_ROUND_CONVS && r->ncl < SYNC_CLAUSES; j++) {
            int64_t lo = j == s->idx ? s->cursor : have_for(s, s->convs[j]);
            int64_t hi = lo > INT64_MAX - page - 1 ? INT64_MAX : lo + page + 1;
            r->cl[r->ncl] = (clause_t){s, j, lo, hi};
            r->order[r->ncl] = (by_conv_t){s->convs[j], r->ncl};
            r->ncl++;
        }
        s->c1 = r->ncl;
    }
    if (r->ncl > 0) {
        bson_t filter = BSON_INITIALIZER;
        round_filter(r, page, &filter);
        qsort(r->order, r->ncl, sizeof(r->order[0]), cmp_by_conv);
        bson_t *opts = BCON_NEW("sort", "{", "conv", BCON_INT32(1), "seq", BCON_INT32(1), "}");

        mongoc_collection_t *coll = mongoc_client_get_collection(client, job->gw->db, "messages");
        mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter, opts, NULL);
        const bson_t *doc;
        while (mongoc_cursor_next(cur, &doc)) {
            const char *conv = utf8_field(doc, "conv", NULL);
            int64_t seq = int_field(doc, "seq");
            if (conv == NULL)
                continue;
            /* The clauses of conv (two members of one conversation may sync
             * in the same round); a band may bring rows outside a clause's
             * range, which no sync takes. */
            int built = 0;
            for (size_t i = gw_first_of(r->order, r->ncl, sizeof(r->order[0]), conv);
                 i < r->ncl && strcmp(r->order[i].conv, conv) == 0; i++) {
                const clause_t *c = &r->cl[r->order[i].k];
                if (seq > c->lo && seq <= c->hi)
                    take(r, r->order[i].k, seq, doc, &built);
            }
        }
        rc = gw_cursor_end(job, cur, "sync: messages", rc);
        mongoc_collection_destroy(coll);
        bson_destroy(opts);
        bson_destroy(&filter);
    }
    for (gw_sync_t *s = r->syncs; s != NULL && rc == 0; s = s->next) {
        if (!s->stopped && s->c1 > s->c0) {
            /* It took every row it was given: each conversation it asked
             * for ends within its range. */
            s->idx = r->cl[s->c1 - 1].j + 1;
            s->cursor = s->idx < s->nconvs ? have_for(s, s->convs[s->idx]) : 0;
        }
        s->done = s->idx >= s->nconvs;
    }
    return rc;
}

/* Appends a receipt frame per other member's watermarks: after an offline
 * spell, the sender learns what was delivered and read meanwhile. */
static void receipt_frames(round_t *r, gw_sync_t *s, const bson_t *doc)
{
    static const char *const kinds[2] = {"delivered", "read"};
    static const char *const fields[2] = {"delivered_seq", "read_seq"};
    for (int k = 0; k < 2; k++) {
        int64_t upto = int_field(doc, fields[k]);
        if (upto <= 0)
            continue;
        chat_buf_t *f = &r->frame;
        chat_buf_reset(f);
        chat_buf_append_str(f, "{\"t\":\"receipt\"");
        str_field(f, ",\"conv\":", doc, "conv");
        str_field(f, ",\"user\":", doc, "user");
        chat_buf_printf(f, ",\"kind\":\"%s\",\"upto\":%lld}", kinds[k], (long long)upto);
        put_frame(&s->out, f);
    }
}

/* 3. Receipts for the syncs that read their last conversation this round. */
static int round_receipts(round_t *r, mongoc_client_t *client)
{
    gw_job_t *job = r->job;
    size_t n = 0;
    for (gw_sync_t *s = r->syncs; s != NULL; s = s->next)
        n += s->done ? s->nconvs : 0;
    if (n == 0)
        return 0;
    /* Each (conversation, sync) pair by conversation, and the distinct
     * conversations for the query. */
    named_t *pairs = malloc(n * sizeof(*pairs));
    const char **convs = malloc(n * sizeof(*convs));
    if (pairs == NULL || convs == NULL) {
        free(pairs);
        free(convs);
        return chat_error_set(&job->err, CHAT_ENOMEM, "sync: out of memory");
    }
    n = 0;
    for (gw_sync_t *s = r->syncs; s != NULL; s = s->next) {
        for (size_t i = 0; s->done && i < s->nconvs; i++)
            pairs[n++] = (named_t){s->convs[i], s};
    }
    qsort(pairs, n, sizeof(*pairs), cmp_named);
    size_t u = 0;
    for (size_t i = 0; i < n; i++) {
        if (u == 0 || strcmp(convs[u - 1], pairs[i].name) != 0)
            convs[u++] = pairs[i].name;
    }
    mongoc_collection_t *coll = mongoc_client_get_collection(client, job->gw->db, "members");
    int rc = 0;
    for (size_t from = 0; from < u && rc == 0; from += RECEIPT_CONVS) {
        bson_t filter = BSON_INITIALIZER;
        chat_mongo_append_in(&filter, "conv", convs + from,
                             u - from < RECEIPT_CONVS ? u - from : RECEIPT_CONVS);
        mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter, NULL, NULL);
        const bson_t *doc;
        while (mongoc_cursor_next(cur, &doc)) {
            const char *conv = utf8_field(doc, "conv", NULL);
            const char *user = utf8_field(doc, "user", NULL);
            if (conv == NULL || user == NULL)
                continue;
            for (size_t i = gw_first_of(pairs, n, sizeof(*pairs), conv);
                 i < n && strcmp(pairs[i].name, conv) == 0; i++) {
                if (strcmp(pairs[i].s->user, user) != 0)
                    receipt_frames(r, pairs[i].s, doc);
            }
        }
        rc = gw_cursor_end(job, cur, "sync: receipts", rc);
        bson_destroy(&filter);
    }
    mongoc_collection_destroy(coll);
    free(pairs);
    free(convs);
    return rc;
}

static void round_work(gw_job_t *job)
{
    round_t *r = job->ptr;
    mongoc_client_t *client = mongoc_client_pool_pop(job->gw->pool);
    chat_buf_init(&r->frame, SYNC_OUT_MAX);
    int rc = round_convs(r, client);
    if (rc == 0)
        rc = round_pages(r, client);
    if (rc == 0)
        rc = round_receipts(r, client);
    job->result = rc;
    chat_buf_close(&r->frame);
    mongoc_client_pool_push(job->gw->pool, client);
}

/* Hands a sync its round's outcome, on the loop. */
static void deliver(gw_t *gw, gw_sync_t *s, int result, const char *why)
{
    gw_conn_t *conn = s->orphan ? NULL : gw_conn_find(gw, s->serial);
    if (conn == NULL || conn->sync != s) {
        sync_destroy(s);
        return;
    }
    if (result != 0) {
        CHAT_WARN("conn %s user %s: %s", conn->id, conn->user, why);
        conn->sync = NULL;
        sync_destroy(s);
        gw_conn_send_error(conn, "unavailable", "sync failed; send sync again", NULL, 1);
        return;
    }
    gw->metrics.sync_pages++;
    for (size_t off = 0; off + 4 <= s->out.len;) {
        uint32_t n;
        memcpy(&n, s->out.data + off, 4);
        if (gw_conn_send_text(conn, s->out.data + off + 4, n) != 0)
            return; /* closed as too slow: close freed the sync state */
        off += 4 + n;
    }
    chat_buf_reset(&s->out);
    if (s->done) {
        char fin[64];
        int n = snprintf(fin, sizeof(fin), "{\"t\":\"synced\",\"count\":%llu}",
                         (unsigned long long)s->count);
        conn->sync = NULL;
        sync_destroy(s);
        gw_conn_send_text(conn, fin, (size_t)n);
        return;
    }
    /* Flow control: the next page is read when this one has left. */
    if (conn->out.len == 0 && !conn->writing)
        gw_store_sync_next(conn);
}

/* Hands each sync of a round's list its outcome. */
static void deliver_all(gw_t *gw, gw_sync_t *list, int result, const char *why)
{
    gw_sync_t *next;
    for (gw_sync_t *s = list; s != NULL; s = next) {
        next = s->next;
        s->next = NULL;
        s->where = SYNC_IDLE;
        deliver(gw, s, result, why);
    }
}

static void kick(gw_t *gw);

static void round_done(gw_job_t *job)
{
    gw_t *gw = job->gw;
    round_t *r = job->ptr;
    gw->sync_rounds--;
    gw->metrics.sync_rounds++;
    deliver_all(gw, r->syncs, job->result, job->err.message);
    kick(gw);
}

/* Starts rounds for the waiting syncs, as many as may run. */
static void kick(gw_t *gw)
{
    while (gw->sync_rounds < SYNC_ROUNDS && gw->sync_head != NULL) {
        /* Up to SYNC_BATCH from the head; a sync whose connection closed
         * while it waited is freed here. */
        gw_sync_t *taken = NULL, **end = &taken;
        for (size_t n = 0; n < SYNC_BATCH && gw->sync_head != NULL;) {
            gw_sync_t *s = gw->sync_head;
            gw->sync_head = s->next;
            s->next = NULL;
            if (s->orphan) {
                sync_destroy(s);
                continue;
            }
            s->where = SYNC_RUNNING;
            gw->metrics.sync_waiting--;
            *end = s;
            end = &s->next;
            n++;
        }
        if (gw->sync_head == NULL)
            gw->sync_tail = NULL;
        if (taken == NULL)
            return;
        gw_job_t *job = gw_round_new(gw, sizeof(round_t), round_work, round_done);
        int rc = CHAT_ENOMEM;
        if (job != NULL) {
            round_t *r = job->ptr;
            r->job = job;
            r->syncs = taken;
            rc = gw_round_submit(job, &gw->sync_rounds);
        }
        if (rc != 0)
            deliver_all(gw, taken, CHAT_EAGAIN, "sync could not continue");
    }
}

int gw_store_sync_start(gw_conn_t *conn, void *have_json)
{
    gw_sync_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        json_decref(have_json);
        return CHAT_ENOMEM;
    }
    s->have = have_json ? have_json : json_object();
    s->serial = conn->serial;
    memcpy(s->user, conn->user, sizeof(s->user));
    chat_buf_init(&s->out, SYNC_OUT_MAX);
    conn->sync = s;
    gw_store_sync_next(conn);
    return 0;
}

void gw_store_sync_next(gw_conn_t *conn)
{
    gw_t *gw = conn->gw;
    gw_sync_t *s = conn->sync;
    if (s == NULL || s->where != SYNC_IDLE)
        return;
    s->where = SYNC_WAITING;
    s->next = NULL;
    if (gw->sync_tail != NULL)
        gw->sync_tail->next = s;
    else
        gw->sync_head = s;
    gw->sync_tail = s;
    gw->metrics.sync_waiting++;
    kick(gw);
}

void gw_store_sync_free(gw_conn_t *conn)
{
    gw_sync_t *s = conn->sync;
    if (s == NULL)
        return;
    conn->sync = NULL;
    if (s->where == SYNC_IDLE) {
        sync_destroy(s);
        return;
    }
    /* Freed when kick reaches it in the queue, or by its round. A queue
     * holds syncs only while rounds run, and each round's end kicks. */
    if (s->where == SYNC_WAITING)
        conn->gw->metrics.sync_waiting--;
    s->orphan = 1;
}
