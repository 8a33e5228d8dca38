#include "chat-ratelimit.h"

void chat_bucket_init(chat_bucket_t *b, double burst, uint64_t now_ms)
{
    b->tokens = burst;
    b->last_ms = now_ms;
}

int chat_bucket_take(chat_bucket_t *b, double rate, double burst, uint64_t now_ms)
{
    if (now_ms > b->last_ms) {
        b->tokens += (double)(now_ms - b->last_ms) * rate / 1000.0;
        if (b->tokens > burst)
            b->tokens = burst;
        b->last_ms = now_ms;
    }
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        return 1;
    }
    return 0;
}
