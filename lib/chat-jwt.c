#include "chat-jwt.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#define B64 sodium_base64_VARIANT_URLSAFE_NO_PADDING

static void hmac(const unsigned char *key, size_t key_len, const char *data, size_t len,
                 unsigned char mac[crypto_auth_hmacsha256_BYTES])
{
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, key_len);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)data, len);
    crypto_auth_hmacsha256_final(&st, mac);
}

int chat_jwt_sign(const unsigned char *key, size_t key_len, const char *sub, int64_t iat,
                  int64_t exp, char *out, size_t out_size)
{
    static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    char payload[256];
    unsigned char mac[crypto_auth_hmacsha256_BYTES];

    if (!chat_name_valid(sub, strlen(sub)))
        return CHAT_EINVAL;
    int plen = snprintf(payload, sizeof(payload), "{\"sub\":\"%s\",\"iat\":%lld,\"exp\":%lld}", sub,
                        (long long)iat, (long long)exp);
    size_t need = sodium_base64_ENCODED_LEN(sizeof(header) - 1, B64) +
                  sodium_base64_ENCODED_LEN((size_t)plen, B64) +
                  sodium_base64_ENCODED_LEN(sizeof(mac), B64) + 2;
    if (need > out_size)
        return CHAT_ETOOBIG;
    sodium_bin2base64(out, out_size, (const unsigned char *)header, sizeof(header) - 1, B64);
    size_t n = strlen(out);
    out[n++] = '.';
    sodium_bin2base64(out + n, out_size - n, (const unsigned char *)payload, (size_t)plen, B64);
    n += strlen(out + n);
    hmac(key, key_len, out, n, mac);
    out[n++] = '.';
    sodium_bin2base64(out + n, out_size - n, mac, sizeof(mac), B64);
    return (int)(n + strlen(out + n));
}

/* Decodes one base64url segment into a NUL-terminated buffer. */
static int decode_segment(const char *s, size_t len, unsigned char *out, size_t out_size,
                          size_t *out_len)
{
    if (sodium_base642bin(out, out_size - 1, s, len, NULL, out_len, NULL, B64) != 0)
        return CHAT_EPARSE;
    out[*out_len] = '\0';
    return 0;
}

int chat_jwt_verify(const unsigned char *key, size_t key_len, const char *token, size_t len,
                    int64_t now, chat_jwt_claims_t *claims, chat_error_t *err)
{
    unsigned char buf[CHAT_JWT_MAX];
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    size_t n;
    json_error_t jerr;
    int rc = CHAT_EAUTH;

    if (len > CHAT_JWT_MAX)
        return chat_error_set(err, CHAT_ETOOBIG, "token longer than %d bytes", CHAT_JWT_MAX);
    const char *dot1 = memchr(token, '.', len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (dot1 == NULL || dot2 == NULL ||
        memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) != NULL)
        return chat_error_set(err, CHAT_EPARSE, "token is not three dot-separated parts");

    /* The header first: anything but HS256 is refused before any crypto. */
    if (decode_segment(token, (size_t)(dot1 - token), buf, sizeof(buf), &n) != 0)
        return chat_error_set(err, CHAT_EPARSE, "token header is not base64url");
    json_t *hdr = json_loadb((const char *)buf, n, JSON_REJECT_DUPLICATES, &jerr);
    const char *alg = json_string_value(json_object_get(hdr, "alg"));
    int alg_ok = alg != NULL && strcmp(alg, "HS256") == 0;
    json_decref(hdr);
    if (!alg_ok)
        return chat_error_set(err, CHAT_EAUTH, "token algorithm must be HS256");

    if (decode_segment(dot2 + 1, len - (size_t)(dot2 + 1 - token), buf, sizeof(buf), &n) != 0 ||
        n != sizeof(mac))
        return chat_error_set(err, CHAT_EAUTH, "token signature is malformed");
    hmac(key, key_len, token, (size_t)(dot2 - token), mac);
    if (sodium_memcmp(mac, buf, sizeof(mac)) != 0)
        return chat_error_set(err, CHAT_EAUTH, "token signature does not match");

    if (decode_segment(dot1 + 1, (size_t)(dot2 - dot1 - 1), buf, sizeof(buf), &n) != 0)
        return chat_error_set(err, CHAT_EPARSE, "token payload is not base64url");
    json_t *body = json_loadb((const char *)buf, n, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(body)) {
        rc = chat_error_set(err, CHAT_EPARSE, "token payload is not a JSON object");
        goto done;
    }
    const char *sub = json_string_value(json_object_get(body, "sub"));
    json_t *exp = json_object_get(body, "exp");
    json_t *iat = json_object_get(body, "iat");
    json_t *nbf = json_object_get(body, "nbf");
    if (sub == NULL || !chat_name_valid(sub, strlen(sub))) {
        rc = chat_error_set(err, CHAT_EAUTH, "token has no valid sub");
        goto done;
    }
    if (!json_is_integer(exp)) {
        rc = chat_error_set(err, CHAT_EAUTH, "token has no exp");
        goto done;
    }
    if (json_integer_value(exp) <= now) {
        rc = chat_error_set(err, CHAT_EEXPIRED, "token expired");
        goto done;
    }
    if (nbf != NULL && (!json_is_integer(nbf) || json_integer_value(nbf) > now)) {
        rc = chat_error_set(err, CHAT_EAUTH, "token not yet valid");
        goto done;
    }
    if (claims != NULL) {
        snprintf(claims->sub, sizeof(claims->sub), "%s", sub);
        claims->exp = json_integer_value(exp);
        claims->iat = json_is_integer(iat) ? json_integer_value(iat) : 0;
    }
    rc = 0;
done:
    json_decref(body);
    return rc;
}
