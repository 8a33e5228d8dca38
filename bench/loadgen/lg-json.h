/* Reads the top-level members of one JSON object in place, without
 * allocating: the server's frames are flat objects, and the load generator
 * reads a handful of their fields at tens of thousands of frames a second.
 * Strings are handed out raw (between the quotes, escapes left as they
 * are), which is exact for the ids and codes we compare. */
#ifndef LG_JSON_H
#define LG_JSON_H

#include <stddef.h>
#include <stdint.h>

typedef struct lg_str_s {
    const char *p; /* NULL when the member is absent */
    size_t n;
} lg_str_t;

/* The fields of a server frame that the load generator looks at. */
typedef struct lg_frame_s {
    lg_str_t t;
    lg_str_t id;
    lg_str_t conv;
    lg_str_t from;
    lg_str_t cid;
    lg_str_t user;
    lg_str_t kind;
    lg_str_t code;
    lg_str_t message;
    int64_t seq;   /* -1 when absent */
    int64_t upto;  /* -1 when absent */
    int64_t count; /* -1 when absent */
} lg_frame_t;

/* Parses p[0..n), one JSON object, into f. Nested values are skipped.
 * Returns 0, or CHAT_EPARSE if p is not a well-formed object (as far as a
 * flat reader can tell). */
int lg_frame_parse(const char *p, size_t n, lg_frame_t *f);

/* Returns 1 if s holds exactly the NUL-terminated lit. */
int lg_str_eq(lg_str_t s, const char *lit);

#endif
