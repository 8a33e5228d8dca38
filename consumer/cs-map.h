/* A hash map from NUL-terminated strings to pointers, for the consumer's
 * caches and per-batch indexes. Open addressing with linear probing and
 * backward-shift deletion (no tombstones), so a map that is cleared and
 * refilled every batch never degrades and never allocates once warm.
 *
 * The map does not copy keys: a key must stay valid, unchanged, while its
 * entry is in the map. Point it into the value it maps to. */
#ifndef CS_MAP_H
#define CS_MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct cs_map_s cs_map_t;

/* Returns an empty map sized for about hint entries, or NULL (no memory). */
cs_map_t *cs_map_new(size_t hint);

/* Frees the map, not the keys or values. NULL is a no-op. */
void cs_map_destroy(cs_map_t *map);

/* Returns the value for key, or NULL. */
void *cs_map_get(const cs_map_t *map, const char *key);

/* Maps key to value (not NULL), replacing any value it had. Returns 0 or
 * CHAT_ENOMEM (the map is unchanged). */
int cs_map_put(cs_map_t *map, const char *key, void *value);

/* Removes key; returns the value it had, or NULL. */
void *cs_map_remove(cs_map_t *map, const char *key);

/* Removes every entry; the memory is kept for the next fill. */
void cs_map_clear(cs_map_t *map);

size_t cs_map_size(const cs_map_t *map);

/* The hash the map uses (FNV-1a; not seeded: keys come from our own store
 * and Kafka, not from a hostile hash flood). Stable across processes. */
uint32_t cs_map_hash(const char *s);

/* Calls cb for each entry; an entry for which cb returns non-zero is removed.
 * cb must not otherwise change the map. */
typedef int (*cs_map_filter_cb)(const char *key, void *value, void *data);
void cs_map_filter(cs_map_t *map, cs_map_filter_cb cb, void *data);

#endif
