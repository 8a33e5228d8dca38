/* The state one load generator process keeps, shared by its modules:
 * lg-conn.c (TCP, the upgrade, WebSocket framing), lg-setup.c (conversation
 * creation over HTTP), lg-track.c (what was sent, acknowledged, received)
 * and lg-worker.c (phases, pacing, the storm). One libuv loop per process;
 * nothing here is touched from another thread. */
#ifndef LG_PRIVATE_H
#define LG_PRIVATE_H

#include <stdint.h>
#include <uv.h>
#include <wslay/wslay.h>

#include "chat-buf.h"
#include "chat-id.h"
#include "lg-config.h"
#include "lg-report.h"

#define LG_READ_BUF (256 * 1024) /* one per process: reads are handled at once */
#define LG_OUT_MAX  (64u << 20)  /* a gateway that stops reading is an error well before */

typedef struct lg_worker_s lg_worker_t;
typedef struct lg_conn_s lg_conn_t;
typedef struct lg_conv_s lg_conv_t;
typedef struct lg_handshake_s lg_handshake_t;

typedef enum {
    LG_CONN_IDLE,       /* not connected (yet, or again) */
    LG_CONN_CONNECTING, /* TCP connect in progress */
    LG_CONN_UPGRADING,  /* upgrade request sent, waiting for 101 */
    LG_CONN_HELLO,      /* WebSocket open, waiting for the server's hello */
    LG_CONN_OPEN,
    LG_CONN_CLOSING, /* we sent a close frame and wait for the server's */
    LG_CONN_ENDING,  /* uv_close called, waiting for the close callback */
} lg_conn_state_t;

/* Why a connection ended, for lg_worker_on_closed. */
typedef enum {
    LG_END_ASKED,   /* we closed it (finish, storm drop) */
    LG_END_SERVER,  /* the server sent a close frame */
    LG_END_EOF,     /* TCP ended or failed without a close frame */
    LG_END_REFUSED, /* the upgrade was refused (HTTP status in http_status) */
    LG_END_FAILED,  /* connect or handshake failed */
    LG_END_TIMEOUT, /* no hello within connect_timeout */
} lg_end_t;

typedef enum {
    LG_MSG_INFLIGHT = 1,
    LG_MSG_ACKED,
    LG_MSG_ERROR,   /* answered with an error frame */
    LG_MSG_TIMEOUT, /* no answer within ack_timeout */
    LG_MSG_LOST,    /* unanswered when its connection closed */
} lg_msg_state_t;

/* One message a connection sent; k (its per-sender number) is the index + 1. */
typedef struct lg_msg_s {
    uint64_t ts_us; /* monotonic send time, also carried in the cid */
    uint32_t seq;   /* the conversation seq, once someone received it */
    uint16_t nrecv; /* members (the sender included) that got it, each once */
    uint8_t state;  /* lg_msg_state_t */
    uint8_t storm;  /* sent during the storm */
} lg_msg_t;

struct lg_conn_s {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    lg_worker_t *w;
    lg_conv_t *conv;
    wslay_frame_context_ptr ws;
    lg_handshake_t *hs;
    chat_buf_t out;    /* frames waiting for the next flush */
    chat_buf_t wout;   /* the bytes of the write in flight */
    chat_buf_t msg;    /* a message split over reads or fragments */
    const uint8_t *in; /* the read being fed to wslay */
    size_t in_len;
    lg_conn_t *dirty_next;

    uint64_t frame_len; /* payload length of the frame being received */
    uint64_t frame_off; /* payload bytes of it seen */
    uint8_t frame_op;
    uint8_t msg_op; /* opcode of the data message being reassembled */
    uint8_t ctl_len;
    uint8_t ctl[125]; /* a control frame's payload */

    uint32_t index;  /* in the process */
    uint32_t member; /* in its conversation */
    uint8_t gw;
    uint8_t state; /* lg_conn_state_t */
    uint8_t attempts;
    unsigned writing : 1;
    unsigned dirty : 1;
    unsigned feeding : 1;
    unsigned close_asked : 1; /* a close we started: not an error */
    unsigned close_got : 1;   /* the server's close frame arrived */
    unsigned dead : 1;        /* given up */
    unsigned syncing : 1;     /* a sync is running */
    unsigned synced_ever : 1;
    unsigned storm_away : 1; /* dropped for the storm */
    unsigned storm_back : 1; /* reconnected in the storm */
    unsigned storm_done : 1;
    unsigned rejoin : 1; /* reconnecting after an unexpected close: sync on hello */
    unsigned receipt_due : 1;
    unsigned in_frame : 1;     /* inside a frame's payload */
    unsigned connecting : 1;   /* counted in w->connecting */
    unsigned counted_open : 1; /* counted in w->open */
    unsigned storm_synced : 1; /* got synced after the storm's reconnect */
    uint8_t end_why;           /* lg_end_t, once lg_conn_abort was called */
    uint16_t close_code;
    uint64_t closing_us; /* when our close frame went out */
    int http_status;
    uint64_t started_us; /* this connection attempt */
    uint64_t retry_at_ms;
    uint64_t next_ping_ms;

    /* As a receiver. */
    int64_t last_seq;     /* highest seq received in its conversation */
    int64_t receipt_upto; /* highest seq to acknowledge */
    int64_t receipt_sent;
    uint32_t storm_got; /* storm messages received */

    /* As a sender: its messages, and per member of the conversation a
     * bitmap of which of them that member received and how far its
     * delivered receipts reached. */
    lg_msg_t *msgs;
    uint32_t n_msgs;
    uint32_t cap_msgs;
    uint64_t **bits;
    uint32_t *receipt_k;
    uint32_t ack_floor; /* messages below it are all answered */
    uint32_t inflight;
    uint32_t quota;       /* messages still to send in the prime or the storm */
    uint32_t storm_acked; /* storm messages of this sender acknowledged */
    uint32_t storm_k0;    /* the first storm message's k */
};

struct lg_conv_s {
    char id[CHAT_NAME_MAX + 1];
    lg_conn_t *members; /* group consecutive connections */
    uint32_t global;    /* its number in the run */
    uint8_t created;
    uint8_t excluded;
};

typedef enum {
    LG_PH_SETUP,
    LG_PH_CONNECT,
    LG_PH_PRIME, /* one message per connection, delivered before the clock */
    LG_PH_READY, /* waiting for the parent's go */
    LG_PH_RUN,   /* warm-up and measured seconds */
    LG_PH_DRAIN,
    LG_PH_STORM_DROP,
    LG_PH_STORM_SEND,
    LG_PH_STORM_WAIT, /* waiting for the parent's order to reconnect */
    LG_PH_STORM_BACK,
    LG_PH_FINISH, /* closing the connections */
    LG_PH_DONE,
} lg_phase_t;

struct lg_worker_s {
    uv_loop_t loop;
    const lg_config_t *cfg;
    const lg_plan_t *plan;
    uint32_t proc;
    uint32_t conv_first;
    uint32_t n_convs;
    uint32_t n_conns;
    uint32_t group;
    lg_conv_t *convs;
    lg_conn_t *conns;
    char *rbuf;
    int rbuf_busy;
    chat_buf_t frame; /* a client frame being built */
    char *body;       /* body_size bytes of filler */
    uint64_t rng;
    const unsigned char *secret;
    size_t secret_len;

    uv_timer_t tick;     /* phases, connections, drain checks */
    uv_timer_t pacer;    /* paced sends */
    uv_timer_t watchdog; /* timeouts, pings, progress */
    uv_check_t flush;    /* one write per touched connection per loop turn */
    uv_pipe_t ctl;       /* orders from the parent */
    int to_parent;
    int handles_open;

    lg_phase_t phase;
    lg_conn_t *dirty_head;

    /* Connecting: a ring of connections to (re)connect, and a small list
     * of those waiting out a backoff. */
    uint32_t *queue;
    uint32_t q_head, q_len;
    uint32_t *backoff;
    uint32_t n_backoff;
    uint32_t connecting;
    uint32_t open;
    uint32_t resolved; /* open or given up, in the connect phase */

    /* Pacing. */
    double rate; /* this process's share, messages per second */
    double tokens;
    uint64_t pace_last_us;
    uint32_t pace_cursor;
    uint32_t n_senders;

    /* Delivery bookkeeping: every acknowledged message times its
     * recipients, and how many of those deliveries happened. */
    uint64_t expected;
    uint64_t got;
    uint64_t inflight;

    uint64_t phase_us;
    uint64_t go_us;
    uint64_t measure_from_us;
    uint64_t measure_to_us;
    uint64_t storm_us;      /* when the parent ordered the reconnect */
    uint32_t storm_away;    /* connections dropped and not yet back */
    uint32_t storm_pending; /* dropped ones not yet caught up */

    int stop_asked; /* the parent said stop, or went away */
    uint8_t ctl_buf[4];
    uint32_t ctl_len;
    uint32_t errors_logged;
    void *setup;              /* lg-setup.c's state while it runs */
    lg_conn_t **receipts_due; /* receivers with a delivered receipt to send */
    uint32_t n_receipts_due;
    lg_report_t rep;
};

/* ---- lg-conn.c ---------------------------------------------------------- */

/* Starts connecting conn (TCP from its source address, then the upgrade
 * with a freshly minted token). Returns 0, or a libuv code with nothing
 * started; the outcome arrives as lg_worker_on_open or lg_worker_on_closed. */
int lg_conn_start(lg_conn_t *conn);

/* Queues one masked text frame (copied). Returns 0, CHAT_ECLOSED if conn is
 * not open, or CHAT_ETOOBIG / CHAT_ENOMEM (conn is then being closed). */
int lg_conn_send_text(lg_conn_t *conn, const char *data, size_t len);

/* Queues a ping. Same returns as lg_conn_send_text. */
int lg_conn_send_ping(lg_conn_t *conn);

/* Starts a clean close (close frame with code, then wait for the server's
 * close); a connection not open is just closed. */
void lg_conn_close(lg_conn_t *conn, uint16_t code);

/* Closes the socket now; lg_worker_on_closed follows with why. */
void lg_conn_abort(lg_conn_t *conn, lg_end_t why);

/* Writes what every touched connection queued: one write each. */
void lg_conn_flush_all(lg_worker_t *w);

/* Frees what an ended connection still holds (bitmaps and messages stay). */
void lg_conn_release(lg_conn_t *conn);

/* The read buffer's allocator, shared with lg-setup.c. */
void lg_conn_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf);

/* Binds tcp to the source address of global connection number g; the port
 * is chosen at connect (IP_BIND_ADDRESS_NO_PORT), so each source address
 * gives a full port range per gateway. Returns 0 or a libuv code. */
int lg_conn_bind_source(lg_worker_t *w, uv_tcp_t *tcp, uint32_t g);

/* ---- lg-worker.c: what lg-conn.c reports -------------------------------- */

void lg_worker_on_open(lg_conn_t *conn);
void lg_worker_on_text(lg_conn_t *conn, const char *data, size_t len);
void lg_worker_on_closed(lg_conn_t *conn, lg_end_t why);

/* ---- lg-setup.c --------------------------------------------------------- */

/* Creates every conversation of the process over HTTP, setup_concurrency
 * at a time, retrying 429/503 and connection errors with backoff. Calls
 * done_cb once all are created or given up. Returns 0 or CHAT_ENOMEM. */
int lg_setup_start(lg_worker_t *w, void (*done_cb)(lg_worker_t *w));

/* ---- lg-send.c ---------------------------------------------------------- */

/* Starts sending for the current phase (run or storm): the pacer, or with
 * rate 0 a full window on every connection. */
void lg_send_start(lg_worker_t *w);

/* With rate 0, tops conn's window up again; otherwise does nothing. */
void lg_send_refill(lg_worker_t *w, lg_conn_t *conn);

/* Asks for what conn missed: {"t":"sync","have":{conv: last seq seen}}. */
void lg_send_sync(lg_worker_t *w, lg_conn_t *conn);

/* Sends the delivered receipts gathered since the last loop turn. */
void lg_send_receipts(lg_worker_t *w);

/* ---- lg-track.c --------------------------------------------------------- */

/* Sends one message from conn (its next k) and records it. Returns 0 or
 * what lg_conn_send_text returns. */
int lg_track_send(lg_conn_t *conn);

/* The server answered a send: frame is a `sent` or an `error` with a cid. */
void lg_track_answer(lg_conn_t *conn, const char *cid, size_t cid_len, int ok);

/* A `message` frame arrived at conn. */
void lg_track_message(lg_conn_t *conn, const char *from, size_t from_len, const char *cid,
                      size_t cid_len, int64_t seq);

/* A delivered receipt of member `user` up to seq arrived at conn. */
void lg_track_receipt(lg_conn_t *conn, const char *user, size_t user_len, int64_t upto);

/* Marks conn's unanswered messages lost (its connection closed). */
void lg_track_lost(lg_conn_t *conn);

/* Marks messages of conn unanswered for ack_timeout as timed out. */
void lg_track_timeouts(lg_conn_t *conn, uint64_t now_us);

/* Counts, at the end, what never arrived and frees the bookkeeping. */
void lg_track_finish(lg_worker_t *w);

static inline uint64_t lg_now_us(void)
{
    return uv_hrtime() / 1000;
}

#endif
