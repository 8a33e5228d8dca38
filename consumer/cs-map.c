#include "cs-map.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat-error.h"

typedef struct slot_s {
    const char *key; /* NULL: empty */
    void *value;
    uint32_t hash;
} slot_t;

struct cs_map_s {
    slot_t *slots;
    size_t mask; /* capacity - 1; capacity is a power of two */
    size_t size;
};

/* FNV-1a: ids are short, and this needs no seed to be good enough for keys
 * that come from our own store and Kafka, not from a hostile hash flood. */
uint32_t cs_map_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h;
}

static int alloc_slots(cs_map_t *map, size_t cap)
{
    slot_t *slots = calloc(cap, sizeof(*slots));
    if (slots == NULL)
        return CHAT_ENOMEM;
    map->slots = slots;
    map->mask = cap - 1;
    map->size = 0;
    return 0;
}

cs_map_t *cs_map_new(size_t hint)
{
    cs_map_t *map = calloc(1, sizeof(*map));
    size_t cap = 16;
    if (map == NULL)
        return NULL;
    while (cap < hint * 2)
        cap *= 2;
    if (alloc_slots(map, cap) != 0) {
        free(map);
        return NULL;
    }
    return map;
}

void cs_map_destroy(cs_map_t *map)
{
    if (map == NULL)
        return;
    free(map->slots);
    free(map);
}

static size_t find(const cs_map_t *map, const char *key, uint32_t h)
{
    size_t i = h & map->mask;
    while (map->slots[i].key != NULL &&
           (map->slots[i].hash != h || strcmp(map->slots[i].key, key) != 0))
        i = (i + 1) & map->mask;
    return i;
}

void *cs_map_get(const cs_map_t *map, const char *key)
{
    size_t i = find(map, key, cs_map_hash(key));
    return map->slots[i].key != NULL ? map->slots[i].value : NULL;
}

static int grow(cs_map_t *map)
{
    slot_t *old = map->slots;
    size_t cap = (map->mask + 1) * 2, n = map->mask + 1;
    if (alloc_slots(map, cap) != 0) {
        map->slots = old;
        return CHAT_ENOMEM;
    }
    for (size_t j = 0; j < n; j++) {
        if (old[j].key != NULL) {
            size_t i = find(map, old[j].key, old[j].hash);
            map->slots[i] = old[j];
            map->size++;
        }
    }
    free(old);
    return 0;
}

int cs_map_put(cs_map_t *map, const char *key, void *value)
{
    uint32_t h = cs_map_hash(key);
    size_t i = find(map, key, h);
    if (map->slots[i].key != NULL) {
        map->slots[i].key = key;
        map->slots[i].value = value;
        return 0;
    }
    /* Keep the load under 1/2 so that probes stay short. */
    if ((map->size + 1) * 2 > map->mask + 1) {
        if (grow(map) != 0)
            return CHAT_ENOMEM;
        i = find(map, key, h);
    }
    map->slots[i].key = key;
    map->slots[i].value = value;
    map->slots[i].hash = h;
    map->size++;
    return 0;
}

/* Empties slot i and moves later entries of its probe run back, so that a
 * lookup never stops early at the hole (Knuth's algorithm R). */
static void delete_at(cs_map_t *map, size_t i)
{
    size_t j = i;
    map->slots[i].key = NULL;
    map->size--;
    for (;;) {
        j = (j + 1) & map->mask;
        if (map->slots[j].key == NULL)
            return;
        size_t home = map->slots[j].hash & map->mask;
        /* Entry j may move to the hole i unless its home lies cyclically in
         * (i, j]. */
        int stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (stays)
            continue;
        map->slots[i] = map->slots[j];
        map->slots[j].key = NULL;
        i = j;
    }
}

void *cs_map_remove(cs_map_t *map, const char *key)
{
    size_t i = find(map, key, cs_map_hash(key));
    if (map->slots[i].key == NULL)
        return NULL;
    void *value = map->slots[i].value;
    delete_at(map, i);
    return value;
}

void cs_map_clear(cs_map_t *map)
{
    if (map->size == 0)
        return;
    memset(map->slots, 0, (map->mask + 1) * sizeof(*map->slots));
    map->size = 0;
}

size_t cs_map_size(const cs_map_t *map)
{
    return map->size;
}

void cs_map_filter(cs_map_t *map, cs_map_filter_cb cb, void *data)
{
    size_t i = 0;
    /* A backward shift can move an unvisited entry into slot i, so slot i is
     * looked at again after a removal. Entries shifted from the start of the
     * table past the wrap point are visited a second time, harmlessly: cb
     * says the same thing about them. */
    while (i <= map->mask) {
        slot_t *s = &map->slots[i];
        if (s->key != NULL && cb(s->key, s->value, data) != 0)
            delete_at(map, i);
        else
            i++;
    }
}
