#include "chat-redis.h"

#include <hiredis/adapters/libuv.h>
#include <stdlib.h>
#include <string.h>

redisAsyncContext *chat_redis_async_new(uv_loop_t *loop, const char *host, int port,
                                        chat_error_t *err)
{
    redisAsyncContext *ac = redisAsyncConnect(host, port);
    if (ac == NULL) {
        chat_error_set(err, CHAT_ENOMEM, "redis: cannot allocate a context");
        return NULL;
    }
    if (ac->err) {
        chat_error_set(err, CHAT_EREDIS, "redis %s:%d: %s", host, port, ac->errstr);
        redisAsyncFree(ac);
        return NULL;
    }
    if (redisLibuvAttach(ac, loop) != REDIS_OK) {
        chat_error_set(err, CHAT_EREDIS, "redis: cannot attach to the loop");
        redisAsyncFree(ac);
        return NULL;
    }
    return ac;
}

redisContext *chat_redis_new(const char *host, int port, int timeout_ms, chat_error_t *err)
{
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    if (c == NULL) {
        chat_error_set(err, CHAT_ENOMEM, "redis: cannot allocate a context");
        return NULL;
    }
    if (c->err) {
        chat_error_set(err, CHAT_EREDIS, "redis %s:%d: %s", host, port, c->errstr);
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    return c;
}

int chat_presence_parse(const char *value, size_t len, uint64_t now_ms, char *gw, size_t size)
{
    const char *bar = memchr(value, '|', len);
    if (bar == NULL || bar == value || (size_t)(bar - value) >= size)
        return CHAT_EPARSE;
    uint64_t exp = 0;
    const char *p = bar + 1, *end = value + len;
    if (p == end)
        return CHAT_EPARSE;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9')
            return CHAT_EPARSE;
        if (exp > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
            return CHAT_EPARSE; /* past 2^64: would wrap to any expiry */
        exp = exp * 10 + (uint64_t)(*p - '0');
    }
    memcpy(gw, value, (size_t)(bar - value));
    gw[bar - value] = '\0';
    return exp > now_ms ? 0 : CHAT_EEXPIRED;
}
