#include "cs-pipeline.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat-log.h"
#include "cs-frame.h"
#include "cs-load.h"
#include "cs-pipeline-private.h"

/* Above this many cached conversations and members the cache is dropped at
 * a batch boundary and refilled lazily: a crude bound on memory that costs
 * one reload per active conversation, and is always safe (cs-state.h). */
#define CACHE_MAX 500000
#define FRAMES_MAX (512u << 20)
#define DLQ_FLUSH_MS 10000

void cs_item_reject(cs_item_t *item, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(item->why, sizeof(item->why), fmt, ap);
    va_end(ap);
    item->dlq = 1;
}

cs_pipeline_t *cs_pipeline_new(const cs_config_t *cfg, cs_state_t *state, cs_store_t *store,
                               cs_route_t *route, cs_dlq_t *dlq, chat_error_t *err)
{
    cs_pipeline_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        goto fail;
    p->cfg = cfg;
    p->state = state;
    p->store = store;
    p->route = route;
    p->dlq = dlq;
    p->cap = (size_t)cfg->batch_max;
    p->items = calloc(p->cap, sizeof(*p->items));
    p->keys = calloc(p->cap, sizeof(*p->keys));
    p->seqs = calloc(p->cap, sizeof(*p->seqs));
    p->targets = calloc(2 * p->cap, sizeof(*p->targets));
    p->dirty_convs = calloc(p->cap, sizeof(*p->dirty_convs));
    p->dirty_marks = calloc(p->cap, sizeof(*p->dirty_marks));
    p->ids = cs_map_new(p->cap);
    p->want = cs_map_new(p->cap);
    p->target_map = cs_map_new(2 * p->cap);
    if (p->items == NULL || p->keys == NULL || p->seqs == NULL || p->targets == NULL ||
        p->dirty_convs == NULL || p->dirty_marks == NULL || p->ids == NULL || p->want == NULL ||
        p->target_map == NULL)
        goto fail;
    chat_buf_init(&p->frames, FRAMES_MAX);
    return p;
fail:
    cs_pipeline_destroy(p);
    chat_error_set(err, CHAT_ENOMEM, "pipeline: out of memory");
    return NULL;
}

void cs_pipeline_destroy(cs_pipeline_t *p)
{
    if (p == NULL)
        return;
    free(p->items);
    free(p->keys);
    free(p->seqs);
    free(p->targets);
    free(p->dirty_convs);
    free(p->dirty_marks);
    cs_map_destroy(p->ids);
    cs_map_destroy(p->want);
    cs_map_destroy(p->target_map);
    if (p->frames.data != NULL)
        chat_buf_close(&p->frames);
    free(p);
}

const cs_stats_t *cs_pipeline_stats(const cs_pipeline_t *p)
{
    return &p->stats;
}

static void decode_all(cs_pipeline_t *p)
{
    chat_error_t err;
    for (size_t i = 0; i < p->n; i++) {
        cs_item_t *item = &p->items[i];
        const rd_kafka_message_t *rkm = item->rkm;
        if (rkm->payload == NULL || rkm->len == 0) {
            cs_item_reject(item, "empty value");
            continue;
        }
        if (chat_event_decode(rkm->payload, rkm->len, (size_t)p->cfg->body_max, &item->ev,
                              &err) != 0) {
            cs_item_reject(item, "undecodable: %s", err.message);
            continue;
        }
        /* The key is what put the event on its partition; one that differs
         * from conv could put a conversation on two partitions, and two
         * owners would then race for its seqs. */
        size_t klen = strlen(item->ev.conv);
        if (rkm->key == NULL || rkm->key_len != klen || memcmp(rkm->key, item->ev.conv, klen) != 0)
            cs_item_reject(item, "key does not match conversation");
    }
}

/* Appends a frame for item with fn's output; on failure the frame is left
 * out (the client gets the event through sync) but the event still counts. */
static void frame_done(cs_pipeline_t *p, cs_item_t *item, size_t off, int rc)
{
    if (rc != 0) {
        p->frames.len = off;
        CHAT_WARN("partition %d conv %s: frame not built (%s); clients get it through sync",
                  (int)item->rkm->partition, item->ev.conv, chat_strerror(rc));
        return;
    }
    item->framed = 1;
    item->frame_off = off;
    item->frame_len = p->frames.len - off;
}

static void dirty_conv(cs_pipeline_t *p, cs_conv_t *conv)
{
    if (conv->written != p->batch) {
        conv->written = p->batch;
        p->dirty_convs[p->n_dirty_convs++] = conv;
    }
}

/* A new message gets the next seq; a stored one keeps its own. Returns 0,
 * CHAT_EAGAIN when the store knows a seq beyond ours (our cache is stale),
 * or what queuing the write returns. */
static int apply_message(cs_pipeline_t *p, cs_item_t *item, chat_error_t *err)
{
    cs_conv_t *conv = item->conv;
    int rc;
    if (item->first != NULL) {
        /* The first copy carries the frame; clients would drop this one. */
        item->seq = item->first->seq;
        p->stats.duplicates++;
        return 0;
    } else if (item->stored_seq > 0) {
        if (item->stored_seq > conv->last_seq)
            return chat_error_set(err, CHAT_EAGAIN,
                                  "conv %s: stored seq %lld is beyond our last seq %lld", conv->id,
                                  (long long)item->stored_seq, (long long)conv->last_seq);
        item->seq = item->stored_seq;
        p->stats.duplicates++;
        CHAT_DEBUG("partition %d conv %s: event %s already stored as seq %lld",
                   (int)item->rkm->partition, conv->id, item->ev.id, (long long)item->seq);
    } else {
        item->seq = ++conv->last_seq;
        if ((rc = cs_store_add_message(p->store, &item->ev, item->seq, err)) != 0)
            return rc;
        cs_load_add_target(p, conv->id, item->seq, item->ev.from, 0);
    }
    /* Written for repeats too: a crash between the message insert and this
     * update leaves last_seq behind, and the replay must repair it. */
    dirty_conv(p, conv);
    size_t off = p->frames.len;
    frame_done(p, item, off, cs_frame_message(&p->frames, &item->ev, item->seq));
    return 0;
}

static void apply_receipt(cs_pipeline_t *p, cs_item_t *item)
{
    cs_mark_t *mark = item->mark;
    int64_t upto = item->ev.upto, *cur;
    /* A client cannot acknowledge what does not exist yet. */
    if (upto > item->conv->last_seq)
        upto = item->conv->last_seq;
    cur = item->ev.type == CHAT_EV_READ ? &mark->read : &mark->delivered;
    if (upto <= *cur) {
        p->stats.stale++;
        return;
    }
    *cur = upto;
    if (mark->batch != p->batch) {
        mark->batch = p->batch;
        p->dirty_marks[p->n_dirty_marks++] = mark;
    }
    p->stats.receipts++;
    size_t off = p->frames.len;
    frame_done(p, item,
               off, cs_frame_receipt(&p->frames, item->ev.conv, item->ev.from, item->ev.type, upto));
}

static int apply_change(cs_pipeline_t *p, cs_item_t *item, chat_error_t *err)
{
    cs_target_t *t = cs_load_find_target(p, item->ev.conv, item->ev.target);
    int rc;
    if (t == NULL) {
        cs_item_reject(item, "no message %lld in the conversation", (long long)item->ev.target);
        return 0;
    }
    if (strcmp(t->from, item->ev.from) != 0) {
        cs_item_reject(item, "only the sender may %s a message",
                       chat_event_type_name(item->ev.type));
        return 0;
    }
    if (t->deleted) {
        cs_item_reject(item, "message %lld is deleted", (long long)item->ev.target);
        return 0;
    }
    if ((rc = cs_store_add_change(p->store, &item->ev, err)) != 0)
        return rc;
    if (item->ev.type == CHAT_EV_DELETE)
        t->deleted = 1;
    p->stats.changes++;
    size_t off = p->frames.len;
    frame_done(p, item, off, cs_frame_change(&p->frames, &item->ev));
    return 0;
}

static int apply_all(cs_pipeline_t *p, chat_error_t *err)
{
    int rc = 0;
    for (size_t i = 0; i < p->n && rc == 0; i++) {
        cs_item_t *item = &p->items[i];
        if (item->dlq)
            continue;
        switch (item->ev.type) {
        case CHAT_EV_MESSAGE:
            rc = apply_message(p, item, err);
            break;
        case CHAT_EV_DELIVERED:
        case CHAT_EV_READ:
            apply_receipt(p, item);
            break;
        case CHAT_EV_EDIT:
        case CHAT_EV_DELETE:
            rc = apply_change(p, item, err);
            break;
        default:
            cs_item_reject(item, "unknown event type");
            break;
        }
    }
    for (size_t k = 0; k < p->n_dirty_convs && rc == 0; k++)
        rc = cs_store_add_last_seq(p->store, p->dirty_convs[k]->id, p->dirty_convs[k]->last_seq,
                                   err);
    for (size_t k = 0; k < p->n_dirty_marks && rc == 0; k++) {
        cs_mark_t *m = p->dirty_marks[k];
        char conv[CHAT_NAME_MAX + 1];
        const char *slash = strchr(m->key, '/'); /* ids have no '/' (chat_name_valid) */
        snprintf(conv, sizeof(conv), "%.*s", (int)(slash - m->key), m->key);
        rc = cs_store_add_marks(p->store, conv, slash + 1, m->delivered, m->read, err);
    }
    return rc;
}

/* Every member of the conversation gets the frame, the sender's devices
 * too (the device that sent a message learns its seq this way). A receipt
 * skips only the connection that sent it. */
static void route_all(cs_pipeline_t *p)
{
    size_t gateways = 0;
    int rc = 0;
    cs_route_begin(p->route);
    for (size_t i = 0; i < p->n && rc == 0; i++) {
        cs_conv_t *conv = p->items[i].conv;
        if (!p->items[i].framed || conv->routed == p->batch)
            continue;
        conv->routed = p->batch;
        for (size_t m = 0; m < conv->n_members && rc == 0; m++)
            rc = cs_route_want(p->route, conv->members[m]);
    }
    if (rc == 0)
        rc = cs_route_lookup(p->route);
    for (size_t i = 0; i < p->n && rc == 0; i++) {
        cs_item_t *item = &p->items[i];
        if (!item->framed || item->dlq)
            continue;
        const char *frame = p->frames.data + item->frame_off;
        int receipt = item->ev.type == CHAT_EV_DELIVERED || item->ev.type == CHAT_EV_READ;
        for (size_t m = 0; m < item->conv->n_members && rc == 0; m++) {
            const char *user = item->conv->members[m];
            const char *exclude = receipt && strcmp(user, item->ev.from) == 0 ? item->ev.dev : NULL;
            rc = cs_route_deliver(p->route, user, exclude, frame, item->frame_len);
        }
    }
    if (rc == 0)
        rc = cs_route_publish(p->route, &gateways);
    p->stats.published += gateways;
    if (rc != 0) {
        p->stats.route_errors++;
        CHAT_DEBUG("route: batch %llu not routed (%s)", (unsigned long long)p->batch,
                   chat_strerror(rc));
    }
}

/* Queues every dead letter. Returns 0 or CHAT_EKAFKA. */
static int send_dead_letters(cs_pipeline_t *p, size_t *sent)
{
    *sent = 0;
    for (size_t i = 0; i < p->n; i++) {
        cs_item_t *item = &p->items[i];
        if (!item->dlq)
            continue;
        CHAT_WARN("partition %d offset %lld conv %s: to the dead-letter topic: %s",
                  (int)item->rkm->partition, (long long)item->rkm->offset,
                  item->ev.conv[0] ? item->ev.conv : "?", item->why);
        if (cs_dlq_send(p->dlq, item->rkm, item->why) != 0)
            return CHAT_EKAFKA;
        (*sent)++;
    }
    return 0;
}

static void clear_items(cs_pipeline_t *p)
{
    for (size_t i = 0; i < p->n; i++)
        chat_event_clear(&p->items[i].ev);
    p->n = 0;
}

/* Describes the batch's partitions for a log line. */
static void describe(const cs_pipeline_t *p, char *out, size_t size)
{
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < p->n && len + 16 < size; i++) {
        int32_t part = p->items[i].rkm->partition;
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++)
            seen = p->items[j].rkm->partition == part;
        if (!seen)
            len += (size_t)snprintf(out + len, size - len, "%s%d", len ? "," : "", (int)part);
    }
}

static int fail(cs_pipeline_t *p, const char *what, const chat_error_t *err)
{
    char parts[128];
    describe(p, parts, sizeof(parts));
    CHAT_WARN("batch %llu (%zu events, partitions %s): %s: %s; not committed, retrying",
              (unsigned long long)p->batch, p->n, parts, what, err->message);
    cs_store_write_abort(p->store);
    cs_state_clear(p->state);
    clear_items(p);
    p->stats.retries++;
    return CHAT_EAGAIN;
}

int cs_pipeline_run(cs_pipeline_t *p, rd_kafka_message_t *const *msgs, size_t n)
{
    chat_error_t err = {0, ""};
    cs_store_result_t res;
    size_t dead = 0;
    int rc;

    if (n > p->cap)
        n = p->cap;
    p->batch++;
    p->stats.events += n;
    if (cs_state_size(p->state) > CACHE_MAX) {
        CHAT_INFO("cache: %zu entries, dropping them all", cs_state_size(p->state));
        cs_state_clear(p->state);
    }
    memset(p->items, 0, n * sizeof(*p->items));
    for (size_t i = 0; i < n; i++)
        p->items[i].rkm = msgs[i];
    p->n = n;
    p->n_dirty_convs = p->n_dirty_marks = 0;
    chat_buf_reset(&p->frames);

    decode_all(p);
    if ((rc = cs_load_convs(p, &err)) != 0 || (rc = cs_load_messages(p, &err)) != 0 ||
        (rc = cs_load_marks(p, &err)) != 0 || (rc = cs_load_targets(p, &err)) != 0)
        return fail(p, "store read failed", &err);
    if ((rc = apply_all(p, &err)) != 0)
        return fail(p, rc == CHAT_EAGAIN ? "cache is stale" : "cannot queue a write", &err);

    if (p->cfg->route_first)
        route_all(p);
    if ((rc = cs_store_write(p->store, &res, &err)) != 0) {
        if (rc == CHAT_EDUP)
            CHAT_WARN("store: duplicate key (on _id %d, on {conv,seq} %d, unnamed %d): another "
                      "writer or a lost reply; the batch is read again and stored ids keep "
                      "their seq",
                      res.dup_id, res.dup_seq, res.dup_unknown);
        return fail(p, "store write failed", &err);
    }
    p->stats.messages += (uint64_t)res.inserted;
    if (send_dead_letters(p, &dead) != 0) {
        chat_error_set(&err, CHAT_EKAFKA, "cannot queue a dead letter");
        return fail(p, "dead-letter produce failed", &err);
    }
    if (!p->cfg->route_first)
        route_all(p);
    if (dead > 0 && cs_dlq_flush(p->dlq, DLQ_FLUSH_MS) != 0) {
        chat_error_set(&err, CHAT_EKAFKA, "dead letters not acknowledged");
        return fail(p, "dead-letter produce failed", &err);
    }
    p->stats.dlq += dead;
    p->stats.batches++;
    clear_items(p);
    return 0;
}
