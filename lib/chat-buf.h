/* A growable byte buffer with a hard cap, reused across messages: reset()
 * keeps the memory, so a hot path allocates only while it warms up. */
#ifndef CHAT_BUF_H
#define CHAT_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct chat_buf_s {
    char *data;
    size_t len;
    size_t cap;
    size_t max; /* appends that would pass this fail with CHAT_ETOOBIG */
} chat_buf_t;

/* Initialises an empty buffer that may grow to max bytes. */
void chat_buf_init(chat_buf_t *b, size_t max);
/* Frees the memory; the buffer may be initialised again. */
void chat_buf_close(chat_buf_t *b);
static inline void chat_buf_reset(chat_buf_t *b)
{
    b->len = 0;
}
/* Makes room for n more bytes. Returns 0, CHAT_ETOOBIG or CHAT_ENOMEM. */
int chat_buf_reserve(chat_buf_t *b, size_t n);
/* Appends bytes (copied). Returns 0, CHAT_ETOOBIG or CHAT_ENOMEM. */
int chat_buf_append(chat_buf_t *b, const void *p, size_t n);
int chat_buf_append_str(chat_buf_t *b, const char *s);
int chat_buf_printf(chat_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s[0..n) as a quoted JSON string, escaping as RFC 8259 requires. */
int chat_buf_append_json_str(chat_buf_t *b, const char *s, size_t n);
int chat_buf_append_i64(chat_buf_t *b, int64_t v);

#endif
