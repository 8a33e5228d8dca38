/* HTTP/1.1 on the gateway's port: request parsing (http-parser), the small
 * REST surface, and the WebSocket upgrade with its token check. */
#include <http_parser.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "chat-error.h"
#include "chat-jwt.h"
#include "chat-log.h"
#include "gw-api.h"
#include "gw-private.h"
#include "gw-static.h"

enum { H_NONE, H_AUTH, H_UPGRADE, H_CONNECTION, H_WS_KEY, H_WS_VERSION, H_CONTENT_TYPE };

struct gw_http_s {
    http_parser parser;
    chat_buf_t url;
    chat_buf_t body;
    chat_buf_t auth;
    chat_buf_t field;    /* the header name being read */
    chat_buf_t leftover; /* bytes read past a request we answer asynchronously */
    char ws_key[64];
    size_t ws_key_len;
    int header;     /* which header the value being read belongs to */
    int last_value; /* the previous callback was a value */
    int ws_version;
    int upgrade_ws;
    int conn_upgrade;
    int too_big;
    int complete;
    int pending; /* answered asynchronously */
};

static const char *status_text(int status)
{
    switch (status) {
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Payload Too Large";
    case 426:
        return "Upgrade Required";
    case 429:
        return "Too Many Requests";
    case 503:
        return "Service Unavailable";
    default:
        return "Internal Server Error";
    }
}

void gw_http_free(gw_http_t *http)
{
    if (http == NULL)
        return;
    chat_buf_close(&http->url);
    chat_buf_close(&http->body);
    chat_buf_close(&http->auth);
    chat_buf_close(&http->field);
    chat_buf_close(&http->leftover);
    free(http);
}

static void respond_typed(gw_conn_t *conn, int status, const char *ctype, const char *body,
                          size_t len)
{
    char head[512];
    int keep = conn->http != NULL && !conn->http_close;
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
                     "X-Frame-Options: DENY\r\n"
                     "Content-Security-Policy: frame-ancestors 'none'\r\nConnection: %s\r\n\r\n",
                     status, status_text(status), ctype, len, keep ? "keep-alive" : "close");
    conn->gw->metrics.http_requests++;
    if (gw_conn_send_raw(conn, head, (size_t)n) != 0 || gw_conn_send_raw(conn, body, len) != 0)
        return;
    if (!keep) {
        conn->close_after_flush = 1;
        gw_conn_pause(conn);
    }
}

void gw_http_respond(gw_conn_t *conn, int status, const char *body, size_t len)
{
    respond_typed(conn, status, "application/json", body, len);
}

void gw_http_error(gw_conn_t *conn, int status, const char *code, const char *message)
{
    chat_buf_t *b = &conn->gw->scratch;
    chat_buf_reset(b);
    chat_buf_append_str(b, "{\"error\":{\"code\":\"");
    chat_buf_append_str(b, code);
    chat_buf_append_str(b, "\",\"message\":");
    chat_buf_append_json_str(b, message, strlen(message));
    chat_buf_append_str(b, "}}");
    /* Copy out of the scratch buffer: respond may reuse it. */
    char tmp[512];
    size_t n = b->len < sizeof(tmp) ? b->len : sizeof(tmp);
    memcpy(tmp, b->data, n);
    gw_http_respond(conn, status, tmp, n);
}

/* ---- parser callbacks ---------------------------------------------------- */

static int on_message_begin(http_parser *p)
{
    gw_http_t *h = ((gw_conn_t *)p->data)->http;
    chat_buf_reset(&h->url);
    chat_buf_reset(&h->body);
    chat_buf_reset(&h->auth);
    chat_buf_reset(&h->field);
    h->ws_key_len = 0;
    h->header = H_NONE;
    h->last_value = 0;
    h->ws_version = 0;
    h->upgrade_ws = h->conn_upgrade = h->too_big = h->complete = 0;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    gw_http_t *h = ((gw_conn_t *)p->data)->http;
    return chat_buf_append(&h->url, at, len) == 0 ? 0 : -1;
}

static void end_header(gw_http_t *h)
{
    const char *f = h->field.data;
    size_t n = h->field.len;
    h->header = H_NONE;
#define IS(name) (n == sizeof(name) - 1 && strncasecmp(f, name, n) == 0)
    if (IS("authorization"))
        h->header = H_AUTH;
    else if (IS("upgrade"))
        h->header = H_UPGRADE;
    else if (IS("connection"))
        h->header = H_CONNECTION;
    else if (IS("sec-websocket-key"))
        h->header = H_WS_KEY;
    else if (IS("sec-websocket-version"))
        h->header = H_WS_VERSION;
#undef IS
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    gw_http_t *h = ((gw_conn_t *)p->data)->http;
    if (h->last_value) {
        chat_buf_reset(&h->field);
        h->last_value = 0;
    }
    return chat_buf_append(&h->field, at, len) == 0 ? 0 : -1;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    gw_http_t *h = ((gw_conn_t *)p->data)->http;
    if (!h->last_value) {
        end_header(h);
        h->last_value = 1;
    }
    switch (h->header) {
    case H_AUTH:
        return chat_buf_append(&h->auth, at, len) == 0 ? 0 : -1;
    case H_UPGRADE:
        if (len >= 9 && strncasecmp(at, "websocket", 9) == 0)
            h->upgrade_ws = 1;
        break;
    case H_CONNECTION:
        for (size_t i = 0; i + 7 <= len; i++) {
            if (strncasecmp(at + i, "upgrade", 7) == 0)
                h->conn_upgrade = 1;
        }
        break;
    case H_WS_KEY:
        if (h->ws_key_len + len < sizeof(h->ws_key)) {
            memcpy(h->ws_key + h->ws_key_len, at, len);
            h->ws_key_len += len;
        }
        break;
    case H_WS_VERSION:
        h->ws_version = atoi(at);
        break;
    default:
        break;
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    gw_http_t *h = ((gw_conn_t *)p->data)->http;
    if (h->too_big || chat_buf_append(&h->body, at, len) != 0)
        h->too_big = 1;
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    gw_conn_t *conn = p->data;
    gw_http_t *h = conn->http;
    if (p->content_length != ULLONG_MAX &&
        p->content_length > (uint64_t)conn->gw->cfg->http_body_max)
        h->too_big = 1;
    return 0;
}

static int on_message_complete(http_parser *p)
{
    gw_http_t *h = ((gw_conn_t *)p->data)->http;
    h->complete = 1;
    /* Stop here: the request is answered before the next one is parsed. */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- routes -------------------------------------------------------------- */

size_t gw_http_query_param(const char *q, size_t len, const char *name, const char **value)
{
    size_t nlen = strlen(name);
    const char *end = q + len;
    for (const char *s = q; s < end;) {
        const char *amp = memchr(s, '&', (size_t)(end - s));
        const char *e = amp ? amp : end;
        if ((size_t)(e - s) > nlen && strncmp(s, name, nlen) == 0 && s[nlen] == '=') {
            *value = s + nlen + 1;
            return (size_t)(e - s - (ptrdiff_t)nlen - 1);
        }
        s = e + 1;
    }
    return 0;
}

/* Splits the URL into path and query (after '?'). */
static void split_url(const gw_http_t *h, size_t *path_len, const char **query, size_t *qlen)
{
    const char *q = memchr(h->url.data, '?', h->url.len);
    *path_len = q ? (size_t)(q - h->url.data) : h->url.len;
    *query = q ? q + 1 : h->url.data + h->url.len;
    *qlen = q ? h->url.len - *path_len - 1 : 0;
}

int gw_http_authenticate(gw_conn_t *conn)
{
    gw_http_t *h = conn->http;
    const char *tok = NULL;
    size_t tlen = 0;
    chat_error_t err;
    if (h->auth.len > 7 && strncasecmp(h->auth.data, "Bearer ", 7) == 0) {
        tok = h->auth.data + 7;
        tlen = h->auth.len - 7;
    } else {
        size_t plen, qlen;
        const char *q;
        split_url(h, &plen, &q, &qlen);
        tlen = gw_http_query_param(q, qlen, "token", &tok);
    }
    if (tok == NULL || tlen == 0) {
        conn->gw->metrics.auth_failures++;
        gw_http_error(conn, 401, "unauthorized", "a Bearer token is required");
        return CHAT_EAUTH;
    }
    chat_jwt_claims_t claims;
    int rc = chat_jwt_verify(conn->gw->secret, conn->gw->secret_len, tok, tlen,
                             (int64_t)(chat_now_ms() / 1000), &claims, &err);
    if (rc != 0) {
        conn->gw->metrics.auth_failures++;
        CHAT_INFO("conn %s: token refused: %s", conn->id, err.message);
        gw_http_error(conn, 401, rc == CHAT_EEXPIRED ? "token_expired" : "unauthorized",
                      err.message);
        return rc;
    }
    memcpy(conn->user, claims.sub, sizeof(conn->user));
    return 0;
}

static int path_is(const gw_http_t *h, const char *path)
{
    size_t n = strlen(path);
    const char *u = h->url.data;
    return h->url.len >= n && strncmp(u, path, n) == 0 && (h->url.len == n || u[n] == '?');
}

static int upgrade(gw_conn_t *conn, char *rest, size_t rest_len)
{
    gw_http_t *h = conn->http;
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char sha[SHA_DIGEST_LENGTH];
    char accept[64], resp[256], keybuf[128];

    if (!h->upgrade_ws || !h->conn_upgrade || h->ws_key_len == 0 || h->ws_version != 13) {
        conn->http_close = 1;
        gw_http_error(conn, 400, "bad_upgrade", "a WebSocket version 13 upgrade is required");
        return CHAT_EINVAL;
    }
    if (gw_http_authenticate(conn) != 0) {
        conn->http_close = 1;
        conn->close_after_flush = 1;
        return CHAT_EAUTH;
    }
    const gw_config_t *cfg = conn->gw->cfg;
    if (!chat_bucket_take(&conn->gw->conn_bucket, (double)cfg->conn_rate, (double)cfg->conn_burst,
                          uv_now(conn->gw->loop))) {
        /* A reconnect storm is admitted at a pace the gateway sustains. */
        conn->http_close = 1;
        gw_http_error(conn, 429, "rate_limited", "too many new connections; retry shortly");
        return CHAT_ERATE;
    }
    memcpy(keybuf, h->ws_key, h->ws_key_len);
    memcpy(keybuf + h->ws_key_len, guid, sizeof(guid) - 1);
    SHA1((const unsigned char *)keybuf, h->ws_key_len + sizeof(guid) - 1, sha);
    EVP_EncodeBlock((unsigned char *)accept, sha, SHA_DIGEST_LENGTH);
    int n = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                     accept);
    gw_conn_send_raw(conn, resp, (size_t)n);
    gw_http_free(conn->http);
    conn->http = NULL;
    return gw_ws_start(conn, rest, rest_len);
}

static void handle_metrics(gw_conn_t *conn)
{
    chat_buf_t b;
    chat_buf_init(&b, 1 << 20);
    gw_metrics_render(&conn->gw->metrics, conn->gw->id, &b);
    respond_typed(conn, 200, "text/plain; version=0.0.4", b.data ? b.data : "", b.len);
    chat_buf_close(&b);
}

/* Answers one complete request. Returns 1 if the answer comes later. */
static int dispatch(gw_conn_t *conn)
{
    gw_http_t *h = conn->http;
    int method = h->parser.method;
    if (!http_should_keep_alive(&h->parser))
        conn->http_close = 1;
    if (h->too_big) {
        conn->http_close = 1;
        gw_http_error(conn, 413, "too_large", "request body too large");
        return 0;
    }
    if (path_is(h, "/v1/health")) {
        char body[160];
        int n =
            snprintf(body, sizeof(body), "{\"status\":\"ok\",\"gateway\":\"%s\"}", conn->gw->id);
        gw_http_respond(conn, 200, body, (size_t)n);
        return 0;
    }
    if (path_is(h, "/metrics")) {
        handle_metrics(conn);
        return 0;
    }
    if (path_is(h, "/v1/ws")) {
        gw_http_error(conn, 426, "upgrade_required", "this path speaks WebSocket only");
        return 0;
    }
    size_t plen, qlen;
    const char *q;
    split_url(h, &plen, &q, &qlen);
    if (plen > 4 && strncmp(h->url.data, "/v1/", 4) == 0)
        return gw_api_dispatch(conn, method, h->url.data + 4, plen - 4, q, qlen,
                               h->body.data ? h->body.data : "", h->body.len);
    if (method == HTTP_GET || method == HTTP_HEAD) {
        const char *ctype, *data;
        size_t len;
        if (gw_static_find(conn->gw->web, h->url.data, plen, &ctype, &data, &len) == 0) {
            respond_typed(conn, 200, ctype, data, len);
            return 0;
        }
    }
    gw_http_error(conn, 404, "not_found", "no such path");
    return 0;
}

/* data is the loop's read buffer or a leftover buffer the caller owns:
 * writable, because bytes past an upgrade go to the WebSocket side, which
 * unmasks frames in place. */
static void feed(gw_conn_t *conn, char *data, size_t len)
{
    gw_http_t *h = conn->http;
    while (len > 0 && conn->state == GW_CONN_HTTP && conn->http != NULL) {
        size_t n = http_parser_execute(&h->parser, &settings, data, len);
        enum http_errno e = HTTP_PARSER_ERRNO(&h->parser);
        if (h->parser.upgrade) {
            /* Bytes past the headers already belong to the WebSocket. */
            if (path_is(h, "/v1/ws"))
                upgrade(conn, data + n, len - n);
            else
                gw_http_error(conn, 404, "not_found", "no such path");
            return;
        }
        if (e != HPE_OK && e != HPE_PAUSED) {
            conn->http_close = 1;
            gw_http_error(conn, 400, "bad_request", http_errno_description(e));
            return;
        }
        data += n;
        len -= n;
        if (h->complete) {
            h->complete = 0;
            http_parser_pause(&h->parser, 0);
            if (dispatch(conn)) {
                /* Keep what follows for after the answer. */
                h->pending = 1;
                chat_buf_reset(&h->leftover);
                chat_buf_append(&h->leftover, data, len);
                gw_conn_pause(conn);
                return;
            }
            if (conn->close_after_flush)
                return;
        } else if (n == 0) {
            return;
        }
    }
}

void gw_http_on_read(gw_conn_t *conn, char *data, size_t len)
{
    if (conn->http == NULL) {
        gw_http_t *h = calloc(1, sizeof(*h));
        if (h == NULL) {
            gw_conn_close(conn);
            return;
        }
        http_parser_init(&h->parser, HTTP_REQUEST);
        h->parser.data = conn;
        chat_buf_init(&h->url, 8192);
        chat_buf_init(&h->body, (size_t)conn->gw->cfg->http_body_max);
        chat_buf_init(&h->auth, CHAT_JWT_MAX + 16);
        chat_buf_init(&h->field, 256);
        chat_buf_init(&h->leftover, 1 << 20);
        conn->http = h;
    }
    if (conn->http->pending) {
        chat_buf_append(&conn->http->leftover, data, len);
        return;
    }
    feed(conn, data, len);
}

void gw_http_resume(gw_conn_t *conn)
{
    gw_http_t *h = conn->http;
    if (h == NULL || conn->state != GW_CONN_HTTP)
        return;
    h->pending = 0;
    if (conn->close_after_flush)
        return;
    gw_conn_resume(conn);
    if (h->leftover.len > 0) {
        /* Move the bytes out first: feeding may stash new leftovers. */
        chat_buf_t tmp = h->leftover;
        chat_buf_init(&h->leftover, 1 << 20);
        feed(conn, tmp.data, tmp.len);
        chat_buf_close(&tmp);
    }
}
