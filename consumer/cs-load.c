#include "cs-load.h"

#include <stdio.h>
#include <string.h>

#include "chat-id.h"
#include "chat-log.h"

static int ok(const cs_item_t *item)
{
    return !item->dlq;
}

static int is_receipt(const cs_item_t *item)
{
    return item->ev.type == CHAT_EV_DELIVERED || item->ev.type == CHAT_EV_READ;
}

static int is_change(const cs_item_t *item)
{
    return item->ev.type == CHAT_EV_EDIT || item->ev.type == CHAT_EV_DELETE;
}

static void begin_query(cs_pipeline_t *p)
{
    cs_map_clear(p->want);
    p->nkeys = 0;
}

/* Adds key to the query unless it is there already; item is what the answer
 * is for. key must live as long as the batch (it points into an item). */
static int want(cs_pipeline_t *p, const char *key, cs_item_t *item)
{
    if (cs_map_get(p->want, key) != NULL)
        return 0;
    if (cs_map_put(p->want, key, item) != 0)
        return CHAT_ENOMEM;
    p->keys[p->nkeys++] = key;
    return 0;
}

typedef struct conv_ctx_s {
    cs_pipeline_t *p;
    int rc;
} conv_ctx_t;

static void conv_loaded_cb(const cs_store_conv_t *sc, void *data)
{
    conv_ctx_t *ctx = data;
    cs_pipeline_t *p = ctx->p;
    cs_item_t *item = cs_map_get(p->want, sc->id);
    const rd_kafka_message_t *rkm = item != NULL ? item->rkm : cs_map_get(p->ahead_want, sc->id);
    cs_conv_t *conv;
    if (rkm == NULL)
        return;
    if (cs_state_conv_put(p->state, sc->id, rkm->partition, sc->group, sc->owner, sc->deleted,
                          sc->members, sc->n_members, sc->last_seq, &conv) != 0)
        ctx->rc = CHAT_ENOMEM;
    else if (item == NULL)
        p->pending.loaded_ahead++;
}

/* Adds to the query the conversations that the messages held after the
 * batch need and the cache lacks: on FerretDB a lookup scans the collection
 * however many ids it names, so they come at no extra cost with the
 * batch's own, instead of with a scan of their own later (the first
 * batches of a consumer meet most conversations anew). Safe because this
 * batch does not write their documents (those it does are its own
 * conversations, loaded anyway) and because a partition leaves only
 * between batches, when the cache drops its conversations, these included.
 * Not in thorough mode, where each load also reads max(seq). A message's
 * key names its conversation (decode_all rejects one whose envelope says
 * otherwise) and put it on this partition, so the key is all that is read
 * here: a message whose envelope turns out bad has at most loaded the
 * conversation its key names, which does live here. */
static void want_ahead(cs_pipeline_t *p)
{
    cs_map_clear(p->ahead_want);
    chat_buf_reset(&p->ahead_ids);
    if (p->thorough || p->n_ahead == 0 ||
        chat_buf_reserve(&p->ahead_ids, p->n_ahead * (CHAT_NAME_MAX + 1)) != 0)
        return;
    for (size_t i = 0; i < p->n_ahead; i++) {
        rd_kafka_message_t *rkm = p->ahead[i];
        char *id = p->ahead_ids.data + p->ahead_ids.len;
        if (rkm->key == NULL || rkm->key_len == 0 || rkm->key_len > CHAT_NAME_MAX ||
            !chat_name_valid((const char *)rkm->key, rkm->key_len))
            continue;
        memcpy(id, rkm->key, rkm->key_len);
        id[rkm->key_len] = '\0';
        if (cs_state_conv_get(p->state, id) != NULL || cs_map_get(p->want, id) != NULL ||
            cs_map_get(p->ahead_want, id) != NULL || cs_map_put(p->ahead_want, id, rkm) != 0)
            continue;
        p->ahead_ids.len += rkm->key_len + 1; /* reserved above */
        p->keys[p->nkeys++] = id;
    }
}

int cs_load_convs(cs_pipeline_t *p, chat_error_t *err)
{
    conv_ctx_t ctx = {p, 0};
    int rc;

    begin_query(p);
    for (size_t i = 0; i < p->n; i++) {
        cs_item_t *item = &p->items[i];
        if (ok(item) && cs_state_conv_get(p->state, item->ev.conv) == NULL &&
            (rc = want(p, item->ev.conv, item)) != 0)
            return chat_error_set(err, rc, "out of memory");
    }
    if (p->nkeys > 0) {
        want_ahead(p);
        rc = cs_store_find_convs(p->store, p->keys, p->nkeys, conv_loaded_cb, &ctx, err);
        if (rc == 0 && ctx.rc != 0)
            rc = chat_error_set(err, ctx.rc, "out of memory");
        for (size_t k = 0; k < p->nkeys && rc == 0; k++) {
            cs_conv_t *conv = cs_state_conv_get(p->state, p->keys[k]);
            if (conv == NULL)
                continue;
            if (p->thorough)
                rc = cs_store_last_seq(p->store, conv->id, &conv->last_seq, err);
            if (rc == 0)
                CHAT_DEBUG("conv %s (partition %d): loaded, %zu members, last seq %lld%s", conv->id,
                           (int)conv->partition, conv->n_members, (long long)conv->last_seq,
                           p->thorough ? " (from messages)" : "");
        }
        if (rc != 0)
            return rc;
    }
    for (size_t i = 0; i < p->n; i++) {
        cs_item_t *item = &p->items[i];
        if (!ok(item))
            continue;
        if ((item->conv = cs_state_conv_get(p->state, item->ev.conv)) == NULL)
            cs_item_reject(item, "unknown conversation");
    }
    return 0;
}

static int has_seq(const cs_item_t *item)
{
    return item->ev.type != CHAT_EV_DELIVERED && item->ev.type != CHAT_EV_READ;
}

/* A stored event's seq also raises its conversation's last_seq. Seqs above
 * the denormalised last_seq were written by a batch that was never
 * committed, whose stored part is a prefix of its partition from the
 * committed offset on, or by committed batches of an owner that died before
 * it wrote last_seq (cs-pipeline.h, "last_seq"). In the first case, when
 * this batch gives a conversation a new seq, every such stored event of it
 * precedes that event here, and this query finds them all: max(last_seq,
 * their seqs) is then max(seq) without scanning the messages (which
 * FerretDB cannot do by index). In the second the new seq conflicts again,
 * and the thorough mode reads max(seq). */
static void seq_found_cb(const char *id, int64_t seq, void *data)
{
    cs_pipeline_t *p = data;
    cs_item_t *item = cs_map_get(p->ids, id);
    if (item == NULL)
        return;
    item->stored_seq = seq;
    if (item->conv != NULL && seq > item->conv->last_seq)
        item->conv->last_seq = seq;
}

int cs_load_messages(cs_pipeline_t *p, chat_error_t *err)
{
    cs_map_clear(p->ids);
    p->nkeys = 0;
    for (size_t i = 0; i < p->n; i++) {
        cs_item_t *item = &p->items[i];
        if (!ok(item) || !has_seq(item))
            continue;
        cs_item_t *first = cs_map_get(p->ids, item->ev.id);
        if (first != NULL) {
            item->first = first;
            continue;
        }
        if (cs_map_put(p->ids, item->ev.id, item) != 0)
            return chat_error_set(err, CHAT_ENOMEM, "out of memory");
        p->keys[p->nkeys++] = item->ev.id;
    }
    if (p->nkeys == 0 || !p->careful)
        return 0;
    return cs_store_find_messages(p->store, p->keys, p->nkeys, seq_found_cb, p, err);
}

typedef struct mark_ctx_s {
    cs_pipeline_t *p;
    int rc;
} mark_ctx_t;

static void mark_found_cb(const char *key, int64_t delivered, int64_t read, void *data)
{
    mark_ctx_t *ctx = data;
    cs_item_t *item = cs_map_get(ctx->p->want, key);
    cs_mark_t *mark;
    if (item != NULL &&
        cs_state_mark_put(ctx->p->state, key, item->rkm->partition, delivered, read, &mark) != 0)
        ctx->rc = CHAT_ENOMEM;
}

int cs_load_marks(cs_pipeline_t *p, chat_error_t *err)
{
    mark_ctx_t ctx = {p, 0};
    cs_mark_t *mark;
    int rc;

    begin_query(p);
    for (size_t i = 0; i < p->n; i++) {
        cs_item_t *item = &p->items[i];
        if (!ok(item) || !is_receipt(item))
            continue;
        cs_mark_key(item->key, item->ev.conv, item->ev.from);
        if (cs_state_mark_get(p->state, item->key) == NULL && (rc = want(p, item->key, item)) != 0)
            return chat_error_set(err, rc, "out of memory");
    }
    if (p->nkeys > 0) {
        rc = cs_store_find_marks(p->store, p->keys, p->nkeys, mark_found_cb, &ctx, err);
        if (rc == 0 && ctx.rc != 0)
            rc = chat_error_set(err, ctx.rc, "out of memory");
        if (rc != 0)
            return rc;
        /* No document yet: nothing delivered or read. */
        for (size_t k = 0; k < p->nkeys; k++) {
            cs_item_t *item = cs_map_get(p->want, p->keys[k]);
            if (cs_state_mark_get(p->state, p->keys[k]) == NULL &&
                cs_state_mark_put(p->state, p->keys[k], item->rkm->partition, 0, 0, &mark) != 0)
                return chat_error_set(err, CHAT_ENOMEM, "out of memory");
        }
    }
    for (size_t i = 0; i < p->n; i++) {
        cs_item_t *item = &p->items[i];
        if (ok(item) && is_receipt(item))
            item->mark = cs_state_mark_get(p->state, item->key);
    }
    return 0;
}

static void target_key(char *key, size_t size, const char *conv, int64_t seq)
{
    snprintf(key, size, "%s/%lld", conv, (long long)seq);
}

cs_target_t *cs_load_find_target(cs_pipeline_t *p, const char *conv, int64_t seq)
{
    char key[CHAT_NAME_MAX + 24];
    target_key(key, sizeof(key), conv, seq);
    return cs_map_get(p->target_map, key);
}

cs_target_t *cs_load_add_target(cs_pipeline_t *p, const char *conv, int64_t seq, const char *from,
                                int is_message, int deleted)
{
    if (p->n_targets == 2 * p->cap)
        return NULL;
    cs_target_t *t = &p->targets[p->n_targets];
    target_key(t->key, sizeof(t->key), conv, seq);
    cs_target_t *old = cs_map_get(p->target_map, t->key);
    if (old != NULL)
        return old;
    snprintf(t->from, sizeof(t->from), "%s", from);
    t->is_message = is_message;
    t->deleted = deleted;
    if (cs_map_put(p->target_map, t->key, t) != 0)
        return NULL;
    p->n_targets++;
    return t;
}

static void target_found_cb(const char *conv, int64_t seq, const char *from, int is_message,
                            int deleted, void *data)
{
    cs_load_add_target(data, conv, seq, from, is_message, deleted);
}

int cs_load_targets(cs_pipeline_t *p, chat_error_t *err)
{
    int rc;
    p->n_targets = 0;
    cs_map_clear(p->target_map);
    begin_query(p);
    for (size_t i = 0; i < p->n; i++) {
        cs_item_t *item = &p->items[i];
        /* Targets in this batch are recorded by the apply pass as it gives
         * their seqs; asking the store for them too costs nothing more. */
        if (!ok(item) || !is_change(item))
            continue;
        target_key(item->key, sizeof(item->key), item->ev.conv, item->ev.target);
        if (cs_map_get(p->want, item->key) != NULL)
            continue;
        p->seqs[p->nkeys] = item->ev.target;
        if ((rc = want(p, item->key, item)) != 0)
            return chat_error_set(err, rc, "out of memory");
        p->keys[p->nkeys - 1] = item->ev.conv;
    }
    if (p->nkeys == 0)
        return 0;
    return cs_store_find_targets(p->store, p->keys, p->seqs, p->nkeys, target_found_cb, p, err);
}
