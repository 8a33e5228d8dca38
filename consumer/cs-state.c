#include "cs-state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat-error.h"
#include "cs-map.h"

struct cs_state_s {
    cs_map_t *convs; /* id -> cs_conv_t, key = conv->id */
    cs_map_t *marks; /* "<conv>/<user>" -> cs_mark_t, key = mark->key */
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

static int drop_all_cb(const char *key, void *value, void *data)
{
    (void)key;
    (void)data;
    free(value);
    return 1;
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
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int cs_state_conv_put(cs_state_t *state, const char *conv, int32_t partition,
                      const char *const *members, size_t n, int64_t last_seq, cs_conv_t **out)
{
    /* One block holds the entry, the member pointers and the names, so that
     * an entry is one malloc and one free however large the group. */
    size_t names = 0;
    for (size_t i = 0; i < n; i++)
        names += strlen(members[i]) + 1;
    cs_conv_t *c = malloc(sizeof(*c) + n * sizeof(char *) + names);
    if (c == NULL)
        return CHAT_ENOMEM;
    memset(c, 0, sizeof(*c));
    snprintf(c->id, sizeof(c->id), "%s", conv);
    c->partition = partition;
    c->last_seq = last_seq;
    c->n_members = n;
    c->members = (const char **)(c + 1);
    char *p = (char *)(c->members + n);
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(members[i]) + 1;
        memcpy(p, members[i], len);
        c->members[i] = p;
        p += len;
    }
    qsort(c->members, n, sizeof(char *), cmp_name);
    cs_conv_t *old = cs_map_get(state->convs, c->id);
    if (cs_map_put(state->convs, c->id, c) != 0) {
        free(c);
        return CHAT_ENOMEM;
    }
    free(old);
    *out = c;
    return 0;
}

int cs_conv_has_member(const cs_conv_t *conv, const char *user)
{
    return bsearch(&user, conv->members, conv->n_members, sizeof(char *), cmp_name) != NULL;
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
    const int32_t *parts;
    size_t n;
} parts_t;

static int in_parts(const parts_t *p, int32_t partition)
{
    for (size_t i = 0; i < p->n; i++) {
        if (p->parts[i] == partition)
            return 1;
    }
    return 0;
}

static int drop_conv_cb(const char *key, void *value, void *data)
{
    (void)key;
    if (!in_parts(data, ((cs_conv_t *)value)->partition))
        return 0;
    free(value);
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

void cs_state_clear_partitions(cs_state_t *state, const int32_t *parts, size_t n)
{
    parts_t p = {parts, n};
    cs_map_filter(state->convs, drop_conv_cb, &p);
    cs_map_filter(state->marks, drop_mark_cb, &p);
}

void cs_state_clear(cs_state_t *state)
{
    cs_map_filter(state->convs, drop_all_cb, NULL);
    cs_map_filter(state->marks, drop_all_cb, NULL);
}

size_t cs_state_size(const cs_state_t *state)
{
    return cs_map_size(state->convs) + cs_map_size(state->marks);
}
