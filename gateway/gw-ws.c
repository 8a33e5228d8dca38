/* WebSocket sessions on top of wslay. wslay does no I/O: the read callback
 * feeds it the bytes just read, and what it wants to send (pongs, closes)
 * lands in the connection's outbound queue, flushed once per loop
 * iteration. Server text frames are framed here directly (they are never
 * masked), so a routed frame is copied once, into the outbound queue. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat-error.h"
#include "chat-json.h"
#include "chat-log.h"
#include "gw-private.h"

int gw_ws_encode(chat_buf_t *out, int opcode, const char *data, size_t len)
{
    unsigned char hdr[10];
    size_t n;
    hdr[0] = (unsigned char)(0x80 | (opcode & 0x0f));
    if (len < 126) {
        hdr[1] = (unsigned char)len;
        n = 2;
    } else if (len < 65536) {
        hdr[1] = 126;
        hdr[2] = (unsigned char)(len >> 8);
        hdr[3] = (unsigned char)len;
        n = 4;
    } else {
        hdr[1] = 127;
        for (int i = 0; i < 8; i++)
            hdr[2 + i] = (unsigned char)((uint64_t)len >> (8 * (7 - i)));
        n = 10;
    }
    int rc = chat_buf_reserve(out, n + len);
    if (rc != 0)
        return rc;
    memcpy(out->data + out->len, hdr, n);
    if (len > 0)
        memcpy(out->data + out->len + n, data, len);
    out->len += n + len;
    return 0;
}

static ssize_t recv_callback(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                             void *data)
{
    gw_conn_t *conn = data;
    (void)flags;
    if (conn->in_len == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < conn->in_len ? len : conn->in_len;
    memcpy(buf, conn->in, n);
    conn->in += n;
    conn->in_len -= n;
    return (ssize_t)n;
}

static ssize_t send_callback(wslay_event_context_ptr ctx, const uint8_t *data, size_t len,
                             int flags, void *user)
{
    gw_conn_t *conn = user;
    (void)flags;
    /* Control frames only, and small: append without the slow-client check,
     * which could free the context we are called from. */
    if (conn->state == GW_CONN_CLOSING || chat_buf_append(&conn->out, data, len) != 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    gw_conn_mark_dirty(conn);
    return (ssize_t)len;
}

static int genmask_callback(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *data)
{
    /* Servers never mask; wslay asks only when it would. */
    (void)ctx;
    (void)data;
    memset(buf, 0, len);
    return 0;
}

static void on_msg_recv(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                        void *data)
{
    gw_conn_t *conn = data;
    if (conn->state != GW_CONN_WS)
        return;
    switch (arg->opcode) {
    case WSLAY_TEXT_FRAME:
        if (!chat_utf8_valid(arg->msg, arg->msg_length)) {
            wslay_event_queue_close(ctx, 1007, (const uint8_t *)"invalid UTF-8", 13);
            return;
        }
        conn->gw->metrics.frames_in++;
        gw_frames_handle(conn, (const char *)arg->msg, arg->msg_length);
        break;
    case WSLAY_BINARY_FRAME:
        wslay_event_queue_close(ctx, 1003, (const uint8_t *)"text frames only", 16);
        break;
    default:
        /* Pings are answered and closes echoed by wslay itself. */
        break;
    }
}

static const struct wslay_event_callbacks callbacks = {
    recv_callback, send_callback, genmask_callback, NULL, NULL, NULL, on_msg_recv,
};

void gw_ws_free(gw_conn_t *conn)
{
    if (conn->ws != NULL && !conn->ws_busy) {
        wslay_event_context_free(conn->ws);
        conn->ws = NULL;
    }
}

static void pump(gw_conn_t *conn)
{
    conn->ws_busy = 1;
    int rc = wslay_event_recv(conn->ws);
    if (rc == 0 && conn->state != GW_CONN_CLOSING)
        rc = wslay_event_send(conn->ws);
    conn->ws_busy = 0;
    if (conn->state == GW_CONN_CLOSING) {
        /* Closed from inside a callback: the context could not go then. */
        gw_ws_free(conn);
        return;
    }
    if (rc != 0 && rc != WSLAY_ERR_WOULDBLOCK) {
        CHAT_DEBUG("conn %s: websocket error %d", conn->id, rc);
        gw_conn_close(conn);
        return;
    }
    if (!wslay_event_want_read(conn->ws) && !wslay_event_want_write(conn->ws)) {
        /* Both sides sent close: the TCP connection ends once flushed. */
        conn->close_after_flush = 1;
        gw_conn_pause(conn);
        gw_conn_mark_dirty(conn);
        if (conn->out.len == 0 && !conn->writing)
            gw_conn_close(conn);
    } else if (!wslay_event_want_read(conn->ws)) {
        gw_conn_pause(conn);
    }
}

/* Follows frame boundaries in the raw bytes (headers only, payloads are
 * skipped), so that the gateway knows when the peer rests between
 * messages without asking wslay for state it does not export. */
static void scan(gw_conn_t *conn, const uint8_t *p, size_t len)
{
    while (len > 0) {
        if (conn->frame_left > 0) {
            size_t take = conn->frame_left < len ? (size_t)conn->frame_left : len;
            conn->frame_left -= take;
            p += take;
            len -= take;
            continue;
        }
        conn->hdr[conn->hdr_len++] = *p++;
        len--;
        if (conn->hdr_len < 2)
            continue;
        uint8_t l7 = conn->hdr[1] & 0x7f;
        size_t need = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + ((conn->hdr[1] & 0x80) ? 4 : 0);
        if (conn->hdr_len < need)
            continue;
        uint64_t plen = l7;
        if (l7 == 126)
            plen = ((uint64_t)conn->hdr[2] << 8) | conn->hdr[3];
        else if (l7 == 127)
            for (int i = 0; i < 8; i++)
                plen = (plen << 8) | conn->hdr[2 + i];
        uint8_t opcode = conn->hdr[0] & 0x0f;
        if (opcode < 8) /* data or continuation: FIN ends the message */
            conn->in_msg = (conn->hdr[0] & 0x80) == 0;
        conn->frame_left = plen;
        conn->hdr_len = 0;
    }
}

static int ws_create(gw_conn_t *conn)
{
    if (wslay_event_context_server_init(&conn->ws, &callbacks, conn) != 0) {
        conn->ws = NULL;
        return CHAT_ENOMEM;
    }
    wslay_event_config_set_max_recv_msg_length(conn->ws, (uint64_t)conn->gw->cfg->max_frame);
    return 0;
}

/* XORs data with the 4-byte mask, eight bytes at a time (the mask repeats
 * every four, and a frame's payload starts at mask offset 0). */
static void unmask(unsigned char *data, size_t len, const unsigned char mask[4])
{
    unsigned char m8[8] = {mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3]};
    uint64_t m;
    memcpy(&m, m8, 8);
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, data + i, 8);
        w ^= m;
        memcpy(data + i, &w, 8);
    }
    for (; i < len; i++)
        data[i] ^= mask[i & 3];
}

/* The common case without wslay: a read that starts at a message boundary
 * with whole, unfragmented, masked text frames of up to 65,535 bytes (a
 * client's messages are small, and each usually arrives in one segment).
 * Each such frame is unmasked in place (the loop's read buffer is ours until
 * this returns) and handled at once: no wslay context, no copy, no
 * allocation. The first byte that is anything else (a control frame, a
 * fragment, a frame cut by the read, RSV bits, an unmasked or too large
 * frame, invalid UTF-8) stops it, and wslay takes over from there, which
 * answers or refuses exactly as for any other frame. Returns the bytes
 * consumed. */
static size_t fast_frames(gw_conn_t *conn, char *data, size_t len)
{
    size_t off = 0;
    uint64_t max = (uint64_t)conn->gw->cfg->max_frame;
    while (conn->ws == NULL && conn->state == GW_CONN_WS && conn->frame_left == 0 &&
           conn->hdr_len == 0 && !conn->in_msg && len - off >= 6) {
        unsigned char *p = (unsigned char *)data + off;
        if (p[0] != 0x81 || (p[1] & 0x80) == 0)
            break; /* not FIN + text without RSV, or not masked */
        size_t hl = 2;
        uint64_t plen = p[1] & 0x7f;
        if (plen == 127)
            break;
        if (plen == 126) {
            if (len - off < 8)
                break;
            plen = ((uint64_t)p[2] << 8) | p[3];
            hl = 4;
        }
        if (plen > max || len - off - hl - 4 < plen)
            break;
        const unsigned char *mask = p + hl;
        unsigned char *payload = p + hl + 4;
        unmask(payload, (size_t)plen, mask);
        if (!chat_utf8_valid(payload, (size_t)plen)) {
            unmask(payload, (size_t)plen, mask); /* as it was, for wslay */
            break;
        }
        conn->gw->metrics.frames_in++;
        gw_frames_handle(conn, (const char *)payload, (size_t)plen);
        off += hl + 4 + (size_t)plen;
    }
    return off;
}

void gw_ws_on_read(gw_conn_t *conn, char *data, size_t len)
{
    size_t done = fast_frames(conn, data, len);
    if (done == len || conn->state != GW_CONN_WS)
        return;
    data += done;
    len -= done;
    /* A context lives only while traffic needs one: an idle connection
     * keeps none of wslay's buffers. */
    if (conn->ws == NULL && ws_create(conn) != 0) {
        gw_conn_close(conn);
        return;
    }
    scan(conn, (const uint8_t *)data, len);
    conn->in = (const uint8_t *)data;
    conn->in_len = len;
    pump(conn);
    conn->in = NULL;
    conn->in_len = 0;
    if (conn->ws != NULL && conn->state == GW_CONN_WS && conn->frame_left == 0 &&
        conn->hdr_len == 0 && !conn->in_msg && wslay_event_get_queued_msg_count(conn->ws) == 0 &&
        !wslay_event_get_close_received(conn->ws) && !wslay_event_get_close_sent(conn->ws))
        gw_ws_free(conn);
}

int gw_ws_start(gw_conn_t *conn, char *rest, size_t rest_len)
{
    gw_t *gw = conn->gw;
    conn->state = GW_CONN_WS;
    chat_bucket_init(&conn->bucket, (double)gw->cfg->msg_burst, uv_now(gw->loop));
    gw->metrics.ws_upgrades++;
    gw->metrics.ws_open++;
    if (gw_conn_attach_user(conn) != 0) {
        gw_conn_close(conn);
        return CHAT_ENOMEM;
    }
    CHAT_DEBUG("conn %s: websocket open for user %s", conn->id, conn->user);
    /* Presence first; `hello` follows its acknowledgement. */
    gw_presence_register(conn);
    if (rest_len > 0)
        gw_ws_on_read(conn, rest, rest_len);
    return 0;
}
