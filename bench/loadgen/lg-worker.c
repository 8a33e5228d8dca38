/* One load generator process. Its phases, driven by a 10 ms tick:
 *
 *   setup    create the conversations over HTTP (lg-setup.c)
 *   connect  open every user's WebSocket, connect_concurrency at a time
 *   ready    tell the parent, wait for go (all processes start together)
 *   run      warm-up, then the measured seconds: paced sends (a token
 *            bucket over all senders) or, with rate 0, a full window each
 *   drain    wait until every acknowledged message reached every member
 *   storm    (optional) drop every member but the first, send them
 *            storm_missed messages per conversation, wait for the parent,
 *            reconnect all at once, sync, wait until all caught up
 *   finish   close every connection cleanly, count what is missing, send
 *            the report, close the loop
 */
#include "lg-worker.h"

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "chat-error.h"
#include "chat-log.h"
#include "lg-json.h"
#include "lg-pipe.h"
#include "lg-private.h"

#define TICK_MS        10
#define PACE_MS        1
#define WATCHDOG_MS    1000
#define CLOSE_WAIT_US  3000000u /* for the server's close frame */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define ERRORS_LOGGED  10

static const char *const phase_names[] = {
    "setup",      "connect",    "prime",      "ready",      "run",    "drain",
    "storm-drop", "storm-send", "storm-wait", "storm-back", "finish", "done",
};

const char *lg_phase_name(uint32_t phase)
{
    return phase < sizeof(phase_names) / sizeof(phase_names[0]) ? phase_names[phase] : "?";
}

static void enter_phase(lg_worker_t *w, lg_phase_t phase)
{
    CHAT_INFO("proc %u: %s -> %s", w->proc, phase_names[w->phase], phase_names[phase]);
    w->phase = phase;
    w->phase_us = lg_now_us();
}

static void send_progress(lg_worker_t *w, uint32_t type)
{
    lg_progress_t p;
    p.phase = (uint32_t)w->phase;
    p.open = w->open;
    p.c = w->rep.c;
    if (lg_pipe_send(w->to_parent, type, &p, sizeof(p)) != 0 && !w->stop_asked) {
        CHAT_WARN("proc %u: the parent is gone; stopping", w->proc);
        w->stop_asked = 1;
    }
}

/* ---- connecting --------------------------------------------------------- */

static void enqueue(lg_worker_t *w, lg_conn_t *conn)
{
    w->queue[(w->q_head + w->q_len) % w->n_conns] = conn->index;
    w->q_len++;
}

static void connect_more(lg_worker_t *w)
{
    uint32_t limit = (uint32_t)w->cfg->connect_concurrency;
    if (w->phase == LG_PH_STORM_BACK)
        limit = w->cfg->storm_concurrency > 0 ? (uint32_t)w->cfg->storm_concurrency : UINT32_MAX;
    if (w->phase >= LG_PH_FINISH || w->stop_asked)
        return;
    while (w->q_len > 0 && w->connecting < limit) {
        lg_conn_t *conn = &w->conns[w->queue[w->q_head]];
        w->q_head = (w->q_head + 1) % w->n_conns;
        w->q_len--;
        if (conn->state != LG_CONN_IDLE || conn->dead)
            continue;
        int rc = lg_conn_start(conn);
        if (rc != 0) {
            /* Out of file descriptors, most likely: try again later. */
            CHAT_WARN("proc %u: cannot open a socket: %s", w->proc, chat_strerror(rc));
            conn->retry_at_ms = uv_now(&w->loop) + BACKOFF_MAX_MS;
            w->backoff[w->n_backoff++] = conn->index;
            continue;
        }
        conn->connecting = 1;
        w->connecting++;
    }
}

static void give_up(lg_worker_t *w, lg_conn_t *conn)
{
    char user[CHAT_NAME_MAX + 1];
    lg_plan_user(w->plan, conn->conv->global, conn->member, user);
    CHAT_WARN("proc %u: giving up on %s at %s after %u attempts", w->proc, user,
              w->plan->gw_text[conn->gw], conn->attempts);
    conn->dead = 1;
    w->rep.c.conns_failed++;
    if (w->phase == LG_PH_CONNECT)
        w->resolved++;
    if (conn->storm_away && !conn->storm_done) {
        conn->storm_done = 1;
        w->storm_pending--;
    }
}

static void retry_later(lg_worker_t *w, lg_conn_t *conn)
{
    if (conn->attempts >= w->cfg->connect_retries) {
        give_up(w, conn);
        return;
    }
    conn->attempts++;
    if (w->phase == LG_PH_STORM_BACK)
        w->rep.c.storm_retries++;
    else
        w->rep.c.connect_retries++;
    uint64_t backoff = (uint64_t)BACKOFF_MIN_MS << (conn->attempts < 6 ? conn->attempts : 6);
    if (backoff > BACKOFF_MAX_MS)
        backoff = BACKOFF_MAX_MS;
    /* Jitter, so that a refused crowd does not come back as one. */
    backoff += (uint64_t)rand() % (backoff / 2 + 1);
    conn->retry_at_ms = uv_now(&w->loop) + backoff;
    w->backoff[w->n_backoff++] = conn->index;
}

static void release_backoffs(lg_worker_t *w)
{
    uint64_t now = uv_now(&w->loop);
    uint32_t kept = 0;
    for (uint32_t i = 0; i < w->n_backoff; i++) {
        lg_conn_t *conn = &w->conns[w->backoff[i]];
        if (conn->retry_at_ms <= now)
            enqueue(w, conn);
        else
            w->backoff[kept++] = w->backoff[i];
    }
    w->n_backoff = kept;
}

/* ---- what the connections report ---------------------------------------- */

static void storm_check(lg_worker_t *w, lg_conn_t *conn)
{
    if (!conn->storm_away || conn->storm_done || !conn->storm_synced)
        return;
    if (conn->storm_got < conn->conv->members[0].storm_acked)
        return;
    conn->storm_done = 1;
    w->storm_pending--;
    w->rep.c.storm_caught_up++;
    lg_hist_add(&w->rep.h[LG_H_STORM_CAUGHT_UP], lg_now_us() - w->storm_us);
}

static void on_hello(lg_worker_t *w, lg_conn_t *conn)
{
    if (conn->state != LG_CONN_HELLO)
        return;
    conn->state = LG_CONN_OPEN;
    conn->attempts = 0;
    if (conn->connecting) {
        conn->connecting = 0;
        w->connecting--;
    }
    conn->counted_open = 1;
    w->open++;
    if (w->cfg->ping_interval > 0)
        conn->next_ping_ms =
            uv_now(&w->loop) + (uint64_t)rand() % ((uint64_t)w->cfg->ping_interval * 1000);
    if (w->phase == LG_PH_CONNECT && !conn->storm_away && !conn->rejoin) {
        w->rep.c.conns_opened++;
        w->resolved++;
        lg_hist_add(&w->rep.h[LG_H_CONNECT], lg_now_us() - conn->started_us);
    } else if (conn->storm_away) {
        w->rep.c.storm_reconnected++;
        conn->storm_back = 1;
        lg_send_sync(w, conn);
    } else if (conn->rejoin) {
        w->rep.c.reconnects++;
        conn->rejoin = 0;
        lg_send_sync(w, conn);
    }
    if (w->phase >= LG_PH_FINISH)
        lg_conn_close(conn, 1000);
    connect_more(w);
}

static void count_error(lg_worker_t *w, lg_conn_t *conn, const lg_frame_t *f)
{
    lg_counts_t *c = &w->rep.c;
    c->error_frames++;
    if (lg_str_eq(f->code, "bad_frame"))
        c->err_bad_frame++;
    else if (lg_str_eq(f->code, "unknown_type"))
        c->err_unknown_type++;
    else if (lg_str_eq(f->code, "too_large"))
        c->err_too_large++;
    else if (lg_str_eq(f->code, "forbidden"))
        c->err_forbidden++;
    else if (lg_str_eq(f->code, "rate_limited"))
        c->err_rate_limited++;
    else if (lg_str_eq(f->code, "too_many_connections"))
        c->err_too_many_connections++;
    else if (lg_str_eq(f->code, "unavailable"))
        c->err_unavailable++;
    else if (lg_str_eq(f->code, "not_found"))
        c->err_not_found++;
    else if (lg_str_eq(f->code, "internal"))
        c->err_internal++;
    else
        c->err_other++;
    if (w->errors_logged++ < ERRORS_LOGGED)
        CHAT_WARN("proc %u: conn %u (conv %s): error %.*s: %.*s", w->proc, conn->index,
                  conn->conv->id, (int)f->code.n, f->code.p ? f->code.p : "", (int)f->message.n,
                  f->message.p ? f->message.p : "");
}

void lg_worker_on_text(lg_conn_t *conn, const char *data, size_t len)
{
    lg_worker_t *w = conn->w;
    lg_frame_t f;
    if (lg_frame_parse(data, len, &f) != 0 || f.t.p == NULL) {
        w->rep.c.unexpected_messages++;
        CHAT_DEBUG("conn %u: unreadable frame %.*s", conn->index, (int)(len < 200 ? len : 200),
                   data);
        return;
    }
    if (lg_str_eq(f.t, "message")) {
        if (f.from.p == NULL || f.cid.p == NULL || f.seq < 1) {
            w->rep.c.unexpected_messages++;
            return;
        }
        lg_track_message(conn, f.from.p, f.from.n, f.cid.p, f.cid.n, f.seq);
        storm_check(w, conn);
    } else if (lg_str_eq(f.t, "sent")) {
        if (f.cid.p != NULL)
            lg_track_answer(conn, f.cid.p, f.cid.n, 1);
        lg_send_refill(w, conn);
    } else if (lg_str_eq(f.t, "receipt")) {
        if (lg_str_eq(f.kind, "delivered") && f.user.p != NULL && f.upto >= 0)
            lg_track_receipt(conn, f.user.p, f.user.n, f.upto);
    } else if (lg_str_eq(f.t, "error")) {
        count_error(w, conn, &f);
        if (f.cid.p != NULL)
            lg_track_answer(conn, f.cid.p, f.cid.n, 0);
        lg_send_refill(w, conn);
    } else if (lg_str_eq(f.t, "hello")) {
        on_hello(w, conn);
    } else if (lg_str_eq(f.t, "synced")) {
        conn->syncing = 0;
        conn->synced_ever = 1;
        if (conn->storm_back && !conn->storm_synced) {
            conn->storm_synced = 1;
            w->rep.c.storm_synced++;
            w->rep.c.storm_sync_frames += f.count > 0 ? (uint64_t)f.count : 0;
            lg_hist_add(&w->rep.h[LG_H_STORM_SYNCED], lg_now_us() - w->storm_us);
            storm_check(w, conn);
        }
    }
    /* pong, presence, typing, member, edit, delete, conv_deleted: not ours
     * to measure. */
}

static void count_close(lg_worker_t *w, const lg_conn_t *conn, lg_end_t why)
{
    lg_counts_t *c = &w->rep.c;
    c->closes_unexpected++;
    if (why == LG_END_EOF) {
        c->close_eof++;
    } else {
        switch (conn->close_code) {
        case 1001:
            c->close_1001++;
            break;
        case 1011:
            c->close_1011++;
            break;
        case 4000:
            c->close_4000++;
            break;
        case 4001:
            c->close_4001++;
            break;
        default:
            c->close_other++;
            break;
        }
    }
    if (c->closes_unexpected <= ERRORS_LOGGED)
        CHAT_WARN("proc %u: conn %u (conv %s member %u) closed by the %s (code %u)", w->proc,
                  conn->index, conn->conv->id, conn->member,
                  why == LG_END_EOF ? "network" : "server", conn->close_code);
}

void lg_worker_on_closed(lg_conn_t *conn, lg_end_t why)
{
    lg_worker_t *w = conn->w;
    int was_connecting = conn->connecting;
    if (conn->connecting) {
        conn->connecting = 0;
        w->connecting--;
    }
    if (conn->counted_open) {
        conn->counted_open = 0;
        w->open--;
    }
    lg_track_lost(conn);
    if (w->phase >= LG_PH_FINISH || why == LG_END_ASKED) {
        connect_more(w);
        return;
    }
    switch (why) {
    case LG_END_REFUSED:
        if (conn->http_status == 429) {
            w->rep.c.refused_429++;
        } else {
            w->rep.c.refused_other++;
            CHAT_WARN("proc %u: conn %u: upgrade refused with HTTP %d", w->proc, conn->index,
                      conn->http_status);
        }
        if (conn->http_status == 429 || conn->http_status == 503)
            retry_later(w, conn);
        else
            give_up(w, conn);
        break;
    case LG_END_SERVER:
    case LG_END_EOF:
        if (!was_connecting) {
            count_close(w, conn, why);
            if (w->cfg->reconnect) {
                conn->rejoin = 1;
                conn->attempts = 0;
                enqueue(w, conn);
            } else {
                conn->dead = 1;
            }
            break;
        }
        retry_later(w, conn);
        break;
    default: /* failed, timed out */
        retry_later(w, conn);
        break;
    }
    connect_more(w);
}

/* ---- phases ------------------------------------------------------------- */

static void finish(lg_worker_t *w);

static void start_connecting(lg_worker_t *w)
{
    enter_phase(w, LG_PH_CONNECT);
    for (uint32_t i = 0; i < w->n_convs; i++) {
        lg_conv_t *conv = &w->convs[i];
        if (!w->cfg->idle && !conv->created) {
            conv->excluded = 1;
            w->rep.c.convs_excluded++;
            /* Not connected: they would receive nothing. */
            for (uint32_t m = 0; m < w->group; m++) {
                conv->members[m].dead = 1;
                w->resolved++;
            }
            continue;
        }
        for (uint32_t m = 0; m < w->group; m++)
            enqueue(w, &conv->members[m]);
    }
    connect_more(w);
}

static void setup_done(lg_worker_t *w)
{
    if (w->stop_asked) {
        finish(w);
        return;
    }
    start_connecting(w);
}

static void ready(lg_worker_t *w)
{
    enter_phase(w, LG_PH_READY);
    send_progress(w, LG_UP_READY);
}

static void connected(lg_worker_t *w)
{
    w->rep.t.connect_us = lg_now_us() - w->phase_us;
    for (uint32_t i = 0; i < w->n_convs; i++) {
        lg_conv_t *conv = &w->convs[i];
        if (conv->excluded)
            continue;
        for (uint32_t m = 0; m < w->group; m++) {
            if (conv->members[m].dead) {
                conv->excluded = 1;
                w->rep.c.convs_excluded++;
                break;
            }
        }
    }
    if (w->cfg->prime && !w->cfg->idle) {
        /* The first send of each connection waits for the gateway's
         * membership lookup; let that happen before the clock starts. */
        enter_phase(w, LG_PH_PRIME);
        for (uint32_t i = 0; i < w->n_conns; i++)
            w->conns[i].quota = 1;
        lg_send_start(w);
        return;
    }
    ready(w);
}

static void go(lg_worker_t *w)
{
    enter_phase(w, LG_PH_RUN);
    w->go_us = w->phase_us;
    w->measure_from_us = w->go_us + (uint64_t)w->cfg->warmup * 1000000u;
    w->measure_to_us = w->measure_from_us + (uint64_t)w->cfg->duration * 1000000u;
    if (!w->cfg->idle)
        lg_send_start(w);
}

static void storm_drop(lg_worker_t *w)
{
    enter_phase(w, LG_PH_STORM_DROP);
    for (uint32_t i = 0; i < w->n_conns; i++) {
        lg_conn_t *conn = &w->conns[i];
        if (conn->member == 0 || conn->conv->excluded || conn->dead)
            continue;
        conn->storm_away = 1;
        w->storm_away++;
        w->storm_pending++;
        w->rep.c.storm_dropped++;
        /* Like a phone losing its network: no close frame. */
        conn->close_asked = 1;
        lg_conn_abort(conn, LG_END_ASKED);
    }
}

static int storm_all_away(const lg_worker_t *w)
{
    for (uint32_t i = 0; i < w->n_conns; i++) {
        const lg_conn_t *conn = &w->conns[i];
        if (conn->storm_away && conn->state != LG_CONN_IDLE)
            return 0;
    }
    return 1;
}

static void storm_send(lg_worker_t *w)
{
    enter_phase(w, LG_PH_STORM_SEND);
    for (uint32_t i = 0; i < w->n_convs; i++) {
        lg_conv_t *conv = &w->convs[i];
        if (conv->excluded)
            continue;
        conv->members[0].quota = (uint32_t)w->cfg->storm_missed;
        conv->members[0].storm_k0 = conv->members[0].n_msgs + 1;
    }
    lg_send_start(w);
}

static int storm_sent_all(const lg_worker_t *w)
{
    if (w->inflight > 0)
        return 0;
    for (uint32_t i = 0; i < w->n_convs; i++) {
        const lg_conn_t *c0 = &w->convs[i].members[0];
        if (!w->convs[i].excluded && c0->quota > 0 && c0->state == LG_CONN_OPEN)
            return 0;
    }
    return 1;
}

static void storm_reconnect(lg_worker_t *w)
{
    enter_phase(w, LG_PH_STORM_BACK);
    w->storm_us = w->phase_us;
    for (uint32_t i = 0; i < w->n_conns; i++) {
        lg_conn_t *conn = &w->conns[i];
        if (!conn->storm_away)
            continue;
        conn->attempts = 0;
        conn->close_asked = 0;
        enqueue(w, conn);
    }
    connect_more(w);
}

static void finish(lg_worker_t *w)
{
    enter_phase(w, LG_PH_FINISH);
    uv_timer_stop(&w->pacer);
    w->q_len = 0;
    w->n_backoff = 0;
    for (uint32_t i = 0; i < w->n_conns; i++) {
        lg_conn_t *conn = &w->conns[i];
        if (conn->state == LG_CONN_OPEN || conn->state == LG_CONN_HELLO)
            lg_conn_close(conn, 1000);
        else if (conn->state == LG_CONN_CONNECTING || conn->state == LG_CONN_UPGRADING)
            lg_conn_abort(conn, LG_END_ASKED);
    }
    lg_conn_flush_all(w);
}

static int all_closed(const lg_worker_t *w)
{
    for (uint32_t i = 0; i < w->n_conns; i++) {
        if (w->conns[i].state != LG_CONN_IDLE)
            return 0;
    }
    return 1;
}

static void close_handle(lg_worker_t *w, uv_handle_t *h)
{
    (void)w;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void done(lg_worker_t *w)
{
    struct rusage ru;
    enter_phase(w, LG_PH_DONE);
    lg_track_finish(w);
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        w->rep.t.cpu_user_us =
            (uint64_t)ru.ru_utime.tv_sec * 1000000u + (uint64_t)ru.ru_utime.tv_usec;
        w->rep.t.cpu_sys_us =
            (uint64_t)ru.ru_stime.tv_sec * 1000000u + (uint64_t)ru.ru_stime.tv_usec;
        w->rep.t.maxrss_kib = (uint64_t)ru.ru_maxrss;
    }
    if (lg_pipe_send(w->to_parent, LG_UP_REPORT, &w->rep, sizeof(w->rep)) != 0)
        CHAT_WARN("proc %u: cannot send the report to the parent", w->proc);
    close_handle(w, (uv_handle_t *)&w->tick);
    close_handle(w, (uv_handle_t *)&w->pacer);
    close_handle(w, (uv_handle_t *)&w->watchdog);
    close_handle(w, (uv_handle_t *)&w->flush);
    close_handle(w, (uv_handle_t *)&w->ctl);
}

static void tick_cb(uv_timer_t *t)
{
    lg_worker_t *w = t->data;
    uint64_t now = lg_now_us();
    release_backoffs(w);
    connect_more(w);
    if (w->stop_asked && w->phase < LG_PH_FINISH && w->phase != LG_PH_SETUP &&
        w->phase != LG_PH_DRAIN) {
        if (w->phase != LG_PH_RUN) {
            finish(w);
            return;
        }
        /* Stopped while sending: end the measured time now, then drain as
         * usual so that what was sent is still accounted for. */
        if (now < w->measure_to_us)
            w->measure_to_us = now > w->measure_from_us ? now : w->measure_from_us;
    }
    switch (w->phase) {
    case LG_PH_CONNECT:
        if (w->resolved >= w->n_conns)
            connected(w);
        break;
    case LG_PH_PRIME:
        if (w->inflight == 0 && w->got >= w->expected) {
            w->rep.t.prime_us = now - w->phase_us;
            ready(w);
        } else if (now - w->phase_us > (uint64_t)w->cfg->prime_timeout * 1000000u) {
            CHAT_WARN("proc %u: prime unfinished after %llds (%llu of %llu deliveries); "
                      "starting anyway",
                      w->proc, (long long)w->cfg->prime_timeout, (unsigned long long)w->got,
                      (unsigned long long)w->expected);
            w->rep.t.prime_us = now - w->phase_us;
            ready(w);
        }
        break;
    case LG_PH_RUN:
        if (now >= w->measure_to_us) {
            uv_timer_stop(&w->pacer);
            w->rep.t.measure_us = w->measure_to_us - w->measure_from_us;
            if (w->cfg->idle)
                finish(w);
            else
                enter_phase(w, LG_PH_DRAIN);
        }
        break;
    case LG_PH_DRAIN:
        if ((w->inflight == 0 && w->got >= w->expected) ||
            now - w->phase_us > (uint64_t)w->cfg->drain * 1000000u) {
            w->rep.t.drain_us = now - w->phase_us;
            if (w->got < w->expected)
                CHAT_WARN("proc %u: drain ended with %llu of %llu deliveries", w->proc,
                          (unsigned long long)w->got, (unsigned long long)w->expected);
            if (w->cfg->storm && !w->stop_asked)
                storm_drop(w);
            else
                finish(w);
        }
        break;
    case LG_PH_STORM_DROP:
        if (storm_all_away(w))
            storm_send(w);
        break;
    case LG_PH_STORM_SEND:
        if (storm_sent_all(w)) {
            uv_timer_stop(&w->pacer);
            enter_phase(w, LG_PH_STORM_WAIT);
            send_progress(w, LG_UP_STORM_READY);
        } else if (now - w->phase_us > (uint64_t)w->cfg->storm_timeout * 1000000u) {
            CHAT_WARN("proc %u: storm messages still unanswered after %llds", w->proc,
                      (long long)w->cfg->storm_timeout);
            uv_timer_stop(&w->pacer);
            enter_phase(w, LG_PH_STORM_WAIT);
            send_progress(w, LG_UP_STORM_READY);
        }
        break;
    case LG_PH_STORM_BACK:
        if (w->storm_pending == 0 && w->inflight == 0 && w->got >= w->expected) {
            w->rep.t.storm_us = now - w->storm_us;
            w->rep.t.storm_done_abs = now;
            finish(w);
        } else if (now - w->storm_us > (uint64_t)w->cfg->storm_timeout * 1000000u) {
            CHAT_WARN("proc %u: storm unfinished after %llds: %u connections not caught up",
                      w->proc, (long long)w->cfg->storm_timeout, w->storm_pending);
            w->rep.c.storm_incomplete++;
            w->rep.t.storm_us = now - w->storm_us;
            w->rep.t.storm_done_abs = now;
            finish(w);
        }
        break;
    case LG_PH_FINISH:
        if (all_closed(w))
            done(w);
        break;
    default:
        break;
    }
}

static void watchdog_cb(uv_timer_t *t)
{
    lg_worker_t *w = t->data;
    uint64_t now = lg_now_us();
    uint64_t now_ms = uv_now(&w->loop);
    uint64_t connect_limit = (uint64_t)w->cfg->connect_timeout * 1000000u;
    for (uint32_t i = 0; i < w->n_conns; i++) {
        lg_conn_t *conn = &w->conns[i];
        switch (conn->state) {
        case LG_CONN_CONNECTING:
        case LG_CONN_UPGRADING:
        case LG_CONN_HELLO:
            if (now - conn->started_us > connect_limit) {
                w->rep.c.connect_timeouts++;
                lg_conn_abort(conn, LG_END_TIMEOUT);
            }
            break;
        case LG_CONN_CLOSING:
            if (now - conn->closing_us > CLOSE_WAIT_US || w->phase == LG_PH_DONE)
                lg_conn_abort(conn, conn->close_asked ? LG_END_ASKED : LG_END_SERVER);
            break;
        case LG_CONN_OPEN:
            /* The prime waits for its answers as long as prime_timeout
             * allows: that wait is what it is there for. */
            if (conn->inflight > 0 && w->phase != LG_PH_PRIME) {
                lg_track_timeouts(conn, now);
                lg_send_refill(w, conn);
            }
            if (w->cfg->ping_interval > 0 && now_ms >= conn->next_ping_ms) {
                if (lg_conn_send_ping(conn) == 0)
                    w->rep.c.pings_sent++;
                conn->next_ping_ms = now_ms + (uint64_t)w->cfg->ping_interval * 1000;
            }
            break;
        default:
            break;
        }
    }
    if (w->phase != LG_PH_DONE)
        send_progress(w, LG_UP_PROGRESS);
    lg_conn_flush_all(w);
}

static void check_cb(uv_check_t *h)
{
    lg_worker_t *w = h->data;
    if (w->n_receipts_due > 0)
        lg_send_receipts(w);
    lg_conn_flush_all(w);
}

static void ctl_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    lg_worker_t *w = s->data;
    if (nread < 0) {
        if (!w->stop_asked && w->phase < LG_PH_DONE)
            CHAT_WARN("proc %u: the parent closed its pipe; stopping", w->proc);
        w->stop_asked = 1;
        uv_read_stop(s);
        return;
    }
    for (ssize_t i = 0; i < nread; i++) {
        w->ctl_buf[w->ctl_len++] = (uint8_t)buf->base[i];
        if (w->ctl_len < sizeof(w->ctl_buf))
            continue;
        uint32_t cmd;
        memcpy(&cmd, w->ctl_buf, sizeof(cmd));
        w->ctl_len = 0;
        if (cmd == LG_DOWN_GO && w->phase == LG_PH_READY)
            go(w);
        else if (cmd == LG_DOWN_RECONNECT && w->phase == LG_PH_STORM_WAIT)
            storm_reconnect(w);
        else if (cmd == LG_DOWN_STOP)
            w->stop_asked = 1;
    }
}

/* ---- the process -------------------------------------------------------- */

static int init(lg_worker_t *w)
{
    const lg_plan_t *plan = w->plan;
    lg_plan_slice(plan, w->proc, &w->conv_first, &w->n_convs);
    w->group = plan->group;
    w->n_conns = w->n_convs * w->group;
    w->convs = calloc(w->n_convs, sizeof(*w->convs));
    w->conns = calloc(w->n_conns, sizeof(*w->conns));
    w->queue = malloc(w->n_conns * sizeof(*w->queue));
    w->backoff = malloc(w->n_conns * sizeof(*w->backoff));
    w->receipts_due = malloc(w->n_conns * sizeof(*w->receipts_due));
    w->rbuf = malloc(LG_READ_BUF);
    w->body = malloc((size_t)w->cfg->body_size);
    if (w->convs == NULL || w->conns == NULL || w->queue == NULL || w->backoff == NULL ||
        w->receipts_due == NULL || w->rbuf == NULL || w->body == NULL)
        return CHAT_ENOMEM;
    memset(w->body, 'x', (size_t)w->cfg->body_size);
    chat_buf_init(&w->frame, (size_t)w->cfg->body_size + 4096);
    w->secret = (const unsigned char *)w->cfg->jwt_secret;
    w->secret_len = strlen(w->cfg->jwt_secret);
    w->rng = uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ 0x9E3779B97F4A7C15ull;
    srand((unsigned)w->rng);
    w->rate = (double)w->cfg->rate * (double)w->n_convs / (double)plan->convs;
    lg_report_init(&w->rep);
    w->rep.c.conns_target = w->n_conns;
    w->rep.c.convs_target = w->cfg->idle ? 0 : w->n_convs;
    for (uint32_t i = 0; i < w->n_convs; i++) {
        lg_conv_t *conv = &w->convs[i];
        conv->global = w->conv_first + i;
        conv->members = &w->conns[i * w->group];
        for (uint32_t m = 0; m < w->group; m++) {
            lg_conn_t *conn = &conv->members[m];
            conn->w = w;
            conn->conv = conv;
            conn->index = i * w->group + m;
            conn->member = m;
            conn->gw = (uint8_t)lg_plan_gateway(plan, conv->global, m);
        }
    }
    return 0;
}

static void cleanup(lg_worker_t *w)
{
    for (uint32_t i = 0; w->conns != NULL && i < w->n_conns; i++)
        lg_conn_release(&w->conns[i]);
    chat_buf_close(&w->frame);
    free(w->convs);
    free(w->conns);
    free(w->queue);
    free(w->backoff);
    free(w->receipts_due);
    free(w->rbuf);
    free(w->body);
}

int lg_worker_run(const lg_config_t *cfg, const lg_plan_t *plan, uint32_t proc, int to_parent,
                  int from_parent)
{
    lg_worker_t *w = calloc(1, sizeof(*w));
    int status = 0;
    if (w == NULL)
        return 2;
    w->cfg = cfg;
    w->plan = plan;
    w->proc = proc;
    w->to_parent = to_parent;
    if (init(w) != 0 || uv_loop_init(&w->loop) != 0) {
        CHAT_ERROR("proc %u: out of memory", proc);
        cleanup(w);
        free(w);
        return 2;
    }
    w->loop.data = w;
    uv_timer_init(&w->loop, &w->tick);
    uv_timer_init(&w->loop, &w->pacer);
    uv_timer_init(&w->loop, &w->watchdog);
    uv_check_init(&w->loop, &w->flush);
    uv_pipe_init(&w->loop, &w->ctl, 0);
    w->tick.data = w->pacer.data = w->watchdog.data = w->flush.data = w->ctl.data = w;
    uv_timer_start(&w->tick, tick_cb, TICK_MS, TICK_MS);
    uv_timer_start(&w->watchdog, watchdog_cb, WATCHDOG_MS, WATCHDOG_MS);
    uv_check_start(&w->flush, check_cb);
    if (uv_pipe_open(&w->ctl, from_parent) != 0 ||
        uv_read_start((uv_stream_t *)&w->ctl, lg_conn_alloc_cb, ctl_read_cb) != 0) {
        CHAT_ERROR("proc %u: cannot read the parent's pipe", proc);
        w->stop_asked = 1;
    }

    w->phase = LG_PH_SETUP;
    w->phase_us = lg_now_us();
    if (cfg->idle) {
        start_connecting(w);
    } else if (lg_setup_start(w, setup_done) != 0) {
        CHAT_ERROR("proc %u: out of memory", proc);
        status = 2;
        w->stop_asked = 1;
        start_connecting(w);
    }
    uv_run(&w->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&w->loop);
    if (rc != 0) {
        CHAT_ERROR("proc %u: the loop did not close clean: %s", proc, uv_strerror(rc));
        uv_print_all_handles(&w->loop, stderr);
        status = 2;
    }
    cleanup(w);
    free(w);
    return status;
}
