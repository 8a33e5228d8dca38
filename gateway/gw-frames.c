/* Client frames: parse, validate at the edge, stamp the sender from the
 * token, check membership (cached, else asked of the store off the loop
 * while later frames of the same connection wait in order), and produce. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "chat-envelope.h"
#include "chat-error.h"
#include "chat-log.h"
#include "chat-json.h"
#include "gw-private.h"

enum { FRAME_DONE = 0, FRAME_BLOCKED = 1 };

static const char *get_str(json_t *root, const char *key, size_t *len)
{
    json_t *v = json_object_get(root, key);
    if (!json_is_string(v))
        return NULL;
    *len = json_string_length(v);
    return json_string_value(v);
}

/* A client frame as the handlers see it: read by the flat reader
 * (chat-json.h) when it could, else by jansson. Strings are NUL-terminated
 * either way. */
typedef struct frame_s {
    json_t *root;                 /* jansson's tree, or NULL */
    const chat_json_flat_t *flat; /* the flat reading, when root is NULL */
} frame_t;

/* The string field key (and its length), or NULL if absent or another type. */
static const char *f_str(const frame_t *f, const char *key, size_t *len)
{
    if (f->root != NULL)
        return get_str(f->root, key, len);
    const chat_json_member_t *m = chat_json_flat_get(f->flat, key);
    if (m == NULL || m->type != CHAT_JSON_STRING)
        return NULL;
    *len = m->len;
    return m->str;
}

/* 1 if the frame has field key, whatever its type. */
static int f_has(const frame_t *f, const char *key)
{
    if (f->root != NULL)
        return json_object_get(f->root, key) != NULL;
    return chat_json_flat_get(f->flat, key) != NULL;
}

/* 1 and *v if field key is an integer, else 0. */
static int f_int(const frame_t *f, const char *key, int64_t *v)
{
    if (f->root != NULL) {
        json_t *j = json_object_get(f->root, key);
        if (!json_is_integer(j))
            return 0;
        *v = (int64_t)json_integer_value(j);
        return 1;
    }
    const chat_json_member_t *m = chat_json_flat_get(f->flat, key);
    if (m == NULL || m->type != CHAT_JSON_INT)
        return 0;
    *v = m->num;
    return 1;
}

/* Returns FRAME_BLOCKED when membership must be asked of the store first. */
static int need_member(gw_conn_t *conn, const char *conv, const char *cid)
{
    int m = gw_store_member_cached(conn->gw, conv, conn->user);
    if (m == 1)
        return FRAME_DONE;
    if (m == 0) {
        char msg[160];
        snprintf(msg, sizeof(msg), "you are not a member of %s", conv);
        gw_conn_send_error(conn, "forbidden", msg, cid, 0);
        return -1;
    }
    if (gw_store_check_member(conn, conv) != 0) {
        gw_conn_send_error(conn, "internal", "membership lookup failed", cid, 1);
        return -1;
    }
    return FRAME_BLOCKED;
}

static int produce(gw_conn_t *conn, chat_event_t *ev)
{
    gw_t *gw = conn->gw;
    chat_buf_t *b = &gw->encbuf;
    chat_buf_reset(b);
    if (chat_event_encode(ev, b) != 0) {
        gw_conn_send_error(conn, "internal", "cannot encode event", ev->cid, 1);
        return -1;
    }
    gw_reply_t reply =
        ev->type == CHAT_EV_DELIVERED || ev->type == CHAT_EV_READ ? GW_REPLY_NONE : GW_REPLY_SENT;
    if (gw_producer_send(gw, conn, reply, ev->conv, ev->id, ev->cid, ev->ts, b->data, b->len) !=
        0) {
        gw_conn_send_error(conn, "unavailable", "the event log is not accepting events; retry",
                           ev->cid, 1);
        return -1;
    }
    return 0;
}

/* send, edit and delete: all carry an optional cid that makes them
 * idempotent, and all are answered `sent`. */
static int handle_change(gw_conn_t *conn, const frame_t *f, chat_event_type_t type)
{
    size_t conv_len = 0, cid_len = 0, body_len = 0;
    const char *conv = f_str(f, "conv", &conv_len);
    const char *cid = f_str(f, "cid", &cid_len);
    const char *body = f_str(f, "body", &body_len);
    int64_t target = 0;
    int has_target = f_int(f, "target", &target);
    const char *cid_echo = cid != NULL && chat_name_valid(cid, cid_len) ? cid : NULL;
    chat_event_t ev;

    if (conv == NULL || !chat_name_valid(conv, conv_len)) {
        gw_conn_send_error(conn, "bad_frame", "conv must be a conversation id", cid_echo, 0);
        return FRAME_DONE;
    }
    if (f_has(f, "cid") && cid_echo == NULL) {
        gw_conn_send_error(conn, "bad_frame", "cid must be 1-64 of [A-Za-z0-9_.:-]", NULL, 0);
        return FRAME_DONE;
    }
    if (type != CHAT_EV_DELETE && (body == NULL || body_len == 0)) {
        gw_conn_send_error(conn, "bad_frame", "body must be a non-empty string", cid_echo, 0);
        return FRAME_DONE;
    }
    if (type != CHAT_EV_MESSAGE && (!has_target || target < 1)) {
        gw_conn_send_error(conn, "bad_frame", "target must be the seq of a message", cid_echo, 0);
        return FRAME_DONE;
    }
    if (type != CHAT_EV_DELETE && body_len > (size_t)conn->gw->cfg->body_max) {
        char msg[96];
        snprintf(msg, sizeof(msg), "body is %zu bytes; at most %lld allowed", body_len,
                 (long long)conn->gw->cfg->body_max);
        gw_conn_send_error(conn, "too_large", msg, cid_echo, 0);
        return FRAME_DONE;
    }
    int m = need_member(conn, conv, cid_echo);
    if (m != FRAME_DONE)
        return m == FRAME_BLOCKED ? FRAME_BLOCKED : FRAME_DONE;

    memset(&ev, 0, sizeof(ev));
    ev.type = type;
    ev.ts = (int64_t)chat_now_ms();
    memcpy(ev.conv, conv, conv_len + 1);
    memcpy(ev.from, conn->user, sizeof(ev.from));
    memcpy(ev.dev, conn->id, sizeof(ev.dev));
    if (cid_echo != NULL) {
        memcpy(ev.cid, cid, cid_len + 1);
        /* The same (sender, conv, cid) is the same event: resends dedupe. */
        chat_id_for_client(ev.id, ev.from, ev.conv, ev.cid);
    } else {
        chat_id_new(ev.id, (uint64_t)ev.ts);
    }
    if (type != CHAT_EV_DELETE) {
        ev.body = body;
        ev.body_len = body_len;
    }
    if (type != CHAT_EV_MESSAGE)
        ev.target = target;
    produce(conn, &ev);
    return FRAME_DONE;
}

static int handle_typing(gw_conn_t *conn, const frame_t *f)
{
    size_t conv_len = 0, state_len = 0;
    const char *conv = f_str(f, "conv", &conv_len);
    const char *state = f_str(f, "state", &state_len);
    int start = state != NULL && strcmp(state, "start") == 0;
    if (conv == NULL || !chat_name_valid(conv, conv_len) || state == NULL ||
        (!start && strcmp(state, "stop") != 0)) {
        gw_conn_send_error(conn, "bad_frame", "typing needs conv and state start or stop", NULL, 0);
        return FRAME_DONE;
    }
    int m = need_member(conn, conv, NULL);
    if (m != FRAME_DONE)
        return m == FRAME_BLOCKED ? FRAME_BLOCKED : FRAME_DONE;
    uint64_t now = uv_now(conn->gw->loop);
    if (start && strcmp(conn->typing_conv, conv) == 0 &&
        now - conn->typing_ms < (uint64_t)conn->gw->cfg->typing_debounce_ms)
        return FRAME_DONE; /* debounced: the receivers' indicator is still on */
    if (start) {
        memcpy(conn->typing_conv, conv, conv_len + 1);
        conn->typing_ms = now;
    } else {
        conn->typing_conv[0] = '\0';
    }
    gw_notify_typing(conn, conv, start);
    return FRAME_DONE;
}

static int handle_receipt(gw_conn_t *conn, const frame_t *f, chat_event_type_t type)
{
    size_t conv_len = 0;
    const char *conv = f_str(f, "conv", &conv_len);
    int64_t upto = 0;
    chat_event_t ev;

    if (conv == NULL || !chat_name_valid(conv, conv_len) || !f_int(f, "upto", &upto) || upto < 1) {
        gw_conn_send_error(conn, "bad_frame", "conv and upto (a seq >= 1) are required", NULL, 0);
        return FRAME_DONE;
    }
    int m = need_member(conn, conv, NULL);
    if (m != FRAME_DONE)
        return m == FRAME_BLOCKED ? FRAME_BLOCKED : FRAME_DONE;
    memset(&ev, 0, sizeof(ev));
    ev.type = type;
    ev.ts = (int64_t)chat_now_ms();
    chat_id_new(ev.id, (uint64_t)ev.ts);
    memcpy(ev.conv, conv, conv_len + 1);
    memcpy(ev.from, conn->user, sizeof(ev.from));
    memcpy(ev.dev, conn->id, sizeof(ev.dev));
    ev.upto = upto;
    produce(conn, &ev);
    return FRAME_DONE;
}

static int handle_sync(gw_conn_t *conn, const frame_t *f)
{
    /* A flat frame has no objects: a "have" in one is not a map. */
    json_t *have = f->root != NULL ? json_object_get(f->root, "have") : NULL;
    if ((f->root == NULL && f_has(f, "have")) || (have != NULL && !json_is_object(have))) {
        gw_conn_send_error(conn, "bad_frame", "have must map conversation ids to seqs", NULL, 0);
        return FRAME_DONE;
    }
    const char *key;
    json_t *v;
    json_object_foreach(have, key, v)
    {
        if (!chat_name_valid(key, strlen(key)) || !json_is_integer(v) ||
            json_integer_value(v) < 0) {
            gw_conn_send_error(conn, "bad_frame", "have must map conversation ids to seqs >= 0",
                               NULL, 0);
            return FRAME_DONE;
        }
    }
    if (conn->sync != NULL) {
        gw_conn_send_error(conn, "rate_limited", "a sync is already running", NULL, 1);
        return FRAME_DONE;
    }
    json_incref(have);
    if (gw_store_sync_start(conn, have) != 0) {
        gw_conn_send_error(conn, "internal", "sync could not start", NULL, 1);
    }
    return FRAME_DONE;
}

static int process(gw_conn_t *conn, const char *data, size_t len)
{
    json_error_t jerr;
    int rc = FRAME_DONE;
    chat_json_flat_t flat;
    frame_t f = {NULL, &flat};
    size_t t_len = 0;
    /* The flat reader works on a copy (it writes NULs, and a blocked frame
     * is kept as it came); only when it gives up does jansson parse. */
    chat_buf_t *copy = &conn->gw->framebuf;
    chat_buf_reset(copy);
    if (chat_buf_append(copy, data, len) != 0 || chat_json_flat_read(copy->data, len, &flat) != 0) {
        f.root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!json_is_object(f.root)) {
            gw_conn_send_error(conn, "bad_frame", "a frame is one JSON object", NULL, 0);
            goto done;
        }
    }
    const char *t = f_str(&f, "t", &t_len);
    if (t == NULL) {
        gw_conn_send_error(conn, "bad_frame", "t (the frame type) is required", NULL, 0);
    } else if (strcmp(t, "send") == 0) {
        rc = handle_change(conn, &f, CHAT_EV_MESSAGE);
    } else if (strcmp(t, "edit") == 0) {
        rc = handle_change(conn, &f, CHAT_EV_EDIT);
    } else if (strcmp(t, "delete") == 0) {
        rc = handle_change(conn, &f, CHAT_EV_DELETE);
    } else if (strcmp(t, "typing") == 0) {
        rc = handle_typing(conn, &f);
    } else if (strcmp(t, "delivered") == 0) {
        rc = handle_receipt(conn, &f, CHAT_EV_DELIVERED);
    } else if (strcmp(t, "read") == 0) {
        rc = handle_receipt(conn, &f, CHAT_EV_READ);
    } else if (strcmp(t, "sync") == 0) {
        rc = handle_sync(conn, &f);
    } else if (strcmp(t, "ping") == 0) {
        gw_conn_send_text(conn, "{\"t\":\"pong\"}", 12);
    } else {
        gw_conn_send_error(conn, "unknown_type", "unknown frame type", NULL, 0);
    }
done:
    json_decref(f.root);
    return rc;
}

static gw_frame_t *frame_copy(const char *data, size_t len)
{
    gw_frame_t *f = malloc(sizeof(*f) + len);
    if (f != NULL) {
        f->next = NULL;
        f->len = len;
        memcpy(f->data, data, len);
    }
    return f;
}

void gw_frames_handle(gw_conn_t *conn, const char *data, size_t len)
{
    const gw_config_t *cfg = conn->gw->cfg;
    if (!chat_bucket_take(&conn->bucket, (double)cfg->msg_rate, (double)cfg->msg_burst,
                          uv_now(conn->gw->loop))) {
        /* A flood costs the sender, not the pipeline: the frame is dropped,
         * and named by its cid so the client can send it again later. */
        json_error_t jerr;
        json_t *root = json_loadb(data, len, 0, &jerr);
        size_t cid_len = 0;
        const char *cid = root != NULL ? get_str(root, "cid", &cid_len) : NULL;
        gw_conn_send_error(conn, "rate_limited", "too many frames; slow down",
                           cid != NULL && chat_name_valid(cid, cid_len) ? cid : NULL, 1);
        json_decref(root);
        return;
    }
    if (!conn->blocked && conn->pending_head == NULL) {
        if (process(conn, data, len) != FRAME_BLOCKED)
            return;
        /* Keep the frame: it runs again once the lookup has answered. */
    } else if (conn->pending_n >= conn->gw->cfg->pending_frames_max) {
        gw_conn_send_error(conn, "rate_limited", "too many frames waiting; slow down", NULL, 1);
        return;
    }
    gw_frame_t *f = frame_copy(data, len);
    if (f == NULL) {
        gw_conn_send_error(conn, "internal", "out of memory", NULL, 1);
        return;
    }
    if (conn->pending_tail != NULL)
        conn->pending_tail->next = f;
    else
        conn->pending_head = f;
    conn->pending_tail = f;
    conn->pending_n++;
    if (conn->pending_n >= conn->gw->cfg->pending_frames_max)
        gw_conn_pause(conn);
}

void gw_frames_unblock(gw_conn_t *conn)
{
    conn->blocked = 0;
    while (conn->pending_head != NULL && !conn->blocked && conn->state == GW_CONN_WS) {
        gw_frame_t *f = conn->pending_head;
        if (process(conn, f->data, f->len) == FRAME_BLOCKED)
            break;
        conn->pending_head = f->next;
        if (conn->pending_head == NULL)
            conn->pending_tail = NULL;
        conn->pending_n--;
        free(f);
    }
    if (conn->state == GW_CONN_WS && conn->pending_n < conn->gw->cfg->pending_frames_max &&
        !conn->close_after_flush)
        gw_conn_resume(conn);
}

void gw_frames_free_pending(gw_conn_t *conn)
{
    while (conn->pending_head != NULL) {
        gw_frame_t *f = conn->pending_head;
        conn->pending_head = f->next;
        free(f);
    }
    conn->pending_tail = NULL;
    conn->pending_n = 0;
}
