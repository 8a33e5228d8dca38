/* Latency histograms with log-linear buckets (HdrHistogram's layout, cut
 * down): values below 32 have a bucket each, and every power of two above
 * is split into 32 equal buckets, so any value is known within ~3%. Plain
 * arrays of counters: two histograms merge by adding bucket by bucket,
 * which is how the parent adds up its children's results. */
#ifndef LG_HIST_H
#define LG_HIST_H

#include <stddef.h>
#include <stdint.h>

#define LG_HIST_SUB_BITS 5
#define LG_HIST_SUB      (1u << LG_HIST_SUB_BITS)
#define LG_HIST_MAX_EXP  40 /* 2^41 us is 25 days: anything above lands in the last bucket */
#define LG_HIST_BUCKETS  ((LG_HIST_MAX_EXP - LG_HIST_SUB_BITS + 2) * LG_HIST_SUB)

typedef struct lg_hist_s {
    uint64_t count;
    uint64_t sum;
    uint64_t min;
    uint64_t max;
    uint64_t buckets[LG_HIST_BUCKETS];
} lg_hist_t;

/* Empties h. */
void lg_hist_init(lg_hist_t *h);

/* Counts one value (microseconds, by our convention). */
void lg_hist_add(lg_hist_t *h, uint64_t v);

/* Adds src's counts to dst. */
void lg_hist_merge(lg_hist_t *dst, const lg_hist_t *src);

/* Returns the value below or at which a fraction p (0..1) of the values
 * lie: the upper bound of that bucket, never above the exact maximum.
 * Returns 0 for an empty histogram. */
uint64_t lg_hist_percentile(const lg_hist_t *h, double p);

/* Returns the largest value bucket i holds. */
uint64_t lg_hist_bucket_upper(size_t i);

#endif
