#include "chat-buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat-error.h"

void chat_buf_init(chat_buf_t *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void chat_buf_close(chat_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int chat_buf_reserve(chat_buf_t *b, size_t n)
{
    if (n > b->max || b->len > b->max - n)
        return CHAT_ETOOBIG;
    if (b->len + n <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n)
        cap *= 2;
    if (cap > b->max)
        cap = b->max;
    char *p = realloc(b->data, cap);
    if (p == NULL)
        return CHAT_ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int chat_buf_append(chat_buf_t *b, const void *p, size_t n)
{
    int rc = chat_buf_reserve(b, n);
    if (rc != 0)
        return rc;
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int chat_buf_append_str(chat_buf_t *b, const char *s)
{
    return chat_buf_append(b, s, strlen(s));
}

int chat_buf_printf(chat_buf_t *b, const char *fmt, ...)
{
    /* Formats straight into the free space, and only when that is too small
     * grows the buffer and formats again: one pass in the common case. */
    va_list ap;
    size_t room = b->cap - b->len;
    va_start(ap, fmt);
    int n = vsnprintf(room > 0 ? b->data + b->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n < 0)
        return CHAT_EINVAL;
    if ((size_t)n >= room) {
        int rc = chat_buf_reserve(b, (size_t)n + 1);
        if (rc != 0)
            return rc;
        va_start(ap, fmt);
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
    return 0;
}

int chat_buf_append_i64(chat_buf_t *b, int64_t v)
{
    /* Digits from the end of a small buffer: no printf on the hot paths
     * (envelopes, frames) that write several numbers per message. */
    char tmp[24], *e = tmp + sizeof(tmp), *p = e;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        *--p = '-';
    return chat_buf_append(b, p, (size_t)(e - p));
}

int chat_buf_append_json_str(chat_buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    /* Reserve what this string needs, not the worst case (every byte as
     * \u00XX): a string whose escaped form fits must not be refused. */
    size_t need = 2, i = 0;
    /* Eight bytes at a time while none needs escaping (no byte below 0x20,
     * no quote, no backslash): the usual text. */
    const uint64_t ones = UINT64_C(0x0101010101010101), highs = UINT64_C(0x8080808080808080);
    for (; i + 8 <= n; i += 8) {
        uint64_t w, q, bs;
        memcpy(&w, s + i, 8);
        q = w ^ (ones * '"');
        bs = w ^ (ones * '\\');
        if ((((w - ones * 0x20) & ~w) | ((q - ones) & ~q) | ((bs - ones) & ~bs)) & highs)
            break;
        need += 8;
    }
    for (; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t')
            need += 2;
        else
            need += c < 0x20 ? 6 : 1;
    }
    int rc = chat_buf_reserve(b, need);
    if (rc != 0)
        return rc;
    char *o = b->data + b->len;
    *o++ = '"';
    if (need == n + 2) {
        /* Nothing to escape (the usual case): one copy. */
        memcpy(o, s, n);
        o[n] = '"';
        b->len += need;
        return 0;
    }
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"':
            *o++ = '\\';
            *o++ = '"';
            break;
        case '\\':
            *o++ = '\\';
            *o++ = '\\';
            break;
        case '\n':
            *o++ = '\\';
            *o++ = 'n';
            break;
        case '\r':
            *o++ = '\\';
            *o++ = 'r';
            break;
        case '\t':
            *o++ = '\\';
            *o++ = 't';
            break;
        default:
            if (c < 0x20) {
                *o++ = '\\';
                *o++ = 'u';
                *o++ = '0';
                *o++ = '0';
                *o++ = hex[c >> 4];
                *o++ = hex[c & 15];
            } else {
                *o++ = (char)c;
            }
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    return 0;
}
