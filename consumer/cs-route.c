#include "cs-route.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat-buf.h"
#include "chat-id.h"
#include "chat-log.h"
#include "chat-redis.h"
#include "cs-map.h"

#define USER_GW_MAX     32 /* distinct gateways one user is seen on */
#define USERS_PER_CHUNK 256
#define PAYLOAD_MAX     (64u << 20) /* far above a batch; a runaway guard */
#define SENDS_MAX       (1u << 20)  /* deliveries recorded per batch: likewise */
#define TIMEOUT_MS      1000
#define BACKOFF_MIN_MS  100
#define BACKOFF_MAX_MS  5000

typedef struct user_s {
    char name[CHAT_NAME_MAX + 1];
    uint16_t n_gw;
    uint16_t gw[USER_GW_MAX]; /* indexes into route->gws */
} user_t;

typedef struct gw_s {
    char id[CHAT_NAME_MAX + 1];
    chat_buf_t payload;
} gw_t;

/* A frame for a user, recorded in order until the batch is published. */
typedef struct send_s {
    const user_t *u;
    const char *exclude; /* "-" for none; the caller's, valid until publish */
    size_t off, len;     /* in the frames given to cs_route_publish */
} send_t;

struct cs_route_s {
    char host[256];
    int port;
    redisContext *c;
    uint64_t next_try_ms;
    uint64_t backoff_ms;
    int down_logged;

    /* Users live in fixed chunks that never move, so map keys (their names)
     * stay valid as the batch grows. */
    user_t **chunks;
    size_t n_chunks;
    size_t n_users;
    cs_map_t *users;

    gw_t *gws; /* a handful per deployment: a linear search is fine */
    size_t n_gws, gws_cap;

    send_t *sends;
    size_t n_sends, sends_cap;
};

cs_route_t *cs_route_new(const char *host, int port, chat_error_t *err)
{
    cs_route_t *route = calloc(1, sizeof(*route));
    if (route == NULL || (route->users = cs_map_new(1024)) == NULL) {
        free(route);
        chat_error_set(err, CHAT_ENOMEM, "route: out of memory");
        return NULL;
    }
    snprintf(route->host, sizeof(route->host), "%s", host);
    route->port = port;
    route->backoff_ms = BACKOFF_MIN_MS;
    return route;
}

void cs_route_destroy(cs_route_t *route)
{
    if (route == NULL)
        return;
    if (route->c != NULL)
        redisFree(route->c);
    for (size_t i = 0; i < route->n_chunks; i++)
        free(route->chunks[i]);
    free(route->chunks);
    for (size_t i = 0; i < route->gws_cap; i++)
        chat_buf_close(&route->gws[i].payload);
    free(route->gws);
    free(route->sends);
    cs_map_destroy(route->users);
    free(route);
}

void cs_route_begin(cs_route_t *route)
{
    cs_map_clear(route->users);
    route->n_users = 0;
    for (size_t i = 0; i < route->n_gws; i++)
        chat_buf_reset(&route->gws[i].payload);
    route->n_gws = 0;
    route->n_sends = 0;
}

int cs_route_want(cs_route_t *route, const char *user)
{
    if (cs_map_get(route->users, user) != NULL)
        return 0;
    size_t chunk = route->n_users / USERS_PER_CHUNK;
    if (chunk == route->n_chunks) {
        user_t **chunks = realloc(route->chunks, (chunk + 1) * sizeof(*chunks));
        if (chunks == NULL)
            return CHAT_ENOMEM;
        route->chunks = chunks;
        if ((chunks[chunk] = malloc(USERS_PER_CHUNK * sizeof(user_t))) == NULL)
            return CHAT_ENOMEM;
        route->n_chunks++;
    }
    user_t *u = &route->chunks[chunk][route->n_users % USERS_PER_CHUNK];
    snprintf(u->name, sizeof(u->name), "%s", user);
    u->n_gw = 0;
    if (cs_map_put(route->users, u->name, u) != 0)
        return CHAT_ENOMEM;
    route->n_users++;
    return 0;
}

static void disconnect(cs_route_t *route, const char *why)
{
    CHAT_WARN("redis %s:%d: %s; routing paused, clients catch up through sync", route->host,
              route->port, why);
    redisFree(route->c);
    route->c = NULL;
    route->down_logged = 1;
    route->next_try_ms = chat_now_ms() + route->backoff_ms;
}

/* Returns 0 with a live connection, or CHAT_EREDIS without waiting longer
 * than one connect timeout, and only once per backoff. */
static int ensure_connected(cs_route_t *route)
{
    chat_error_t err;
    if (route->c != NULL)
        return 0;
    uint64_t now = chat_now_ms();
    if (now < route->next_try_ms)
        return CHAT_EREDIS;
    route->c = chat_redis_new(route->host, route->port, TIMEOUT_MS, &err);
    if (route->c == NULL) {
        if (!route->down_logged)
            CHAT_WARN("%s; retrying with backoff", err.message);
        route->down_logged = 1;
        route->backoff_ms =
            route->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : route->backoff_ms * 2;
        route->next_try_ms = now + route->backoff_ms;
        return CHAT_EREDIS;
    }
    CHAT_INFO("redis %s:%d: connected", route->host, route->port);
    route->down_logged = 0;
    route->backoff_ms = BACKOFF_MIN_MS;
    return 0;
}

/* Returns the index of gateway id, adding it; or -1 when out of memory. */
static int gateway_index(cs_route_t *route, const char *id)
{
    for (size_t i = 0; i < route->n_gws; i++) {
        if (strcmp(route->gws[i].id, id) == 0)
            return (int)i;
    }
    if (route->n_gws >= UINT16_MAX)
        return -1;
    if (route->n_gws == route->gws_cap) {
        size_t cap = route->gws_cap ? route->gws_cap * 2 : 8;
        gw_t *gws = realloc(route->gws, cap * sizeof(*gws));
        if (gws == NULL)
            return -1;
        for (size_t i = route->gws_cap; i < cap; i++)
            chat_buf_init(&gws[i].payload, PAYLOAD_MAX);
        route->gws = gws;
        route->gws_cap = cap;
    }
    gw_t *g = &route->gws[route->n_gws];
    snprintf(g->id, sizeof(g->id), "%s", id);
    chat_buf_reset(&g->payload);
    return (int)route->n_gws++;
}

static void add_presence(cs_route_t *route, user_t *u, const redisReply *r, uint64_t now)
{
    char gw[CHAT_NAME_MAX + 1];
    if (r->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 1; i < r->elements; i += 2) {
        const redisReply *v = r->element[i];
        if (v->type != REDIS_REPLY_STRING ||
            chat_presence_parse(v->str, v->len, now, gw, sizeof(gw)) != 0)
            continue;
        int idx = gateway_index(route, gw);
        if (idx < 0)
            continue;
        int seen = 0;
        for (uint16_t k = 0; k < u->n_gw && !seen; k++)
            seen = u->gw[k] == idx;
        if (!seen && u->n_gw < USER_GW_MAX)
            u->gw[u->n_gw++] = (uint16_t)idx;
    }
}

int cs_route_lookup(cs_route_t *route)
{
    if (route->n_users == 0)
        return 0;
    if (ensure_connected(route) != 0)
        return CHAT_EREDIS;
    for (size_t i = 0; i < route->n_users; i++) {
        user_t *u = &route->chunks[i / USERS_PER_CHUNK][i % USERS_PER_CHUNK];
        if (redisAppendCommand(route->c, "HGETALL " CHAT_PRESENCE_PREFIX "%s", u->name) !=
            REDIS_OK) {
            disconnect(route, "cannot queue HGETALL");
            return CHAT_EREDIS;
        }
    }
    uint64_t now = chat_now_ms();
    for (size_t i = 0; i < route->n_users; i++) {
        user_t *u = &route->chunks[i / USERS_PER_CHUNK][i % USERS_PER_CHUNK];
        redisReply *r = NULL;
        if (redisGetReply(route->c, (void **)&r) != REDIS_OK || r == NULL) {
            disconnect(route, route->c->errstr[0] ? route->c->errstr : "no reply");
            return CHAT_EREDIS;
        }
        add_presence(route, u, r, now);
        freeReplyObject(r);
    }
    return 0;
}

int cs_route_deliver(cs_route_t *route, const char *user, const char *exclude, size_t off,
                     size_t len)
{
    const user_t *u = cs_map_get(route->users, user);
    if (u == NULL)
        return 0;
    if (route->n_sends == route->sends_cap) {
        size_t cap = route->sends_cap ? route->sends_cap * 2 : 1024;
        if (cap > SENDS_MAX)
            return CHAT_ETOOBIG;
        send_t *sends = realloc(route->sends, cap * sizeof(*sends));
        if (sends == NULL)
            return CHAT_ENOMEM;
        route->sends = sends;
        route->sends_cap = cap;
    }
    route->sends[route->n_sends++] =
        (send_t){u, exclude == NULL || exclude[0] == '\0' ? "-" : exclude, off, len};
    return 0;
}

/* Appends every recorded frame to the payload of each gateway where its
 * user is online (as cs_route_lookup found them). */
static int build_payloads(cs_route_t *route, const char *frames)
{
    for (size_t i = 0; i < route->n_sends; i++) {
        const send_t *d = &route->sends[i];
        for (uint16_t k = 0; k < d->u->n_gw; k++) {
            chat_buf_t *b = &route->gws[d->u->gw[k]].payload;
            size_t mark = b->len;
            int rc = chat_buf_append_str(b, d->u->name);
            rc = rc ? rc : chat_buf_append(b, " ", 1);
            rc = rc ? rc : chat_buf_append_str(b, d->exclude);
            rc = rc ? rc : chat_buf_append(b, "\t", 1);
            rc = rc ? rc : chat_buf_append(b, frames + d->off, d->len);
            rc = rc ? rc : chat_buf_append(b, "\n", 1);
            if (rc != 0) {
                b->len = mark; /* never publish half a line */
                return rc;
            }
        }
    }
    return 0;
}

int cs_route_publish(cs_route_t *route, const char *frames, size_t *gateways)
{
    size_t n = 0;
    *gateways = 0;
    int rc = build_payloads(route, frames);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < route->n_gws; i++)
        n += route->gws[i].payload.len > 0;
    if (n == 0)
        return 0;
    if (ensure_connected(route) != 0)
        return CHAT_EREDIS;
    for (size_t i = 0; i < route->n_gws; i++) {
        gw_t *g = &route->gws[i];
        if (g->payload.len == 0)
            continue;
        if (redisAppendCommand(route->c, "PUBLISH " CHAT_GATEWAY_CHANNEL_PREFIX "%s %b", g->id,
                               g->payload.data, g->payload.len) != REDIS_OK) {
            disconnect(route, "cannot queue PUBLISH");
            return CHAT_EREDIS;
        }
    }
    for (size_t i = 0; i < n; i++) {
        redisReply *r = NULL;
        if (redisGetReply(route->c, (void **)&r) != REDIS_OK || r == NULL) {
            disconnect(route, route->c->errstr[0] ? route->c->errstr : "no reply");
            return CHAT_EREDIS;
        }
        if (r->type == REDIS_REPLY_ERROR)
            CHAT_WARN("redis: PUBLISH refused: %s", r->str);
        freeReplyObject(r);
    }
    *gateways = n;
    return 0;
}
