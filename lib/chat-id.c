#include "chat-id.h"

#include <sodium.h>
#include <string.h>
#include <time.h>

static const char b32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/* Encodes 16 bytes (128 bits) as 26 base32 characters, most significant first. */
static void encode128(const unsigned char in[16], char out[CHAT_ID_LEN + 1])
{
    /* 26 * 5 = 130 bits: the first character carries the top 3 bits. */
    int bit = -2;
    for (int i = 0; i < CHAT_ID_LEN; i++) {
        unsigned v = 0;
        for (int k = 0; k < 5; k++, bit++) {
            v <<= 1;
            if (bit >= 0)
                v |= (in[bit / 8] >> (7 - bit % 8)) & 1u;
        }
        out[i] = b32[v];
    }
    out[CHAT_ID_LEN] = '\0';
}

void chat_id_new(char out[CHAT_ID_LEN + 1], uint64_t now_ms)
{
    unsigned char raw[16];
    for (int i = 0; i < 6; i++)
        raw[i] = (unsigned char)(now_ms >> (8 * (5 - i)));
    randombytes_buf(raw + 6, 10);
    encode128(raw, out);
}

void chat_id_for_client(char out[CHAT_ID_LEN + 1], const char *sender, const char *conv,
                        const char *cid)
{
    unsigned char raw[16];
    crypto_generichash_state st;
    static const unsigned char zero = 0;
    crypto_generichash_init(&st, NULL, 0, sizeof(raw));
    crypto_generichash_update(&st, (const unsigned char *)sender, strlen(sender));
    crypto_generichash_update(&st, &zero, 1);
    crypto_generichash_update(&st, (const unsigned char *)conv, strlen(conv));
    crypto_generichash_update(&st, &zero, 1);
    crypto_generichash_update(&st, (const unsigned char *)cid, strlen(cid));
    crypto_generichash_final(&st, raw, sizeof(raw));
    encode128(raw, out);
}

int chat_name_valid(const char *s, size_t len)
{
    if (s == NULL || len == 0 || len > CHAT_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == ':' || c == '-'))
            return 0;
    }
    return 1;
}

static uint64_t clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t chat_now_ms(void)
{
    return clock_ms(CLOCK_REALTIME);
}

uint64_t chat_mono_ms(void)
{
    return clock_ms(CLOCK_MONOTONIC);
}
