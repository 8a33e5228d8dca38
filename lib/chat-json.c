#include "chat-json.h"

#include <string.h>

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* A string at p (at its opening quote): sets *s and *n, writes a NUL over
 * the closing quote, returns what follows, or NULL. */
static char *read_str(char *p, const char *end, const char **s, size_t *n)
{
    char *q = ++p;
    while (q < end && *q != '"') {
        unsigned char c = (unsigned char)*q;
        if (c == '\\' || c < 0x20)
            return NULL;
        q++;
    }
    if (q == end)
        return NULL;
    *s = p;
    *n = (size_t)(q - p);
    *q = '\0';
    return q + 1;
}

/* An integer as JSON writes one: -?(0|[1-9][0-9]*), with no fraction or
 * exponent after it, within int64. Returns what follows, or NULL. */
static char *read_int(char *p, const char *end, int64_t *v)
{
    int neg = 0;
    if (p < end && *p == '-') {
        neg = 1;
        p++;
    }
    if (p == end || *p < '0' || *p > '9' ||
        (*p == '0' && p + 1 < end && p[1] >= '0' && p[1] <= '9'))
        return NULL;
    uint64_t u = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    while (p < end && *p >= '0' && *p <= '9') {
        unsigned d = (unsigned)(*p - '0');
        if (u > (limit - d) / 10)
            return NULL;
        u = u * 10 + d;
        p++;
    }
    if (p < end && (*p == '.' || *p == 'e' || *p == 'E'))
        return NULL;
    *v = neg ? (int64_t)(0 - u) : (int64_t)u;
    return p;
}

static char *read_literal(char *p, const char *end)
{
    static const char *const words[] = {"true", "false", "null"};
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(words[i]);
        if ((size_t)(end - p) >= n && memcmp(p, words[i], n) == 0)
            return p + n;
    }
    return NULL;
}

int chat_json_flat_read(char *buf, size_t len, chat_json_flat_t *out)
{
    const char *end = buf + len;
    char *p = (char *)skip_ws(buf, end);
    out->n = 0;
    if (p == end || *p != '{')
        return -1;
    p = (char *)skip_ws(p + 1, end);
    if (p < end && *p == '}')
        return skip_ws(p + 1, end) == end ? 0 : -1;
    for (;;) {
        if (out->n == CHAT_JSON_MAX || p == end || *p != '"')
            return -1;
        chat_json_member_t *m = &out->m[out->n];
        size_t klen;
        if ((p = read_str(p, end, &m->key, &klen)) == NULL)
            return -1;
        for (size_t i = 0; i < out->n; i++) {
            if (strcmp(out->m[i].key, m->key) == 0)
                return -1; /* repeated: jansson refuses it */
        }
        p = (char *)skip_ws(p, end);
        if (p == end || *p != ':')
            return -1;
        p = (char *)skip_ws(p + 1, end);
        if (p == end)
            return -1;
        m->str = NULL;
        m->len = 0;
        m->num = 0;
        if (*p == '"') {
            m->type = CHAT_JSON_STRING;
            p = read_str(p, end, &m->str, &m->len);
        } else if (*p == '-' || (*p >= '0' && *p <= '9')) {
            m->type = CHAT_JSON_INT;
            p = read_int(p, end, &m->num);
        } else {
            m->type = CHAT_JSON_LITERAL;
            p = read_literal(p, end);
        }
        if (p == NULL)
            return -1;
        out->n++;
        p = (char *)skip_ws(p, end);
        if (p < end && *p == ',') {
            p = (char *)skip_ws(p + 1, end);
            continue;
        }
        if (p < end && *p == '}')
            return skip_ws(p + 1, end) == end ? 0 : -1;
        return -1;
    }
}

const chat_json_member_t *chat_json_flat_get(const chat_json_flat_t *o, const char *key)
{
    for (size_t i = 0; i < o->n; i++) {
        if (strcmp(o->m[i].key, key) == 0)
            return &o->m[i];
    }
    return NULL;
}

/* Returns 1 if s[0..len) is well-formed UTF-8 (no overlongs, no surrogates,
 * nothing above U+10FFFF), as RFC 6455 requires of text frames. */
int chat_utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        /* ASCII, the usual case, eight bytes at a time. */
        if (i + 8 <= len) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if ((w & UINT64_C(0x8080808080808080)) == 0) {
                i += 8;
                continue;
            }
        }
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp;
        if ((c & 0xe0) == 0xc0) {
            n = 1;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (i + n >= len)
            return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += n + 1;
    }
    return 1;
}
