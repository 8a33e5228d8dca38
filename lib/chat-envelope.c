#include "chat-envelope.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "chat-json.h"

static const char *const type_names[] = {NULL,
#define CHAT_EV_NAME(name, str) str,
                                         CHAT_EVENT_TYPES(CHAT_EV_NAME)
#undef CHAT_EV_NAME
};

#define N_TYPES (sizeof(type_names) / sizeof(type_names[0]))

const char *chat_event_type_name(chat_event_type_t type)
{
    return (unsigned)type < N_TYPES ? type_names[type] : NULL;
}

chat_event_type_t chat_event_type_parse(const char *s)
{
    for (unsigned i = 1; s != NULL && i < N_TYPES; i++) {
        if (strcmp(s, type_names[i]) == 0)
            return (chat_event_type_t)i;
    }
    return CHAT_EV_NONE;
}

int chat_event_validate(const chat_event_t *ev, size_t body_max, chat_error_t *err)
{
    if (chat_event_type_name(ev->type) == NULL || ev->type == CHAT_EV_NONE)
        return chat_error_set(err, CHAT_EINVAL, "unknown event type");
    if (strlen(ev->id) != CHAT_ID_LEN)
        return chat_error_set(err, CHAT_EINVAL, "event id must be %d characters", CHAT_ID_LEN);
    if (!chat_name_valid(ev->conv, strlen(ev->conv)))
        return chat_error_set(err, CHAT_EINVAL, "conversation id is not valid");
    if (!chat_name_valid(ev->from, strlen(ev->from)))
        return chat_error_set(err, CHAT_EINVAL, "sender id is not valid");
    if (ev->dev[0] && !chat_name_valid(ev->dev, strlen(ev->dev)))
        return chat_error_set(err, CHAT_EINVAL, "device id is not valid");
    if (ev->cid[0] && !chat_name_valid(ev->cid, strlen(ev->cid)))
        return chat_error_set(err, CHAT_EINVAL, "client id is not valid");
    if (ev->ts <= 0)
        return chat_error_set(err, CHAT_EINVAL, "ts must be positive");
    switch (ev->type) {
    case CHAT_EV_MESSAGE:
    case CHAT_EV_EDIT:
        if (ev->body == NULL || ev->body_len == 0)
            return chat_error_set(err, CHAT_EINVAL, "body must not be empty");
        if (ev->body_len > body_max)
            return chat_error_set(err, CHAT_ETOOBIG, "body is %zu bytes, at most %zu allowed",
                                  ev->body_len, body_max);
        if (ev->type == CHAT_EV_EDIT && ev->target < 1)
            return chat_error_set(err, CHAT_EINVAL, "target must be a seq >= 1");
        break;
    case CHAT_EV_DELETE:
        if (ev->target < 1)
            return chat_error_set(err, CHAT_EINVAL, "target must be a seq >= 1");
        break;
    case CHAT_EV_DELIVERED:
    case CHAT_EV_READ:
        if (ev->upto < 1)
            return chat_error_set(err, CHAT_EINVAL, "upto must be a seq >= 1");
        break;
    case CHAT_EV_MEMBER_ADD:
    case CHAT_EV_MEMBER_REMOVE:
        if (!chat_name_valid(ev->user, strlen(ev->user)))
            return chat_error_set(err, CHAT_EINVAL, "user must be a user id");
        break;
    default:
        break;
    }
    return 0;
}

static int put_str(chat_buf_t *out, const char *key, const char *v)
{
    int rc = chat_buf_append_str(out, key);
    return rc ? rc : chat_buf_append_json_str(out, v, strlen(v));
}

int chat_event_encode(const chat_event_t *ev, chat_buf_t *out)
{
    int rc = 0;
    rc = rc ? rc : chat_buf_append_str(out, "{\"v\":1,\"t\":\"");
    rc = rc ? rc : chat_buf_append_str(out, chat_event_type_name(ev->type));
    rc = rc ? rc : chat_buf_append_str(out, "\"");
    rc = rc ? rc : put_str(out, ",\"id\":", ev->id);
    rc = rc ? rc : put_str(out, ",\"conv\":", ev->conv);
    rc = rc ? rc : put_str(out, ",\"from\":", ev->from);
    if (ev->dev[0])
        rc = rc ? rc : put_str(out, ",\"dev\":", ev->dev);
    if (ev->cid[0])
        rc = rc ? rc : put_str(out, ",\"cid\":", ev->cid);
    rc = rc ? rc : chat_buf_append_str(out, ",\"ts\":");
    rc = rc ? rc : chat_buf_append_i64(out, ev->ts);
    if (ev->type == CHAT_EV_DELIVERED || ev->type == CHAT_EV_READ) {
        rc = rc ? rc : chat_buf_append_str(out, ",\"upto\":");
        rc = rc ? rc : chat_buf_append_i64(out, ev->upto);
    }
    if (ev->type == CHAT_EV_EDIT || ev->type == CHAT_EV_DELETE) {
        rc = rc ? rc : chat_buf_append_str(out, ",\"target\":");
        rc = rc ? rc : chat_buf_append_i64(out, ev->target);
    }
    if (ev->user[0])
        rc = rc ? rc : put_str(out, ",\"user\":", ev->user);
    if (ev->body != NULL) {
        rc = rc ? rc : chat_buf_append_str(out, ",\"body\":");
        rc = rc ? rc : chat_buf_append_json_str(out, ev->body, ev->body_len);
    }
    rc = rc ? rc : chat_buf_append(out, "}", 1);
    return rc;
}

/* Copies an optional string member into dst; a wrong type is an error. */
static int get_name(json_t *root, const char *key, char *dst, size_t size, int required)
{
    json_t *v = json_object_get(root, key);
    dst[0] = '\0';
    if (v == NULL)
        return required ? -1 : 0;
    if (!json_is_string(v) || json_string_length(v) >= size)
        return -1;
    memcpy(dst, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

static int get_int(json_t *root, const char *key, int64_t *dst)
{
    json_t *v = json_object_get(root, key);
    *dst = 0;
    if (v == NULL)
        return 0;
    if (!json_is_integer(v))
        return -1;
    *dst = json_integer_value(v);
    return 0;
}

static int decode(const char *data, size_t len, size_t body_max, chat_event_t *ev,
                  chat_error_t *err)
{
    json_error_t jerr;
    memset(ev, 0, sizeof(*ev));
    json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return chat_error_set(err, CHAT_EPARSE, "not JSON: %s", jerr.text);
    ev->json_ = root;
    if (!json_is_object(root))
        return chat_error_set(err, CHAT_EPARSE, "envelope is not an object");
    json_t *v = json_object_get(root, "v");
    if (!json_is_integer(v) || json_integer_value(v) != CHAT_ENVELOPE_VERSION)
        return chat_error_set(err, CHAT_EPARSE, "envelope version must be 1");
    ev->type = chat_event_type_parse(json_string_value(json_object_get(root, "t")));
    if (ev->type == CHAT_EV_NONE)
        return chat_error_set(err, CHAT_EPARSE, "unknown event type");
    char idbuf[CHAT_NAME_MAX + 1];
    if (get_name(root, "id", idbuf, sizeof(idbuf), 1) != 0 || strlen(idbuf) != CHAT_ID_LEN)
        return chat_error_set(err, CHAT_EPARSE, "id is missing or malformed");
    memcpy(ev->id, idbuf, CHAT_ID_LEN + 1);
    if (get_name(root, "conv", ev->conv, sizeof(ev->conv), 1) != 0 ||
        get_name(root, "from", ev->from, sizeof(ev->from), 1) != 0 ||
        get_name(root, "dev", ev->dev, sizeof(ev->dev), 0) != 0 ||
        get_name(root, "cid", ev->cid, sizeof(ev->cid), 0) != 0 ||
        get_name(root, "user", ev->user, sizeof(ev->user), 0) != 0)
        return chat_error_set(err, CHAT_EPARSE, "conv, from, dev, cid or user is malformed");
    if (get_int(root, "ts", &ev->ts) != 0 || get_int(root, "upto", &ev->upto) != 0 ||
        get_int(root, "target", &ev->target) != 0)
        return chat_error_set(err, CHAT_EPARSE, "ts, upto or target is not an integer");
    json_t *body = json_object_get(root, "body");
    if (body != NULL) {
        if (!json_is_string(body))
            return chat_error_set(err, CHAT_EPARSE, "body is not a string");
        ev->body = json_string_value(body);
        ev->body_len = json_string_length(body);
    }
    return chat_event_validate(ev, body_max, err);
}

int chat_event_decode(const char *data, size_t len, size_t body_max, chat_event_t *ev,
                      chat_error_t *err)
{
    int rc = decode(data, len, body_max, ev, err);
    /* A failed decode keeps nothing: callers need not clear after it. */
    if (rc != 0)
        chat_event_clear(ev);
    return rc;
}

/* A name member for the flat path: missing (when not required), or a
 * string that fits and is valid UTF-8. Returns 0, or -1 for jansson to
 * decide. */
static int flat_name(const chat_json_flat_t *o, const char *key, char *dst, size_t size,
                     int required)
{
    const chat_json_member_t *m = chat_json_flat_get(o, key);
    dst[0] = '\0';
    if (m == NULL)
        return required ? -1 : 0;
    if (m->type != CHAT_JSON_STRING || m->len >= size)
        return -1;
    memcpy(dst, m->str, m->len + 1);
    return 0;
}

static int flat_int(const chat_json_flat_t *o, const char *key, int64_t *dst)
{
    const chat_json_member_t *m = chat_json_flat_get(o, key);
    *dst = 0;
    if (m == NULL)
        return 0;
    if (m->type != CHAT_JSON_INT)
        return -1;
    *dst = m->num;
    return 0;
}

/* The flat path: an envelope that is one flat object whose members are
 * all as the jansson path wants them. Returns 0 with ev filled (not yet
 * validated), or -1 when jansson must decide. */
static int decode_flat(char *buf, size_t len, chat_event_t *ev)
{
    chat_json_flat_t o;
    memset(ev, 0, sizeof(*ev));
    if (chat_json_flat_read(buf, len, &o) != 0)
        return -1;
    /* jansson refuses invalid UTF-8 anywhere, keys included. */
    for (size_t i = 0; i < o.n; i++) {
        const chat_json_member_t *m = &o.m[i];
        if (!chat_utf8_valid((const unsigned char *)m->key, strlen(m->key)) ||
            (m->type == CHAT_JSON_STRING &&
             !chat_utf8_valid((const unsigned char *)m->str, m->len)))
            return -1;
    }
    const chat_json_member_t *v = chat_json_flat_get(&o, "v");
    const chat_json_member_t *t = chat_json_flat_get(&o, "t");
    if (v == NULL || v->type != CHAT_JSON_INT || v->num != CHAT_ENVELOPE_VERSION || t == NULL ||
        t->type != CHAT_JSON_STRING || (ev->type = chat_event_type_parse(t->str)) == CHAT_EV_NONE)
        return -1;
    char idbuf[CHAT_NAME_MAX + 1];
    if (flat_name(&o, "id", idbuf, sizeof(idbuf), 1) != 0 || strlen(idbuf) != CHAT_ID_LEN)
        return -1;
    memcpy(ev->id, idbuf, CHAT_ID_LEN + 1);
    if (flat_name(&o, "conv", ev->conv, sizeof(ev->conv), 1) != 0 ||
        flat_name(&o, "from", ev->from, sizeof(ev->from), 1) != 0 ||
        flat_name(&o, "dev", ev->dev, sizeof(ev->dev), 0) != 0 ||
        flat_name(&o, "cid", ev->cid, sizeof(ev->cid), 0) != 0 ||
        flat_name(&o, "user", ev->user, sizeof(ev->user), 0) != 0 ||
        flat_int(&o, "ts", &ev->ts) != 0 || flat_int(&o, "upto", &ev->upto) != 0 ||
        flat_int(&o, "target", &ev->target) != 0)
        return -1;
    const chat_json_member_t *body = chat_json_flat_get(&o, "body");
    if (body != NULL) {
        if (body->type != CHAT_JSON_STRING)
            return -1;
        ev->body = body->str;
        ev->body_len = body->len;
    }
    return 0;
}

int chat_event_decode_in(const char *data, size_t len, char *scratch, size_t body_max,
                         chat_event_t *ev, chat_error_t *err)
{
    memcpy(scratch, data, len);
    if (decode_flat(scratch, len, ev) != 0)
        return chat_event_decode(data, len, body_max, ev, err);
    int rc = chat_event_validate(ev, body_max, err);
    if (rc != 0)
        chat_event_clear(ev);
    return rc;
}

void chat_event_clear(chat_event_t *ev)
{
    if (ev->json_ != NULL) {
        json_decref((json_t *)ev->json_);
        ev->json_ = NULL;
    }
    ev->body = NULL;
    ev->body_len = 0;
}
