/* The gateway's internal state, shared by its modules. Nothing outside
 * gateway/ includes this file. One gw_t per worker process and loop. */
#ifndef GW_PRIVATE_H
#define GW_PRIVATE_H

#include <hiredis/async.h>
#include <librdkafka/rdkafka.h>
#include <mongoc/mongoc.h>
#include <stdint.h>
#include <uv.h>
#include <wslay/wslay.h>

#include "chat-buf.h"
#include "chat-id.h"
#include "chat-kafka.h"
#include "chat-ratelimit.h"
#include "gw-config.h"
#include "gw-map.h"
#include "gw-metrics.h"

typedef struct gw_s gw_t;
typedef struct gw_conn_s gw_conn_t;
typedef struct gw_http_s gw_http_t;
typedef struct gw_frame_s gw_frame_t;
typedef struct gw_sync_s gw_sync_t;
typedef struct gw_lookup_s gw_lookup_t;

typedef enum {
    GW_CONN_HTTP = 0, /* reading HTTP requests */
    GW_CONN_WS,       /* upgraded */
    GW_CONN_CLOSING,  /* uv_close called or about to be */
} gw_conn_state_t;

/* A parsed client frame waiting for its connection to be unblocked. */
struct gw_frame_s {
    gw_frame_t *next;
    size_t len;
    char data[]; /* the raw JSON text */
};

struct gw_conn_s {
    uv_tcp_t tcp; /* first: the handle's address is the connection's */
    gw_t *gw;
    uint64_t serial; /* slot | generation << 32: a stale serial finds nothing */
    gw_conn_state_t state;
    char user[CHAT_NAME_MAX + 1];
    char id[CHAT_NAME_MAX + 1]; /* connection (device) id */
    gw_http_t *http;            /* while speaking HTTP */
    wslay_event_context_ptr ws; /* only while a message is being read */
    uint64_t frame_left;        /* payload bytes left in the frame being read */
    uint8_t hdr[14];            /* a frame header split across reads */
    uint8_t hdr_len;
    const uint8_t *in; /* bytes wslay may read during one recv */
    size_t in_len;
    chat_buf_t out;      /* frames queued since the last flush */
    chat_buf_t inflight; /* the bytes of the one uv_write in flight */
    uv_write_t wreq;
    uint64_t last_seen_ms;
    gw_conn_t *user_next; /* the user's other connections on this gateway */
    gw_conn_t *user_prev;
    gw_conn_t *dirty_next;
    gw_frame_t *pending_head; /* frames waiting while blocked */
    gw_frame_t *pending_tail;
    gw_sync_t *sync;
    struct gw_seen_s *seen; /* last routed seq per conversation (gw-seen.h); lazily */
    int pending_n;
    unsigned writing : 1;
    unsigned dirty : 1;
    unsigned blocked : 1; /* a store lookup decides what comes next */
    unsigned pinged : 1;
    unsigned presence : 1; /* registered in Redis */
    unsigned close_after_flush : 1;
    unsigned read_stopped : 1;
    unsigned http_close : 1;             /* no keep-alive */
    unsigned ws_busy : 1;                /* inside wslay_event_recv: free the context later */
    unsigned in_msg : 1;                 /* inside a fragmented data message */
    unsigned attached : 1;               /* linked into the user map (WebSocket only) */
    unsigned hello : 1;                  /* hello sent: presence is registered */
    chat_bucket_t bucket;                /* frames per second */
    uint64_t typing_ms;                  /* when the last typing start went out, for... */
    char typing_conv[CHAT_NAME_MAX + 1]; /* ...this conversation */
};

struct gw_s {
    uv_loop_t *loop;
    const gw_config_t *cfg;
    char id[CHAT_NAME_MAX + 1];
    char channel[CHAT_NAME_MAX + 8];
    unsigned char *secret;
    size_t secret_len;
    uv_tcp_t listener;
    uv_check_t flush_check;
    uv_timer_t heartbeat_timer;
    uv_timer_t presence_timer;
    uv_signal_t sigterm;
    uv_signal_t sigint;
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    chat_kafka_uv_t *kuv;
    redisAsyncContext *redis;
    redisAsyncContext *redis_sub;
    uv_timer_t redis_retry;
    mongoc_client_pool_t *pool;
    const char *db; /* the database the URI names */
    /* Connection slots: serial -> connection without hashing. */
    gw_conn_t **slots;
    uint32_t *gens;
    uint32_t *free_slots;
    size_t nslots;
    size_t nfree;
    size_t cap;
    gw_map_t users;   /* user -> first gw_conn_t of that user */
    gw_map_t members; /* "conv/user" -> aux: expiry ms, value: 1 member / 2 not */
    gw_conn_t *dirty_head;
    chat_buf_t scratch;  /* short-lived frames built on the loop */
    chat_buf_t encbuf;   /* envelopes being produced */
    chat_buf_t framebuf; /* a client frame being read (gw-frames.c) */
    gw_metrics_t metrics;
    chat_bucket_t conn_bucket; /* new sessions per second */
    gw_map_t conv_members;     /* conv -> member list (typing), aux: expiry */
    struct gw_static_s *web;   /* the web client's files */
    uint64_t conn_counter;
    int shutting_down;
    int jobs;                  /* store jobs in flight */
    struct gw_job_s *inflight; /* the same jobs, listed */
    int jobs_refused;          /* set at stop (gw_store_cancel_queued) */
    /* Presence fan-out waiting for a store lookup (gw-notify.c): a bounded
     * ring, so that a connection storm's presence changes never take the
     * store lookup threads from sends and syncs. */
    struct gw_presence_change_s *pres_ring;
    size_t pres_head, pres_len;
    int pres_inflight;
    /* Syncs waiting for a store round (gw-sync.c), and rounds running. */
    gw_sync_t *sync_head, *sync_tail;
    int sync_rounds;
    /* Membership lookups waiting for a store round (gw-store.c). */
    gw_lookup_t *lookup_head, *lookup_tail;
    int lookup_rounds;
    char readbuf[65536];
};

/* gw-conn.c */
int gw_conn_accept(gw_t *gw);
gw_conn_t *gw_conn_find(gw_t *gw, uint64_t serial);
/* Queues a WebSocket text frame (copied) and marks the connection for the
 * next flush. Returns 0, or CHAT_EFULL after closing a too-slow client. */
int gw_conn_send_text(gw_conn_t *conn, const char *data, size_t len);
/* Queues raw bytes (HTTP responses, wslay's control frames). */
int gw_conn_send_raw(gw_conn_t *conn, const void *data, size_t len);
void gw_conn_mark_dirty(gw_conn_t *conn);
/* Writes every dirty connection's queue, one uv_write each. */
void gw_conn_flush_all(gw_t *gw);
/* Queues a close frame with code and reason, then closes after it leaves. */
void gw_conn_ws_close(gw_conn_t *conn, uint16_t code, const char *reason);
/* Closes the socket now. */
void gw_conn_close(gw_conn_t *conn);
/* Sends a frame {"t":"error",...}. */
void gw_conn_send_error(gw_conn_t *conn, const char *code, const char *message, const char *cid,
                        int retry);
/* Called when a write finished and nothing is queued: next sync page. */
void gw_conn_drained(gw_conn_t *conn);
/* Links conn into the user map (after authentication). */
int gw_conn_attach_user(gw_conn_t *conn);
/* Stops/resumes reading this socket (back-pressure while blocked). */
void gw_conn_pause(gw_conn_t *conn);
void gw_conn_resume(gw_conn_t *conn);
/* Frees what a connection holds; called from the close callback. */
void gw_conn_heartbeat(gw_t *gw);

/* gw-http.c */
/* Verifies the request's Bearer token (or ?token=) and fills conn->user.
 * Returns 0, or answers 401 and returns CHAT_EAUTH/CHAT_EEXPIRED. */
int gw_http_authenticate(gw_conn_t *conn);
/* Finds a query parameter in q[0..len); returns its length (0: absent). */
size_t gw_http_query_param(const char *q, size_t len, const char *name, const char **value);
void gw_http_on_read(gw_conn_t *conn, char *data, size_t len);
void gw_http_free(gw_http_t *http);
/* Writes a complete HTTP response with a JSON body. */
void gw_http_respond(gw_conn_t *conn, int status, const char *body, size_t len);
void gw_http_error(gw_conn_t *conn, int status, const char *code, const char *message);
/* The store finished an asynchronous request of this connection. */
void gw_http_resume(gw_conn_t *conn);

/* gw-ws.c */
/* Starts the WebSocket session; rest (bytes read past the upgrade) is
 * handled as a read. */
int gw_ws_start(gw_conn_t *conn, char *rest, size_t rest_len);
/* Handles bytes read on a WebSocket connection. data is modified in place
 * (frames are unmasked where they lie). */
void gw_ws_on_read(gw_conn_t *conn, char *data, size_t len);
void gw_ws_free(gw_conn_t *conn);
/* Writes a server frame header + payload into out. */
int gw_ws_encode(chat_buf_t *out, int opcode, const char *data, size_t len);

/* gw-frames.c */
void gw_frames_handle(gw_conn_t *conn, const char *data, size_t len);
/* Runs the frames that queued while the connection was blocked. */
void gw_frames_unblock(gw_conn_t *conn);
void gw_frames_free_pending(gw_conn_t *conn);

/* gw-producer.c */
typedef enum {
    GW_REPLY_NONE, /* receipts: only failures are answered */
    GW_REPLY_SENT, /* a `sent` frame with cid and id */
    GW_REPLY_HTTP, /* 202 {"id":...}, then the HTTP connection resumes */
} gw_reply_t;
int gw_producer_start(gw_t *gw, chat_error_t *err);
void gw_producer_stop(gw_t *gw);
/* Produces an encoded envelope (copied) keyed by conv; the delivery report
 * answers conn as reply says. cid may be empty. Returns 0 or CHAT_EKAFKA. */
int gw_producer_send(gw_t *gw, gw_conn_t *conn, gw_reply_t reply, const char *conv, const char *id,
                     const char *cid, int64_t ts, const char *data, size_t len);

/* gw-presence.c */
int gw_presence_start(gw_t *gw, chat_error_t *err);
void gw_presence_stop(gw_t *gw);
void gw_presence_register(gw_conn_t *conn);
void gw_presence_unregister(gw_t *gw, const char *user, const char *conn_id);

/* gw-notify.c */
/* Routes frame to every connection of users (but exclude_user's), through
 * their gateways' channels: one PUBLISH per gateway. */
void gw_notify_route(gw_t *gw, char **users, size_t n, const char *exclude_user, const char *frame,
                     size_t len);
/* A typing frame from conn for conv (membership already checked). */
void gw_notify_typing(gw_conn_t *conn, const char *conv, int start);
/* Tells the members of user's conversations that user came or went. */
void gw_notify_presence(gw_t *gw, const char *user, int online);
/* GET /v1/presence: answers for the listed users (comma-separated) who
 * share a conversation with conn's user. Returns 1 (answered later) or 0. */
int gw_notify_query(gw_conn_t *conn, const char *users, size_t len);
void gw_notify_free_cache(gw_t *gw);
/* Frees the queue of presence changes waiting for their fan-out. */
void gw_notify_presence_free(gw_t *gw);

/* A unit of store work: work runs on a thread-pool thread with no access to
 * loop state; done runs on the loop and finds its connection by serial
 * (it may be gone). in/out are the job's own buffers; ptr is freed with it. */
typedef struct gw_job_s gw_job_t;
typedef void (*gw_job_fn)(gw_job_t *job);
struct gw_job_s {
    uv_work_t req;
    gw_t *gw;
    gw_job_t *prev, *next; /* on gw->inflight from submit until done */
    gw_job_fn work;
    gw_job_fn done;
    uint64_t serial;
    char user[CHAT_NAME_MAX + 1];
    char conv[CHAT_NAME_MAX + 1];
    char arg[CHAT_NAME_MAX + 1];
    int64_t n1, n2;
    int result; /* < 0 a CHAT_E* */
    int status; /* HTTP status */
    void *ptr;
    chat_buf_t in;
    chat_buf_t out;
    chat_error_t err;
};

/* gw-store.c */
gw_job_t *gw_job_new(gw_conn_t *conn, gw_job_fn work, gw_job_fn done);
/* A job that answers no connection (serial 0 finds none). */
gw_job_t *gw_job_new_for(gw_t *gw, gw_job_fn work, gw_job_fn done);
/* Queues the job; on failure frees it and returns a libuv error. */
int gw_job_submit(gw_job_t *job);
/* The first of n elements sorted by name (a string, their first member)
 * whose name is not less than key; n if none. */
size_t gw_first_of(const void *base, size_t n, size_t size, const char *key);
/* Ends a find on a store thread: returns rc, or the cursor's error (in
 * job->err, as `what`) if rc is 0; destroys the cursor. */
int gw_cursor_end(gw_job_t *job, mongoc_cursor_t *cur, const char *what, int rc);
/* A store round (gw-sync.c, gw-store.c): a job for no connection whose ptr
 * is a zeroed round of size bytes, freed with the job; NULL without memory. */
gw_job_t *gw_round_new(gw_t *gw, size_t size, gw_job_fn work, gw_job_fn done);
/* Submits a round and counts it in *running; on failure frees the job and
 * its round, leaves *running as it was and returns a libuv error. */
int gw_round_submit(gw_job_t *job, int *running);
/* Frees a job that was never submitted, wiping its input (a password). */
void gw_job_free(gw_job_t *job);
/* At stop: cancels the jobs still waiting for a pool thread (their done runs
 * as on a store failure) and refuses new ones; returns how many it cancelled.
 * Running ones are left to end. */
int gw_store_cancel_queued(gw_t *gw);
int gw_store_start(gw_t *gw, chat_error_t *err);
void gw_store_stop(gw_t *gw);
/* Cached membership: 1 member, 0 not, -1 unknown (ask the store). */
int gw_store_member_cached(gw_t *gw, const char *conv, const char *user);
/* Asks the store whether conn's user is in conv, in the next lookup round;
 * blocks conn meanwhile, then calls gw_frames_unblock. */
int gw_store_check_member(gw_conn_t *conn, const char *conv);
/* HTTP: creates (or returns) a conversation; responds on conn. */
int gw_store_create_conversation(gw_conn_t *conn, const char *body, size_t len);

/* gw-sync.c: syncs are read from the store in rounds that serve many
 * connections at once. */
/* Starts streaming a sync from the `have` object of a sync frame (taken). */
int gw_store_sync_start(gw_conn_t *conn, void *have_json);
/* Streams the next sync page when the previous one left the socket. */
void gw_store_sync_next(gw_conn_t *conn);
/* The connection closes: forgets its sync (a round holding it frees it). */
void gw_store_sync_free(gw_conn_t *conn);

#endif
