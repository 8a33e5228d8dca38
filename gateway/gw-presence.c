/* Presence and routing through Redis. Each WebSocket connection is a field
 * of its user's presence hash, valued "<gateway>|<expiry ms>" (see
 * docs/design.md); a timer rewrites every field before it lapses, one
 * pipelined command per user. A second connection subscribes to this
 * gateway's channel and writes what the consumers route to the sockets. */
#include <hiredis/adapters/libuv.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat-error.h"
#include "chat-log.h"
#include "chat-redis.h"
#include "gw-private.h"
#include "gw-seen.h"

static void connect_all(gw_t *gw);

static void send_hello(gw_conn_t *conn)
{
    chat_buf_t *b = &conn->gw->scratch;
    if (conn->hello)
        return;
    conn->hello = 1;
    chat_buf_reset(b);
    chat_buf_printf(b, "{\"t\":\"hello\",\"user\":\"%s\",\"conn\":\"%s\",\"gw\":\"%s\"}",
                    conn->user, conn->id, conn->gw->id);
    gw_conn_send_text(conn, b->data, b->len);
}

/* Registers a connection and counts the user's live ones in one step, so
 * that the per-user cap holds across gateways: fields whose expiry passed
 * are dropped on the way. Returns the live count including this one, or -1
 * when the cap is reached (nothing written). */
static const char register_script[] =
    "local now=tonumber(ARGV[3]) local cap=tonumber(ARGV[4]) "
    "local v=redis.call('HGETALL',KEYS[1]) local live=0 "
    "for i=2,#v,2 do local e=tonumber(string.match(v[i],'|(%d+)$')) "
    "if e and e>now then live=live+1 else redis.call('HDEL',KEYS[1],v[i-1]) end end "
    "if live>=cap then return -1 end "
    "redis.call('HSET',KEYS[1],ARGV[1],ARGV[2]) redis.call('PEXPIRE',KEYS[1],ARGV[5]) "
    "return live+1";

/* Removes a connection; when it was the user's last live one, records when
 * the user was last seen. Returns the live connections left. */
static const char unregister_script[] =
    "redis.call('HDEL',KEYS[1],ARGV[1]) local now=tonumber(ARGV[2]) "
    "local v=redis.call('HGETALL',KEYS[1]) local live=0 "
    "for i=2,#v,2 do local e=tonumber(string.match(v[i],'|(%d+)$')) "
    "if e and e>now then live=live+1 end end "
    "if live==0 then redis.call('SET',KEYS[2],ARGV[2],'EX',2592000) end "
    "return live";

static void registered_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    gw_t *gw = ac->data;
    redisReply *reply = r;
    gw_conn_t *conn = gw_conn_find(gw, (uint64_t)(uintptr_t)privdata);
    if (conn == NULL)
        return;
    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        CHAT_WARN("conn %s user %s: presence not registered; live delivery waits for sync",
                  conn->id, conn->user);
    } else if (reply->integer < 0) {
        CHAT_INFO("conn %s user %s: connection cap reached", conn->id, conn->user);
        gw_conn_send_error(conn, "too_many_connections", "this user has too many connections open",
                           NULL, 1);
        gw_conn_ws_close(conn, 1008, "too many connections");
        return;
    } else {
        conn->presence = 1;
        if (reply->integer == 1)
            gw_notify_presence(gw, conn->user, 1);
    }
    send_hello(conn);
}

static void field_value(gw_t *gw, char *buf, size_t size)
{
    uint64_t exp = chat_now_ms() + (uint64_t)gw->cfg->presence_ttl_s * 1000;
    snprintf(buf, size, "%s|%llu", gw->id, (unsigned long long)exp);
}

void gw_presence_register(gw_conn_t *conn)
{
    gw_t *gw = conn->gw;
    char value[CHAT_NAME_MAX + 32], key[CHAT_NAME_MAX + 16], now[24], cap[24], ttl[24];
    if (gw->redis == NULL) {
        CHAT_WARN("conn %s: redis is down; no presence until it is back", conn->id);
        send_hello(conn);
        return;
    }
    field_value(gw, value, sizeof(value));
    snprintf(key, sizeof(key), CHAT_PRESENCE_PREFIX "%s", conn->user);
    snprintf(now, sizeof(now), "%llu", (unsigned long long)chat_now_ms());
    snprintf(cap, sizeof(cap), "%lld", (long long)gw->cfg->user_conn_max);
    snprintf(ttl, sizeof(ttl), "%lld", (long long)gw->cfg->presence_ttl_s * 1000);
    /* Presence before anything is read from the store: a message routed
     * from now on reaches this socket, and one stored before is in sync. */
    redisAsyncCommand(gw->redis, registered_cb, (void *)(uintptr_t)conn->serial,
                      "EVAL %s 1 %s %s %s %s %s %s", register_script, key, conn->id, value, now,
                      cap, ttl);
}

typedef struct gone_s {
    gw_t *gw;
    char user[CHAT_NAME_MAX + 1];
} gone_t;

static void unregistered_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    gone_t *g = privdata;
    redisReply *reply = r;
    (void)ac;
    if (reply != NULL && reply->type == REDIS_REPLY_INTEGER && reply->integer == 0 &&
        !g->gw->shutting_down)
        gw_notify_presence(g->gw, g->user, 0);
    free(g);
}

void gw_presence_unregister(gw_t *gw, const char *user, const char *conn_id)
{
    char key[CHAT_NAME_MAX + 16], seen[CHAT_NAME_MAX + 16], now[24];
    if (gw->redis == NULL)
        return;
    gone_t *g = malloc(sizeof(*g));
    if (g == NULL)
        return;
    g->gw = gw;
    snprintf(g->user, sizeof(g->user), "%s", user);
    snprintf(key, sizeof(key), CHAT_PRESENCE_PREFIX "%s", user);
    snprintf(seen, sizeof(seen), "lastseen:%s", user);
    snprintf(now, sizeof(now), "%llu", (unsigned long long)chat_now_ms());
    if (redisAsyncCommand(gw->redis, unregistered_cb, g, "EVAL %s 2 %s %s %s %s", unregister_script,
                          key, seen, conn_id, now) != REDIS_OK)
        free(g);
}

/* Rewrites every local presence field with a fresh expiry: one HSET per
 * user carrying all that user's connections, then one PEXPIRE. */
static void refresh_cb(uv_timer_t *t)
{
    gw_t *gw = t->data;
    char value[CHAT_NAME_MAX + 32], key[CHAT_NAME_MAX + 16], ttl[24];
    const char *argv[2 + 2 * 64];
    size_t argvlen[2 + 2 * 64];
    if (gw->redis == NULL)
        return;
    field_value(gw, value, sizeof(value));
    snprintf(ttl, sizeof(ttl), "%lld", (long long)gw->cfg->presence_ttl_s * 1000);
    for (size_t i = 0; i < gw->users.cap; i++) {
        gw_map_entry_t *e = &gw->users.e[i];
        if (e->value == NULL)
            continue;
        int n = snprintf(key, sizeof(key), CHAT_PRESENCE_PREFIX "%s", e->key);
        int argc = 2;
        argv[0] = "HSET";
        argvlen[0] = 4;
        argv[1] = key;
        argvlen[1] = (size_t)n;
        for (gw_conn_t *c = e->value; c != NULL && argc < 2 + 2 * 64; c = c->user_next) {
            if (!c->presence)
                continue;
            argv[argc] = c->id;
            argvlen[argc++] = strlen(c->id);
            argv[argc] = value;
            argvlen[argc++] = strlen(value);
        }
        if (argc == 2)
            continue;
        redisAsyncCommandArgv(gw->redis, NULL, NULL, argc, argv, argvlen);
        redisAsyncCommand(gw->redis, NULL, NULL, "PEXPIRE %s %s", key, ttl);
    }
}

/* Writes each routed line "<user> <exclude>\t<frame>\n" to the user's local
 * connections but the excluded one, except a repeat (gw-seen.h). */
static void deliver(gw_t *gw, const char *p, size_t len)
{
    const char *end = p + len;
    char user[CHAT_NAME_MAX + 1], excl[CHAT_NAME_MAX + 1];
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            nl = end;
        const char *sp = memchr(p, ' ', (size_t)(nl - p));
        const char *tab = sp ? memchr(sp, '\t', (size_t)(nl - sp)) : NULL;
        if (sp == NULL || tab == NULL || (size_t)(sp - p) > CHAT_NAME_MAX ||
            (size_t)(tab - sp - 1) > CHAT_NAME_MAX) {
            CHAT_WARN("gateway %s: malformed routed line dropped", gw->id);
            p = nl + 1;
            continue;
        }
        memcpy(user, p, (size_t)(sp - p));
        user[sp - p] = '\0';
        memcpy(excl, sp + 1, (size_t)(tab - sp - 1));
        excl[tab - sp - 1] = '\0';
        gw_map_entry_t *e = gw_map_get(&gw->users, user);
        uint64_t conv = 0;
        int64_t seq = 0;
        int sequenced =
            e != NULL && gw_seen_frame_seq(tab + 1, (size_t)(nl - tab - 1), &conv, &seq) == 0;
        for (gw_conn_t *c = e ? e->value : NULL, *next; c != NULL; c = next) {
            next = c->user_next; /* sending may close c */
            if (strcmp(c->id, excl) == 0)
                continue;
            if (sequenced && gw_seen_repeat(&c->seen, conv, seq)) {
                gw->metrics.routed_repeats++;
                continue;
            }
            gw->metrics.routed_frames++;
            gw_conn_send_text(c, tab + 1, (size_t)(nl - tab - 1));
        }
        p = nl + 1;
    }
}

static void message_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    gw_t *gw = ac->data;
    redisReply *reply = r;
    (void)privdata;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3)
        return;
    if (reply->element[0]->type == REDIS_REPLY_STRING &&
        strcmp(reply->element[0]->str, "message") == 0 &&
        reply->element[2]->type == REDIS_REPLY_STRING)
        deliver(gw, reply->element[2]->str, reply->element[2]->len);
}

static void retry_cb(uv_timer_t *t)
{
    connect_all(t->data);
}

static void disconnect_cb(const redisAsyncContext *ac, int status)
{
    gw_t *gw = ac->data;
    (void)status;
    if (ac == gw->redis)
        gw->redis = NULL;
    if (ac == gw->redis_sub)
        gw->redis_sub = NULL;
    if (!gw->shutting_down) {
        CHAT_WARN("gateway %s: redis connection lost; reconnecting", gw->id);
        uv_timer_start(&gw->redis_retry, retry_cb, 1000, 0);
    }
}

static void connect_cb(const redisAsyncContext *ac, int status)
{
    gw_t *gw = ac->data;
    if (status != REDIS_OK) {
        /* hiredis frees the context after a failed connect. */
        if (ac == gw->redis)
            gw->redis = NULL;
        if (ac == gw->redis_sub)
            gw->redis_sub = NULL;
        CHAT_WARN("gateway %s: redis connect failed: %s", gw->id, ac->errstr);
        if (!gw->shutting_down)
            uv_timer_start(&gw->redis_retry, retry_cb, 1000, 0);
        return;
    }
    if (ac == gw->redis) {
        /* Re-announce every connection held here. */
        refresh_cb(&gw->presence_timer);
    }
}

static redisAsyncContext *connect_one(gw_t *gw)
{
    chat_error_t err;
    redisAsyncContext *ac =
        chat_redis_async_new(gw->loop, gw->cfg->redis_host, (int)gw->cfg->redis_port, &err);
    if (ac == NULL) {
        CHAT_WARN("gateway %s: %s", gw->id, err.message);
        return NULL;
    }
    ac->data = gw;
    redisAsyncSetConnectCallback(ac, connect_cb);
    redisAsyncSetDisconnectCallback(ac, disconnect_cb);
    return ac;
}

static void connect_all(gw_t *gw)
{
    if (gw->redis == NULL)
        gw->redis = connect_one(gw);
    if (gw->redis_sub == NULL) {
        gw->redis_sub = connect_one(gw);
        if (gw->redis_sub != NULL)
            redisAsyncCommand(gw->redis_sub, message_cb, NULL, "SUBSCRIBE %s", gw->channel);
    }
    if ((gw->redis == NULL || gw->redis_sub == NULL) && !gw->shutting_down)
        uv_timer_start(&gw->redis_retry, retry_cb, 1000, 0);
}

int gw_presence_start(gw_t *gw, chat_error_t *err)
{
    (void)err;
    uv_timer_init(gw->loop, &gw->redis_retry);
    gw->redis_retry.data = gw;
    uv_timer_init(gw->loop, &gw->presence_timer);
    gw->presence_timer.data = gw;
    connect_all(gw);
    uint64_t every = (uint64_t)gw->cfg->presence_ttl_s * 1000 / 3;
    uv_timer_start(&gw->presence_timer, refresh_cb, every, every);
    return 0;
}

void gw_presence_stop(gw_t *gw)
{
    gw->shutting_down = 1;
    uv_timer_stop(&gw->redis_retry);
    uv_timer_stop(&gw->presence_timer);
    uv_close((uv_handle_t *)&gw->redis_retry, NULL);
    uv_close((uv_handle_t *)&gw->presence_timer, NULL);
    /* Free, not disconnect: a disconnect waits for replies (forever, on the
     * subscribed context) that a stopping loop will not read. Pending
     * callbacks run now with no reply. */
    redisAsyncContext *sub = gw->redis_sub, *cmd = gw->redis;
    gw->redis_sub = gw->redis = NULL;
    if (sub != NULL)
        redisAsyncFree(sub);
    if (cmd != NULL)
        redisAsyncFree(cmd);
}
