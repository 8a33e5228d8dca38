/* Creates the process's conversations before the clock starts, through the
 * gateways' HTTP API (POST /v1/conversations, with member 0's token), a
 * bounded number at a time over keep-alive connections. */
#include <http_parser.h>
#include <stdlib.h>
#include <string.h>

#include "chat-error.h"
#include "chat-jwt.h"
#include "chat-log.h"
#include "lg-json.h"
#include "lg-private.h"

#define SETUP_RETRIES 10
#define SETUP_TICK_MS 20
#define NO_CONV       UINT32_MAX

typedef struct setup_s setup_t;

typedef struct client_s {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    setup_t *s;
    http_parser parser;
    chat_buf_t req;
    chat_buf_t body;
    uint32_t conv;
    uint32_t gw;
    int open;      /* the handle exists */
    int connected; /* TCP is up */
    int busy;      /* a request is out */
    int complete;  /* the answer is in */
} client_t;

struct setup_s {
    lg_worker_t *w;
    client_t *clients;
    uint32_t n_clients;
    uint32_t next;
    uint32_t done;
    uint8_t *attempts;
    uint64_t *retry_at; /* 0: not waiting for a retry */
    uint32_t n_retry;
    uv_timer_t timer;
    uint64_t started_us;
    int finishing;
    void (*done_cb)(lg_worker_t *w);
};

static void kick(client_t *c);

static void finish_closed_cb(uv_handle_t *h)
{
    setup_t *s = h->data;
    lg_worker_t *w = s->w;
    /* The timer closes last; by then every client is closed too. */
    for (uint32_t i = 0; i < s->n_clients; i++) {
        chat_buf_close(&s->clients[i].req);
        chat_buf_close(&s->clients[i].body);
    }
    free(s->clients);
    free(s->attempts);
    free(s->retry_at);
    void (*done_cb)(lg_worker_t *) = s->done_cb;
    w->setup = NULL;
    free(s);
    w->handles_open--;
    done_cb(w);
}

static void client_closed_cb(uv_handle_t *h)
{
    client_t *c = h->data;
    setup_t *s = c->s;
    c->open = c->connected = c->busy = 0;
    s->w->handles_open--;
    if (s->finishing) {
        for (uint32_t i = 0; i < s->n_clients; i++) {
            if (s->clients[i].open)
                return;
        }
        uv_close((uv_handle_t *)&s->timer, finish_closed_cb);
        return;
    }
    kick(c);
}

static void maybe_finish(setup_t *s)
{
    if (s->done < s->w->n_convs || s->finishing)
        return;
    s->finishing = 1;
    s->w->rep.t.setup_us = lg_now_us() - s->started_us;
    int any = 0;
    for (uint32_t i = 0; i < s->n_clients; i++) {
        client_t *c = &s->clients[i];
        if (c->open && !uv_is_closing((uv_handle_t *)&c->tcp)) {
            uv_close((uv_handle_t *)&c->tcp, client_closed_cb);
            any = 1;
        } else if (c->open) {
            any = 1;
        }
    }
    if (!any)
        uv_close((uv_handle_t *)&s->timer, finish_closed_cb);
}

static void conv_failed(setup_t *s, uint32_t k, const char *why)
{
    lg_worker_t *w = s->w;
    if (++s->attempts[k] <= SETUP_RETRIES) {
        w->rep.c.setup_retries++;
        /* 50 ms, doubling, at most 2 s. */
        uint64_t backoff = 50u << (s->attempts[k] < 6 ? s->attempts[k] : 6);
        s->retry_at[k] = uv_now(&w->loop) + (backoff > 2000 ? 2000 : backoff);
        s->n_retry++;
        CHAT_DEBUG("proc %u: conversation %u: %s; retrying", w->proc, w->convs[k].global, why);
        return;
    }
    CHAT_WARN("proc %u: conversation %u: %s; giving up", w->proc, w->convs[k].global, why);
    w->rep.c.setup_failed++;
    s->done++;
}

/* Returns the next conversation to create, or NO_CONV. */
static uint32_t take_work(setup_t *s)
{
    if (s->n_retry > 0) {
        uint64_t now = uv_now(&s->w->loop);
        for (uint32_t k = 0; k < s->next; k++) {
            if (s->retry_at[k] != 0 && s->retry_at[k] <= now) {
                s->retry_at[k] = 0;
                s->n_retry--;
                return k;
            }
        }
    }
    if (s->next < s->w->n_convs)
        return s->next++;
    return NO_CONV;
}

static void on_answer(client_t *c)
{
    setup_t *s = c->s;
    lg_worker_t *w = s->w;
    uint32_t k = c->conv;
    unsigned status = c->parser.status_code;
    c->conv = NO_CONV;
    c->busy = 0;
    if (status == 200 || status == 201) {
        lg_frame_t f;
        lg_conv_t *conv = &w->convs[k];
        if (lg_frame_parse(c->body.data, c->body.len, &f) != 0 || f.id.p == NULL ||
            f.id.n > CHAT_NAME_MAX || !chat_name_valid(f.id.p, f.id.n)) {
            CHAT_WARN("proc %u: conversation %u: answer without a usable id", w->proc,
                      conv->global);
            w->rep.c.setup_failed++;
            s->done++;
            return;
        }
        memcpy(conv->id, f.id.p, f.id.n);
        conv->id[f.id.n] = '\0';
        conv->created = 1;
        w->rep.c.convs_created++;
        s->done++;
        return;
    }
    char why[160];
    snprintf(why, sizeof(why), "HTTP %u %.*s", status, (int)(c->body.len < 100 ? c->body.len : 100),
             c->body.data ? c->body.data : "");
    if (status == 429 || status >= 500) {
        conv_failed(s, k, why);
        return;
    }
    s->attempts[k] = SETUP_RETRIES; /* a 4xx will not change on a retry */
    conv_failed(s, k, why);
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    client_t *c = p->data;
    chat_buf_append(&c->body, at, len); /* a long error body is cut, which is fine */
    return 0;
}

static int on_message_complete(http_parser *p)
{
    client_t *c = p->data;
    c->complete = 1;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void drop(client_t *c, const char *why)
{
    if (c->busy && c->conv != NO_CONV) {
        c->s->w->rep.c.connect_errors++;
        conv_failed(c->s, c->conv, why);
    }
    c->conv = NO_CONV;
    c->busy = 0;
    if (c->open && !uv_is_closing((uv_handle_t *)&c->tcp)) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        uv_close((uv_handle_t *)&c->tcp, client_closed_cb);
    }
    maybe_finish(c->s);
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    client_t *c = st->data;
    if (nread == 0)
        return;
    if (nread < 0) {
        drop(c, nread == UV_EOF ? "connection closed" : uv_strerror((int)nread));
        return;
    }
    size_t n = http_parser_execute(&c->parser, &settings, buf->base, (size_t)nread);
    (void)n;
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (e != HPE_OK && e != HPE_PAUSED) {
        drop(c, http_errno_description(e));
        return;
    }
    if (!c->complete)
        return;
    int keep = http_should_keep_alive(&c->parser);
    http_parser_pause(&c->parser, 0);
    c->complete = 0;
    on_answer(c);
    if (!keep) {
        drop(c, "not kept alive");
        return;
    }
    maybe_finish(c->s);
    kick(c);
}

static void write_cb(uv_write_t *req, int status)
{
    client_t *c = req->data;
    if (status < 0 && status != UV_ECANCELED)
        drop(c, uv_strerror(status));
}

static void send_request(client_t *c)
{
    setup_t *s = c->s;
    lg_worker_t *w = s->w;
    lg_conv_t *conv = &w->convs[c->conv];
    char user[CHAT_NAME_MAX + 1], token[CHAT_JWT_MAX];
    chat_buf_t *b = &c->body;

    /* The body first (it needs its length in the head), in c->body,
     * which is free until the answer comes. */
    chat_buf_reset(b);
    chat_buf_append_str(b,
                        w->plan->groups ? "{\"kind\":\"group\",\"members\":[" : "{\"members\":[");
    for (uint32_t m = 1; m < w->group; m++) {
        lg_plan_user(w->plan, conv->global, m, user);
        if (m > 1)
            chat_buf_append(b, ",", 1);
        chat_buf_append_json_str(b, user, strlen(user));
    }
    chat_buf_append_str(b, "]}");

    lg_plan_user(w->plan, conv->global, 0, user);
    int64_t now = (int64_t)(chat_now_ms() / 1000);
    int tlen = chat_jwt_sign(w->secret, w->secret_len, user, now, now + 3600, token, sizeof(token));
    chat_buf_reset(&c->req);
    int rc = tlen < 0 ? tlen
                      : chat_buf_printf(&c->req,
                                        "POST /v1/conversations HTTP/1.1\r\nHost: %s\r\n"
                                        "Authorization: Bearer %s\r\n"
                                        "Content-Type: application/json\r\n"
                                        "Content-Length: %zu\r\n\r\n",
                                        w->plan->gw_text[c->gw], token, b->len);
    if (rc == 0)
        rc = chat_buf_append(&c->req, b->data, b->len);
    chat_buf_reset(b);
    if (rc != 0) {
        s->attempts[c->conv] = SETUP_RETRIES;
        conv_failed(s, c->conv, chat_strerror(rc));
        c->conv = NO_CONV;
        return;
    }
    http_parser_init(&c->parser, HTTP_RESPONSE);
    c->parser.data = c;
    c->busy = 1;
    c->wreq.data = c;
    uv_buf_t ub = uv_buf_init(c->req.data, (unsigned)c->req.len);
    rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &ub, 1, write_cb);
    if (rc != 0)
        drop(c, uv_strerror(rc));
}

static void connect_cb(uv_connect_t *req, int status)
{
    client_t *c = req->data;
    if (status == UV_ECANCELED)
        return;
    if (status < 0) {
        drop(c, uv_strerror(status));
        return;
    }
    c->connected = 1;
    int rc = uv_read_start((uv_stream_t *)&c->tcp, lg_conn_alloc_cb, read_cb);
    if (rc != 0) {
        drop(c, uv_strerror(rc));
        return;
    }
    send_request(c);
}

static void kick(client_t *c)
{
    setup_t *s = c->s;
    lg_worker_t *w = s->w;
    if (s->finishing || c->busy || (c->open && !c->connected))
        return;
    if (c->open && uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    uint32_t k = take_work(s);
    if (k == NO_CONV) {
        maybe_finish(s);
        return;
    }
    c->conv = k;
    if (c->connected) {
        send_request(c);
        return;
    }
    /* A conversation's creator connects to its own gateway. */
    c->gw = lg_plan_gateway(w->plan, w->convs[k].global, 0);
    int rc = uv_tcp_init_ex(&w->loop, &c->tcp, AF_INET);
    if (rc != 0) {
        conv_failed(s, k, uv_strerror(rc));
        c->conv = NO_CONV;
        return;
    }
    w->handles_open++;
    c->open = 1;
    c->busy = 1;
    c->tcp.data = c;
    c->creq.data = c;
    rc = lg_conn_bind_source(w, &c->tcp, w->convs[k].global);
    if (rc == 0)
        rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&w->plan->gw[c->gw],
                            connect_cb);
    if (rc != 0)
        drop(c, uv_strerror(rc));
}

static void timer_cb(uv_timer_t *t)
{
    setup_t *s = t->data;
    for (uint32_t i = 0; i < s->n_clients && !s->finishing; i++)
        kick(&s->clients[i]);
    maybe_finish(s);
}

int lg_setup_start(lg_worker_t *w, void (*done_cb)(lg_worker_t *w))
{
    setup_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return CHAT_ENOMEM;
    s->w = w;
    s->done_cb = done_cb;
    s->started_us = lg_now_us();
    s->n_clients = (uint32_t)w->cfg->setup_concurrency;
    if (s->n_clients > w->n_convs)
        s->n_clients = w->n_convs > 0 ? w->n_convs : 1;
    s->clients = calloc(s->n_clients, sizeof(*s->clients));
    s->attempts = calloc(w->n_convs + 1, 1);
    s->retry_at = calloc(w->n_convs + 1, sizeof(*s->retry_at));
    if (s->clients == NULL || s->attempts == NULL || s->retry_at == NULL) {
        free(s->clients);
        free(s->attempts);
        free(s->retry_at);
        free(s);
        return CHAT_ENOMEM;
    }
    for (uint32_t i = 0; i < s->n_clients; i++) {
        client_t *c = &s->clients[i];
        c->s = s;
        c->conv = NO_CONV;
        chat_buf_init(&c->req, 1 << 20);
        chat_buf_init(&c->body, 1 << 20);
    }
    w->setup = s;
    uv_timer_init(&w->loop, &s->timer);
    w->handles_open++;
    s->timer.data = s;
    uv_timer_start(&s->timer, timer_cb, SETUP_TICK_MS, SETUP_TICK_MS);
    for (uint32_t i = 0; i < s->n_clients; i++)
        kick(&s->clients[i]);
    maybe_finish(s);
    return 0;
}
