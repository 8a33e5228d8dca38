#include "chat-redis.h"

#include <stdlib.h>
#include <string.h>

/* The loop glue, in place of hiredis' adapters/libuv.h. The adapter of
 * hiredis 0.14 drops poll errors: libuv reports a refused connect or a reset
 * connection as status UV_EBADF and stops the handle, the adapter returns,
 * and hiredis never learns that the connection failed, so neither the
 * connect nor the disconnect callback ever runs and a caller waiting for
 * them to reconnect waits forever. As hiredis 1.x's adapter does, an error
 * is handed to hiredis as readiness: its read or write then fails and
 * hiredis reports it through the callbacks. */
typedef struct redis_uv_s {
    redisAsyncContext *ac; /* NULL once hiredis has let go of the context */
    uv_poll_t poll;
    int events;
} redis_uv_t;

static void redis_uv_poll_cb(uv_poll_t *h, int status, int events)
{
    redis_uv_t *p = h->data;
    int ev = status != 0 ? p->events : events;
    if (p->ac != NULL && (ev & UV_READABLE))
        redisAsyncHandleRead(p->ac);
    if (p->ac != NULL && (ev & UV_WRITABLE))
        redisAsyncHandleWrite(p->ac);
}

static void redis_uv_update(redis_uv_t *p, int events)
{
    p->events = events;
    /* Started again even when unchanged: libuv stops a handle on error. */
    if (events != 0)
        uv_poll_start(&p->poll, events, redis_uv_poll_cb);
    else
        uv_poll_stop(&p->poll);
}

static void redis_uv_add_read(void *data)
{
    redis_uv_t *p = data;
    redis_uv_update(p, p->events | UV_READABLE);
}

static void redis_uv_del_read(void *data)
{
    redis_uv_t *p = data;
    redis_uv_update(p, p->events & ~UV_READABLE);
}

static void redis_uv_add_write(void *data)
{
    redis_uv_t *p = data;
    redis_uv_update(p, p->events | UV_WRITABLE);
}

static void redis_uv_del_write(void *data)
{
    redis_uv_t *p = data;
    redis_uv_update(p, p->events & ~UV_WRITABLE);
}

static void redis_uv_close_cb(uv_handle_t *h)
{
    free(h->data);
}

static void redis_uv_cleanup(void *data)
{
    redis_uv_t *p = data;
    p->ac = NULL;
    uv_close((uv_handle_t *)&p->poll, redis_uv_close_cb);
}

static int redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    redis_uv_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return REDIS_ERR;
    if (uv_poll_init(loop, &p->poll, ac->c.fd) != 0) {
        free(p);
        return REDIS_ERR;
    }
    p->poll.data = p;
    p->ac = ac;
    ac->ev.addRead = redis_uv_add_read;
    ac->ev.delRead = redis_uv_del_read;
    ac->ev.addWrite = redis_uv_add_write;
    ac->ev.delWrite = redis_uv_del_write;
    ac->ev.cleanup = redis_uv_cleanup;
    ac->ev.data = p;
    return REDIS_OK;
}

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
    if (redis_uv_attach(ac, loop) != REDIS_OK) {
        chat_error_set(err, CHAT_EREDIS, "redis: cannot attach to the loop");
        redisAsyncFree(ac);
        return NULL;
    }
    /* The end of a non-blocking connect shows as writability. hiredis 0.14
     * watches for it only once a command is queued, so a context without
     * one would never call its connect callback, not even to report a
     * refused connection; hiredis 1.x asks for it as done here. */
    ac->ev.addWrite(ac->ev.data);
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
