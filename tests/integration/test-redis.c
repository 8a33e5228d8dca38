/* Redis, for real (CHAT_REDIS_HOST, CHAT_REDIS_PORT): presence hashes and
 * the gateway channels, through hiredis' async API on a libuv loop. Each test
 * counts its callbacks, asserts on the counts after the loop ran, and closes
 * the loop clean. Keys and channels are unique per run. */
#include "chat-test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat-id.h"
#include "chat-redis.h"

/* A loop iteration returns at least every GUARD_MS; MAX_ITER bounds a wait. */
#define GUARD_MS 100
#define MAX_ITER 300

typedef struct conn_state_s {
    int connects;
    int connect_status;
    int disconnects;
} conn_state_t;

static void connect_cb(const redisAsyncContext *ac, int status)
{
    conn_state_t *cs = ac->data;
    cs->connects++;
    cs->connect_status = status;
}

static void disconnect_cb(const redisAsyncContext *ac, int status)
{
    (void)status;
    conn_state_t *cs = ac->data;
    cs->disconnects++;
}

/* Connects to the stack's Redis with both callbacks set; fails the test if
 * the context cannot even be created. */
static redisAsyncContext *connect_async(uv_loop_t *loop, conn_state_t *cs)
{
    chat_error_t err = {0};
    redisAsyncContext *ac =
        chat_redis_async_new(loop, chat_test_redis_host(), chat_test_redis_port(), &err);
    if (ac == NULL)
        fail_msg("redis %s:%d: %s (is the stack up? scripts/stack.sh status)",
                 chat_test_redis_host(), chat_test_redis_port(), err.message);
    ac->data = cs;
    redisAsyncSetConnectCallback(ac, connect_cb);
    redisAsyncSetDisconnectCallback(ac, disconnect_cb);
    return ac;
}

static int disconnected(void *data)
{
    return ((conn_state_t *)data)->disconnects > 0;
}

/* What a command's callback saw, copied out of the reply hiredis frees. */
typedef struct reply_s {
    int calls;
    int type;
    long long integer;
    char str[128];
    size_t elements;
    /* HGETALL: results of chat_presence_parse per field, and gateway ids. */
    int presence_rc[4];
    char presence_field[4][32];
    char presence_gw[4][32];
} reply_t;

typedef struct presence_state_s {
    reply_t replies[5];
    int done;
} presence_state_t;

static uint64_t hgetall_now_ms;

static void reply_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    redisReply *reply = r;
    reply_t *out = privdata;
    out->calls++;
    if (reply == NULL) {
        out->type = -1;
        return;
    }
    out->type = reply->type;
    out->integer = reply->integer;
    if (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS ||
        reply->type == REDIS_REPLY_ERROR)
        snprintf(out->str, sizeof(out->str), "%.*s", (int)reply->len, reply->str);
    out->elements = reply->elements;
    for (size_t i = 0; reply->type == REDIS_REPLY_ARRAY && i + 1 < reply->elements && i / 2 < 4;
         i += 2) {
        redisReply *f = reply->element[i], *v = reply->element[i + 1];
        snprintf(out->presence_field[i / 2], sizeof(out->presence_field[0]), "%.*s", (int)f->len,
                 f->str);
        out->presence_rc[i / 2] = chat_presence_parse(
            v->str, v->len, hgetall_now_ms, out->presence_gw[i / 2], sizeof(out->presence_gw[0]));
    }
}

static int presence_done(void *data)
{
    presence_state_t *ps = data;
    return ps->replies[4].calls > 0;
}

static void test_presence_hash_round_trip(void **state)
{
    (void)state;
    uv_loop_t loop;
    conn_state_t cs = {0};
    presence_state_t ps = {0};
    char user[64], key[80], alive[64], lapsed[64];
    uint64_t now = chat_now_ms();

    assert_int_equal(uv_loop_init(&loop), 0);
    chat_test_unique(user, sizeof(user), "it_user_");
    snprintf(key, sizeof(key), CHAT_PRESENCE_PREFIX "%s", user);
    snprintf(alive, sizeof(alive), "gw-it|%llu", (unsigned long long)(now + 60000));
    snprintf(lapsed, sizeof(lapsed), "gw-dead|%llu", (unsigned long long)(now - 1000));
    hgetall_now_ms = now;

    redisAsyncContext *ac = connect_async(&loop, &cs);
    /* Commands are queued before the connection is up and sent in order. */
    assert_int_equal(
        redisAsyncCommand(ac, reply_cb, &ps.replies[0], "HSET %s %s %s", key, "conn-1", alive),
        REDIS_OK);
    assert_int_equal(
        redisAsyncCommand(ac, reply_cb, &ps.replies[1], "HSET %s %s %s", key, "conn-0", lapsed),
        REDIS_OK);
    assert_int_equal(redisAsyncCommand(ac, reply_cb, &ps.replies[2], "EXPIRE %s %d", key, 60),
                     REDIS_OK);
    assert_int_equal(redisAsyncCommand(ac, reply_cb, &ps.replies[3], "HGETALL %s", key), REDIS_OK);
    assert_int_equal(redisAsyncCommand(ac, reply_cb, &ps.replies[4], "DEL %s", key), REDIS_OK);
    assert_true(chat_test_run_until(&loop, presence_done, &ps, MAX_ITER, GUARD_MS));

    assert_int_equal(cs.connects, 1);
    assert_int_equal(cs.connect_status, REDIS_OK);
    for (int i = 0; i < 5; i++)
        assert_int_equal(ps.replies[i].calls, 1);
    assert_int_equal(ps.replies[0].type, REDIS_REPLY_INTEGER);
    assert_int_equal(ps.replies[0].integer, 1);
    assert_int_equal(ps.replies[1].integer, 1);
    assert_int_equal(ps.replies[2].type, REDIS_REPLY_INTEGER);
    assert_int_equal(ps.replies[2].integer, 1);

    const reply_t *all = &ps.replies[3];
    assert_int_equal(all->type, REDIS_REPLY_ARRAY);
    assert_int_equal(all->elements, 4);
    int seen = 0;
    for (int i = 0; i < 2; i++) {
        if (strcmp(all->presence_field[i], "conn-1") == 0) {
            assert_chat_ok(all->presence_rc[i]);
            assert_string_equal(all->presence_gw[i], "gw-it");
            seen |= 1;
        } else if (strcmp(all->presence_field[i], "conn-0") == 0) {
            assert_chat_err(all->presence_rc[i], CHAT_EEXPIRED);
            assert_string_equal(all->presence_gw[i], "gw-dead");
            seen |= 2;
        }
    }
    assert_int_equal(seen, 3);
    assert_int_equal(ps.replies[4].integer, 1);

    redisAsyncDisconnect(ac);
    assert_true(chat_test_run_until(&loop, disconnected, &cs, MAX_ITER, GUARD_MS));
    assert_int_equal(cs.disconnects, 1);
    assert_int_equal(chat_test_loop_close(&loop, 10), 0);
}

typedef struct pubsub_state_s {
    redisAsyncContext *pub;
    const char *channel;
    const char *payload;
    size_t payload_len;
    int subscribed;  /* subscribe confirmations */
    int messages;    /* messages on our channel */
    int nil_replies; /* the subscription's callback when the context goes */
    int publish_replies;
    long long receivers;
    char got[256];
    size_t got_len;
} pubsub_state_t;

static void publish_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    redisReply *reply = r;
    pubsub_state_t *ps = privdata;
    ps->publish_replies++;
    ps->receivers = reply != NULL && reply->type == REDIS_REPLY_INTEGER ? reply->integer : -1;
}

static void subscribe_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    redisReply *reply = r;
    pubsub_state_t *ps = privdata;
    if (reply == NULL) {
        ps->nil_replies++;
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3)
        return;
    const redisReply *kind = reply->element[0], *data = reply->element[2];
    if (strcmp(kind->str, "subscribe") == 0) {
        /* Publish only once the subscription is in place, or the message
         * could be sent to nobody. */
        ps->subscribed++;
        redisAsyncCommand(ps->pub, publish_cb, ps, "PUBLISH %s %b", ps->channel, ps->payload,
                          ps->payload_len);
    } else if (strcmp(kind->str, "message") == 0 && data->len < sizeof(ps->got)) {
        ps->messages++;
        memcpy(ps->got, data->str, data->len);
        ps->got_len = data->len;
    }
}

static int message_arrived(void *data)
{
    pubsub_state_t *ps = data;
    return ps->messages > 0 && ps->publish_replies > 0;
}

static int both_disconnected(void *data)
{
    conn_state_t *cs = data;
    return cs[0].disconnects > 0 && cs[1].disconnects > 0;
}

static void test_publish_subscribe_round_trip(void **state)
{
    (void)state;
    uv_loop_t loop;
    conn_state_t cs[2] = {{0}, {0}};
    pubsub_state_t ps = {0};
    char channel[64];
    /* One line of the consumer-to-gateway format (docs/design.md). */
    static const char payload[] = "alice -\t{\"t\":\"message\",\"body\":\"h\\u00e9\"}\n";

    assert_int_equal(uv_loop_init(&loop), 0);
    chat_test_unique(channel, sizeof(channel), CHAT_GATEWAY_CHANNEL_PREFIX "it_");
    ps.channel = channel;
    ps.payload = payload;
    ps.payload_len = sizeof(payload) - 1;
    redisAsyncContext *sub = connect_async(&loop, &cs[0]);
    ps.pub = connect_async(&loop, &cs[1]);
    assert_int_equal(redisAsyncCommand(sub, subscribe_cb, &ps, "SUBSCRIBE %s", channel), REDIS_OK);
    assert_true(chat_test_run_until(&loop, message_arrived, &ps, MAX_ITER, GUARD_MS));

    assert_int_equal(cs[0].connects, 1);
    assert_int_equal(cs[1].connects, 1);
    assert_int_equal(ps.subscribed, 1);
    assert_int_equal(ps.publish_replies, 1);
    assert_int_equal(ps.receivers, 1);
    assert_int_equal(ps.messages, 1);
    assert_int_equal(ps.got_len, ps.payload_len);
    assert_memory_equal(ps.got, payload, ps.payload_len);

    redisAsyncDisconnect(sub);
    redisAsyncDisconnect(ps.pub);
    assert_true(chat_test_run_until(&loop, both_disconnected, cs, MAX_ITER, GUARD_MS));
    assert_int_equal(cs[0].disconnects, 1);
    assert_int_equal(cs[1].disconnects, 1);
    assert_int_equal(ps.messages, 1);
    assert_int_equal(chat_test_loop_close(&loop, 10), 0);
}

static int connect_reported(void *data)
{
    return ((conn_state_t *)data)->connects > 0;
}

static void test_refused_connection_is_reported_by_callback(void **state)
{
    (void)state;
    uv_loop_t loop;
    conn_state_t cs = {0};
    chat_error_t err = {0};
    assert_int_equal(uv_loop_init(&loop), 0);
    /* Port 1 on loopback refuses. hiredis may notice at once (NULL here) or
     * report it through the connect callback; either is a clean failure. */
    redisAsyncContext *ac = chat_redis_async_new(&loop, "127.0.0.1", 1, &err);
    if (ac == NULL) {
        assert_int_equal(err.code, CHAT_EREDIS);
    } else {
        ac->data = &cs;
        redisAsyncSetConnectCallback(ac, connect_cb);
        redisAsyncSetDisconnectCallback(ac, disconnect_cb);
        assert_true(chat_test_run_until(&loop, connect_reported, &cs, MAX_ITER, GUARD_MS));
        assert_int_equal(cs.connects, 1);
        assert_int_equal(cs.connect_status, REDIS_ERR);
        assert_int_equal(cs.disconnects, 0);
    }
    assert_int_equal(chat_test_loop_close(&loop, 10), 0);
}

static void test_connect_callback_runs_without_a_command(void **state)
{
    (void)state;
    /* A gateway learns that Redis is back from this callback alone. */
    uv_loop_t loop;
    conn_state_t cs = {0};
    assert_int_equal(uv_loop_init(&loop), 0);
    redisAsyncContext *ac = connect_async(&loop, &cs);
    assert_true(chat_test_run_until(&loop, connect_reported, &cs, MAX_ITER, GUARD_MS));
    assert_int_equal(cs.connects, 1);
    assert_int_equal(cs.connect_status, REDIS_OK);
    redisAsyncDisconnect(ac);
    assert_true(chat_test_run_until(&loop, disconnected, &cs, MAX_ITER, GUARD_MS));
    assert_int_equal(cs.disconnects, 1);
    assert_int_equal(chat_test_loop_close(&loop, 10), 0);
}

typedef struct kill_state_s {
    redisAsyncContext *killer;
    reply_t id;
    reply_t kill;
} kill_state_t;

static void client_id_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    kill_state_t *ks = privdata;
    reply_cb(ac, r, &ks->id);
    if (ks->id.type == REDIS_REPLY_INTEGER)
        redisAsyncCommand(ks->killer, reply_cb, &ks->kill, "CLIENT KILL ID %lld", ks->id.integer);
}

static int victim_gone_and_killed(void *data)
{
    conn_state_t *cs = data;
    return cs[0].disconnects > 0;
}

static void test_server_closing_connection_calls_disconnect(void **state)
{
    (void)state;
    uv_loop_t loop;
    conn_state_t cs[2] = {{0}, {0}};
    kill_state_t ks = {0};
    assert_int_equal(uv_loop_init(&loop), 0);
    redisAsyncContext *victim = connect_async(&loop, &cs[0]);
    ks.killer = connect_async(&loop, &cs[1]);
    assert_int_equal(redisAsyncCommand(victim, client_id_cb, &ks, "CLIENT ID"), REDIS_OK);
    assert_true(chat_test_run_until(&loop, victim_gone_and_killed, cs, MAX_ITER, GUARD_MS));
    assert_int_equal(ks.id.calls, 1);
    assert_int_equal(ks.id.type, REDIS_REPLY_INTEGER);
    assert_int_equal(cs[0].disconnects, 1);
    redisAsyncDisconnect(ks.killer);
    assert_true(chat_test_run_until(&loop, disconnected, &cs[1], MAX_ITER, GUARD_MS));
    assert_int_equal(ks.kill.calls, 1);
    assert_int_equal(ks.kill.integer, 1);
    assert_int_equal(chat_test_loop_close(&loop, 10), 0);
}

static void test_blocking_connection_pings(void **state)
{
    (void)state;
    chat_error_t err = {0};
    redisContext *c = chat_redis_new(chat_test_redis_host(), chat_test_redis_port(), 2000, &err);
    if (c == NULL)
        fail_msg("redis: %s", err.message);
    redisReply *reply = redisCommand(c, "PING");
    assert_non_null(reply);
    assert_int_equal(reply->type, REDIS_REPLY_STATUS);
    assert_string_equal(reply->str, "PONG");
    freeReplyObject(reply);
    redisFree(c);
}

static void test_blocking_connection_refused(void **state)
{
    (void)state;
    chat_error_t err = {0};
    assert_null(chat_redis_new("127.0.0.1", 1, 500, &err));
    assert_int_equal(err.code, CHAT_EREDIS);
    assert_non_null(strstr(err.message, "127.0.0.1:1"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_presence_hash_round_trip),
        cmocka_unit_test(test_publish_subscribe_round_trip),
        cmocka_unit_test(test_refused_connection_is_reported_by_callback),
        cmocka_unit_test(test_connect_callback_runs_without_a_command),
        cmocka_unit_test(test_server_closing_connection_calls_disconnect),
        cmocka_unit_test(test_blocking_connection_pings),
        cmocka_unit_test(test_blocking_connection_refused),
    };
    return cmocka_run_group_tests_name("redis", tests, NULL, NULL);
}
