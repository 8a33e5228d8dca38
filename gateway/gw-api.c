/* The HTTP API under /v1 (docs/api.md): accounts, conversation lists and
 * membership, history and presence. Store work runs as jobs off the loop;
 * membership changes are produced to Kafka like messages and answered 202
 * once acknowledged. */
#include <arpa/inet.h>
#include <http_parser.h>
#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "chat-envelope.h"
#include "chat-error.h"
#include "chat-jwt.h"
#include "chat-log.h"
#include "chat-mongo.h"
#include "gw-api.h"

#define UNREAD_CAP 1000

/* ---- small helpers --------------------------------------------------------- */

static int username_valid(const char *s, size_t len)
{
    if (len < 3 || len > 32)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

static void respond_buf(gw_conn_t *conn, int status, chat_buf_t *b)
{
    gw_http_respond(conn, status, b->data ? b->data : "", b->len);
}

void gw_api_answer(gw_job_t *job)
{
    gw_conn_t *conn = gw_conn_find(job->gw, job->serial);
    if (conn == NULL)
        return;
    if (job->status >= 400) {
        char msg[256];
        snprintf(msg, sizeof(msg), "%.*s", (int)job->out.len, job->out.data ? job->out.data : "");
        if (job->status >= 500 && job->err.message[0])
            CHAT_WARN("conn %s: %s", conn->id, job->err.message);
        gw_http_error(conn, job->status, job->arg[0] ? job->arg : "bad_request", msg);
    } else {
        respond_buf(conn, job->status, &job->out);
    }
    gw_http_resume(conn);
}

static void fail(gw_job_t *job, int status, const char *code, const char *msg)
{
    job->status = status;
    snprintf(job->arg, sizeof(job->arg), "%s", code);
    chat_buf_reset(&job->out);
    chat_buf_append_str(&job->out, msg);
}

static int token_for(gw_t *gw, const char *user, chat_buf_t *out)
{
    char tok[CHAT_JWT_MAX];
    int64_t now = (int64_t)(chat_now_ms() / 1000), exp = now + gw->cfg->token_ttl_s;
    int n = chat_jwt_sign(gw->secret, gw->secret_len, user, now, exp, tok, sizeof(tok));
    if (n < 0)
        return n;
    return chat_buf_printf(out, "{\"user\":\"%s\",\"token\":\"%s\",\"exp\":%lld}", user, tok,
                           (long long)exp);
}

static mongoc_collection_t *coll(gw_job_t *job, mongoc_client_t *client, const char *name)
{
    return mongoc_client_get_collection(client, job->gw->db, name);
}

static int64_t int_of(const bson_t *doc, const char *key)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_NUMBER(&it))
        return bson_iter_as_int64(&it);
    return 0;
}

static const char *str_of(const bson_t *doc, const char *key)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_UTF8(&it))
        return bson_iter_utf8(&it, NULL);
    return NULL;
}

static int bool_of(const bson_t *doc, const char *key)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, doc, key) && bson_iter_as_bool(&it);
}

static void put_str_or_null(chat_buf_t *b, const char *key, const char *v)
{
    chat_buf_append_str(b, key);
    if (v != NULL)
        chat_buf_append_json_str(b, v, strlen(v));
    else
        chat_buf_append_str(b, "null");
}

/* ---- accounts ----------------------------------------------------------------- */

static void register_work(gw_job_t *job)
{
    char hash[crypto_pwhash_STRBYTES];
    bson_error_t berr;
    const char *pw = job->in.data;
    size_t pwlen = job->in.len;
    if (crypto_pwhash_str_alg(hash, pw, pwlen, crypto_pwhash_OPSLIMIT_INTERACTIVE,
                              (size_t)job->gw->cfg->pwhash_mem_kib * 1024,
                              crypto_pwhash_ALG_ARGON2ID13) != 0) {
        fail(job, 503, "unavailable", "out of memory hashing the password; retry");
        return;
    }
    sodium_memzero(job->in.data, job->in.len);
    mongoc_client_t *client = mongoc_client_pool_pop(job->gw->pool);
    mongoc_collection_t *users = coll(job, client, "users");
    bson_t *doc = BCON_NEW("_id", BCON_UTF8(job->user), "hash", BCON_UTF8(hash), "created_ts",
                           BCON_INT64((int64_t)chat_now_ms()));
    if (!mongoc_collection_insert_one(users, doc, NULL, NULL, &berr)) {
        if (berr.code == CHAT_MONGO_DUPLICATE_KEY) {
            fail(job, 409, "exists", "that username is taken");
        } else {
            chat_mongo_error(&job->err, &berr, "register");
            fail(job, 503, "unavailable", "the store did not answer; retry");
        }
    } else {
        job->status = 201;
        token_for(job->gw, job->user, &job->out);
    }
    bson_destroy(doc);
    mongoc_collection_destroy(users);
    mongoc_client_pool_push(job->gw->pool, client);
}

static void login_work(gw_job_t *job)
{
    bson_error_t berr;
    const bson_t *doc;
    mongoc_client_t *client = mongoc_client_pool_pop(job->gw->pool);
    mongoc_collection_t *users = coll(job, client, "users");
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(job->user));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(users, filter, NULL, NULL);
    int ok = 0, found = 0;
    if (mongoc_cursor_next(cur, &doc)) {
        const char *hash = str_of(doc, "hash");
        found = 1;
        ok = hash != NULL && crypto_pwhash_str_verify(hash, job->in.data, job->in.len) == 0;
    }
    if (!found) {
        /* Spend the same effort on unknown names: no user enumeration by time. */
        char dummy[crypto_pwhash_STRBYTES];
        int spent = crypto_pwhash_str_alg(
            dummy, job->in.data, job->in.len, crypto_pwhash_OPSLIMIT_INTERACTIVE,
            (size_t)job->gw->cfg->pwhash_mem_kib * 1024, crypto_pwhash_ALG_ARGON2ID13);
        (void)spent;
    }
    sodium_memzero(job->in.data, job->in.len);
    if (mongoc_cursor_error(cur, &berr)) {
        chat_mongo_error(&job->err, &berr, "login");
        fail(job, 503, "unavailable", "the store did not answer; retry");
    } else if (!ok) {
        fail(job, 401, "bad_credentials", "wrong username or password");
    } else {
        job->status = 200;
        token_for(job->gw, job->user, &job->out);
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(filter);
    mongoc_collection_destroy(users);
    mongoc_client_pool_push(job->gw->pool, client);
}

/* Parses {"username","password"} into the job. Returns 0 or answers 400. */
static int credentials(gw_conn_t *conn, gw_job_t *job, const char *body, size_t len)
{
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *u = json_object_get(root, "username"), *p = json_object_get(root, "password");
    int rc = -1;
    if (!json_is_string(u) || !username_valid(json_string_value(u), json_string_length(u))) {
        gw_http_error(conn, 400, "bad_request", "username must be 3-32 of [A-Za-z0-9_.-]");
    } else if (!json_is_string(p) || json_string_length(p) < 8 || json_string_length(p) > 256) {
        gw_http_error(conn, 400, "bad_request", "password must be 8-256 bytes");
    } else {
        snprintf(job->user, sizeof(job->user), "%s", json_string_value(u));
        chat_buf_append(&job->in, json_string_value(p), json_string_length(p));
        rc = 0;
    }
    json_decref(root);
    return rc;
}

/* Login attempts are counted in Redis so that every gateway sees them: one
 * script increments the username's and the address's counters for this
 * minute and returns both. */
static const char login_script[] =
    "local a=redis.call('INCR',KEYS[1]) if a==1 then redis.call('EXPIRE',KEYS[1],60) end "
    "local b=redis.call('INCR',KEYS[2]) if b==1 then redis.call('EXPIRE',KEYS[2],60) end "
    "return {a,b}";

static void limit_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    gw_job_t *job = privdata;
    redisReply *reply = r;
    gw_t *gw = ac->data;
    gw_conn_t *conn = gw_conn_find(gw, job->serial);
    if (conn == NULL) {
        gw_job_free(job); /* wipes the password */
        return;
    }
    if (reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2) {
        long long per_user = reply->element[0]->integer, per_addr = reply->element[1]->integer;
        if ((job->n1 && per_user > gw->cfg->login_user_per_min) ||
            per_addr > gw->cfg->login_addr_per_min) {
            gw_job_free(job);
            gw_http_error(conn, 429, "rate_limited", "too many attempts; wait a minute");
            gw_http_resume(conn);
            return;
        }
    }
    /* Redis down: limits cannot be counted; the password work still bounds
     * the rate at the thread pool's pace. */
    if (gw_job_submit(job) != 0) {
        gw_http_error(conn, 503, "unavailable", "busy; retry");
        gw_http_resume(conn);
    }
}

static int account(gw_conn_t *conn, const char *body, size_t len, int is_login)
{
    gw_t *gw = conn->gw;
    gw_job_t *job = gw_job_new(conn, is_login ? login_work : register_work, gw_api_answer);
    char addr[64] = "unknown", k1[96], k2[96];
    struct sockaddr_storage ss;
    int sslen = sizeof(ss);
    if (job == NULL) {
        gw_http_error(conn, 503, "unavailable", "out of memory");
        return 0;
    }
    if (credentials(conn, job, body, len) != 0) {
        gw_job_free(job);
        return 0;
    }
    if (uv_tcp_getpeername(&conn->tcp, (struct sockaddr *)&ss, &sslen) == 0) {
        if (ss.ss_family == AF_INET)
            uv_ip4_name((struct sockaddr_in *)&ss, addr, sizeof(addr));
        else
            uv_ip6_name((struct sockaddr_in6 *)&ss, addr, sizeof(addr));
    }
    job->n1 = is_login;
    /* Registrations count per address only: their per-name counter is a
     * separate one that nothing checks, so they spend no login attempt. */
    snprintf(k1, sizeof(k1), is_login ? "rl:login:u:%s" : "rl:register:u:%s", job->user);
    snprintf(k2, sizeof(k2), "rl:login:a:%s", addr);
    if (gw->redis != NULL && redisAsyncCommand(gw->redis, limit_cb, job, "EVAL %s 2 %s %s",
                                               login_script, k1, k2) == REDIS_OK)
        return 1;
    if (gw_job_submit(job) != 0) {
        gw_http_error(conn, 503, "unavailable", "busy; retry");
        return 0;
    }
    return 1;
}

static void me_work(gw_job_t *job)
{
    bson_error_t berr;
    const bson_t *doc;
    mongoc_client_t *client = mongoc_client_pool_pop(job->gw->pool);
    mongoc_collection_t *users = coll(job, client, "users");
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(job->user));
    bson_t *opts = BCON_NEW("projection", "{", "hash", BCON_INT32(0), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(users, filter, opts, NULL);
    job->status = 200;
    chat_buf_printf(&job->out, "{\"user\":\"%s\"", job->user);
    if (mongoc_cursor_next(cur, &doc))
        chat_buf_printf(&job->out, ",\"created_ts\":%lld", (long long)int_of(doc, "created_ts"));
    chat_buf_append_str(&job->out, "}");
    if (mongoc_cursor_error(cur, &berr)) {
        chat_mongo_error(&job->err, &berr, "me");
        fail(job, 503, "unavailable", "the store did not answer; retry");
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(filter);
    bson_destroy(opts);
    mongoc_collection_destroy(users);
    mongoc_client_pool_push(job->gw->pool, client);
}

/* ---- conversations ------------------------------------------------------------ */

typedef struct conv_row_s {
    char id[CHAT_NAME_MAX + 1];
    int64_t read_seq;
    int64_t activity;
    chat_buf_t json;
} conv_row_t;

static int row_cmp(const void *a, const void *b)
{
    const conv_row_t *x = a, *y = b;
    return x->activity < y->activity ? 1 : x->activity > y->activity ? -1 : 0;
}

/* Appends the newest message of conv as "last_message" (or null). */
/* Appends ,"last_message":{...} or null for conv; returns its ts (0: none)
 * and the highest seq stored in *max_seq (0: none). */
static int64_t last_message(mongoc_collection_t *msgs, const char *conv, chat_buf_t *b,
                            int64_t *max_seq)
{
    const bson_t *doc;
    int64_t ts = 0;
    bson_t *filter = BCON_NEW("conv", BCON_UTF8(conv));
    bson_t *opts = BCON_NEW("sort", "{", "seq", BCON_INT32(-1), "}", "limit", BCON_INT64(20));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(msgs, filter, opts, NULL);
    chat_buf_append_str(b, ",\"last_message\":");
    int found = 0;
    *max_seq = 0;
    while (!found && mongoc_cursor_next(cur, &doc)) {
        /* Events other than messages carry their frame type in "t". */
        const char *type = str_of(doc, "t");
        if (*max_seq == 0)
            *max_seq = int_of(doc, "seq");
        if (type != NULL && strcmp(type, "message") != 0)
            continue;
        found = 1;
        ts = int_of(doc, "ts");
        chat_buf_printf(b, "{\"seq\":%lld", (long long)int_of(doc, "seq"));
        put_str_or_null(b, ",\"from\":", str_of(doc, "from"));
        chat_buf_printf(b, ",\"ts\":%lld", (long long)ts);
        if (bool_of(doc, "deleted"))
            chat_buf_append_str(b, ",\"deleted\":true}");
        else {
            put_str_or_null(b, ",\"body\":", str_of(doc, "body"));
            chat_buf_append_str(b, "}");
        }
    }
    if (!found)
        chat_buf_append_str(b, "null");
    mongoc_cursor_destroy(cur);
    bson_destroy(filter);
    bson_destroy(opts);
    return ts;
}

static void list_work(gw_job_t *job)
{
    bson_error_t berr;
    const bson_t *doc;
    conv_row_t *rows = NULL;
    size_t n = 0, cap = 0;
    mongoc_client_t *client = mongoc_client_pool_pop(job->gw->pool);
    mongoc_collection_t *mem = coll(job, client, "members");
    mongoc_collection_t *convs = coll(job, client, "conversations");
    mongoc_collection_t *msgs = coll(job, client, "messages");
    bson_t *filter = BCON_NEW("user", BCON_UTF8(job->user));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(mem, filter, NULL, NULL);
    while (mongoc_cursor_next(cur, &doc)) {
        const char *c = str_of(doc, "conv");
        if (c == NULL)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            conv_row_t *p = realloc(rows, cap * sizeof(*p));
            if (p == NULL)
                break;
            rows = p;
        }
        memset(&rows[n], 0, sizeof(rows[n]));
        snprintf(rows[n].id, sizeof(rows[n].id), "%s", c);
        rows[n].read_seq = int_of(doc, "read_seq");
        chat_buf_init(&rows[n].json, 1 << 20);
        n++;
    }
    int failed = mongoc_cursor_error(cur, &berr);
    mongoc_cursor_destroy(cur);
    bson_destroy(filter);
    for (size_t i = 0; i < n && !failed; i++) {
        conv_row_t *r = &rows[i];
        filter = BCON_NEW("_id", BCON_UTF8(r->id));
        cur = mongoc_collection_find_with_opts(convs, filter, NULL, NULL);
        if (mongoc_cursor_next(cur, &doc) && !bool_of(doc, "deleted")) {
            chat_buf_t *b = &r->json;
            int64_t last_seq = int_of(doc, "last_seq");
            bson_iter_t it, arr;
            chat_buf_append_str(b, "{\"id\":");
            chat_buf_append_json_str(b, r->id, strlen(r->id));
            put_str_or_null(b, ",\"kind\":", str_of(doc, "kind"));
            put_str_or_null(b, ",\"title\":", str_of(doc, "title"));
            put_str_or_null(b, ",\"owner\":", str_of(doc, "owner"));
            chat_buf_append_str(b, ",\"members\":[");
            if (bson_iter_init_find(&it, doc, "members") && BSON_ITER_HOLDS_ARRAY(&it) &&
                bson_iter_recurse(&it, &arr)) {
                int first = 1;
                while (bson_iter_next(&arr)) {
                    if (!BSON_ITER_HOLDS_UTF8(&arr))
                        continue;
                    uint32_t l;
                    const char *u = bson_iter_utf8(&arr, &l);
                    if (!first)
                        chat_buf_append(b, ",", 1);
                    first = 0;
                    chat_buf_append_json_str(b, u, l);
                }
            }
            /* Unread: other people's messages past my read mark (edits,
             * deletes, membership events and my own sends do not count),
             * counted up to a cap so a long absence costs a bounded scan. */
            bson_t *uf = BCON_NEW(
                "conv", BCON_UTF8(r->id), "seq", "{", "$gt", BCON_INT64(r->read_seq), "}", "from",
                "{", "$ne", BCON_UTF8(job->user), "}", "t", "{", "$exists", BCON_BOOL(false), "}");
            bson_t *uo = BCON_NEW("limit", BCON_INT64(UNREAD_CAP));
            int64_t unread = mongoc_collection_count_documents(msgs, uf, uo, NULL, NULL, &berr);
            bson_destroy(uf);
            bson_destroy(uo);
            chat_buf_append_str(b, "]");
            /* The stored last_seq lags a busy conversation's by up to the
             * consumers' last_seq_ms: its messages say what it is. */
            int64_t top, ts = last_message(msgs, r->id, b, &top);
            chat_buf_printf(b, ",\"last_seq\":%lld,\"read_seq\":%lld,\"unread\":%lld",
                            (long long)(top > last_seq ? top : last_seq), (long long)r->read_seq,
                            (long long)(unread > 0 ? unread : 0));
            r->activity = ts ? ts : int_of(doc, "created_ts");
            chat_buf_append_str(b, "}");
        }
        failed |= mongoc_cursor_error(cur, &berr);
        mongoc_cursor_destroy(cur);
        bson_destroy(filter);
    }
    if (failed) {
        chat_mongo_error(&job->err, &berr, "list conversations");
        fail(job, 503, "unavailable", "the store did not answer; retry");
    } else {
        if (n > 1)
            qsort(rows, n, sizeof(*rows), row_cmp);
        job->status = 200;
        chat_buf_append_str(&job->out, "{\"conversations\":[");
        int first = 1;
        for (size_t i = 0; i < n; i++) {
            if (rows[i].json.len == 0)
                continue;
            if (!first)
                chat_buf_append(&job->out, ",", 1);
            first = 0;
            chat_buf_append(&job->out, rows[i].json.data, rows[i].json.len);
        }
        chat_buf_append_str(&job->out, "]}");
    }
    for (size_t i = 0; i < n; i++)
        chat_buf_close(&rows[i].json);
    free(rows);
    mongoc_collection_destroy(mem);
    mongoc_collection_destroy(convs);
    mongoc_collection_destroy(msgs);
    mongoc_client_pool_push(job->gw->pool, client);
}

/* Loads conversation job->conv; checks the caller is a member and that it
 * is not deleted. Returns the document (caller destroys) or NULL after
 * filling the job's error. */
static bson_t *load_conv(gw_job_t *job, mongoc_client_t *client)
{
    bson_error_t berr;
    const bson_t *doc;
    bson_t *copy = NULL;
    mongoc_collection_t *convs = coll(job, client, "conversations");
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(job->conv));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(convs, filter, NULL, NULL);
    if (mongoc_cursor_next(cur, &doc)) {
        bson_iter_t it, arr;
        int member = 0;
        if (bson_iter_init_find(&it, doc, "members") && BSON_ITER_HOLDS_ARRAY(&it) &&
            bson_iter_recurse(&it, &arr)) {
            while (bson_iter_next(&arr))
                member |= BSON_ITER_HOLDS_UTF8(&arr) &&
                          strcmp(bson_iter_utf8(&arr, NULL), job->user) == 0;
        }
        if (bool_of(doc, "deleted") || !member)
            fail(job, 404, "not_found", "no such conversation");
        else
            copy = bson_copy(doc);
    } else if (mongoc_cursor_error(cur, &berr)) {
        chat_mongo_error(&job->err, &berr, "conversation");
        fail(job, 503, "unavailable", "the store did not answer; retry");
    } else {
        fail(job, 404, "not_found", "no such conversation");
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(filter);
    mongoc_collection_destroy(convs);
    return copy;
}

static void history_work(gw_job_t *job)
{
    bson_error_t berr;
    const bson_t *doc;
    mongoc_client_t *client = mongoc_client_pool_pop(job->gw->pool);
    bson_t *conv = load_conv(job, client);
    if (conv == NULL)
        goto out;
    bson_destroy(conv);
    mongoc_collection_t *msgs = coll(job, client, "messages");
    mongoc_read_prefs_t *rp = mongoc_read_prefs_new(MONGOC_READ_PRIMARY);
    const char *pref = job->gw->cfg->mongo_read_pref;
    if (strcmp(pref, "secondaryPreferred") == 0)
        mongoc_read_prefs_set_mode(rp, MONGOC_READ_SECONDARY_PREFERRED);
    else if (strcmp(pref, "secondary") == 0)
        mongoc_read_prefs_set_mode(rp, MONGOC_READ_SECONDARY);
    else if (strcmp(pref, "primaryPreferred") == 0)
        mongoc_read_prefs_set_mode(rp, MONGOC_READ_PRIMARY_PREFERRED);
    else if (strcmp(pref, "nearest") == 0)
        mongoc_read_prefs_set_mode(rp, MONGOC_READ_NEAREST);
    bson_t *filter =
        BCON_NEW("conv", BCON_UTF8(job->conv), "seq", "{", "$lt", BCON_INT64(job->n1), "}");
    bson_t *opts = BCON_NEW("sort", "{", "seq", BCON_INT32(-1), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(msgs, filter, opts, rp);
    int64_t got = 0, last = 0;
    chat_buf_append_str(&job->out, "{\"messages\":[");
    while (got < job->n2 && mongoc_cursor_next(cur, &doc)) {
        /* Events other than messages carry their frame type in "t". */
        const char *type = str_of(doc, "t");
        last = int_of(doc, "seq");
        if (type != NULL && strcmp(type, "message") != 0)
            continue;
        chat_buf_t *b = &job->out;
        if (got++)
            chat_buf_append(b, ",", 1);
        put_str_or_null(b, "{\"id\":", str_of(doc, "_id"));
        chat_buf_printf(b, ",\"seq\":%lld", (long long)last);
        put_str_or_null(b, ",\"from\":", str_of(doc, "from"));
        if (str_of(doc, "cid") != NULL)
            put_str_or_null(b, ",\"cid\":", str_of(doc, "cid"));
        chat_buf_printf(b, ",\"ts\":%lld", (long long)int_of(doc, "ts"));
        if (int_of(doc, "edited_ts"))
            chat_buf_printf(b, ",\"edited_ts\":%lld", (long long)int_of(doc, "edited_ts"));
        if (bool_of(doc, "deleted"))
            chat_buf_append_str(b, ",\"deleted\":true}");
        else {
            put_str_or_null(b, ",\"body\":", str_of(doc, "body"));
            chat_buf_append_str(b, "}");
        }
    }
    chat_buf_append_str(&job->out, "]");
    if (got == job->n2 && last > 1)
        chat_buf_printf(&job->out, ",\"next_before\":%lld", (long long)last);
    chat_buf_append_str(&job->out, "}");
    job->status = 200;
    if (mongoc_cursor_error(cur, &berr)) {
        chat_mongo_error(&job->err, &berr, "history");
        fail(job, 503, "unavailable", "the store did not answer; retry");
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(filter);
    bson_destroy(opts);
    mongoc_read_prefs_destroy(rp);
    mongoc_collection_destroy(msgs);
out:
    mongoc_client_pool_push(job->gw->pool, client);
}

/* Checks who may change the membership; the consumer checks again, in
 * order, when it applies the event. */
static void member_change_work(gw_job_t *job)
{
    mongoc_client_t *client = mongoc_client_pool_pop(job->gw->pool);
    bson_t *conv = load_conv(job, client);
    if (conv == NULL)
        goto out;
    const char *kind = str_of(conv, "kind"), *owner = str_of(conv, "owner");
    int is_owner = owner != NULL && strcmp(owner, job->user) == 0;
    job->status = 202;
    if (kind == NULL || strcmp(kind, "group") != 0) {
        fail(job, 403, "forbidden", "direct conversations have fixed members");
    } else if (job->n1 == CHAT_EV_MEMBER_ADD) {
        bson_iter_t it;
        uint32_t count = 0;
        if (bson_iter_init_find(&it, conv, "members") && BSON_ITER_HOLDS_ARRAY(&it)) {
            bson_iter_t arr;
            bson_iter_recurse(&it, &arr);
            while (bson_iter_next(&arr))
                count++;
        }
        if (!is_owner)
            fail(job, 403, "forbidden", "only the owner adds members");
        else if (count >= (uint32_t)job->gw->cfg->group_max)
            fail(job, 413, "too_large", "the group is full");
    } else if (job->n1 == CHAT_EV_MEMBER_REMOVE) {
        if (!is_owner && strcmp(job->arg, job->user) != 0)
            fail(job, 403, "forbidden", "only the owner removes others; anyone may leave");
        else if (is_owner && strcmp(job->arg, job->user) == 0)
            fail(job, 403, "forbidden", "the owner deletes the group rather than leave it");
    } else if (!is_owner) {
        fail(job, 403, "forbidden", "only the owner can delete a group");
    }
    bson_destroy(conv);
out:
    mongoc_client_pool_push(job->gw->pool, client);
}

static void member_change_done(gw_job_t *job)
{
    gw_conn_t *conn = gw_conn_find(job->gw, job->serial);
    chat_event_t ev;
    if (conn == NULL)
        return;
    if (job->status >= 400) {
        gw_api_answer(job);
        return;
    }
    memset(&ev, 0, sizeof(ev));
    ev.type = (chat_event_type_t)job->n1;
    ev.ts = (int64_t)chat_now_ms();
    chat_id_new(ev.id, (uint64_t)ev.ts);
    memcpy(ev.conv, job->conv, sizeof(ev.conv));
    memcpy(ev.from, job->user, sizeof(ev.from));
    if (ev.type != CHAT_EV_CONV_DELETE)
        memcpy(ev.user, job->arg, sizeof(ev.user));
    chat_buf_t *b = &job->gw->encbuf;
    chat_buf_reset(b);
    if (chat_event_encode(&ev, b) != 0 ||
        gw_producer_send(job->gw, conn, GW_REPLY_HTTP, ev.conv, ev.id, "", ev.ts, b->data,
                         b->len) != 0) {
        gw_http_error(conn, 503, "unavailable", "the event log is not accepting events; retry");
        gw_http_resume(conn);
    }
    /* Answered 202 from the delivery report. */
}

/* ---- dispatch ----------------------------------------------------------------- */

static int submit_or_503(gw_conn_t *conn, gw_job_t *job)
{
    if (job == NULL || gw_job_submit(job) != 0) {
        gw_http_error(conn, 503, "unavailable", "busy; retry");
        return 0;
    }
    return 1;
}

/* Copies path segment i (0-based, after "/v1/") into out. */
static int segment(const char *path, size_t len, int i, char *out, size_t size)
{
    const char *p = path, *end = path + len;
    for (int k = 0; k <= i; k++) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        const char *e = slash ? slash : end;
        if (k == i) {
            if ((size_t)(e - p) >= size || e == p)
                return -1;
            memcpy(out, p, (size_t)(e - p));
            out[e - p] = '\0';
            return 0;
        }
        if (slash == NULL)
            return -1;
        p = slash + 1;
    }
    return -1;
}

static int count_segments(const char *path, size_t len)
{
    int n = len > 0;
    for (size_t i = 0; i < len; i++)
        n += path[i] == '/';
    return n;
}

static int64_t query_int(const char *q, size_t qlen, const char *name, int64_t def)
{
    size_t nlen = strlen(name);
    for (const char *s = q, *end = q + qlen; s < end;) {
        const char *amp = memchr(s, '&', (size_t)(end - s));
        const char *e = amp ? amp : end;
        if ((size_t)(e - s) > nlen && strncmp(s, name, nlen) == 0 && s[nlen] == '=') {
            char tmp[24];
            size_t l = (size_t)(e - s) - nlen - 1;
            if (l == 0 || l >= sizeof(tmp))
                return -1;
            memcpy(tmp, s + nlen + 1, l);
            tmp[l] = '\0';
            char *endp;
            long long v = strtoll(tmp, &endp, 10);
            return *endp == '\0' ? v : -1;
        }
        s = e + 1;
    }
    return def;
}

int gw_api_dispatch(gw_conn_t *conn, int method, const char *path, size_t len, const char *query,
                    size_t qlen, const char *body, size_t blen)
{
    gw_job_t *job;
    char seg[CHAT_NAME_MAX + 1];
    /* path has "/v1/" stripped. */
    int nseg = count_segments(path, len);
#define IS(s) (len == sizeof(s) - 1 && memcmp(path, s, len) == 0)
    if (IS("register") || IS("login")) {
        if (method != HTTP_POST) {
            gw_http_error(conn, 405, "method_not_allowed", "use POST");
            return 0;
        }
        return account(conn, body, blen, IS("login"));
    }
    /* Everything else needs a token. */
    if (gw_http_authenticate(conn) != 0)
        return 0;
    if (IS("token")) {
        chat_buf_t b;
        chat_buf_init(&b, 8192);
        token_for(conn->gw, conn->user, &b);
        respond_buf(conn, 200, &b);
        chat_buf_close(&b);
        return 0;
    }
    if (IS("me"))
        return submit_or_503(conn, gw_job_new(conn, me_work, gw_api_answer));
    if (IS("presence")) {
        const char *users = NULL;
        size_t ulen = gw_http_query_param(query, qlen, "users", &users);
        return gw_notify_query(conn, users, ulen);
    }
    if (IS("conversations")) {
        if (method == HTTP_GET)
            return submit_or_503(conn, gw_job_new(conn, list_work, gw_api_answer));
        if (method == HTTP_POST) {
            if (gw_store_create_conversation(conn, body, blen) != 0) {
                gw_http_error(conn, 503, "unavailable", "busy; retry");
                return 0;
            }
            return 1;
        }
        gw_http_error(conn, 405, "method_not_allowed", "use GET or POST");
        return 0;
    }
#undef IS
    if (nseg >= 2 && segment(path, len, 0, seg, sizeof(seg)) == 0 &&
        strcmp(seg, "conversations") == 0) {
        char conv[CHAT_NAME_MAX + 1], what[32], user[CHAT_NAME_MAX + 1];
        if (segment(path, len, 1, conv, sizeof(conv)) != 0 ||
            !chat_name_valid(conv, strlen(conv))) {
            gw_http_error(conn, 404, "not_found", "no such conversation");
            return 0;
        }
        if (nseg == 2 && method == HTTP_DELETE) {
            job = gw_job_new(conn, member_change_work, member_change_done);
            if (job != NULL) {
                snprintf(job->conv, sizeof(job->conv), "%s", conv);
                job->n1 = CHAT_EV_CONV_DELETE;
            }
            return submit_or_503(conn, job);
        }
        if (nseg >= 3 && segment(path, len, 2, what, sizeof(what)) == 0) {
            if (strcmp(what, "messages") == 0 && nseg == 3 && method == HTTP_GET) {
                int64_t before = query_int(query, qlen, "before", INT64_MAX);
                int64_t limit = query_int(query, qlen, "limit", 50);
                if (before < 1 || limit < 1 || limit > 100) {
                    gw_http_error(conn, 400, "bad_request",
                                  "before must be a seq >= 1 and limit 1-100");
                    return 0;
                }
                job = gw_job_new(conn, history_work, gw_api_answer);
                if (job != NULL) {
                    snprintf(job->conv, sizeof(job->conv), "%s", conv);
                    job->n1 = before;
                    job->n2 = limit;
                }
                return submit_or_503(conn, job);
            }
            if (strcmp(what, "members") == 0 && nseg == 3 && method == HTTP_POST) {
                json_error_t jerr;
                json_t *root = json_loadb(body, blen, 0, &jerr);
                json_t *u = json_object_get(root, "user");
                int ok = json_is_string(u) &&
                         chat_name_valid(json_string_value(u), json_string_length(u));
                if (ok)
                    snprintf(user, sizeof(user), "%s", json_string_value(u));
                json_decref(root);
                if (!ok) {
                    gw_http_error(conn, 400, "bad_request", "body must be {\"user\": id}");
                    return 0;
                }
                job = gw_job_new(conn, member_change_work, member_change_done);
                if (job != NULL) {
                    snprintf(job->conv, sizeof(job->conv), "%s", conv);
                    snprintf(job->arg, sizeof(job->arg), "%s", user);
                    job->n1 = CHAT_EV_MEMBER_ADD;
                }
                return submit_or_503(conn, job);
            }
            if (strcmp(what, "members") == 0 && nseg == 4 && method == HTTP_DELETE &&
                segment(path, len, 3, user, sizeof(user)) == 0 &&
                chat_name_valid(user, strlen(user))) {
                job = gw_job_new(conn, member_change_work, member_change_done);
                if (job != NULL) {
                    snprintf(job->conv, sizeof(job->conv), "%s", conv);
                    snprintf(job->arg, sizeof(job->arg), "%s", user);
                    job->n1 = CHAT_EV_MEMBER_REMOVE;
                }
                return submit_or_503(conn, job);
            }
        }
    }
    gw_http_error(conn, 404, "not_found", "no such path");
    return 0;
}
