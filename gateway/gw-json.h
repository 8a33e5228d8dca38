/* The flat reader: the common client frame, one JSON object of strings and
 * integers, read without allocating. Everything it does not accept (nested
 * values, escapes, numbers with a fraction or exponent, repeated keys, more
 * than GW_JSON_MAX members, anything malformed) is left to jansson, which
 * then decides exactly as for any other frame; so the two readers never
 * disagree on what a frame says, only on how fast they find out. Pure
 * logic: no I/O. */
#ifndef GW_JSON_H
#define GW_JSON_H

#include <stddef.h>
#include <stdint.h>

#define GW_JSON_MAX 16

typedef enum { GW_JSON_STRING = 1, GW_JSON_INT, GW_JSON_LITERAL } gw_json_type_t;

typedef struct gw_json_member_s {
    const char *key; /* NUL-terminated, in the caller's buffer */
    gw_json_type_t type;
    const char *str; /* STRING: NUL-terminated, in the caller's buffer */
    size_t len;      /* its length */
    int64_t num;     /* INT */
} gw_json_member_t;

typedef struct gw_json_flat_s {
    size_t n;
    gw_json_member_t m[GW_JSON_MAX];
} gw_json_flat_t;

/* Reads buf[0..len) as one flat JSON object: members whose values are
 * strings without escapes or control characters, integers that fit int64,
 * true, false or null; whitespace around tokens; no repeated key. Writes a
 * NUL over the closing quote of each key and string, so buf must be
 * writable and is changed even when this fails. Returns 0, or -1 when the
 * frame is anything else (the caller then uses a full JSON parser on an
 * unchanged copy). */
int gw_json_flat_read(char *buf, size_t len, gw_json_flat_t *out);

/* The member named key, or NULL. */
const gw_json_member_t *gw_json_flat_get(const gw_json_flat_t *o, const char *key);

#endif
