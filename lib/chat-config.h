/* Configuration as one table of {name, type, default, min, max, help}, read
 * once at start-up (Redis' config.c). Each entry can be set, in increasing
 * priority, by its default, by the environment (CHAT_<NAME> in upper case)
 * and by the command line (--name=value or --name value, with '_' or '-').
 * `--help` prints the table. */
#ifndef CHAT_CONFIG_H
#define CHAT_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "chat-error.h"

typedef enum {
    CHAT_CONF_INT,  /* int64_t, checked against [min, max] */
    CHAT_CONF_STR,  /* const char *, never copied: points at argv, environ or the default */
    CHAT_CONF_BOOL, /* int: 0 or 1; accepts 1/0, true/false, yes/no, on/off */
} chat_conf_type_t;

typedef struct chat_conf_entry_s {
    const char *name;
    chat_conf_type_t type;
    const char *def;
    int64_t min;
    int64_t max;
    size_t offset; /* where the value lives in the program's config struct */
    const char *help;
} chat_conf_entry_t;

#define CHAT_CONF_INT_ENTRY(st, field, def, min, max, help)                                        \
    {                                                                                              \
#field, CHAT_CONF_INT, def, min, max, offsetof(st, field), help                            \
    }
#define CHAT_CONF_STR_ENTRY(st, field, def, help)                                                  \
    {                                                                                              \
#field, CHAT_CONF_STR, def, 0, 0, offsetof(st, field), help                                \
    }
#define CHAT_CONF_BOOL_ENTRY(st, field, def, help)                                                 \
    {                                                                                              \
#field, CHAT_CONF_BOOL, def, 0, 1, offsetof(st, field), help                               \
    }

/* Fills cfg from the table: defaults, then the environment, then argv.
 * Returns 0, 1 when --help was asked for (the table was printed to stdout),
 * CHAT_EINVAL for an unknown option or a value of the wrong type, or
 * CHAT_ERANGE for a number outside [min, max]; err says which option. */
int chat_config_load(const chat_conf_entry_t *table, size_t n, void *cfg, int argc, char **argv,
                     chat_error_t *err);

/* Sets one entry by name from a string. Returns 0, CHAT_ENOTFOUND,
 * CHAT_EINVAL or CHAT_ERANGE. */
int chat_config_set(const chat_conf_entry_t *table, size_t n, void *cfg, const char *name,
                    const char *value, chat_error_t *err);

/* Prints every entry with its type, default, range, environment name and
 * help to out. */
void chat_config_usage(const chat_conf_entry_t *table, size_t n, const char *program, FILE *out);

#endif
