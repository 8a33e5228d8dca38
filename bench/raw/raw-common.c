#include "raw-common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sodium.h>
#include <string.h>
#include <time.h>

#include "chat-log.h"

raw_sender_t *raw_senders_new(const char *prefix, int64_t n, chat_error_t *err)
{
    raw_sender_t *senders = calloc((size_t)n, sizeof(*senders));
    if (senders == NULL) {
        chat_error_set(err, CHAT_ENOMEM, "out of memory for %lld conversations", (long long)n);
        return NULL;
    }
    for (int64_t k = 0; k < n; k++) {
        raw_sender_t *s = &senders[k];
        char id[CHAT_ID_LEN + 1];
        int lc = snprintf(s->conv, sizeof(s->conv), "%s.c%lld", prefix, (long long)k);
        int lf = snprintf(s->from, sizeof(s->from), "%s.u%llda", prefix, (long long)k);
        /* The gateway would refuse names that are not ids, so the payloads
         * and documents would not be the ones it makes: refuse them here.
         * snprintf returns the length it wanted, so a cut name fails too. */
        if (lc < 0 || lf < 0 || !chat_name_valid(s->conv, (size_t)lc) ||
            !chat_name_valid(s->from, (size_t)lf)) {
            chat_error_set(err, CHAT_EINVAL,
                           "conv_prefix '%s' gives names that are not 1-64 characters of "
                           "[A-Za-z0-9_.:-]",
                           prefix);
            free(senders);
            return NULL;
        }
        s->conv_len = (size_t)lc;
        chat_id_new(id, chat_now_ms());
        snprintf(s->dev, sizeof(s->dev), "c-%s", id);
    }
    return senders;
}

uint64_t raw_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int raw_json_write(json_t *obj, const char *path, chat_error_t *err)
{
    /* Twelve significant digits print rates and seconds as people write
     * them (123456.7, not 123456.70000000001). */
    int rc = json_dump_file(obj, path, JSON_INDENT(2) | JSON_REAL_PRECISION(12));
    json_decref(obj);
    if (rc != 0)
        return chat_error_set(err, CHAT_EIO, "cannot write %s: %s", path, strerror(errno));
    return 0;
}

int raw_start(const char *program, const chat_conf_entry_t *table, size_t n, void *cfg,
              const char *const *log_level, int argc, char **argv)
{
    chat_error_t err;
    int rc = chat_config_load(table, n, cfg, argc, argv, &err);
    if (rc == 1)
        return 1;
    if (rc != 0) {
        fprintf(stderr, "%s: %s\n", program, err.message);
        return 2;
    }
    if (chat_log_level_parse(*log_level) < 0) {
        fprintf(stderr, "%s: log_level: '%s' is not error, warn, info or debug\n", program,
                *log_level);
        return 2;
    }
    chat_log_init(program, chat_log_level_parse(*log_level));
    if (sodium_init() < 0) {
        fprintf(stderr, "%s: libsodium failed to start\n", program);
        return 2;
    }
    return 0;
}
