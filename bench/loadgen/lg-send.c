/* What the clients send: messages paced by a token bucket over all of a
 * process's senders (or, with rate 0, a full window each), syncs after a
 * reconnect, and delivered receipts, gathered so that each receiver sends
 * at most one per loop turn. */
#include <string.h>

#include "lg-private.h"

#define PACE_MS 1

static int sendable(lg_worker_t *w, const lg_conn_t *conn)
{
    if (conn->state != LG_CONN_OPEN || conn->conv->excluded)
        return 0;
    if (w->phase == LG_PH_RUN)
        return !w->cfg->idle && lg_now_us() < w->measure_to_us;
    if (w->phase == LG_PH_STORM_SEND || w->phase == LG_PH_PRIME)
        return conn->quota > 0;
    return 0;
}

static int send_one(lg_worker_t *w, lg_conn_t *conn)
{
    int rc = lg_track_send(conn);
    if (rc == 0 && (w->phase == LG_PH_STORM_SEND || w->phase == LG_PH_PRIME))
        conn->quota--;
    return rc;
}

/* With rate 0: keep the window full. */
void lg_send_refill(lg_worker_t *w, lg_conn_t *conn)
{
    if (w->cfg->rate > 0 && w->phase != LG_PH_PRIME)
        return;
    while (conn->inflight < (uint32_t)w->cfg->window && sendable(w, conn)) {
        if (send_one(w, conn) != 0)
            break;
    }
}

static void pacer_cb(uv_timer_t *t)
{
    lg_worker_t *w = t->data;
    uint64_t now = lg_now_us();
    w->tokens += w->rate * (double)(now - w->pace_last_us) / 1e6;
    w->pace_last_us = now;
    /* Save up at most 100 ms of sends: behind by more, the run is
     * overloaded, and bursts would only hide it. */
    double cap = w->rate / 10.0 > 1.0 ? w->rate / 10.0 : 1.0;
    if (w->tokens > cap)
        w->tokens = cap;
    uint32_t scanned = 0;
    while (w->tokens >= 1.0 && scanned < w->n_conns) {
        lg_conn_t *conn = &w->conns[w->pace_cursor];
        w->pace_cursor = (w->pace_cursor + 1) % w->n_conns;
        scanned++;
        if (!sendable(w, conn))
            continue;
        if (conn->inflight >= (uint32_t)w->cfg->window) {
            w->rep.c.window_stalls++;
            continue;
        }
        if (send_one(w, conn) == 0) {
            w->tokens -= 1.0;
            scanned = 0;
        }
    }
    lg_conn_flush_all(w);
}

void lg_send_start(lg_worker_t *w)
{
    /* The prime is not paced: it is over before the clock starts. */
    if (w->cfg->rate > 0 && w->phase != LG_PH_PRIME) {
        w->tokens = 0;
        w->pace_last_us = lg_now_us();
        uv_timer_start(&w->pacer, pacer_cb, PACE_MS, PACE_MS);
    } else {
        for (uint32_t i = 0; i < w->n_conns; i++)
            lg_send_refill(w, &w->conns[i]);
        lg_conn_flush_all(w);
    }
}

void lg_send_sync(lg_worker_t *w, lg_conn_t *conn)
{
    chat_buf_t *b = &w->frame;
    chat_buf_reset(b);
    chat_buf_append_str(b, "{\"t\":\"sync\",\"have\":{");
    if (conn->conv->id[0] != '\0') {
        chat_buf_append_json_str(b, conn->conv->id, strlen(conn->conv->id));
        chat_buf_printf(b, ":%lld", (long long)conn->last_seq);
    }
    chat_buf_append_str(b, "}}");
    if (lg_conn_send_text(conn, b->data, b->len) == 0)
        conn->syncing = 1;
}

void lg_send_receipts(lg_worker_t *w)
{
    for (uint32_t i = 0; i < w->n_receipts_due; i++) {
        lg_conn_t *conn = w->receipts_due[i];
        conn->receipt_due = 0;
        if (conn->state != LG_CONN_OPEN || conn->receipt_upto <= conn->receipt_sent)
            continue;
        chat_buf_t *b = &w->frame;
        chat_buf_reset(b);
        chat_buf_append_str(b, "{\"t\":\"delivered\",\"conv\":");
        chat_buf_append_json_str(b, conn->conv->id, strlen(conn->conv->id));
        chat_buf_printf(b, ",\"upto\":%lld}", (long long)conn->receipt_upto);
        if (lg_conn_send_text(conn, b->data, b->len) == 0) {
            conn->receipt_sent = conn->receipt_upto;
            w->rep.c.receipts_sent++;
        }
    }
    w->n_receipts_due = 0;
}
