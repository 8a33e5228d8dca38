/* The consumer's options: one table (lib/chat-config.h) read once at
 * start-up, each entry overridable by CHAT_<NAME> in the environment and by
 * --name=value on the command line; --help prints the table. */
#ifndef CS_CONFIG_H
#define CS_CONFIG_H

#include <stdint.h>

#include "chat-error.h"
#include "chat-id.h"

typedef struct cs_config_s {
    const char *kafka_brokers;
    const char *topic;
    const char *dlq_topic;
    const char *group;
    const char *consumer_id; /* "" means hostname-pid, filled in by cs_config_load */
    const char *redis_host;
    int64_t redis_port;
    const char *mongo_uri;
    int64_t batch_max;
    int64_t batch_ms;
    int64_t group_max;
    int route_first;
    int64_t body_max;
    int64_t last_seq_ms;
    int64_t fetch_wait_ms;
    int64_t fetch_min_bytes;
    int64_t store_lanes;
    const char *log_level;

    /* Not in the consumer's table (both 0 there): chat-replay sets them.
     * thorough: every batch runs in the thorough mode of cs-pipeline.h, so
     * that last_seq comes from the stored messages and a rebuilt store gets
     * the same seqs again. dry_run: nothing is written or produced; the
     * counters say what would have been. */
    int thorough;
    int dry_run;

    char consumer_id_buf[CHAT_NAME_MAX + 1]; /* backs the default consumer_id */
} cs_config_t;

/* Fills cfg from defaults, the environment and argv, and checks what the
 * table cannot (the log level's name). Returns 0, 1 when --help was printed,
 * or CHAT_EINVAL/CHAT_ERANGE with err saying which option is wrong. The
 * strings in cfg point into argv, the environment or static defaults. */
int cs_config_load(cs_config_t *cfg, int argc, char **argv, chat_error_t *err);

#endif
