/* Live delivery through Redis. For one batch: every recipient is named
 * (cs_route_want), their presence is read in one pipeline of HGETALLs
 * (cs_route_lookup), each frame is appended as a line to the payload of
 * every gateway where its recipient has a live connection
 * (cs_route_deliver), and each gateway gets ONE PUBLISH on "gw.<id>"
 * (cs_route_publish). Payload lines are docs/design.md's
 *
 *   <user> <exclude-connection-or-'-'>\t<frame JSON>\n
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

/* Reads the presence of every named recipient, skipping expired and
 * malformed entries. Returns 0, or CHAT_EREDIS (not connected, or the
 * connection failed; then nobody is known to be online). */
int cs_route_lookup(cs_route_t *route);

/* Appends frame[0..len) for user to the payload of each gateway where user
 * is online, asking the gateway to skip connection exclude (NULL or "": none).
 * A user that was not named or is offline costs nothing. Returns 0,
 * CHAT_ETOOBIG or CHAT_ENOMEM. */
int cs_route_deliver(cs_route_t *route, const char *user, const char *exclude, const char *frame,
                     size_t len);

/* Publishes each gateway's payload once. Sets *gateways to how many were
 * published. Returns 0 or CHAT_EREDIS. */
int cs_route_publish(cs_route_t *route, size_t *gateways);

#endif
