#include "gw-map.h"

#include <stdlib.h>
#include <string.h>

static char tomb_key;
#define GW_MAP_TOMB (&tomb_key)

static uint32_t hash_str(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h;
}

void gw_map_init(gw_map_t *m)
{
    memset(m, 0, sizeof(*m));
}

void gw_map_close(gw_map_t *m)
{
    for (size_t i = 0; i < m->cap; i++) {
        if (m->e[i].key != NULL && m->e[i].key != GW_MAP_TOMB)
            free(m->e[i].key);
    }
    free(m->e);
    memset(m, 0, sizeof(*m));
}

static gw_map_entry_t *find(gw_map_t *m, const char *key, uint32_t h, gw_map_entry_t **slot)
{
    gw_map_entry_t *first_free = NULL;
    if (m->cap == 0) {
        *slot = NULL;
        return NULL;
    }
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        gw_map_entry_t *e = &m->e[i];
        if (e->key == NULL) {
            *slot = first_free ? first_free : e;
            return NULL;
        }
        if (e->key == GW_MAP_TOMB) {
            if (first_free == NULL)
                first_free = e;
        } else if (e->hash == h && strcmp(e->key, key) == 0) {
            return e;
        }
    }
}

static int grow(gw_map_t *m)
{
    size_t cap = m->cap ? m->cap * 2 : 64;
    /* Rehash in place of the same size when tombstones, not live keys, fill it. */
    if (m->live * 4 < m->cap)
        cap = m->cap;
    gw_map_entry_t *e = calloc(cap, sizeof(*e));
    if (e == NULL)
        return -1;
    gw_map_entry_t *old = m->e;
    size_t old_cap = m->cap;
    m->e = e;
    m->cap = cap;
    m->used = m->live = 0;
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i].key == NULL || old[i].key == GW_MAP_TOMB)
            continue;
        size_t j = old[i].hash & (cap - 1);
        while (e[j].key != NULL)
            j = (j + 1) & (cap - 1);
        e[j] = old[i];
        m->used++;
        m->live++;
    }
    free(old);
    return 0;
}

gw_map_entry_t *gw_map_get(gw_map_t *m, const char *key)
{
    gw_map_entry_t *slot;
    return find(m, key, hash_str(key), &slot);
}

gw_map_entry_t *gw_map_put(gw_map_t *m, const char *key)
{
    uint32_t h = hash_str(key);
    gw_map_entry_t *slot, *e;
    if ((e = find(m, key, h, &slot)) != NULL)
        return e;
    if ((m->used + 1) * 4 >= m->cap * 3) {
        if (grow(m) != 0)
            return NULL;
        find(m, key, h, &slot);
    }
    char *k = strdup(key);
    if (k == NULL)
        return NULL;
    if (slot->key == NULL)
        m->used++;
    slot->key = k;
    slot->hash = h;
    slot->value = NULL;
    slot->aux = 0;
    m->live++;
    return slot;
}

void gw_map_del(gw_map_t *m, gw_map_entry_t *ent)
{
    free(ent->key);
    ent->key = GW_MAP_TOMB;
    ent->value = NULL;
    m->live--;
}
