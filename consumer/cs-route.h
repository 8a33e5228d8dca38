/* Live delivery through Redis. For one batch: every recipient is named
 * (cs_route_want), each frame is recorded for its recipients in order as
 * the batch is applied (cs_route_deliver), and once the batch is stored
 * their presence is read in one pipeline of HGETALLs (cs_route_lookup);
 * then each frame is appended as a line to the payload of every gateway
 * where its recipient has a live connection and each gateway gets ONE
 * PUBLISH on "gw.<id>" (cs_route_publish). Payload lines are
 * docs/design.md's
 *
 *   <user> <exclude-connection-or-'-'>\t<frame JSON>\n
 *
 * Presence is read after the write, not before: a connection that the
 * lookup misses registered after it, so after the write, and its sync
 * (which reads the store after registering) finds the event.
 *
 * The connection is synchronous (the consumer has one thread) with a short
 * timeout. While Redis is down every call fails fast with CHAT_EREDIS and a
 * reconnect is tried at most once per backoff (100 ms doubling to 5 s):
 * routing is best effort, clients catch up through sync. */
#ifndef CS_ROUTE_H
#define CS_ROUTE_H

#include <stddef.h>

#include "chat-error.h"

typedef struct cs_route_s cs_route_t;

/* Returns the router (not yet connected), or NULL with err set. host is
 * copied. */
cs_route_t *cs_route_new(const char *host, int port, chat_error_t *err);

/* Frees the router. NULL is a no-op. */
void cs_route_destroy(cs_route_t *route);

/* Forgets the previous batch's recipients and payloads (memory is kept). */
void cs_route_begin(cs_route_t *route);

/* Names a recipient of this batch (copied; repeats are free). Returns 0 or
 * CHAT_ENOMEM. */
int cs_route_want(cs_route_t *route, const char *user);

/* Records frames[off..off + len) (the frames later given to
 * cs_route_publish) for user, asking the gateway to skip connection exclude
 * (NULL or "": none; kept until publish, not copied). A user that was not
 * named costs nothing. Returns 0, CHAT_ETOOBIG or CHAT_ENOMEM. */
int cs_route_deliver(cs_route_t *route, const char *user, const char *exclude, size_t off,
                     size_t len);

/* Reads the presence of every named recipient, skipping expired and
 * malformed entries. Returns 0, or CHAT_EREDIS (not connected, or the
 * connection failed; then nobody is known to be online). */
int cs_route_lookup(cs_route_t *route);

/* Builds each gateway's payload from the recorded frames (in frames) and
 * the presence read by cs_route_lookup, and publishes each once. Sets
 * *gateways to how many were published. Returns 0, CHAT_ETOOBIG or
 * CHAT_ENOMEM (nothing published), or CHAT_EREDIS. */
int cs_route_publish(cs_route_t *route, const char *frames, size_t *gateways);

#endif
