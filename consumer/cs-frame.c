#include "cs-frame.h"

#include <string.h>

/* Appends ,"key":"value". */
static int put_str(chat_buf_t *out, const char *key, const char *v, size_t len)
{
    int rc = chat_buf_append_str(out, key);
    return rc ? rc : chat_buf_append_json_str(out, v, len);
}

static int put_i64(chat_buf_t *out, const char *key, int64_t v)
{
    int rc = chat_buf_append_str(out, key);
    return rc ? rc : chat_buf_append_i64(out, v);
}

/* Appends the fields every sequenced frame starts with. */
static int put_head(chat_buf_t *out, const char *t, const chat_event_t *ev, int64_t seq,
                    int with_dev)
{
    int rc = chat_buf_append_str(out, "{\"t\":\"");
    rc = rc ? rc : chat_buf_append_str(out, t);
    rc = rc ? rc : chat_buf_append(out, "\"", 1);
    rc = rc ? rc : put_str(out, ",\"id\":", ev->id, strlen(ev->id));
    rc = rc ? rc : put_str(out, ",\"conv\":", ev->conv, strlen(ev->conv));
    rc = rc ? rc : put_i64(out, ",\"seq\":", seq);
    rc = rc ? rc : put_str(out, ",\"from\":", ev->from, strlen(ev->from));
    if (with_dev && ev->dev[0])
        rc = rc ? rc : put_str(out, ",\"dev\":", ev->dev, strlen(ev->dev));
    if (with_dev && ev->cid[0])
        rc = rc ? rc : put_str(out, ",\"cid\":", ev->cid, strlen(ev->cid));
    rc = rc ? rc : put_i64(out, ",\"ts\":", ev->ts);
    return rc;
}

int cs_frame_message(chat_buf_t *out, const chat_event_t *ev, int64_t seq)
{
    int rc = put_head(out, "message", ev, seq, 1);
    rc = rc ? rc : put_str(out, ",\"body\":", ev->body, ev->body_len);
    rc = rc ? rc : chat_buf_append(out, "}", 1);
    return rc;
}

int cs_frame_receipt(chat_buf_t *out, const char *conv, const char *user, chat_event_type_t kind,
                     int64_t upto)
{
    int rc = chat_buf_append_str(out, "{\"t\":\"receipt\"");
    rc = rc ? rc : put_str(out, ",\"conv\":", conv, strlen(conv));
    rc = rc ? rc : put_str(out, ",\"user\":", user, strlen(user));
    rc = rc ? rc
            : chat_buf_append_str(out, kind == CHAT_EV_READ ? ",\"kind\":\"read\""
                                                            : ",\"kind\":\"delivered\"");
    rc = rc ? rc : put_i64(out, ",\"upto\":", upto);
    rc = rc ? rc : chat_buf_append(out, "}", 1);
    return rc;
}

int cs_frame_change(chat_buf_t *out, const chat_event_t *ev, int64_t seq)
{
    int rc = put_head(out, ev->type == CHAT_EV_EDIT ? "edit" : "delete", ev, seq, 1);
    rc = rc ? rc : put_i64(out, ",\"target\":", ev->target);
    if (ev->type == CHAT_EV_EDIT)
        rc = rc ? rc : put_str(out, ",\"body\":", ev->body, ev->body_len);
    rc = rc ? rc : chat_buf_append(out, "}", 1);
    return rc;
}

int cs_frame_member(chat_buf_t *out, const chat_event_t *ev, int64_t seq)
{
    int rc = put_head(out, "member", ev, seq, 0);
    rc = rc ? rc
            : chat_buf_append_str(out, ev->type == CHAT_EV_MEMBER_ADD ? ",\"action\":\"add\""
                                                                      : ",\"action\":\"remove\"");
    rc = rc ? rc : put_str(out, ",\"user\":", ev->user, strlen(ev->user));
    rc = rc ? rc : chat_buf_append(out, "}", 1);
    return rc;
}

int cs_frame_conv_deleted(chat_buf_t *out, const chat_event_t *ev, int64_t seq)
{
    int rc = put_head(out, "conv_deleted", ev, seq, 0);
    rc = rc ? rc : chat_buf_append(out, "}", 1);
    return rc;
}
