/* The flat reader: the common client frame (and the common Kafka
 * envelope), one JSON object of strings and integers, read without
 * allocating. Everything it does not accept (nested
 * values, escapes, numbers with a fraction or exponent, repeated keys, more
 * than CHAT_JSON_MAX members, anything malformed) is left to jansson, which
 * then decides exactly as for any other frame; so the two readers never
 * disagree on what a frame says, only on how fast they find out. Pure
 * logic: no I/O. */
#ifndef CHAT_JSON_H
#define CHAT_JSON_H

#include <stddef.h>
#include <stdint.h>

#define CHAT_JSON_MAX 16

typedef enum { CHAT_JSON_STRING = 1, CHAT_JSON_INT, CHAT_JSON_LITERAL } chat_json_type_t;

typedef struct chat_json_member_s {
    const char *key; /* NUL-terminated, in the caller's buffer */
    chat_json_type_t type;
    const char *str; /* STRING: NUL-terminated, in the caller's buffer */
    size_t len;      /* its length */
    int64_t num;     /* INT */
} chat_json_member_t;

typedef struct chat_json_flat_s {
    size_t n;
    chat_json_member_t m[CHAT_JSON_MAX];
} chat_json_flat_t;

/* Reads buf[0..len) as one flat JSON object: members whose values are
 * strings without escapes or control characters, integers that fit int64,
 * true, false or null; whitespace around tokens; no repeated key. Writes a
 * NUL over the closing quote of each key and string, so buf must be
 * writable and is changed even when this fails. Returns 0, or -1 when the
 * frame is anything else (the caller then uses a full JSON parser on an
 * unchanged copy). */
int chat_json_flat_read(char *buf, size_t len, chat_json_flat_t *out);

/* The member named key, or NULL. */
const chat_json_member_t *chat_json_flat_get(const chat_json_flat_t *o, const char *key);

/* Returns 1 if s[0..len) is well-formed UTF-8 (no overlongs, no surrogates,
 * nothing above U+10FFFF), else 0. */
int chat_utf8_valid(const unsigned char *s, size_t len);

#endif
