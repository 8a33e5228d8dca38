/* The web client's static files, read into memory once at start-up (they
 * are small) and served from there: no file I/O on the loop. */
#ifndef GW_STATIC_H
#define GW_STATIC_H

#include <stddef.h>

typedef struct gw_static_s gw_static_t;

/* Loads the regular files directly inside dir (not subfolders, at most 64
 * files of at most 4 MiB each). A missing folder gives an empty set.
 * Returns the set or NULL when memory runs out. */
gw_static_t *gw_static_new(const char *dir);
void gw_static_destroy(gw_static_t *st);

/* Finds path ("/" means "/index.html"). Returns 0 with the content type and
 * bytes (owned by st), or -1. */
int gw_static_find(const gw_static_t *st, const char *path, size_t len, const char **ctype,
                   const char **data, size_t *size);

#endif
