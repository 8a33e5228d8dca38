#include "gw-json.h"

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

int gw_json_flat_read(char *buf, size_t len, gw_json_flat_t *out)
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
        if (out->n == GW_JSON_MAX || p == end || *p != '"')
            return -1;
        gw_json_member_t *m = &out->m[out->n];
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
            m->type = GW_JSON_STRING;
            p = read_str(p, end, &m->str, &m->len);
        } else if (*p == '-' || (*p >= '0' && *p <= '9')) {
            m->type = GW_JSON_INT;
            p = read_int(p, end, &m->num);
        } else {
            m->type = GW_JSON_LITERAL;
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

const gw_json_member_t *gw_json_flat_get(const gw_json_flat_t *o, const char *key)
{
    for (size_t i = 0; i < o->n; i++) {
        if (strcmp(o->m[i].key, key) == 0)
            return &o->m[i];
    }
    return NULL;
}
