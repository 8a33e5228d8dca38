#include "lg-hist.h"

#include <math.h>
#include <string.h>

void lg_hist_init(lg_hist_t *h)
{
    memset(h, 0, sizeof(*h));
}

static size_t bucket_of(uint64_t v)
{
    if (v < LG_HIST_SUB)
        return (size_t)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v);
    if (e > LG_HIST_MAX_EXP)
        return LG_HIST_BUCKETS - 1;
    return (size_t)(e - LG_HIST_SUB_BITS + 1) * LG_HIST_SUB +
           (size_t)((v >> (e - LG_HIST_SUB_BITS)) & (LG_HIST_SUB - 1));
}

uint64_t lg_hist_bucket_upper(size_t i)
{
    if (i < LG_HIST_SUB)
        return i;
    unsigned e = (unsigned)(i / LG_HIST_SUB) + LG_HIST_SUB_BITS - 1;
    uint64_t sub = i % LG_HIST_SUB;
    uint64_t lower = (LG_HIST_SUB + sub) << (e - LG_HIST_SUB_BITS);
    return lower + (1ull << (e - LG_HIST_SUB_BITS)) - 1;
}

void lg_hist_add(lg_hist_t *h, uint64_t v)
{
    if (h->count == 0 || v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
    h->count++;
    h->sum += v;
    h->buckets[bucket_of(v)]++;
}

void lg_hist_merge(lg_hist_t *dst, const lg_hist_t *src)
{
    if (src->count == 0)
        return;
    if (dst->count == 0 || src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
    dst->count += src->count;
    dst->sum += src->sum;
    for (size_t i = 0; i < LG_HIST_BUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
}

uint64_t lg_hist_percentile(const lg_hist_t *h, double p)
{
    if (h->count == 0)
        return 0;
    /* The rank of the value asked for, 1-based: p99 of 1000 is the 990th. */
    uint64_t rank = (uint64_t)ceil(p * (double)h->count);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < LG_HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t up = lg_hist_bucket_upper(i);
            return up < h->max ? up : h->max;
        }
    }
    return h->max;
}
