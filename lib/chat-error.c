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
    default:
        return uv_strerror(code);
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
    default:
        return uv_err_name(code);
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
