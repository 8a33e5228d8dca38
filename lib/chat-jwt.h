/* JSON Web Tokens, HS256 only. The algorithm is pinned: a token whose header
 * names any other algorithm (including "none") is refused before its
 * signature is looked at. Expiry is required. */
#ifndef CHAT_JWT_H
#define CHAT_JWT_H

#include <stddef.h>
#include <stdint.h>

#include "chat-error.h"
#include "chat-id.h"

#define CHAT_JWT_MAX 2048 /* longest token accepted, in bytes */

typedef struct chat_jwt_claims_s {
    char sub[CHAT_NAME_MAX + 1]; /* the user id */
    int64_t exp;                 /* seconds since the epoch */
    int64_t iat;                 /* 0 when absent */
} chat_jwt_claims_t;

/* Signs {"sub":sub,"iat":iat,"exp":exp} with key into out (NUL-terminated).
 * Returns the token's length, CHAT_EINVAL for a bad sub, or CHAT_ETOOBIG if
 * out is too small. */
int chat_jwt_sign(const unsigned char *key, size_t key_len, const char *sub, int64_t iat,
                  int64_t exp, char *out, size_t out_size);

/* Verifies token[0..len) against key at time now (seconds). Fills claims on
 * success and returns 0. Errors: CHAT_EPARSE (not a JWT), CHAT_EAUTH (wrong
 * algorithm, bad signature, missing or bad sub/exp, not yet valid),
 * CHAT_EEXPIRED, CHAT_ETOOBIG; err says why. Never logs the token. */
int chat_jwt_verify(const unsigned char *key, size_t key_len, const char *token, size_t len,
                    int64_t now, chat_jwt_claims_t *claims, chat_error_t *err);

#endif
