/* Connections: accepting, the slot table that turns a serial into a
 * connection, the user map, the bounded outbound queue with one uv_write in
 * flight per connection, heartbeats and closing. */
#include <stdlib.h>
#include <string.h>

#include "chat-error.h"
#include "chat-log.h"
#include "gw-private.h"
#include "gw-seen.h"

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    /* One read buffer per loop: reads are handled synchronously, so no
     * connection needs a buffer of its own between reads. */
    gw_conn_t *conn = h->data;
    (void)suggested;
    buf->base = conn->gw->readbuf;
    buf->len = sizeof(conn->gw->readbuf);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    gw_conn_t *conn = s->data;
    if (nread < 0) {
        if (nread != UV_EOF)
            CHAT_DEBUG("conn %s: read: %s", conn->id, uv_strerror((int)nread));
        gw_conn_close(conn);
        return;
    }
    if (nread == 0 || conn->state == GW_CONN_CLOSING)
        return;
    conn->last_seen_ms = uv_now(conn->gw->loop);
    conn->pinged = 0;
    if (conn->state == GW_CONN_HTTP)
        gw_http_on_read(conn, buf->base, (size_t)nread);
    else
        gw_ws_on_read(conn, buf->base, (size_t)nread);
}

static int slot_take(gw_t *gw, gw_conn_t *conn)
{
    if (gw->nfree == 0) {
        size_t cap = gw->cap ? gw->cap * 2 : 1024;
        gw_conn_t **slots = realloc(gw->slots, cap * sizeof(*slots));
        if (slots == NULL)
            return CHAT_ENOMEM;
        gw->slots = slots;
        uint32_t *gens = realloc(gw->gens, cap * sizeof(*gens));
        if (gens == NULL)
            return CHAT_ENOMEM;
        gw->gens = gens;
        uint32_t *fr = realloc(gw->free_slots, cap * sizeof(*fr));
        if (fr == NULL)
            return CHAT_ENOMEM;
        gw->free_slots = fr;
        for (size_t i = gw->cap; i < cap; i++) {
            gw->slots[i] = NULL;
            gw->gens[i] = 1;
        }
        /* Hand out low slots first. */
        for (size_t i = cap; i > gw->cap; i--)
            gw->free_slots[gw->nfree++] = (uint32_t)(i - 1);
        gw->cap = cap;
    }
    uint32_t slot = gw->free_slots[--gw->nfree];
    gw->slots[slot] = conn;
    conn->serial = ((uint64_t)gw->gens[slot] << 32) | slot;
    gw->nslots++;
    return 0;
}

static void slot_release(gw_t *gw, gw_conn_t *conn)
{
    uint32_t slot = (uint32_t)(conn->serial & 0xffffffffu);
    if (slot >= gw->cap || gw->slots[slot] != conn)
        return;
    gw->slots[slot] = NULL;
    gw->gens[slot]++;
    gw->free_slots[gw->nfree++] = slot;
    gw->nslots--;
}

gw_conn_t *gw_conn_find(gw_t *gw, uint64_t serial)
{
    uint32_t slot = (uint32_t)(serial & 0xffffffffu);
    if (slot >= gw->cap || gw->gens[slot] != (uint32_t)(serial >> 32))
        return NULL;
    gw_conn_t *conn = gw->slots[slot];
    return conn != NULL && conn->state != GW_CONN_CLOSING ? conn : NULL;
}

int gw_conn_accept(gw_t *gw)
{
    gw_conn_t *conn = calloc(1, sizeof(*conn));
    int rc;
    if (conn == NULL)
        return CHAT_ENOMEM;
    conn->gw = gw;
    uv_tcp_init(gw->loop, &conn->tcp);
    conn->tcp.data = conn;
    if ((rc = uv_accept((uv_stream_t *)&gw->listener, (uv_stream_t *)&conn->tcp)) != 0 ||
        (rc = slot_take(gw, conn)) != 0) {
        conn->state = GW_CONN_CLOSING;
        uv_close((uv_handle_t *)&conn->tcp, (uv_close_cb)free);
        return rc;
    }
    uv_tcp_nodelay(&conn->tcp, 1);
    chat_buf_init(&conn->out, (size_t)gw->cfg->outbound_max + 65536);
    chat_buf_init(&conn->inflight, (size_t)gw->cfg->outbound_max + 65536);
    /* Unique across gateways: it is a field of the user's presence hash. */
    char rid[CHAT_ID_LEN + 1];
    chat_id_new(rid, chat_now_ms());
    snprintf(conn->id, sizeof(conn->id), "c-%s", rid);
    gw->conn_counter++;
    conn->last_seen_ms = uv_now(gw->loop);
    gw->metrics.connections_accepted++;
    gw->metrics.connections_open++;
    uv_read_start((uv_stream_t *)&conn->tcp, alloc_cb, read_cb);
    return 0;
}

void gw_conn_mark_dirty(gw_conn_t *conn)
{
    if (conn->dirty || conn->state == GW_CONN_CLOSING)
        return;
    conn->dirty = 1;
    conn->dirty_next = conn->gw->dirty_head;
    conn->gw->dirty_head = conn;
}

static size_t queued(const gw_conn_t *conn)
{
    return conn->out.len + (conn->writing ? conn->inflight.len : 0);
}

int gw_conn_send_raw(gw_conn_t *conn, const void *data, size_t len)
{
    if (conn->state == GW_CONN_CLOSING)
        return CHAT_ECLOSED;
    if (queued(conn) + len > (size_t)conn->gw->cfg->outbound_max) {
        /* The client does not read fast enough: memory stays bounded by
         * closing it rather than queueing without end. */
        CHAT_INFO("conn %s user %s: outbound queue full (%zu bytes), closing 4001", conn->id,
                  conn->user, queued(conn));
        conn->gw->metrics.slow_closes++;
        gw_conn_close(conn);
        return CHAT_EFULL;
    }
    int rc = chat_buf_append(&conn->out, data, len);
    if (rc != 0) {
        gw_conn_close(conn);
        return rc;
    }
    gw_conn_mark_dirty(conn);
    return 0;
}

int gw_conn_send_text(gw_conn_t *conn, const char *data, size_t len)
{
    if (conn->state != GW_CONN_WS)
        return CHAT_ECLOSED;
    if (conn->close_after_flush)
        return CHAT_ECLOSED;
    if (queued(conn) + len + 10 > (size_t)conn->gw->cfg->outbound_max) {
        CHAT_INFO("conn %s user %s: outbound queue full, closing 4001", conn->id, conn->user);
        conn->gw->metrics.slow_closes++;
        /* Drop what has not been handed to the kernel (whole frames only)
         * and say why; a peer that reads nothing is cut by the heartbeat. */
        conn->out.len = 0;
        gw_conn_ws_close(conn, 4001, "too slow");
        return CHAT_EFULL;
    }
    int rc = gw_ws_encode(&conn->out, WSLAY_TEXT_FRAME, data, len);
    if (rc != 0) {
        gw_conn_close(conn);
        return rc;
    }
    conn->gw->metrics.frames_out++;
    gw_conn_mark_dirty(conn);
    return 0;
}

void gw_conn_send_error(gw_conn_t *conn, const char *code, const char *message, const char *cid,
                        int retry)
{
    chat_buf_t *b = &conn->gw->scratch;
    chat_buf_reset(b);
    chat_buf_append_str(b, "{\"t\":\"error\",\"code\":\"");
    chat_buf_append_str(b, code);
    chat_buf_append_str(b, "\",\"message\":");
    chat_buf_append_json_str(b, message, strlen(message));
    if (cid != NULL && cid[0]) {
        chat_buf_append_str(b, ",\"cid\":");
        chat_buf_append_json_str(b, cid, strlen(cid));
    }
    chat_buf_append_str(b, retry ? ",\"retry\":true}" : ",\"retry\":false}");
    conn->gw->metrics.frame_errors++;
    gw_conn_send_text(conn, b->data, b->len);
}

static void write_cb(uv_write_t *req, int status)
{
    gw_conn_t *conn = req->data;
    conn->writing = 0;
    chat_buf_reset(&conn->inflight);
    if (status != 0) {
        if (conn->state != GW_CONN_CLOSING)
            gw_conn_close(conn);
        return;
    }
    if (conn->state == GW_CONN_CLOSING)
        return;
    if (conn->out.len > 0) {
        gw_conn_mark_dirty(conn);
        return;
    }
    if (conn->close_after_flush) {
        gw_conn_close(conn);
        return;
    }
    /* An idle connection keeps no buffers: the next write allocates. */
    chat_buf_close(&conn->inflight);
    chat_buf_close(&conn->out);
    gw_conn_drained(conn);
}

static void flush_one(gw_conn_t *conn)
{
    if (conn->writing || conn->out.len == 0 || conn->state == GW_CONN_CLOSING)
        return;
    /* Swap: what was queued becomes the write in flight, and new frames
     * accumulate in the other buffer meanwhile. */
    chat_buf_t tmp = conn->inflight;
    conn->inflight = conn->out;
    conn->out = tmp;
    chat_buf_reset(&conn->out);
    uv_buf_t buf = uv_buf_init(conn->inflight.data, (unsigned)conn->inflight.len);
    conn->wreq.data = conn;
    int rc = uv_write(&conn->wreq, (uv_stream_t *)&conn->tcp, &buf, 1, write_cb);
    if (rc != 0) {
        chat_buf_reset(&conn->inflight);
        gw_conn_close(conn);
        return;
    }
    conn->writing = 1;
}

void gw_conn_flush_all(gw_t *gw)
{
    while (gw->dirty_head != NULL) {
        gw_conn_t *conn = gw->dirty_head;
        gw->dirty_head = conn->dirty_next;
        conn->dirty = 0;
        conn->dirty_next = NULL;
        flush_one(conn);
    }
}

void gw_conn_drained(gw_conn_t *conn)
{
    if (conn->sync != NULL)
        gw_store_sync_next(conn);
}

static void detach_user(gw_conn_t *conn)
{
    gw_t *gw = conn->gw;
    /* An authenticated HTTP request has a user but is in no list. */
    if (!conn->attached)
        return;
    conn->attached = 0;
    if (conn->user_prev != NULL) {
        conn->user_prev->user_next = conn->user_next;
    } else {
        gw_map_entry_t *e = gw_map_get(&gw->users, conn->user);
        if (e != NULL) {
            if (conn->user_next != NULL)
                e->value = conn->user_next;
            else
                gw_map_del(&gw->users, e);
        }
    }
    if (conn->user_next != NULL)
        conn->user_next->user_prev = conn->user_prev;
    conn->user_next = conn->user_prev = NULL;
}

int gw_conn_attach_user(gw_conn_t *conn)
{
    gw_map_entry_t *e = gw_map_put(&conn->gw->users, conn->user);
    if (e == NULL)
        return CHAT_ENOMEM;
    conn->user_prev = NULL;
    conn->user_next = e->value;
    if (conn->user_next != NULL)
        conn->user_next->user_prev = conn;
    e->value = conn;
    conn->attached = 1;
    return 0;
}

static void close_cb(uv_handle_t *h)
{
    gw_conn_t *conn = h->data;
    chat_buf_close(&conn->out);
    chat_buf_close(&conn->inflight);
    free(conn);
}

static void unlink_dirty(gw_conn_t *conn)
{
    gw_conn_t **pp = &conn->gw->dirty_head;
    while (*pp != NULL && *pp != conn)
        pp = &(*pp)->dirty_next;
    if (*pp == conn)
        *pp = conn->dirty_next;
    conn->dirty = 0;
}

void gw_conn_close(gw_conn_t *conn)
{
    gw_t *gw = conn->gw;
    if (conn->state == GW_CONN_CLOSING)
        return;
    if (conn->state == GW_CONN_WS)
        gw->metrics.ws_open--;
    conn->state = GW_CONN_CLOSING;
    gw->metrics.connections_open--;
    if (conn->dirty)
        unlink_dirty(conn);
    if (conn->presence)
        gw_presence_unregister(gw, conn->user, conn->id);
    detach_user(conn);
    slot_release(gw, conn);
    gw_http_free(conn->http);
    conn->http = NULL;
    gw_ws_free(conn);
    gw_frames_free_pending(conn);
    gw_store_sync_free(conn);
    gw_seen_free(conn->seen);
    conn->seen = NULL;
    /* A write still in flight is cancelled by uv_close; its callback runs
     * before close_cb, which frees the buffers. */
    uv_close((uv_handle_t *)&conn->tcp, close_cb);
}

void gw_conn_ws_close(gw_conn_t *conn, uint16_t code, const char *reason)
{
    unsigned char payload[125];
    size_t rlen = strlen(reason);
    if (rlen > sizeof(payload) - 2)
        rlen = sizeof(payload) - 2;
    if (conn->state != GW_CONN_WS)
        return;
    payload[0] = (unsigned char)(code >> 8);
    payload[1] = (unsigned char)(code & 0xff);
    memcpy(payload + 2, reason, rlen);
    gw_ws_encode(&conn->out, WSLAY_CONNECTION_CLOSE, (const char *)payload, rlen + 2);
    conn->close_after_flush = 1;
    gw_conn_pause(conn);
    gw_conn_mark_dirty(conn);
}

void gw_conn_pause(gw_conn_t *conn)
{
    if (!conn->read_stopped && conn->state != GW_CONN_CLOSING) {
        uv_read_stop((uv_stream_t *)&conn->tcp);
        conn->read_stopped = 1;
    }
}

void gw_conn_resume(gw_conn_t *conn)
{
    if (conn->read_stopped && conn->state != GW_CONN_CLOSING && !conn->close_after_flush) {
        uv_read_start((uv_stream_t *)&conn->tcp, alloc_cb, read_cb);
        conn->read_stopped = 0;
    }
}

void gw_conn_heartbeat(gw_t *gw)
{
    uint64_t now = uv_now(gw->loop);
    uint64_t ping_after = (uint64_t)gw->cfg->heartbeat_s * 1000;
    uint64_t close_after = (uint64_t)gw->cfg->idle_timeout_s * 1000;
    for (size_t i = 0; i < gw->cap; i++) {
        gw_conn_t *conn = gw->slots[i];
        if (conn == NULL || conn->state == GW_CONN_CLOSING)
            continue;
        uint64_t idle = now - conn->last_seen_ms;
        if (idle >= close_after) {
            if (conn->state == GW_CONN_WS && !conn->close_after_flush) {
                CHAT_DEBUG("conn %s user %s: silent for %llu ms, closing 4000", conn->id,
                           conn->user, (unsigned long long)idle);
                gw->metrics.idle_closes++;
                gw_conn_ws_close(conn, 4000, "heartbeat timeout");
                /* Give the close frame a few seconds, not a peer that is gone. */
                conn->last_seen_ms = now - close_after + 5000;
            } else {
                gw_conn_close(conn);
            }
        } else if (idle >= ping_after && conn->state == GW_CONN_WS && !conn->pinged) {
            /* A server ping is written directly: it needs no wslay context. */
            gw_ws_encode(&conn->out, WSLAY_PING, NULL, 0);
            conn->pinged = 1;
            gw_conn_mark_dirty(conn);
        }
    }
}
