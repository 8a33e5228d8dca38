/* What the two reference tools of bench/raw/ share: the benchmark's
 * conversations and senders named as chat-loadgen names them, a monotonic
 * clock, and writing a result object to --json. */
#ifndef RAW_COMMON_H
#define RAW_COMMON_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "chat-config.h"
#include "chat-error.h"
#include "chat-id.h"

/* One conversation of the run and the one user who writes to it, with the
 * id of that user's connection (the gateway stamps it as "dev"). */
typedef struct raw_sender_s {
    char conv[CHAT_NAME_MAX + 1]; /* "<prefix>.c<k>" */
    char from[CHAT_NAME_MAX + 1]; /* "<prefix>.u<k>a" */
    char dev[CHAT_NAME_MAX + 1];  /* "c-<event id>", as the gateway names a connection */
    size_t conv_len;
} raw_sender_t;

/* Makes the n senders of prefix. Returns the array (free() it), or NULL
 * with err set: CHAT_EINVAL when a name would not be a valid id (the
 * prefix too long or of the wrong characters), CHAT_ENOMEM. */
raw_sender_t *raw_senders_new(const char *prefix, int64_t n, chat_error_t *err);

/* A tool's start: reads its options (table, into cfg) from argv and the
 * environment, checks *log_level (a field of cfg, read after loading),
 * starts logging and libsodium (the ids). Returns 0 to go on, 1 when
 * --help was printed (exit 0), 2 after printing why it cannot start. */
int raw_start(const char *program, const chat_conf_entry_t *table, size_t n, void *cfg,
              const char *const *log_level, int argc, char **argv);

/* Microseconds of CLOCK_MONOTONIC. */
uint64_t raw_mono_us(void);

/* Writes obj to path as indented JSON and drops the reference to obj (also
 * on failure). Returns 0 or CHAT_EIO with err set. */
int raw_json_write(json_t *obj, const char *path, chat_error_t *err);

#endif
