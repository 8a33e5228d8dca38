/* What was sent, answered and received. Every connection is the sender of
 * its own messages, numbered k = 1, 2, ... and the cid of each carries k
 * and the monotonic send time ("<k>.<us>"), so any receiver can find the
 * message and time it without a lookup. Per message and member a bit says
 * whether that member got it: a second copy is a duplicate, a missing bit
 * at the end is a lost message. Arrays grow by doubling; nothing is
 * allocated per message. */
#include <stdlib.h>
#include <string.h>

#include "chat-error.h"
#include "chat-log.h"
#include "lg-private.h"

#define MISSING_LOGGED 10

static int in_window(const lg_worker_t *w, uint64_t ts)
{
    return ts >= w->measure_from_us && ts < w->measure_to_us;
}

static int parse_cid(const char *s, size_t n, uint32_t *k, uint64_t *ts)
{
    uint64_t a = 0, b = 0;
    size_t i = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9' && a < UINT32_MAX)
        a = a * 10 + (uint64_t)(s[i++] - '0');
    if (i == 0 || i >= n || s[i] != '.' || a == 0 || a > UINT32_MAX)
        return -1;
    size_t j = ++i;
    while (i < n && s[i] >= '0' && s[i] <= '9')
        b = b * 10 + (uint64_t)(s[i++] - '0');
    if (i != n || i == j)
        return -1;
    *k = (uint32_t)a;
    *ts = b;
    return 0;
}

static int grow(lg_conn_t *conn)
{
    uint32_t group = conn->w->group;
    uint32_t cap = conn->cap_msgs ? conn->cap_msgs * 2 : 64;
    if (conn->bits == NULL) {
        conn->bits = calloc(group, sizeof(*conn->bits));
        conn->receipt_k = calloc(group, sizeof(*conn->receipt_k));
        if (conn->bits == NULL || conn->receipt_k == NULL)
            return CHAT_ENOMEM;
    }
    lg_msg_t *msgs = realloc(conn->msgs, cap * sizeof(*msgs));
    if (msgs == NULL)
        return CHAT_ENOMEM;
    conn->msgs = msgs;
    for (uint32_t m = 0; m < group; m++) {
        uint64_t *b = realloc(conn->bits[m], cap / 64 * sizeof(*b));
        if (b == NULL)
            return CHAT_ENOMEM;
        memset(b + conn->cap_msgs / 64, 0, (cap - conn->cap_msgs) / 64 * sizeof(*b));
        conn->bits[m] = b;
    }
    conn->cap_msgs = cap;
    return 0;
}

/* Appends the decimal digits of v. */
static char *put_u64(char *p, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    while (n > 0)
        *p++ = tmp[--n];
    return p;
}

int lg_track_send(lg_conn_t *conn)
{
    lg_worker_t *w = conn->w;
    static const char head[] = "{\"t\":\"send\",\"conv\":\"";
    static const char mid[] = "\",\"cid\":\"";
    static const char tail1[] = "\",\"body\":\"";
    if (conn->state != LG_CONN_OPEN)
        return CHAT_ECLOSED;
    if (conn->n_msgs == conn->cap_msgs && grow(conn) != 0)
        return CHAT_ENOMEM;
    size_t conv_len = strlen(conn->conv->id);
    size_t body_len = (size_t)w->cfg->body_size;
    int rc = chat_buf_reserve(&w->frame, sizeof(head) + conv_len + sizeof(mid) + 48 +
                                             sizeof(tail1) + body_len + 2);
    if (rc != 0)
        return rc;
    uint32_t k = conn->n_msgs + 1;
    uint64_t ts = lg_now_us();
    char *p = w->frame.data;
    memcpy(p, head, sizeof(head) - 1);
    p += sizeof(head) - 1;
    memcpy(p, conn->conv->id, conv_len);
    p += conv_len;
    memcpy(p, mid, sizeof(mid) - 1);
    p += sizeof(mid) - 1;
    p = put_u64(p, k);
    *p++ = '.';
    p = put_u64(p, ts);
    memcpy(p, tail1, sizeof(tail1) - 1);
    p += sizeof(tail1) - 1;
    memcpy(p, w->body, body_len);
    p += body_len;
    *p++ = '"';
    *p++ = '}';
    rc = lg_conn_send_text(conn, w->frame.data, (size_t)(p - w->frame.data));
    if (rc != 0)
        return rc;
    lg_msg_t *msg = &conn->msgs[k - 1];
    msg->ts_us = ts;
    msg->seq = 0;
    msg->nrecv = 0;
    msg->state = LG_MSG_INFLIGHT;
    msg->storm = w->phase == LG_PH_STORM_SEND;
    conn->n_msgs = k;
    conn->inflight++;
    w->inflight++;
    w->rep.c.sent++;
    if (msg->storm)
        w->rep.c.storm_sent++;
    if (in_window(w, ts))
        w->rep.c.sent_in_window++;
    return 0;
}

static void settle(lg_conn_t *conn, lg_msg_t *msg)
{
    if (msg->state == LG_MSG_INFLIGHT) {
        conn->inflight--;
        conn->w->inflight--;
    }
}

void lg_track_answer(lg_conn_t *conn, const char *cid, size_t cid_len, int ok)
{
    lg_worker_t *w = conn->w;
    uint32_t k;
    uint64_t ts;
    if (parse_cid(cid, cid_len, &k, &ts) != 0 || k > conn->n_msgs)
        return;
    lg_msg_t *msg = &conn->msgs[k - 1];
    if (!ok) {
        if (msg->state == LG_MSG_INFLIGHT) {
            settle(conn, msg);
            msg->state = LG_MSG_ERROR;
            w->rep.c.send_errors++;
        }
        return;
    }
    if (msg->state == LG_MSG_ACKED)
        return;
    if (msg->state != LG_MSG_INFLIGHT)
        w->rep.c.acked_late++;
    settle(conn, msg);
    msg->state = LG_MSG_ACKED;
    w->rep.c.acked++;
    /* Ingest alone: the gateways' part ends at Kafka's acknowledgement, and
     * no consumer runs to deliver anything. */
    if (!w->cfg->ingest_only)
        w->expected += w->group;
    w->got += msg->nrecv;
    if (msg->storm) {
        w->rep.c.storm_acked++;
        conn->storm_acked++;
    }
    if (in_window(w, msg->ts_us)) {
        w->rep.c.acked_in_window++;
        lg_hist_add(&w->rep.h[LG_H_SENT], lg_now_us() - msg->ts_us);
    }
}

void lg_track_message(lg_conn_t *conn, const char *from, size_t from_len, const char *cid,
                      size_t cid_len, int64_t seq)
{
    lg_worker_t *w = conn->w;
    uint32_t c, m, k;
    uint64_t ts;
    if (seq > conn->last_seq)
        conn->last_seq = seq;
    if (lg_plan_parse_user(w->plan, from, from_len, &c, &m) != 0 || c != conn->conv->global ||
        parse_cid(cid, cid_len, &k, &ts) != 0) {
        w->rep.c.unexpected_messages++;
        return;
    }
    lg_conn_t *sender = &conn->conv->members[m];
    if (k > sender->n_msgs || sender->msgs[k - 1].ts_us != ts) {
        w->rep.c.unexpected_messages++;
        return;
    }
    lg_msg_t *msg = &sender->msgs[k - 1];
    uint64_t *word = &sender->bits[conn->member][(k - 1) / 64];
    uint64_t bit = 1ull << ((k - 1) % 64);
    if (*word & bit) {
        if (msg->seq != 0 && (int64_t)msg->seq != seq) {
            w->rep.c.seq_mismatches++;
            CHAT_WARN("proc %u: conv %s: message %.*s/%u came again as seq %lld, first as %u",
                      w->proc, conn->conv->id, (int)from_len, from, k, (long long)seq, msg->seq);
        } else if (conn->syncing || conn->synced_ever) {
            w->rep.c.sync_duplicates++;
        } else {
            w->rep.c.duplicates++;
            CHAT_WARN("proc %u: conv %s: message %.*s/%u (seq %lld) received twice by member %u",
                      w->proc, conn->conv->id, (int)from_len, from, k, (long long)seq,
                      conn->member);
        }
        return;
    }
    *word |= bit;
    msg->nrecv++;
    if (msg->seq == 0) {
        msg->seq = (uint32_t)seq;
    } else if ((int64_t)msg->seq != seq) {
        w->rep.c.seq_mismatches++;
        CHAT_WARN("proc %u: conv %s: message %.*s/%u is seq %lld for member %u, %u for another",
                  w->proc, conn->conv->id, (int)from_len, from, k, (long long)seq, conn->member,
                  msg->seq);
    }
    if (msg->state == LG_MSG_ACKED) {
        w->got++;
        if (msg->storm)
            conn->storm_got++;
    }
    uint64_t now = lg_now_us();
    if (sender == conn) {
        w->rep.c.echoes++;
        if (in_window(w, ts))
            lg_hist_add(&w->rep.h[LG_H_ECHO], now - ts);
        return;
    }
    w->rep.c.received++;
    if (in_window(w, ts)) {
        w->rep.c.received_in_window++;
        lg_hist_add(&w->rep.h[LG_H_RECV], now - ts);
    }
    if (w->cfg->receipts && seq > conn->receipt_upto) {
        conn->receipt_upto = seq;
        if (!conn->receipt_due) {
            conn->receipt_due = 1;
            w->receipts_due[w->n_receipts_due++] = conn;
        }
    }
}

void lg_track_receipt(lg_conn_t *conn, const char *user, size_t user_len, int64_t upto)
{
    lg_worker_t *w = conn->w;
    uint32_t c, m;
    if (lg_plan_parse_user(w->plan, user, user_len, &c, &m) != 0 || c != conn->conv->global ||
        m == conn->member || conn->receipt_k == NULL)
        return;
    uint32_t i = conn->receipt_k[m];
    uint64_t now = lg_now_us();
    while (i < conn->n_msgs) {
        const lg_msg_t *msg = &conn->msgs[i];
        if (msg->seq == 0) {
            if (msg->state == LG_MSG_INFLIGHT || msg->state == LG_MSG_ACKED)
                break; /* not known yet: its seq comes with its delivery */
            i++;       /* never stored */
            continue;
        }
        if ((int64_t)msg->seq > upto)
            break;
        w->rep.c.receipts_received++;
        if (in_window(w, msg->ts_us))
            lg_hist_add(&w->rep.h[LG_H_RECEIPT], now - msg->ts_us);
        i++;
    }
    conn->receipt_k[m] = i;
}

void lg_track_lost(lg_conn_t *conn)
{
    for (uint32_t i = conn->ack_floor; i < conn->n_msgs && conn->inflight > 0; i++) {
        lg_msg_t *msg = &conn->msgs[i];
        if (msg->state != LG_MSG_INFLIGHT)
            continue;
        settle(conn, msg);
        msg->state = LG_MSG_LOST;
        conn->w->rep.c.lost_unacked++;
    }
}

void lg_track_timeouts(lg_conn_t *conn, uint64_t now_us)
{
    uint64_t limit = (uint64_t)conn->w->cfg->ack_timeout * 1000000u;
    while (conn->ack_floor < conn->n_msgs) {
        lg_msg_t *msg = &conn->msgs[conn->ack_floor];
        if (msg->state == LG_MSG_INFLIGHT) {
            if (now_us - msg->ts_us < limit)
                break;
            settle(conn, msg);
            msg->state = LG_MSG_TIMEOUT;
            conn->w->rep.c.ack_timeouts++;
        }
        conn->ack_floor++;
    }
}

void lg_track_finish(lg_worker_t *w)
{
    int logged = 0;
    char user[CHAT_NAME_MAX + 1];
    for (uint32_t i = 0; i < w->n_conns; i++) {
        lg_conn_t *sender = &w->conns[i];
        for (uint32_t k = 1; k <= sender->n_msgs; k++) {
            const lg_msg_t *msg = &sender->msgs[k - 1];
            if (msg->state != LG_MSG_ACKED) {
                if (msg->nrecv > 0)
                    w->rep.c.delivered_unacked++;
                continue;
            }
            if (w->cfg->ingest_only)
                continue;
            for (uint32_t m = 0; m < w->group; m++) {
                if (sender->bits[m][(k - 1) / 64] & (1ull << ((k - 1) % 64)))
                    continue;
                if (m == sender->member)
                    w->rep.c.missing_echo++;
                else
                    w->rep.c.missing++;
                if (logged++ < MISSING_LOGGED) {
                    lg_plan_user(w->plan, sender->conv->global, m, user);
                    CHAT_WARN("proc %u: MISSING: conv %s, message %u.%llu of member %u (seq %u) "
                              "never reached %s%s",
                              w->proc, sender->conv->id, k, (unsigned long long)msg->ts_us,
                              sender->member, msg->seq, user,
                              m == sender->member ? " (its own echo)" : "");
                }
            }
        }
        if (sender->bits != NULL) {
            for (uint32_t m = 0; m < w->group; m++)
                free(sender->bits[m]);
        }
        free(sender->bits);
        free(sender->receipt_k);
        free(sender->msgs);
        sender->bits = NULL;
        sender->receipt_k = NULL;
        sender->msgs = NULL;
        sender->n_msgs = sender->cap_msgs = 0;
    }
}
