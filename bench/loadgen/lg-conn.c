/* One client connection: TCP from a chosen loopback source address, the
 * HTTP upgrade (token minted here, Sec-WebSocket-Accept checked), then
 * WebSocket frames through wslay's frame layer. wslay does no I/O: the read
 * callback feeds it the bytes just read (from the process's one read
 * buffer) and what it frames lands in the connection's output buffer,
 * written once per loop turn. A message that fits in one read is handed on
 * where it lies; only split ones are copied into a per-connection buffer. */
#include <http_parser.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "chat-error.h"
#include "chat-jwt.h"
#include "chat-log.h"
#include "lg-private.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define MSG_MAX     (16u << 20) /* far above the gateway's max_frame */
#define TOKEN_TTL_S (7 * 86400)

struct lg_handshake_s {
    http_parser parser;
    char key[32];
    char accept[64];
    size_t accept_len;
    char field[32];
    size_t field_len;
    int in_accept;
    int last_value;
    int complete;
};

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

static uint64_t rng_next(lg_worker_t *w)
{
    /* xorshift64*: masks and handshake keys need no more than this. */
    uint64_t x = w->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    w->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

void lg_conn_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    lg_worker_t *w = h->loop->data;
    (void)hint;
    /* Every read is handled before the next one is read, so one buffer
     * serves the whole process. */
    *buf = uv_buf_init(w->rbuf, LG_READ_BUF);
}

static void mark_dirty(lg_conn_t *conn)
{
    if (conn->dirty)
        return;
    conn->dirty = 1;
    conn->dirty_next = conn->w->dirty_head;
    conn->w->dirty_head = conn;
}

/* ---- closing ------------------------------------------------------------ */

void lg_conn_release(lg_conn_t *conn)
{
    if (conn->ws != NULL && !conn->feeding) {
        wslay_frame_context_free(conn->ws);
        conn->ws = NULL;
    }
    free(conn->hs);
    conn->hs = NULL;
    chat_buf_close(&conn->out);
    chat_buf_close(&conn->wout);
    chat_buf_close(&conn->msg);
    conn->in_frame = 0;
    conn->frame_len = conn->frame_off = 0;
    conn->msg_op = 0;
    conn->ctl_len = 0;
    conn->writing = 0;
}

static void close_cb(uv_handle_t *h)
{
    lg_conn_t *conn = h->data;
    conn->w->handles_open--;
    lg_conn_release(conn);
    conn->state = LG_CONN_IDLE;
    lg_worker_on_closed(conn, (lg_end_t)conn->end_why);
}

void lg_conn_abort(lg_conn_t *conn, lg_end_t why)
{
    if (conn->state == LG_CONN_IDLE || conn->state == LG_CONN_ENDING)
        return;
    conn->state = LG_CONN_ENDING;
    conn->end_why = (uint8_t)why;
    uv_read_stop((uv_stream_t *)&conn->tcp);
    uv_close((uv_handle_t *)&conn->tcp, close_cb);
}

/* ---- writing ------------------------------------------------------------ */

static void flush(lg_conn_t *conn);

static void write_cb(uv_write_t *req, int status)
{
    lg_conn_t *conn = req->data;
    conn->writing = 0;
    conn->wout.len = 0;
    if (status < 0) {
        if (status != UV_ECANCELED)
            lg_conn_abort(conn, conn->close_asked ? LG_END_ASKED : LG_END_EOF);
        return;
    }
    if (conn->out.len > 0)
        flush(conn);
}

static void flush(lg_conn_t *conn)
{
    lg_worker_t *w = conn->w;
    if (conn->writing || conn->out.len == 0 || conn->state == LG_CONN_IDLE ||
        conn->state == LG_CONN_ENDING)
        return;
    uv_buf_t b = uv_buf_init(conn->out.data, (unsigned)conn->out.len);
    int n = uv_try_write((uv_stream_t *)&conn->tcp, &b, 1);
    if (n == (int)conn->out.len) {
        w->rep.c.bytes_out += (uint64_t)n;
        conn->out.len = 0;
        return;
    }
    if (n < 0 && n != UV_EAGAIN) {
        lg_conn_abort(conn, conn->close_asked ? LG_END_ASKED : LG_END_EOF);
        return;
    }
    if (n < 0)
        n = 0;
    w->rep.c.bytes_out += (uint64_t)n;
    /* The socket is full: hand the rest to a write and collect new frames
     * in the other buffer meanwhile. */
    chat_buf_t tmp = conn->wout;
    conn->wout = conn->out;
    conn->out = tmp;
    conn->out.len = 0;
    memmove(conn->wout.data, conn->wout.data + n, conn->wout.len - (size_t)n);
    conn->wout.len -= (size_t)n;
    w->rep.c.bytes_out += conn->wout.len;
    b = uv_buf_init(conn->wout.data, (unsigned)conn->wout.len);
    conn->wreq.data = conn;
    int rc = uv_write(&conn->wreq, (uv_stream_t *)&conn->tcp, &b, 1, write_cb);
    if (rc != 0) {
        conn->wout.len = 0;
        lg_conn_abort(conn, LG_END_EOF);
        return;
    }
    conn->writing = 1;
}

void lg_conn_flush_all(lg_worker_t *w)
{
    while (w->dirty_head != NULL) {
        lg_conn_t *conn = w->dirty_head;
        w->dirty_head = conn->dirty_next;
        conn->dirty_next = NULL;
        conn->dirty = 0;
        flush(conn);
    }
}

/* ---- wslay glue --------------------------------------------------------- */

static ssize_t send_callback(const uint8_t *data, size_t len, int flags, void *user)
{
    lg_conn_t *conn = user;
    (void)flags;
    if (chat_buf_append(&conn->out, data, len) != 0)
        return -1;
    return (ssize_t)len;
}

static ssize_t recv_callback(uint8_t *buf, size_t len, int flags, void *user)
{
    lg_conn_t *conn = user;
    (void)flags;
    /* 0 tells wslay to wait for more (WSLAY_ERR_WANT_READ). */
    size_t n = len < conn->in_len ? len : conn->in_len;
    memcpy(buf, conn->in, n);
    conn->in += n;
    conn->in_len -= n;
    return (ssize_t)n;
}

static int genmask_callback(uint8_t *buf, size_t len, void *user)
{
    lg_conn_t *conn = user;
    uint64_t r = rng_next(conn->w);
    memcpy(buf, &r, len < sizeof(r) ? len : sizeof(r));
    return 0;
}

static const struct wslay_frame_callbacks frame_callbacks = {
    send_callback,
    recv_callback,
    genmask_callback,
};

static int frame_send(lg_conn_t *conn, uint8_t opcode, const void *data, size_t len)
{
    if (conn->ws == NULL)
        return CHAT_ECLOSED;
    struct wslay_frame_iocb io;
    memset(&io, 0, sizeof(io));
    io.fin = 1;
    io.opcode = opcode;
    io.mask = 1;
    io.payload_length = len;
    io.data = data;
    io.data_length = len;
    ssize_t r = wslay_frame_send(conn->ws, &io);
    if (r < 0 || (size_t)r != len) {
        /* Only a full output buffer makes the callback refuse: the gateway
         * stopped reading long ago. */
        CHAT_WARN("conn %u: cannot queue a frame (%zd); closing", conn->index, r);
        lg_conn_abort(conn, LG_END_FAILED);
        return CHAT_ETOOBIG;
    }
    mark_dirty(conn);
    return 0;
}

int lg_conn_send_text(lg_conn_t *conn, const char *data, size_t len)
{
    if (conn->state != LG_CONN_OPEN)
        return CHAT_ECLOSED;
    return frame_send(conn, WSLAY_TEXT_FRAME, data, len);
}

int lg_conn_send_ping(lg_conn_t *conn)
{
    if (conn->state != LG_CONN_OPEN)
        return CHAT_ECLOSED;
    return frame_send(conn, WSLAY_PING, "lg", 2);
}

void lg_conn_close(lg_conn_t *conn, uint16_t code)
{
    conn->close_asked = 1;
    switch (conn->state) {
    case LG_CONN_HELLO:
    case LG_CONN_OPEN: {
        uint8_t payload[2] = {(uint8_t)(code >> 8), (uint8_t)code};
        if (frame_send(conn, WSLAY_CONNECTION_CLOSE, payload, sizeof(payload)) == 0) {
            conn->state = LG_CONN_CLOSING;
            conn->closing_us = lg_now_us();
        }
        break;
    }
    case LG_CONN_CONNECTING:
    case LG_CONN_UPGRADING:
        lg_conn_abort(conn, LG_END_ASKED);
        break;
    default:
        break;
    }
}

static void on_control(lg_conn_t *conn, uint8_t op)
{
    lg_worker_t *w = conn->w;
    switch (op) {
    case WSLAY_PING:
        w->rep.c.pings_received++;
        if (conn->state == LG_CONN_OPEN || conn->state == LG_CONN_HELLO)
            frame_send(conn, WSLAY_PONG, conn->ctl, conn->ctl_len);
        break;
    case WSLAY_CONNECTION_CLOSE:
        conn->close_got = 1;
        conn->close_code =
            conn->ctl_len >= 2 ? (uint16_t)((conn->ctl[0] << 8) | conn->ctl[1]) : 1005;
        if (conn->state == LG_CONN_CLOSING) {
            /* Both closes are out: the connection is done. */
            lg_conn_abort(conn, conn->close_asked ? LG_END_ASKED : LG_END_SERVER);
        } else {
            uint8_t payload[2] = {(uint8_t)(conn->close_code >> 8), (uint8_t)conn->close_code};
            if (frame_send(conn, WSLAY_CONNECTION_CLOSE, payload,
                           conn->close_code == 1005 ? 0 : 2) == 0) {
                conn->state = LG_CONN_CLOSING;
                conn->closing_us = lg_now_us();
            }
        }
        break;
    default:
        break; /* pongs */
    }
}

/* One piece of a frame's payload, as wslay_frame_recv hands it out. */
static void on_chunk(lg_conn_t *conn, const struct wslay_frame_iocb *io)
{
    int whole = 0;
    if (!conn->in_frame) {
        conn->in_frame = 1;
        conn->frame_len = io->payload_length;
        conn->frame_off = 0;
        conn->frame_op = io->opcode;
        whole = io->data_length == io->payload_length;
        if (io->opcode & 0x08)
            conn->ctl_len = 0;
        else if (io->opcode != WSLAY_CONTINUATION_FRAME)
            conn->msg_op = io->opcode;
    }
    conn->frame_off += io->data_length;
    int frame_done = conn->frame_off == conn->frame_len;
    if (frame_done)
        conn->in_frame = 0;

    if (conn->frame_op & 0x08) {
        size_t room = sizeof(conn->ctl) - conn->ctl_len;
        size_t n = io->data_length < room ? io->data_length : room;
        memcpy(conn->ctl + conn->ctl_len, io->data, n);
        conn->ctl_len = (uint8_t)(conn->ctl_len + n);
        if (frame_done)
            on_control(conn, conn->frame_op);
        return;
    }
    if (whole && io->fin && conn->msg.len == 0 && conn->frame_op != WSLAY_CONTINUATION_FRAME) {
        /* The common case: a whole message in one piece, read in place. */
        conn->w->rep.c.frames_in++;
        if (conn->frame_op == WSLAY_TEXT_FRAME)
            lg_worker_on_text(conn, (const char *)io->data, io->data_length);
        return;
    }
    if (conn->msg.max == 0)
        chat_buf_init(&conn->msg, MSG_MAX);
    if (chat_buf_append(&conn->msg, io->data, io->data_length) != 0) {
        CHAT_WARN("conn %u: a server message passed %u bytes; closing", conn->index, MSG_MAX);
        lg_conn_abort(conn, LG_END_FAILED);
        return;
    }
    if (frame_done && io->fin) {
        conn->w->rep.c.frames_in++;
        if (conn->msg_op == WSLAY_TEXT_FRAME)
            lg_worker_on_text(conn, conn->msg.data, conn->msg.len);
        conn->msg.len = 0;
    }
}

static void ws_feed(lg_conn_t *conn, const char *data, size_t len)
{
    conn->in = (const uint8_t *)data;
    conn->in_len = len;
    conn->feeding = 1;
    while (conn->state != LG_CONN_ENDING && conn->state != LG_CONN_IDLE) {
        struct wslay_frame_iocb io;
        memset(&io, 0, sizeof(io));
        ssize_t r = wslay_frame_recv(conn->ws, &io);
        if (r == WSLAY_ERR_WANT_READ)
            break;
        if (r < 0) {
            CHAT_WARN("conn %u: WebSocket protocol error from the server (%zd)", conn->index, r);
            conn->w->rep.c.connect_errors++;
            lg_conn_abort(conn, LG_END_EOF);
            break;
        }
        on_chunk(conn, &io);
    }
    conn->feeding = 0;
    conn->in = NULL;
    conn->in_len = 0;
}

/* ---- the upgrade -------------------------------------------------------- */

static int hs_on_header_field(http_parser *p, const char *at, size_t len)
{
    lg_handshake_t *hs = p->data;
    if (hs->last_value) {
        hs->field_len = 0;
        hs->last_value = 0;
    }
    size_t room = sizeof(hs->field) - 1 - hs->field_len;
    size_t n = len < room ? len : room;
    memcpy(hs->field + hs->field_len, at, n);
    hs->field_len += n;
    hs->field[hs->field_len] = '\0';
    return 0;
}

static int hs_on_header_value(http_parser *p, const char *at, size_t len)
{
    lg_handshake_t *hs = p->data;
    if (!hs->last_value) {
        hs->last_value = 1;
        hs->in_accept = strcasecmp(hs->field, "sec-websocket-accept") == 0;
    }
    if (hs->in_accept && hs->accept_len + len < sizeof(hs->accept)) {
        memcpy(hs->accept + hs->accept_len, at, len);
        hs->accept_len += len;
    }
    return 0;
}

static int hs_on_message_complete(http_parser *p)
{
    lg_handshake_t *hs = p->data;
    hs->complete = 1;
    return 0;
}

static const http_parser_settings hs_settings = {
    .on_header_field = hs_on_header_field,
    .on_header_value = hs_on_header_value,
    .on_message_complete = hs_on_message_complete,
};

static int accept_ok(const lg_handshake_t *hs)
{
    char buf[96];
    unsigned char sha[SHA_DIGEST_LENGTH];
    char want[64];
    size_t klen = strlen(hs->key);
    memcpy(buf, hs->key, klen);
    memcpy(buf + klen, ws_guid, sizeof(ws_guid) - 1);
    SHA1((const unsigned char *)buf, klen + sizeof(ws_guid) - 1, sha);
    int n = EVP_EncodeBlock((unsigned char *)want, sha, SHA_DIGEST_LENGTH);
    return hs->accept_len == (size_t)n && memcmp(hs->accept, want, (size_t)n) == 0;
}

static void handshake_feed(lg_conn_t *conn, const char *data, size_t len)
{
    lg_handshake_t *hs = conn->hs;
    size_t n = http_parser_execute(&hs->parser, &hs_settings, data, len);
    if (hs->parser.upgrade) {
        if (hs->parser.status_code != 101 || !accept_ok(hs)) {
            CHAT_WARN("conn %u: bad upgrade answer (status %u, accept %s)", conn->index,
                      hs->parser.status_code, accept_ok(hs) ? "ok" : "wrong");
            conn->w->rep.c.connect_errors++;
            lg_conn_abort(conn, LG_END_FAILED);
            return;
        }
        free(conn->hs);
        conn->hs = NULL;
        if (wslay_frame_context_init(&conn->ws, &frame_callbacks, conn) != 0) {
            conn->ws = NULL;
            lg_conn_abort(conn, LG_END_FAILED);
            return;
        }
        /* The request is written: its buffer can go until there is more. */
        if (!conn->writing && conn->out.len == 0)
            chat_buf_close(&conn->out);
        conn->state = LG_CONN_HELLO;
        if (n < len)
            ws_feed(conn, data + n, len - n);
        return;
    }
    if (HTTP_PARSER_ERRNO(&hs->parser) != HPE_OK) {
        CHAT_WARN("conn %u: unreadable upgrade answer: %s", conn->index,
                  http_errno_description(HTTP_PARSER_ERRNO(&hs->parser)));
        conn->w->rep.c.connect_errors++;
        lg_conn_abort(conn, LG_END_FAILED);
        return;
    }
    if (hs->complete) {
        conn->http_status = (int)hs->parser.status_code;
        lg_conn_abort(conn, LG_END_REFUSED);
    }
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    lg_conn_t *conn = s->data;
    (void)buf;
    if (nread == 0)
        return;
    if (nread < 0) {
        lg_end_t why;
        if (conn->state == LG_CONN_CONNECTING || conn->state == LG_CONN_UPGRADING) {
            conn->w->rep.c.connect_errors++;
            why = LG_END_FAILED;
        } else if (conn->close_asked) {
            why = LG_END_ASKED;
        } else {
            why = conn->close_got ? LG_END_SERVER : LG_END_EOF;
        }
        lg_conn_abort(conn, why);
        return;
    }
    conn->w->rep.c.bytes_in += (uint64_t)nread;
    if (conn->state == LG_CONN_UPGRADING)
        handshake_feed(conn, buf->base, (size_t)nread);
    else if (conn->state == LG_CONN_HELLO || conn->state == LG_CONN_OPEN ||
             conn->state == LG_CONN_CLOSING)
        ws_feed(conn, buf->base, (size_t)nread);
}

static int send_upgrade(lg_conn_t *conn)
{
    lg_worker_t *w = conn->w;
    char user[CHAT_NAME_MAX + 1], token[CHAT_JWT_MAX];
    unsigned char rnd[16];
    lg_handshake_t *hs = calloc(1, sizeof(*hs));
    if (hs == NULL)
        return CHAT_ENOMEM;
    for (int i = 0; i < 2; i++) {
        uint64_t r = rng_next(w);
        memcpy(rnd + 8 * i, &r, 8);
    }
    EVP_EncodeBlock((unsigned char *)hs->key, rnd, sizeof(rnd));
    http_parser_init(&hs->parser, HTTP_RESPONSE);
    hs->parser.data = hs;
    conn->hs = hs;

    lg_plan_user(w->plan, conn->conv->global, conn->member, user);
    int64_t now = (int64_t)(chat_now_ms() / 1000);
    int tlen =
        chat_jwt_sign(w->secret, w->secret_len, user, now, now + TOKEN_TTL_S, token, sizeof(token));
    if (tlen < 0)
        return tlen;
    chat_buf_init(&conn->out, LG_OUT_MAX);
    chat_buf_init(&conn->wout, LG_OUT_MAX);
    int rc = chat_buf_printf(&conn->out,
                             "GET /v1/ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                             "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                             "Sec-WebSocket-Version: 13\r\nAuthorization: Bearer %s\r\n\r\n",
                             w->plan->gw_text[conn->gw], hs->key, token);
    if (rc != 0)
        return rc;
    rc = uv_read_start((uv_stream_t *)&conn->tcp, lg_conn_alloc_cb, read_cb);
    if (rc != 0)
        return rc;
    conn->state = LG_CONN_UPGRADING;
    mark_dirty(conn);
    return 0;
}

static void connect_cb(uv_connect_t *req, int status)
{
    lg_conn_t *conn = req->data;
    if (status == UV_ECANCELED || conn->state != LG_CONN_CONNECTING)
        return;
    if (status < 0) {
        CHAT_DEBUG("conn %u: connect to %s: %s", conn->index, conn->w->plan->gw_text[conn->gw],
                   uv_strerror(status));
        conn->w->rep.c.connect_errors++;
        lg_conn_abort(conn, LG_END_FAILED);
        return;
    }
    int rc = send_upgrade(conn);
    if (rc != 0) {
        CHAT_WARN("conn %u: cannot send the upgrade: %s", conn->index, chat_strerror(rc));
        conn->w->rep.c.connect_errors++;
        lg_conn_abort(conn, LG_END_FAILED);
    }
}

int lg_conn_bind_source(lg_worker_t *w, uv_tcp_t *tcp, uint32_t g)
{
    struct sockaddr_in sa;
    uv_os_fd_t fd;
    int one = 1;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(0x7f000001u + g % w->plan->src_addrs);
    int rc = uv_fileno((uv_handle_t *)tcp, &fd);
    if (rc != 0)
        return rc;
    /* Without this, bind picks the port before knowing the destination and
     * one source address gives 28,000 connections in all, not per gateway. */
    if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one)) != 0)
        CHAT_DEBUG("IP_BIND_ADDRESS_NO_PORT refused; ports are chosen at bind");
    return uv_tcp_bind(tcp, (const struct sockaddr *)&sa, 0);
}

int lg_conn_start(lg_conn_t *conn)
{
    lg_worker_t *w = conn->w;
    if (conn->state != LG_CONN_IDLE)
        return CHAT_EINVAL;
    int rc = uv_tcp_init_ex(&w->loop, &conn->tcp, AF_INET);
    if (rc != 0)
        return rc;
    w->handles_open++;
    conn->tcp.data = conn;
    conn->creq.data = conn;
    conn->state = LG_CONN_CONNECTING;
    conn->close_asked = conn->close_got = 0;
    conn->close_code = 0;
    conn->http_status = 0;
    conn->started_us = lg_now_us();
    uint32_t g = conn->conv->global * w->group + conn->member;
    rc = lg_conn_bind_source(w, &conn->tcp, g);
    if (rc == 0)
        rc = uv_tcp_nodelay(&conn->tcp, 1);
    if (rc == 0)
        rc = uv_tcp_connect(&conn->creq, &conn->tcp,
                            (const struct sockaddr *)&w->plan->gw[conn->gw], connect_cb);
    if (rc != 0) {
        CHAT_DEBUG("conn %u: cannot connect: %s", conn->index, uv_strerror(rc));
        w->rep.c.connect_errors++;
        lg_conn_abort(conn, LG_END_FAILED);
    }
    return 0;
}
