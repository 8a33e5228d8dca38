/* A token bucket: `rate` tokens per second, at most `burst` saved up. Pure
 * logic (the caller passes the time), so it is cheap per connection and
 * testable without clocks. */
#ifndef CHAT_RATELIMIT_H
#define CHAT_RATELIMIT_H

#include <stdint.h>

typedef struct chat_bucket_s {
    double tokens;
    uint64_t last_ms;
} chat_bucket_t;

/* Starts full. */
void chat_bucket_init(chat_bucket_t *b, double burst, uint64_t now_ms);

/* Takes one token if there is one: returns 1, else 0 (rate limited). */
int chat_bucket_take(chat_bucket_t *b, double rate, double burst, uint64_t now_ms);

#endif
