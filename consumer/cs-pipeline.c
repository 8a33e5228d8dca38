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
/* The last_seq writes of one chunk when last_seq_ms > 0. A chunk holds up
 * the next batch while it runs, so it is small (8 updates: tens of ms on
 * FerretDB); after it, the next waits LAST_SEQ_BUDGET times as long as it
 * took (at most a tenth of the time goes to them). */
#define LAST_SEQ_WRITES 8
#define LAST_SEQ_BUDGET 9
#define FRAMES_MAX      (512u << 20)
#define DLQ_FLUSH_MS    10000

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
    p->keys = calloc((1 + CS_AHEAD_BATCHES) * p->cap, sizeof(*p->keys));
    p->seqs = calloc(p->cap, sizeof(*p->seqs));
    p->targets = calloc(2 * p->cap, sizeof(*p->targets));
    p->cap_dirty_convs = p->cap > LAST_SEQ_WRITES ? p->cap : LAST_SEQ_WRITES;
    p->dirty_convs = calloc(p->cap_dirty_convs, sizeof(*p->dirty_convs));
    p->dirty_marks = calloc(p->cap, sizeof(*p->dirty_marks));
    p->ids = cs_map_new(p->cap);
    p->want = cs_map_new(p->cap);
    p->target_map = cs_map_new(2 * p->cap);
    p->ahead_want = cs_map_new(CS_AHEAD_BATCHES * p->cap);
    if (p->items == NULL || p->keys == NULL || p->seqs == NULL || p->targets == NULL ||
        p->dirty_convs == NULL || p->dirty_marks == NULL || p->ids == NULL || p->want == NULL ||
        p->target_map == NULL || p->ahead_want == NULL)
        goto fail;
    chat_buf_init(&p->frames, FRAMES_MAX);
    chat_buf_init(&p->scratch, FRAMES_MAX);
    chat_buf_init(&p->ahead_ids, CS_AHEAD_BATCHES * p->cap * (CHAT_NAME_MAX + 1));
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
    cs_map_destroy(p->ahead_want);
    chat_buf_close(&p->ahead_ids);
    if (p->frames.data != NULL)
        chat_buf_close(&p->frames);
    if (p->scratch.data != NULL)
        chat_buf_close(&p->scratch);
    free(p);
}

const cs_stats_t *cs_pipeline_stats(const cs_pipeline_t *p)
{
    return &p->stats;
}

static void decode_all(cs_pipeline_t *p)
{
    chat_error_t err;
    size_t total = 0, off = 0;
    /* One scratch area for the batch, sized first: bodies point into it. */
    for (size_t i = 0; i < p->n; i++)
        total += p->items[i].rkm->len;
    chat_buf_reset(&p->scratch);
    int scratch = chat_buf_reserve(&p->scratch, total) == 0;
    for (size_t i = 0; i < p->n; i++) {
        cs_item_t *item = &p->items[i];
        const rd_kafka_message_t *rkm = item->rkm;
        if (rkm->payload == NULL || rkm->len == 0) {
            cs_item_reject(item, "empty value");
            continue;
        }
        int rc = scratch ? chat_event_decode_in(rkm->payload, rkm->len, p->scratch.data + off,
                                                (size_t)p->cfg->body_max, &item->ev, &err)
                         : chat_event_decode(rkm->payload, rkm->len, (size_t)p->cfg->body_max,
                                             &item->ev, &err);
        off += rkm->len;
        if (rc != 0) {
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

/* Keeps the frame just appended at off for item (rc from the builder); on
 * failure the frame is left out (clients get the event through sync) but
 * the event still counts. */
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

/* Gathers item's frame for every current member of its conversation (the
 * sender's devices too: the device that sent a message learns its seq this
 * way; a receipt skips only the connection that sent it). Called in order,
 * so a member added or removed in this batch gets exactly the events from
 * its addition up to its removal. */
static void deliver(cs_pipeline_t *p, cs_item_t *item)
{
    int receipt = item->ev.type == CHAT_EV_DELIVERED || item->ev.type == CHAT_EV_READ;
    const cs_conv_t *conv = item->conv;
    if (!p->routing || !item->framed)
        return;
    for (size_t m = 0; m < conv->n_members; m++) {
        const char *user = conv->members[m];
        const char *exclude = receipt && strcmp(user, item->ev.from) == 0 ? item->ev.dev : NULL;
        if (cs_route_deliver(p->route, user, exclude, item->frame_off, item->frame_len) != 0) {
            p->routing = 0; /* out of room: the rest go through sync */
            p->stats.route_errors++;
            return;
        }
    }
}

/* Names everyone who may receive a frame of this batch: the members of its
 * conversations and those it adds. */
static void route_prepare(cs_pipeline_t *p)
{
    int rc = 0;
    if (p->route == NULL) {
        p->routing = 0;
        return;
    }
    cs_route_begin(p->route);
    for (size_t i = 0; i < p->n && rc == 0; i++) {
        cs_item_t *item = &p->items[i];
        cs_conv_t *conv = item->conv;
        if (item->dlq || conv == NULL)
            continue;
        if (conv->wanted != p->batch) {
            conv->wanted = p->batch;
            for (size_t m = 0; m < conv->n_members && rc == 0; m++)
                rc = cs_route_want(p->route, conv->members[m]);
        }
        if (item->ev.type == CHAT_EV_MEMBER_ADD && rc == 0)
            rc = cs_route_want(p->route, item->ev.user);
    }
    p->routing = rc == 0;
    if (rc != 0)
        p->stats.route_errors++;
}

/* Reads the recipients' presence, then publishes. After the write (unless
 * route_first): a connection the lookup misses registered after it, so
 * after the write, and its sync finds the event (docs/design.md). */
static void route_publish(cs_pipeline_t *p)
{
    size_t gateways = 0;
    int rc;
    if (!p->routing)
        return;
    if ((rc = cs_route_lookup(p->route)) == 0)
        rc = cs_route_publish(p->route, p->frames.data, &gateways);
    if (rc != 0) {
        p->stats.route_errors++;
        CHAT_DEBUG("route: batch %llu not routed (%s)", (unsigned long long)p->batch,
                   chat_strerror(rc));
    }
    p->stats.published += gateways;
}

/* Queues the last_seq writes of at most max dirty conversations (of
 * parts[0..np) only, when parts is not NULL) dirty since before_ms or
 * earlier, oldest first. */
static int queue_last_seqs(cs_pipeline_t *p, uint64_t before_ms, const int32_t *parts, size_t np,
                           size_t max, chat_error_t *err)
{
    int rc = 0;
    p->n_dirty_convs = cs_state_dirty(p->state, before_ms, parts, np, p->dirty_convs, max);
    for (size_t k = 0; k < p->n_dirty_convs && rc == 0; k++)
        rc = cs_store_add_last_seq(p->store, p->dirty_convs[k]->id, p->dirty_convs[k]->last_seq,
                                   err);
    return rc;
}

int cs_pipeline_flush(cs_pipeline_t *p, const int32_t *parts, size_t np, int all)
{
    chat_error_t err = {0, ""};
    cs_store_result_t res;
    uint64_t every = (uint64_t)p->cfg->last_seq_ms, now = chat_mono_ms();
    /* With last_seq_ms 0 everything is due, at once, outside the budget. */
    all |= every == 0;
    if (p->cfg->dry_run || (!all && now < p->last_seq_next))
        return 0;
    uint64_t before = all ? UINT64_MAX : now > every ? now - every : 0;
    size_t max = all ? p->cap_dirty_convs : LAST_SEQ_WRITES;
    do {
        int rc = queue_last_seqs(p, before, parts, np, max, &err);
        if (rc == 0 && p->n_dirty_convs == 0)
            return 0;
        if (rc == 0)
            rc = cs_store_write(p->store, &res, &err);
        if (rc != 0) {
            cs_store_write_abort(p->store);
            p->n_dirty_convs = 0;
            CHAT_WARN("store: writing last_seq of %zu conversations failed: %s; a new owner "
                      "finds their seqs through the unique index",
                      cs_state_dirty_count(p->state), err.message);
            return rc;
        }
        for (size_t k = 0; k < p->n_dirty_convs; k++)
            cs_state_conv_stored(p->state, p->dirty_convs[k], p->dirty_convs[k]->last_seq);
        p->stats.last_seq_writes += p->n_dirty_convs;
        p->n_dirty_convs = 0;
    } while (all);
    /* The budget: the next chunk waits LAST_SEQ_BUDGET times as long as
     * this one took, so that these writes take a bounded share of the
     * store whatever it charges for an update. */
    uint64_t done = chat_mono_ms();
    p->last_seq_next = done + LAST_SEQ_BUDGET * (done - now);
    return 0;
}

/* Queues the pending watermarks of conv (of user only, when not NULL) now,
 * before a membership write that must come after them. */
static int flush_marks(cs_pipeline_t *p, const char *conv, const char *user, chat_error_t *err)
{
    char prefix[2 * CHAT_NAME_MAX + 2];
    size_t plen;
    int rc = 0;
    if (user != NULL)
        cs_mark_key(prefix, conv, user);
    else
        snprintf(prefix, sizeof(prefix), "%s/", conv);
    plen = strlen(prefix);
    for (size_t k = 0; k < p->n_dirty_marks && rc == 0; k++) {
        cs_mark_t *m = p->dirty_marks[k];
        if (m->batch != p->batch || strncmp(m->key, prefix, plen) != 0 ||
            (user != NULL && m->key[plen] != '\0'))
            continue;
        m->batch = 0;
        rc = cs_store_add_marks(p->store, conv, m->key + strlen(conv) + 1, m->delivered, m->read,
                                err);
    }
    return rc;
}

enum { SEQ_NEW, SEQ_STORED, SEQ_REPEAT };

/* Gives item its seq: the first copy's for a repeat within the batch, the
 * stored one for an event already stored, else the next of its
 * conversation (and queues the insert). Returns SEQ_* or what queuing the
 * insert returns. */
static int assign_seq(cs_pipeline_t *p, cs_item_t *item, chat_error_t *err)
{
    cs_conv_t *conv = item->conv;
    int rc;
    if (item->first != NULL) {
        item->seq = item->first->seq;
        p->pending.duplicates++;
        return SEQ_REPEAT;
    }
    if (item->stored_seq > 0) {
        /* The careful mode raised last_seq to it: the store's may lag. */
        cs_state_conv_touch(p->state, conv, p->now);
        item->seq = item->stored_seq;
        p->pending.duplicates++;
        CHAT_DEBUG("partition %d conv %s: event %s already stored as seq %lld",
                   (int)item->rkm->partition, conv->id, item->ev.id, (long long)item->seq);
        return SEQ_STORED;
    }
    item->seq = ++conv->last_seq;
    cs_state_conv_touch(p->state, conv, p->now);
    if ((rc = cs_store_add_event(p->store, &item->ev, item->seq, err)) != 0)
        return rc;
    item->applied = 1;
    return SEQ_NEW;
}

/* Refuses an event whose check failed. In the fast mode a stored event
 * looks new, and a replayed edit or membership change can fail a check it
 * passed the first time (its target is already deleted, its member already
 * added): only careful mode can tell, so the batch is run again carefully. */
static void refuse(cs_pipeline_t *p, cs_item_t *item, const char *why)
{
    if (!p->careful)
        p->need_careful = 1;
    cs_item_reject(item, "%s", why);
}

static const char *check_change(cs_pipeline_t *p, cs_item_t *item, cs_target_t **out)
{
    cs_target_t *t = cs_load_find_target(p, item->ev.conv, item->ev.target);
    *out = t;
    if (t == NULL || !t->is_message)
        return "no such message to change";
    if (strcmp(t->from, item->ev.from) != 0)
        return "only the sender may change a message";
    if (t->deleted)
        return "the message is deleted";
    return NULL;
}

static const char *check_membership(cs_pipeline_t *p, const cs_item_t *item)
{
    const cs_conv_t *conv = item->conv;
    const char *from = item->ev.from, *user = item->ev.user;
    int owner = strcmp(conv->owner, from) == 0;
    if (!conv->group)
        return "direct conversations have fixed members";
    switch (item->ev.type) {
    case CHAT_EV_MEMBER_ADD:
        if (!owner)
            return "only the owner adds members";
        if (cs_conv_has_member(conv, user))
            return "already a member";
        if (conv->n_members >= (size_t)p->cfg->group_max)
            return "the group is full";
        return NULL;
    case CHAT_EV_MEMBER_REMOVE:
        if (!cs_conv_has_member(conv, user))
            return "not a member";
        if (strcmp(user, conv->owner) == 0)
            return "the owner deletes the group rather than leave it";
        if (!owner && strcmp(user, from) != 0)
            return "only the owner removes others";
        return NULL;
    default:
        return owner ? NULL : "only the owner deletes a group";
    }
}

/* Applies a membership change to the cache and queues its writes. */
static int apply_membership(cs_pipeline_t *p, cs_item_t *item, chat_error_t *err)
{
    cs_conv_t *conv = item->conv;
    cs_mark_t *mark;
    char key[2 * CHAT_NAME_MAX + 2];
    int rc;
    switch (item->ev.type) {
    case CHAT_EV_MEMBER_ADD:
        if ((rc = cs_conv_add_member(conv, item->ev.user)) != 0)
            return chat_error_set(err, rc, "out of memory");
        return cs_store_add_member(p->store, conv->id, item->ev.user, 1, err);
    case CHAT_EV_MEMBER_REMOVE:
        /* Its pending watermarks go first: written after the delete, they
         * would bring the members document back. */
        if ((rc = flush_marks(p, conv->id, item->ev.user, err)) != 0)
            return rc;
        cs_conv_remove_member(conv, item->ev.user);
        cs_mark_key(key, conv->id, item->ev.user);
        if ((mark = cs_state_mark_get(p->state, key)) != NULL)
            mark->delivered = mark->read = 0; /* as the store will be */
        return cs_store_add_member(p->store, conv->id, item->ev.user, 0, err);
    default:
        if ((rc = flush_marks(p, conv->id, NULL, err)) != 0)
            return rc;
        conv->deleted = 1;
        return cs_store_add_conv_delete(p->store, conv->id, err);
    }
}

static int apply_sequenced(cs_pipeline_t *p, cs_item_t *item, chat_error_t *err)
{
    cs_target_t *t = NULL;
    const char *why = NULL;
    int stored = item->first != NULL || item->stored_seq > 0;
    int rc;

    if (item->first != NULL && item->first->dlq) {
        cs_item_reject(item, "%s", item->first->why);
        return 0;
    }
    /* A stored event passed its checks when it was first applied; applying
     * it again must not depend on what happened since. */
    if (!stored) {
        if (item->ev.type == CHAT_EV_EDIT || item->ev.type == CHAT_EV_DELETE)
            why = check_change(p, item, &t);
        else if (item->ev.type != CHAT_EV_MESSAGE)
            why = check_membership(p, item);
        if (why != NULL) {
            refuse(p, item, why);
            return 0;
        }
    }
    if ((rc = assign_seq(p, item, err)) < 0)
        return rc;
    if (rc == SEQ_REPEAT)
        return 0; /* the first copy did everything */

    size_t off = p->frames.len;
    switch (item->ev.type) {
    case CHAT_EV_MESSAGE:
        cs_load_add_target(p, item->ev.conv, item->seq, item->ev.from, 1, 0);
        frame_done(p, item, off, cs_frame_message(&p->frames, &item->ev, item->seq));
        break;
    case CHAT_EV_EDIT:
    case CHAT_EV_DELETE:
        /* Queued for stored events too: the change is guarded by edit_seq,
         * and the first run may have died before it was written. */
        if ((rc = cs_store_add_change(p->store, &item->ev, item->seq, err)) != 0)
            return rc;
        if (t == NULL)
            t = cs_load_find_target(p, item->ev.conv, item->ev.target);
        if (t != NULL && item->ev.type == CHAT_EV_DELETE)
            t->deleted = 1;
        p->pending.changes++;
        frame_done(p, item, off, cs_frame_change(&p->frames, &item->ev, item->seq));
        break;
    case CHAT_EV_MEMBER_ADD:
        if ((rc = apply_membership(p, item, err)) != 0)
            return rc;
        p->pending.changes++;
        frame_done(p, item, off, cs_frame_member(&p->frames, &item->ev, item->seq));
        break;
    default:
        /* A member who leaves, or a group that goes, still hears of it. */
        rc = item->ev.type == CHAT_EV_MEMBER_REMOVE
                 ? cs_frame_member(&p->frames, &item->ev, item->seq)
                 : cs_frame_conv_deleted(&p->frames, &item->ev, item->seq);
        frame_done(p, item, off, rc);
        deliver(p, item);
        p->pending.changes++;
        return apply_membership(p, item, err);
    }
    deliver(p, item);
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
        p->pending.stale++;
        return;
    }
    *cur = upto;
    if (mark->batch != p->batch) {
        mark->batch = p->batch;
        p->dirty_marks[p->n_dirty_marks++] = mark;
    }
    p->pending.receipts++;
    item->applied = 1;
    size_t off = p->frames.len;
    frame_done(p, item, off,
               cs_frame_receipt(&p->frames, item->ev.conv, item->ev.from, item->ev.type, upto));
    deliver(p, item);
}

/* The in-order pass: checks what depends on the state at each event, gives
 * seqs and queues the writes. */
static int apply_all(cs_pipeline_t *p, chat_error_t *err)
{
    int rc = 0;
    for (size_t i = 0; i < p->n && rc == 0; i++) {
        cs_item_t *item = &p->items[i];
        cs_conv_t *conv = item->conv;
        int stored = item->stored_seq > 0 || item->first != NULL;
        if (item->dlq)
            continue;
        if (conv->deleted && !stored)
            cs_item_reject(item, "the conversation is deleted");
        else if (conv->n_members > (size_t)p->cfg->group_max)
            cs_item_reject(item, "conversation has %zu members, more than group_max %lld",
                           conv->n_members, (long long)p->cfg->group_max);
        else if (!stored && !cs_conv_has_member(conv, item->ev.from))
            cs_item_reject(item, "sender is not a member");
        else if (item->ev.type == CHAT_EV_DELIVERED || item->ev.type == CHAT_EV_READ)
            apply_receipt(p, item);
        else
            rc = apply_sequenced(p, item, err);
    }
    for (size_t k = 0; k < p->n_dirty_marks && rc == 0; k++) {
        cs_mark_t *m = p->dirty_marks[k];
        if (m->batch != p->batch)
            continue; /* written early, before a membership change */
        char conv[CHAT_NAME_MAX + 1];
        const char *slash = strchr(m->key, '/'); /* ids have no '/' (chat_name_valid) */
        snprintf(conv, sizeof(conv), "%.*s", (int)(slash - m->key), m->key);
        rc = cs_store_add_marks(p->store, conv, slash + 1, m->delivered, m->read, err);
    }
    return rc;
}

/* Queues every dead letter. Returns 0 or CHAT_EKAFKA. */
static int send_dead_letters(cs_pipeline_t *p, size_t *sent)
{
    *sent = 0;
    if (p->cfg->dry_run) {
        for (size_t i = 0; i < p->n; i++) {
            if (p->items[i].dlq) {
                CHAT_DEBUG("partition %d offset %lld: would go to the dead-letter topic: %s",
                           (int)p->items[i].rkm->partition, (long long)p->items[i].rkm->offset,
                           p->items[i].why);
                (*sent)++;
            }
        }
        return 0;
    }
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

/* Forgets everything the attempt did in memory: the queued writes, the
 * cache (which may be ahead of the store now), the decoded events. */
static void abandon(cs_pipeline_t *p)
{
    /* Only the batch's conversations can be ahead of the store: the rest
     * keep their cache, and with it the last_seqs the store lags. */
    size_t n = 0;
    cs_map_clear(p->want);
    for (size_t i = 0; i < p->n; i++) {
        const char *conv = p->items[i].ev.conv;
        if (conv[0] != '\0' && cs_map_get(p->want, conv) == NULL &&
            cs_map_put(p->want, conv, (void *)conv) == 0)
            p->keys[n++] = conv;
    }
    cs_store_write_abort(p->store);
    if (cs_state_drop_convs(p->state, p->keys, n) != 0)
        cs_state_clear(p->state);
    clear_items(p);
}

static int fail(cs_pipeline_t *p, const char *what, const chat_error_t *err)
{
    char parts[128];
    describe(p, parts, sizeof(parts));
    CHAT_WARN("batch %llu (%zu events, partitions %s): %s: %s; not committed, retrying",
              (unsigned long long)p->batch, p->n, parts, what, err->message);
    abandon(p);
    p->stats.retries++;
    return CHAT_EAGAIN;
}

/* Asks for the batch to be run again in the next mode. */
static int rerun(cs_pipeline_t *p, const char *why)
{
    char parts[128];
    describe(p, parts, sizeof(parts));
    CHAT_DEBUG("batch %llu (partitions %s): %s; running it again with the stored ids",
               (unsigned long long)p->batch, parts, why);
    abandon(p);
    p->stats.conflicts++;
    return CHAT_EDUP;
}

enum { MODE_FAST, MODE_CAREFUL, MODE_THOROUGH };

/* One attempt at the batch in a mode of cs-pipeline.h. Returns 0,
 * CHAT_EAGAIN (failed; read it again later) or CHAT_EDUP (run it again now
 * in the next mode). */
static int attempt(cs_pipeline_t *p, rd_kafka_message_t *const *msgs, size_t n, int mode)
{
    chat_error_t err = {0, ""};
    cs_store_result_t res;
    size_t dead = 0;
    int rc;

    uint64_t started = chat_now_ms(), write_ms;
    p->now = chat_mono_ms();
    p->batch++;
    memset(&p->pending, 0, sizeof(p->pending));
    p->careful = mode >= MODE_CAREFUL;
    p->thorough = mode == MODE_THOROUGH;
    p->need_careful = 0;
    if (cs_state_size(p->state) > CACHE_MAX) {
        CHAT_INFO("cache: %zu entries, dropping them all", cs_state_size(p->state));
        cs_pipeline_flush(p, NULL, 0, 1);
        cs_state_clear(p->state);
    }
    memset(p->items, 0, n * sizeof(*p->items));
    for (size_t i = 0; i < n; i++)
        p->items[i].rkm = msgs[i];
    p->n = n;
    p->n_dirty_marks = 0;
    chat_buf_reset(&p->frames);

    decode_all(p);
    if ((rc = cs_load_convs(p, &err)) != 0 || (rc = cs_load_messages(p, &err)) != 0 ||
        (rc = cs_load_marks(p, &err)) != 0 || (rc = cs_load_targets(p, &err)) != 0)
        return fail(p, "store read failed", &err);
    uint64_t read_at = chat_now_ms(), route_ms = 0, t;
    route_prepare(p);
    if ((rc = apply_all(p, &err)) != 0)
        return fail(p, "cannot queue a write", &err);
    if (p->need_careful)
        return rerun(p, "a check failed that a stored event would pass");

    if (p->cfg->route_first) {
        t = chat_now_ms();
        route_publish(p);
        route_ms = chat_now_ms() - t;
    }
    write_ms = chat_now_ms();
    if (p->cfg->dry_run) {
        /* What the write would insert: the events given a new seq. */
        cs_store_write_abort(p->store);
        memset(&res, 0, sizeof(res));
        for (size_t i = 0; i < p->n; i++) {
            const cs_item_t *item = &p->items[i];
            if (item->applied && item->ev.type != CHAT_EV_DELIVERED &&
                item->ev.type != CHAT_EV_READ)
                res.inserted++;
        }
        rc = 0;
    } else {
        rc = cs_store_write(p->store, &res, &err);
    }
    write_ms = chat_now_ms() - write_ms;
    if (rc != 0) {
        if (rc == CHAT_EDUP && mode != MODE_THOROUGH)
            return rerun(p, err.message);
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
    if (!p->cfg->route_first) {
        t = chat_now_ms();
        route_publish(p);
        route_ms = chat_now_ms() - t;
    }
    if (dead > 0 && !p->cfg->dry_run && cs_dlq_flush(p->dlq, DLQ_FLUSH_MS) != 0) {
        chat_error_set(&err, CHAT_EKAFKA, "dead letters not acknowledged");
        return fail(p, "dead-letter produce failed", &err);
    }
    /* Only what the applied attempt did counts: a prefix that a failed
     * attempt stored shows up as duplicates of the attempt that succeeds. */
    p->stats.dlq += dead;
    p->stats.duplicates += p->pending.duplicates;
    p->stats.receipts += p->pending.receipts;
    p->stats.stale += p->pending.stale;
    p->stats.changes += p->pending.changes;
    p->stats.loaded_ahead += p->pending.loaded_ahead;
    p->stats.batches++;
    for (size_t i = 0; i < p->n; i++) {
        const cs_item_t *item = &p->items[i];
        size_t type = (size_t)item->ev.type < CS_STATS_TYPES ? (size_t)item->ev.type : 0;
        if (item->dlq)
            p->stats.dlq_by_type[type]++;
        else if (item->applied)
            p->stats.applied_by_type[type]++;
    }
    if (chat_log_level >= CHAT_LOG_DEBUG) {
        uint64_t now = chat_now_ms();
        int64_t oldest = 0;
        for (size_t i = 0; i < p->n; i++) {
            if (p->items[i].ev.ts > 0 && (oldest == 0 || p->items[i].ev.ts < oldest))
                oldest = p->items[i].ev.ts;
        }
        CHAT_DEBUG("batch %llu: %zu events applied in %llu ms (decode and reads %llu, store write "
                   "%llu, presence and publish %llu); oldest event %lld ms old",
                   (unsigned long long)p->batch, p->n, (unsigned long long)(now - started),
                   (unsigned long long)(read_at - started), (unsigned long long)write_ms,
                   (unsigned long long)route_ms, oldest > 0 ? (long long)now - oldest : 0LL);
    }
    clear_items(p);
    return 0;
}

int cs_pipeline_run(cs_pipeline_t *p, rd_kafka_message_t *const *msgs, size_t n,
                    rd_kafka_message_t *const *ahead, size_t n_ahead)
{
    if (n > p->cap)
        n = p->cap;
    p->ahead = ahead;
    p->n_ahead = ahead == NULL                         ? 0
                 : n_ahead > CS_AHEAD_BATCHES * p->cap ? CS_AHEAD_BATCHES * p->cap
                                                       : n_ahead;
    p->stats.events += n;
    /* Routing before the write publishes seqs that must not change, so it
     * starts in the mode whose seqs the store can only confirm. */
    int mode = p->cfg->route_first || p->cfg->thorough ? MODE_THOROUGH : MODE_FAST;
    int rc;
    while ((rc = attempt(p, msgs, n, mode)) == CHAT_EDUP && mode < MODE_THOROUGH)
        mode++;
    p->ahead = NULL;
    p->n_ahead = 0;
    if (rc != 0)
        return CHAT_EAGAIN;
    /* After the batch's own write and its deliveries, so that it delays
     * neither; a failure here leaves them lagging, not the batch undone. */
    cs_pipeline_flush(p, NULL, 0, 0);
    return 0;
}
