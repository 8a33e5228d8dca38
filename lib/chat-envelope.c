#include "chat-envelope.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

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

void chat_event_clear(chat_event_t *ev)
{
    if (ev->json_ != NULL) {
        json_decref((json_t *)ev->json_);
        ev->json_ = NULL;
    }
    ev->body = NULL;
    ev->body_len = 0;
}
