/* chat-token: prints an HS256 client token for a user, for operators and
 * local trials. Usage: chat-token <user> [ttl seconds]; the secret comes
 * from CHAT_JWT_SECRET. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat-id.h"
#include "chat-jwt.h"

int main(int argc, char **argv)
{
    char token[CHAT_JWT_MAX];
    const char *secret = getenv("CHAT_JWT_SECRET");
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s <user> [ttl seconds]  (secret in CHAT_JWT_SECRET)\n", argv[0]);
        return 2;
    }
    if (secret == NULL || strlen(secret) < 16) {
        fprintf(stderr, "%s: CHAT_JWT_SECRET must hold at least 16 bytes\n", argv[0]);
        return 2;
    }
    if (sodium_init() < 0)
        return 1;
    long ttl = argc == 3 ? strtol(argv[2], NULL, 10) : 86400;
    int64_t now = (int64_t)(chat_now_ms() / 1000);
    int n = chat_jwt_sign((const unsigned char *)secret, strlen(secret), argv[1], now, now + ttl,
                          token, sizeof(token));
    if (n < 0) {
        fprintf(stderr, "%s: user must be 1-64 of [A-Za-z0-9_.:-]\n", argv[0]);
        return 2;
    }
    puts(token);
    return 0;
}
