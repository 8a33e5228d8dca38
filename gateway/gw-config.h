/* The gateway's options: one table (see gw-config.c), each settable as
 * --name=value or CHAT_<NAME>; `chat-gateway --help` prints them. */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include <stdint.h>

#include "chat-config.h"

typedef struct gw_config_s {
    const char *host;
    int64_t port;
    int64_t workers;
    const char *gateway_id;
    const char *jwt_secret;
    const char *kafka_brokers;
    const char *topic;
    int64_t kafka_linger_ms;
    const char *redis_host;
    int64_t redis_port;
    const char *mongo_uri;
    int64_t max_frame;
    int64_t body_max;
    int64_t http_body_max;
    int64_t outbound_max;
    int64_t heartbeat_s;
    int64_t idle_timeout_s;
    int64_t presence_ttl_s;
    int64_t sync_page;
    int64_t pending_frames_max;
    int64_t member_cache_s;
    int64_t group_max;
    int64_t backlog;
    const char *log_level;
    const char *web_root;
    const char *mongo_read_pref;
    int64_t token_ttl_s;
    int64_t login_user_per_min;
    int64_t login_addr_per_min;
    int64_t pwhash_mem_kib;
    int64_t msg_rate;
    int64_t msg_burst;
    int64_t conn_rate;
    int64_t conn_burst;
    int64_t user_conn_max;
    int64_t typing_debounce_ms;
    int64_t typing_ttl_ms;
} gw_config_t;

/* Loads defaults, environment and argv. Returns 0, 1 after --help, or a
 * negative CHAT_E* code with err set. */
int gw_config_load(gw_config_t *cfg, int argc, char **argv, chat_error_t *err);

#endif
