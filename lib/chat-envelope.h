/* The Kafka event envelope: one JSON object per event, keyed in Kafka by its
 * conversation id. schemas/event.v1.json is its contract:
 *
 *   {"v":1,"t":"message","id":"01J...","conv":"d.alice.bob","from":"alice",
 *    "dev":"c-1f3a","cid":"m-17","ts":1700000000000,"body":"hi"}
 *
 * "from" is always the authenticated sender, stamped by the gateway. */
#ifndef CHAT_ENVELOPE_H
#define CHAT_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "chat-buf.h"
#include "chat-error.h"
#include "chat-id.h"

#define CHAT_ENVELOPE_VERSION 1
#define CHAT_BODY_MAX_DEFAULT 4096

#define CHAT_EVENT_TYPES(XX)                                                                       \
    XX(MESSAGE, "message")                                                                         \
    XX(DELIVERED, "delivered")                                                                     \
    XX(READ, "read")                                                                               \
    XX(EDIT, "edit")                                                                               \
    XX(DELETE, "delete")                                                                           \
    XX(MEMBER_ADD, "member_add")                                                                   \
    XX(MEMBER_REMOVE, "member_remove")                                                             \
    XX(CONV_DELETE, "conv_delete")

typedef enum {
    CHAT_EV_NONE = 0,
#define CHAT_EV_ENUM(name, str) CHAT_EV_##name,
    CHAT_EVENT_TYPES(CHAT_EV_ENUM)
#undef CHAT_EV_ENUM
} chat_event_type_t;

typedef struct chat_event_s {
    chat_event_type_t type;
    char id[CHAT_ID_LEN + 1];
    char conv[CHAT_NAME_MAX + 1];
    char from[CHAT_NAME_MAX + 1];
    char dev[CHAT_NAME_MAX + 1];  /* the sending connection; may be empty */
    char cid[CHAT_NAME_MAX + 1];  /* the client's id for the event; may be empty */
    int64_t ts;                   /* gateway time, ms since the epoch */
    int64_t upto;                 /* delivered/read: the watermark seq */
    int64_t target;               /* edit/delete: the seq of the message changed */
    char user[CHAT_NAME_MAX + 1]; /* member_add/member_remove: the member */
    const char *body;             /* message/edit: UTF-8 text, body_len bytes */
    size_t body_len;
    void *json_; /* private: the parsed document that body points into */
} chat_event_t;

/* Returns "message", "read", ... or NULL; and the reverse (CHAT_EV_NONE). */
const char *chat_event_type_name(chat_event_type_t type);
chat_event_type_t chat_event_type_parse(const char *s);

/* Checks what every event of its type needs: ids well formed, ts > 0, a body
 * of 1..body_max bytes for message/edit, upto >= 1 for receipts, target >= 1
 * for edit/delete, a user for member_add/member_remove. Returns 0 or CHAT_EINVAL/CHAT_ETOOBIG with
 * err filled. */
int chat_event_validate(const chat_event_t *ev, size_t body_max, chat_error_t *err);

/* Appends ev as envelope JSON to out (no allocation beyond out's growth).
 * Returns 0, CHAT_ETOOBIG or CHAT_ENOMEM. */
int chat_event_encode(const chat_event_t *ev, chat_buf_t *out);

/* Parses an envelope. On success ev->body points into memory owned by ev
 * until chat_event_clear(ev). Returns 0, CHAT_EPARSE (not JSON, wrong
 * version, wrong field types) or what chat_event_validate returns. */
int chat_event_decode(const char *data, size_t len, size_t body_max, chat_event_t *ev,
                      chat_error_t *err);

/* The same, deciding exactly as chat_event_decode does, but without
 * allocating for the common envelope (flat, no escapes: chat-json.h): it
 * is read in scratch, which must hold len bytes, and ev->body may point
 * into scratch, which must then outlive ev's use of it. Anything else goes
 * to chat_event_decode. */
int chat_event_decode_in(const char *data, size_t len, char *scratch, size_t body_max,
                         chat_event_t *ev, chat_error_t *err);

/* Releases what decode kept. Safe on a zeroed or already cleared event. */
void chat_event_clear(chat_event_t *ev);

#endif
