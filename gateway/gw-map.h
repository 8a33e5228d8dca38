/* A string-keyed hash map (open addressing, linear probing, tombstones),
 * used for user -> connections and the membership cache. Keys are copied
 * into the map; values are the caller's pointers or integers. */
#ifndef GW_MAP_H
#define GW_MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct gw_map_entry_s {
    char *key; /* NULL: empty; GW_MAP_TOMB: deleted */
    uint32_t hash;
    void *value;
    uint64_t aux; /* free for the caller (e.g. an expiry) */
} gw_map_entry_t;

typedef struct gw_map_s {
    gw_map_entry_t *e;
    size_t cap;  /* a power of two */
    size_t used; /* live + tombstones */
    size_t live;
} gw_map_t;

void gw_map_init(gw_map_t *m);
/* Frees the keys and the table (not the values). */
void gw_map_close(gw_map_t *m);
/* Returns the entry for key, or NULL. */
gw_map_entry_t *gw_map_get(gw_map_t *m, const char *key);
/* Returns the entry for key, inserting one with value NULL if absent; NULL
 * only when memory runs out. */
gw_map_entry_t *gw_map_put(gw_map_t *m, const char *key);
/* Removes the entry (which must come from this map). */
void gw_map_del(gw_map_t *m, gw_map_entry_t *ent);

#endif
