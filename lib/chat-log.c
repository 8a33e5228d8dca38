#include "chat-log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

int chat_log_level = CHAT_LOG_INFO;
static const char *log_program = "chat";

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void chat_log_init(const char *program, int level)
{
    log_program = program;
    chat_log_level = level;
}

int chat_log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, level_names[i]) == 0)
            return i;
    }
    return -1;
}

void chat_log_write(int level, const char *file, int line, const char *fmt, ...)
{
    char msg[1024];
    char stamp[32];
    struct timeval tv;
    struct tm tm;
    va_list ap;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    const char *base = strrchr(file, '/');
    /* One fprintf per line keeps lines whole when threads log at once. */
    fprintf(stderr, "%s.%03dZ %s %-5s %s:%d %s\n", stamp, (int)(tv.tv_usec / 1000), log_program,
            level_names[level < 0   ? 0
                        : level > 3 ? 3
                                    : level],
            base ? base + 1 : file, line, msg);
}
