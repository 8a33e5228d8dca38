#include "chat-error.h"

#include <stdio.h>
#include <uv.h>

const char *chat_strerror(int code)
{
    switch (code) {
    case 0:
        return "success";
#define CHAT_ERR_MSG(name, val, msg)                                                               \
    case val:                                                                                      \
        return msg;
        CHAT_ERRNO_MAP(CHAT_ERR_MSG)
#undef CHAT_ERR_MSG
        /* libuv's own table, not uv_strerror(): that one allocates (and
         * leaks) a new string for every code it does not know. */
#define CHAT_UV_MSG(name, msg)                                                                     \
    case UV_##name:                                                                                \
        return msg;
        UV_ERRNO_MAP(CHAT_UV_MSG)
#undef CHAT_UV_MSG
    default:
        return "unknown error";
    }
}

const char *chat_err_name(int code)
{
    switch (code) {
    case 0:
        return "OK";
#define CHAT_ERR_NAME(name, val, msg)                                                              \
    case val:                                                                                      \
        return #name;
        CHAT_ERRNO_MAP(CHAT_ERR_NAME)
#undef CHAT_ERR_NAME
#define CHAT_UV_NAME(name, msg)                                                                    \
    case UV_##name:                                                                                \
        return #name;
        UV_ERRNO_MAP(CHAT_UV_NAME)
#undef CHAT_UV_NAME
    default:
        return "UNKNOWN";
    }
}

int chat_error_set(chat_error_t *err, int code, const char *fmt, ...)
{
    if (err != NULL) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
    }
    return code;
}
