/* Thin helpers over hiredis: an asynchronous connection served by a libuv
 * loop (hiredis' libuv adapter), and a blocking one for worker threads that
 * pipeline their commands. Presence lives in Redis as one hash per user:
 *
 *   presence:<user>   field <connection id>   value "<gateway id>|<expiry ms>"
 *
 * The key's own TTL is refreshed with every heartbeat batch; a field whose
 * expiry has passed belongs to a dead gateway and is ignored by readers. */
#ifndef CHAT_REDIS_H
#define CHAT_REDIS_H

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdint.h>
#include <uv.h>

#include "chat-error.h"

#define CHAT_PRESENCE_PREFIX        "presence:"
#define CHAT_GATEWAY_CHANNEL_PREFIX "gw."

/* Connects asynchronously and attaches to loop. The connection reports
 * failures through the callbacks hiredis offers (redisAsyncSetConnectCallback
 * and redisAsyncSetDisconnectCallback), which the caller sets. Returns the
 * context or NULL with err set. */
redisAsyncContext *chat_redis_async_new(uv_loop_t *loop, const char *host, int port,
                                        chat_error_t *err);

/* Connects with a timeout; the returned context blocks. NULL with err set. */
redisContext *chat_redis_new(const char *host, int port, int timeout_ms, chat_error_t *err);

/* Parses a presence value "<gateway>|<expiry ms>". Copies the gateway id into
 * gw (size bytes). Returns 0 if the entry is alive at now_ms, CHAT_EEXPIRED if
 * it has lapsed, CHAT_EPARSE if it is malformed. */
int chat_presence_parse(const char *value, size_t len, uint64_t now_ms, char *gw, size_t size);

#endif
