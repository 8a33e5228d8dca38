#include "gw-seen.h"

#include <stdlib.h>
#include <string.h>

struct gw_seen_s {
    uint64_t conv[GW_SEEN_SLOTS]; /* conversation hashes, 0 = free */
    int64_t seq[GW_SEEN_SLOTS];
    unsigned next; /* the slot replaced next */
};

void gw_seen_free(gw_seen_t *seen)
{
    free(seen);
}

/* Skips `,"<key>":"<value>"` at *p when it is there (values of ids have
 * no quotes or escapes). Returns 1 if skipped, 0 if not there, -1 if cut. */
static int skip_str_field(const char **p, const char *end, const char *key, size_t key_len)
{
    if ((size_t)(end - *p) < key_len || memcmp(*p, key, key_len) != 0)
        return 0;
    const char *q = memchr(*p + key_len, '"', (size_t)(end - *p - (ptrdiff_t)key_len));
    if (q == NULL)
        return -1;
    *p = q + 1;
    return 1;
}

int gw_seen_frame_seq(const char *f, size_t len, uint64_t *conv, int64_t *seq)
{
    static const char id_key[] = ",\"id\":\"", conv_key[] = ",\"conv\":\"", seq_key[] = ",\"seq\":";
    const char *end = f + len;
    if (len < 8 || memcmp(f, "{\"t\":\"", 6) != 0)
        return -1;
    const char *p = memchr(f + 6, '"', (size_t)(end - f - 6));
    if (p == NULL)
        return -1;
    p++;
    if (skip_str_field(&p, end, id_key, sizeof(id_key) - 1) < 0)
        return -1;
    if ((size_t)(end - p) < sizeof(conv_key) - 1 || memcmp(p, conv_key, sizeof(conv_key) - 1) != 0)
        return -1;
    const char *c = p + sizeof(conv_key) - 1;
    const char *ce = memchr(c, '"', (size_t)(end - c));
    if (ce == NULL || (size_t)(end - ce - 1) < sizeof(seq_key) - 1 ||
        memcmp(ce + 1, seq_key, sizeof(seq_key) - 1) != 0)
        return -1;
    uint64_t h = 1469598103934665603ull;
    for (const char *x = c; x < ce; x++)
        h = (h ^ (uint8_t)*x) * 1099511628211ull;
    int64_t n = 0;
    const char *d = ce + 1 + sizeof(seq_key) - 1, *digits = d;
    for (; d < end && *d >= '0' && *d <= '9' && n < INT64_MAX / 10; d++)
        n = n * 10 + (*d - '0');
    if (d == digits || n < 1)
        return -1;
    *conv = h ? h : 1;
    *seq = n;
    return 0;
}

int gw_seen_repeat(gw_seen_t **seen, uint64_t conv, int64_t seq)
{
    gw_seen_t *s = *seen;
    if (s == NULL && (s = *seen = calloc(1, sizeof(*s))) == NULL)
        return 0;
    for (unsigned i = 0; i < GW_SEEN_SLOTS; i++) {
        if (s->conv[i] == conv) {
            if (seq <= s->seq[i])
                return 1;
            s->seq[i] = seq;
            return 0;
        }
    }
    s->conv[s->next] = conv;
    s->seq[s->next] = seq;
    s->next = (s->next + 1) % GW_SEEN_SLOTS;
    return 0;
}
