/* Levelled logging to stderr. CHAT_LOG tests the level before it evaluates
 * its arguments, so a disabled debug line costs one comparison. Every line
 * should name what it speaks of (a connection, a partition). Never pass a
 * token or a password to these macros. */
#ifndef CHAT_LOG_H
#define CHAT_LOG_H

typedef enum {
    CHAT_LOG_ERROR = 0,
    CHAT_LOG_WARN = 1,
    CHAT_LOG_INFO = 2,
    CHAT_LOG_DEBUG = 3,
} chat_log_level_t;

extern int chat_log_level;

/* Sets the program name printed on each line (not copied: keep it alive). */
void chat_log_init(const char *program, int level);

/* Parses "error", "warn", "info" or "debug"; returns the level or -1. */
int chat_log_level_parse(const char *name);

void chat_log_write(int level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define CHAT_LOG(level, ...)                                                                       \
    do {                                                                                           \
        if ((level) <= chat_log_level)                                                             \
            chat_log_write((level), __FILE__, __LINE__, __VA_ARGS__);                              \
    } while (0)

#define CHAT_ERROR(...) CHAT_LOG(CHAT_LOG_ERROR, __VA_ARGS__)
#define CHAT_WARN(...)  CHAT_LOG(CHAT_LOG_WARN, __VA_ARGS__)
#define CHAT_INFO(...)  CHAT_LOG(CHAT_LOG_INFO, __VA_ARGS__)
#define CHAT_DEBUG(...) CHAT_LOG(CHAT_LOG_DEBUG, __VA_ARGS__)

#endif
