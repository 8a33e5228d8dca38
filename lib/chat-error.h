/* Error codes shared by every program: negative integers, with libuv's own
 * codes (negative errno values) passing through unchanged. One X-macro table
 * makes the enum, the message and the name, as libuv's UV_ERRNO_MAP does. */
#ifndef CHAT_ERROR_H
#define CHAT_ERROR_H

#include <stdarg.h>

#define CHAT_ERRNO_MAP(XX)                                                                         \
    XX(EINVAL, -5001, "invalid argument")                                                          \
    XX(ENOMEM, -5002, "out of memory")                                                             \
    XX(ERANGE, -5003, "value out of range")                                                        \
    XX(EPARSE, -5004, "malformed input")                                                           \
    XX(EAUTH, -5005, "authentication failed")                                                      \
    XX(EEXPIRED, -5006, "token expired")                                                           \
    XX(EFORBIDDEN, -5007, "not allowed")                                                           \
    XX(ENOTFOUND, -5008, "not found")                                                              \
    XX(EDUP, -5009, "duplicate")                                                                   \
    XX(ETOOBIG, -5010, "too large")                                                                \
    XX(EFULL, -5011, "queue full")                                                                 \
    XX(EAGAIN, -5012, "try again")                                                                 \
    XX(EKAFKA, -5013, "kafka error")                                                               \
    XX(EREDIS, -5014, "redis error")                                                               \
    XX(EMONGO, -5015, "mongodb error")                                                             \
    XX(ERATE, -5016, "rate limited")                                                               \
    XX(ECLOSED, -5017, "connection closed")                                                        \
    XX(EIO, -5018, "i/o error")

typedef enum {
#define CHAT_ERR_ENUM(name, val, msg) CHAT_##name = (val),
    CHAT_ERRNO_MAP(CHAT_ERR_ENUM)
#undef CHAT_ERR_ENUM
} chat_errno_t;

/* Detail for callers that want more than a code: lives on the caller's stack
 * and is filled by the callee on failure (mongo-c-driver's bson_error_t). */
typedef struct chat_error_s {
    int code;          /* a CHAT_E* or libuv code */
    char message[256]; /* a sentence for logs and client errors */
} chat_error_t;

/* Returns a static message for a CHAT_E* code, a libuv code or 0. */
const char *chat_strerror(int code);

/* Returns the symbolic name ("EINVAL") of a CHAT_E* or libuv code. */
const char *chat_err_name(int code);

/* Fills err (if not NULL) with code and a formatted message; returns code so
 * that callers can write `return chat_error_set(err, CHAT_EINVAL, ...)`. */
int chat_error_set(chat_error_t *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
