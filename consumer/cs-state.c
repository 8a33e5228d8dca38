#include "cs-state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat-error.h"
#include "cs-map.h"

struct cs_state_s {
    cs_map_t *convs; /* id -> cs_conv_t, key = conv->id */
    cs_map_t *marks; /* "<conv>/<user>" -> cs_mark_t, key = mark->key */
    /* Conversations whose last_seq the store lags, oldest first. */
    cs_conv_t *dirty_head, *dirty_tail;
    size_t n_dirty;
};

cs_state_t *cs_state_new(void)
{
    cs_state_t *state = calloc(1, sizeof(*state));
    if (state == NULL)
        return NULL;
    state->convs = cs_map_new(1024);
    state->marks = cs_map_new(1024);
    if (state->convs == NULL || state->marks == NULL)
        goto fail;
    return state;
fail:
    cs_map_destroy(state->convs);
    cs_map_destroy(state->marks);
    free(state);
    return NULL;
}

void cs_state_destroy(cs_state_t *state)
{
    if (state == NULL)
        return;
    cs_state_clear(state);
    cs_map_destroy(state->convs);
    cs_map_destroy(state->marks);
    free(state);
}

cs_conv_t *cs_state_conv_get(cs_state_t *state, const char *conv)
{
    return cs_map_get(state->convs, conv);
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

static void dirty_unlink(cs_state_t *state, cs_conv_t *c)
{
    if (!c->dirty)
        return;
    if (c->dirty_prev != NULL)
        c->dirty_prev->dirty_next = c->dirty_next;
    else
        state->dirty_head = c->dirty_next;
    if (c->dirty_next != NULL)
        c->dirty_next->dirty_prev = c->dirty_prev;
    else
        state->dirty_tail = c->dirty_prev;
    c->dirty_prev = c->dirty_next = NULL;
    c->dirty = 0;
    state->n_dirty--;
}

static void conv_free(cs_state_t *state, cs_conv_t *c)
{
    if (c != NULL) {
        dirty_unlink(state, c);
        free(c->members);
    }
    free(c);
}

static int reserve_members(cs_conv_t *c, size_t n)
{
    if (n <= c->cap_members)
        return 0;
    size_t cap = c->cap_members ? c->cap_members : 4;
    while (cap < n)
        cap *= 2;
    cs_name_t *m = realloc(c->members, cap * sizeof(*m));
    if (m == NULL)
        return CHAT_ENOMEM;
    c->members = m;
    c->cap_members = cap;
    return 0;
}

int cs_state_conv_put(cs_state_t *state, const char *conv, int32_t partition, int group,
                      const char *owner, int deleted, const char *const *members, size_t n,
                      int64_t last_seq, cs_conv_t **out)
{
    cs_conv_t *c = calloc(1, sizeof(*c));
    if (c == NULL || reserve_members(c, n) != 0) {
        conv_free(state, c);
        return CHAT_ENOMEM;
    }
    snprintf(c->id, sizeof(c->id), "%s", conv);
    snprintf(c->owner, sizeof(c->owner), "%s", owner != NULL ? owner : "");
    c->partition = partition;
    c->group = group;
    c->deleted = deleted;
    c->last_seq = c->stored_seq = last_seq;
    for (size_t i = 0; i < n; i++)
        snprintf(c->members[i], sizeof(cs_name_t), "%s", members[i]);
    qsort(c->members, n, sizeof(cs_name_t), cmp_name);
    /* Drop repeats, so that a member is routed to once. */
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (k == 0 || strcmp(c->members[k - 1], c->members[i]) != 0)
            memmove(c->members[k++], c->members[i], sizeof(cs_name_t));
    }
    c->n_members = k;
    cs_conv_t *old = cs_map_get(state->convs, c->id);
    if (cs_map_put(state->convs, c->id, c) != 0) {
        conv_free(state, c);
        return CHAT_ENOMEM;
    }
    conv_free(state, old);
    *out = c;
    return 0;
}

/* Returns the index where user is or would be inserted; *found says which. */
static size_t member_pos(const cs_conv_t *conv, const char *user, int *found)
{
    size_t lo = 0, hi = conv->n_members;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(conv->members[mid], user);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

int cs_conv_has_member(const cs_conv_t *conv, const char *user)
{
    int found;
    member_pos(conv, user, &found);
    return found;
}

int cs_conv_add_member(cs_conv_t *conv, const char *user)
{
    int found;
    size_t at = member_pos(conv, user, &found);
    if (found)
        return 0;
    if (reserve_members(conv, conv->n_members + 1) != 0)
        return CHAT_ENOMEM;
    memmove(conv->members[at + 1], conv->members[at], (conv->n_members - at) * sizeof(cs_name_t));
    snprintf(conv->members[at], sizeof(cs_name_t), "%s", user);
    conv->n_members++;
    return 0;
}

void cs_conv_remove_member(cs_conv_t *conv, const char *user)
{
    int found;
    size_t at = member_pos(conv, user, &found);
    if (!found)
        return;
    memmove(conv->members[at], conv->members[at + 1],
            (conv->n_members - at - 1) * sizeof(cs_name_t));
    conv->n_members--;
}

void cs_state_conv_touch(cs_state_t *state, cs_conv_t *conv, uint64_t now_ms)
{
    if (conv->dirty || conv->last_seq <= conv->stored_seq)
        return;
    conv->dirty = 1;
    conv->dirty_ms = now_ms;
    conv->dirty_next = NULL;
    conv->dirty_prev = state->dirty_tail;
    if (state->dirty_tail != NULL)
        state->dirty_tail->dirty_next = conv;
    else
        state->dirty_head = conv;
    state->dirty_tail = conv;
    state->n_dirty++;
}

size_t cs_state_dirty(const cs_state_t *state, uint64_t before_ms, const int32_t *parts,
                      size_t nparts, cs_conv_t **out, size_t max)
{
    size_t n = 0;
    for (cs_conv_t *c = state->dirty_head; c != NULL && n < max && c->dirty_ms <= before_ms;
         c = c->dirty_next) {
        int in = parts == NULL;
        for (size_t k = 0; k < nparts && !in; k++)
            in = c->partition == parts[k];
        if (in)
            out[n++] = c;
    }
    return n;
}

void cs_state_conv_stored(cs_state_t *state, cs_conv_t *conv, int64_t seq)
{
    if (seq > conv->stored_seq)
        conv->stored_seq = seq;
    if (conv->last_seq <= conv->stored_seq)
        dirty_unlink(state, conv);
}

size_t cs_state_dirty_count(const cs_state_t *state)
{
    return state->n_dirty;
}

void cs_mark_key(char *key, const char *conv, const char *user)
{
    snprintf(key, 2 * CHAT_NAME_MAX + 2, "%s/%s", conv, user);
}

cs_mark_t *cs_state_mark_get(cs_state_t *state, const char *key)
{
    return cs_map_get(state->marks, key);
}

int cs_state_mark_put(cs_state_t *state, const char *key, int32_t partition, int64_t delivered,
                      int64_t read, cs_mark_t **out)
{
    cs_mark_t *m = cs_map_get(state->marks, key);
    if (m == NULL) {
        if ((m = calloc(1, sizeof(*m))) == NULL)
            return CHAT_ENOMEM;
        snprintf(m->key, sizeof(m->key), "%s", key);
        if (cs_map_put(state->marks, m->key, m) != 0) {
            free(m);
            return CHAT_ENOMEM;
        }
    }
    m->partition = partition;
    m->delivered = delivered;
    m->read = read;
    *out = m;
    return 0;
}

typedef struct parts_s {
    cs_state_t *state;
    const int32_t *parts; /* NULL: all */
    size_t n;
} parts_t;

static int in_parts(const parts_t *p, int32_t partition)
{
    if (p->parts == NULL)
        return 1;
    for (size_t i = 0; i < p->n; i++) {
        if (p->parts[i] == partition)
            return 1;
    }
    return 0;
}

static int drop_conv_cb(const char *key, void *value, void *data)
{
    parts_t *p = data;
    (void)key;
    if (!in_parts(p, ((cs_conv_t *)value)->partition))
        return 0;
    conv_free(p->state, value);
    return 1;
}

static int drop_mark_cb(const char *key, void *value, void *data)
{
    (void)key;
    if (!in_parts(data, ((cs_mark_t *)value)->partition))
        return 0;
    free(value);
    return 1;
}

static int drop_mark_of_cb(const char *key, void *value, void *data)
{
    char conv[CHAT_NAME_MAX + 1];
    const char *slash = strchr(key, '/'); /* ids have no '/' (chat_name_valid) */
    size_t len = slash != NULL ? (size_t)(slash - key) : 0;
    if (len == 0 || len > CHAT_NAME_MAX)
        return 0;
    memcpy(conv, key, len);
    conv[len] = '\0';
    if (cs_map_get(data, conv) == NULL)
        return 0;
    free(value);
    return 1;
}

int cs_state_drop_convs(cs_state_t *state, const char *const *ids, size_t n)
{
    cs_map_t *set = cs_map_new(n);
    if (set == NULL)
        return CHAT_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (cs_map_put(set, ids[i], (void *)ids[i]) != 0) {
            cs_map_destroy(set);
            return CHAT_ENOMEM;
        }
    }
    for (size_t i = 0; i < n; i++)
        conv_free(state, cs_map_remove(state->convs, ids[i]));
    cs_map_filter(state->marks, drop_mark_of_cb, set);
    cs_map_destroy(set);
    return 0;
}

void cs_state_clear_partitions(cs_state_t *state, const int32_t *parts, size_t n)
{
    parts_t p = {state, parts, n};
    cs_map_filter(state->convs, drop_conv_cb, &p);
    cs_map_filter(state->marks, drop_mark_cb, &p);
}

void cs_state_clear(cs_state_t *state)
{
    cs_state_clear_partitions(state, NULL, 0);
}

size_t cs_state_size(const cs_state_t *state)
{
    return cs_map_size(state->convs) + cs_map_size(state->marks);
}
