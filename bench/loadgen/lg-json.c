#include "lg-json.h"

#include <string.h>

#include "chat-error.h"

typedef struct cursor_s {
    const char *p;
    const char *end;
} cursor_t;

static void skip_ws(cursor_t *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

/* At an opening quote: moves past the closing one and returns the raw
 * contents in s. */
static int read_string(cursor_t *c, lg_str_t *s)
{
    if (c->p >= c->end || *c->p != '"')
        return CHAT_EPARSE;
    const char *start = ++c->p;
    while (c->p < c->end) {
        const char *q = memchr(c->p, '"', (size_t)(c->end - c->p));
        if (q == NULL)
            return CHAT_EPARSE;
        /* A quote preceded by an odd number of backslashes is escaped. */
        size_t bs = 0;
        while (q - bs > start && q[-1 - (ptrdiff_t)bs] == '\\')
            bs++;
        c->p = q + 1;
        if (bs % 2 == 0) {
            s->p = start;
            s->n = (size_t)(q - start);
            return 0;
        }
    }
    return CHAT_EPARSE;
}

/* Skips a nested object or array, minding strings inside it. */
static int skip_nested(cursor_t *c)
{
    int depth = 0;
    lg_str_t s;
    while (c->p < c->end) {
        char ch = *c->p;
        if (ch == '"') {
            if (read_string(c, &s) != 0)
                return CHAT_EPARSE;
            continue;
        }
        c->p++;
        if (ch == '{' || ch == '[')
            depth++;
        else if (ch == '}' || ch == ']') {
            if (--depth == 0)
                return 0;
        }
    }
    return CHAT_EPARSE;
}

/* Reads a number; the integer part lands in *v (fractions are dropped,
 * none of the fields we read has one). */
static int read_number(cursor_t *c, int64_t *v)
{
    int neg = 0;
    int64_t x = 0;
    int digits = 0;
    if (c->p < c->end && *c->p == '-') {
        neg = 1;
        c->p++;
    }
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        if (x < INT64_MAX / 10)
            x = x * 10 + (*c->p - '0');
        c->p++;
        digits++;
    }
    while (c->p < c->end && (*c->p == '.' || *c->p == 'e' || *c->p == 'E' || *c->p == '+' ||
                             *c->p == '-' || (*c->p >= '0' && *c->p <= '9')))
        c->p++;
    if (digits == 0)
        return CHAT_EPARSE;
    *v = neg ? -x : x;
    return 0;
}

int lg_str_eq(lg_str_t s, const char *lit)
{
    size_t n = strlen(lit);
    return s.p != NULL && s.n == n && memcmp(s.p, lit, n) == 0;
}

#define KEY(k) (key.n == sizeof(k) - 1 && memcmp(key.p, k, sizeof(k) - 1) == 0)

static void put_str(lg_frame_t *f, lg_str_t key, lg_str_t val)
{
    if (KEY("t"))
        f->t = val;
    else if (KEY("id"))
        f->id = val;
    else if (KEY("conv"))
        f->conv = val;
    else if (KEY("from"))
        f->from = val;
    else if (KEY("cid"))
        f->cid = val;
    else if (KEY("user"))
        f->user = val;
    else if (KEY("kind"))
        f->kind = val;
    else if (KEY("code"))
        f->code = val;
    else if (KEY("message"))
        f->message = val;
}

static void put_int(lg_frame_t *f, lg_str_t key, int64_t v)
{
    if (KEY("seq"))
        f->seq = v;
    else if (KEY("upto"))
        f->upto = v;
    else if (KEY("count"))
        f->count = v;
}

#undef KEY

int lg_frame_parse(const char *p, size_t n, lg_frame_t *f)
{
    cursor_t c = {p, p + n};
    memset(f, 0, sizeof(*f));
    f->seq = f->upto = f->count = -1;
    skip_ws(&c);
    if (c.p >= c.end || *c.p != '{')
        return CHAT_EPARSE;
    c.p++;
    skip_ws(&c);
    if (c.p < c.end && *c.p == '}')
        return 0;
    for (;;) {
        lg_str_t key, val;
        skip_ws(&c);
        if (read_string(&c, &key) != 0)
            return CHAT_EPARSE;
        skip_ws(&c);
        if (c.p >= c.end || *c.p != ':')
            return CHAT_EPARSE;
        c.p++;
        skip_ws(&c);
        if (c.p >= c.end)
            return CHAT_EPARSE;
        char ch = *c.p;
        if (ch == '"') {
            if (read_string(&c, &val) != 0)
                return CHAT_EPARSE;
            put_str(f, key, val);
        } else if (ch == '-' || (ch >= '0' && ch <= '9')) {
            int64_t v;
            if (read_number(&c, &v) != 0)
                return CHAT_EPARSE;
            put_int(f, key, v);
        } else if (ch == '{' || ch == '[') {
            if (skip_nested(&c) != 0)
                return CHAT_EPARSE;
        } else {
            /* true, false, null */
            const char *start = c.p;
            while (c.p < c.end && *c.p >= 'a' && *c.p <= 'z')
                c.p++;
            if (c.p == start)
                return CHAT_EPARSE;
        }
        skip_ws(&c);
        if (c.p >= c.end)
            return CHAT_EPARSE;
        if (*c.p == ',') {
            c.p++;
            continue;
        }
        if (*c.p == '}')
            return 0;
        return CHAT_EPARSE;
    }
}
