#include "gw-config.h"

#include <string.h>

#ifndef GW_WEB_ROOT
#define GW_WEB_ROOT "web"
#endif

#define T gw_config_t
static const chat_conf_entry_t gw_config_table[] = {
    CHAT_CONF_STR_ENTRY(T, host, "127.0.0.1", "address to listen on"),
    CHAT_CONF_INT_ENTRY(T, port, "8081", 1, 65535, "TCP port for HTTP and WebSocket"),
    CHAT_CONF_INT_ENTRY(T, workers, "1", 1, 64,
                        "worker processes sharing the port (SO_REUSEPORT), one loop each"),
    CHAT_CONF_STR_ENTRY(T, gateway_id, "",
                        "this gateway's id for presence and routing (default gw-<port>)"),
    CHAT_CONF_STR_ENTRY(T, jwt_secret, "", "HS256 secret for client tokens (required)"),
    CHAT_CONF_STR_ENTRY(T, kafka_brokers, "127.0.0.1:19092", "Kafka bootstrap servers"),
    CHAT_CONF_STR_ENTRY(T, topic, "chat.events", "Kafka topic for client events"),
    CHAT_CONF_INT_ENTRY(T, kafka_linger_ms, "2", 0, 1000, "producer linger (batching) in ms"),
    CHAT_CONF_STR_ENTRY(T, redis_host, "127.0.0.1", "Redis host for presence and routing"),
    CHAT_CONF_INT_ENTRY(T, redis_port, "16379", 1, 65535, "Redis port"),
    CHAT_CONF_STR_ENTRY(T, mongo_uri, "mongodb://127.0.0.1:27018/chat", "MongoDB URI"),
    CHAT_CONF_INT_ENTRY(T, max_frame, "65536", 256, 16777216,
                        "largest WebSocket message accepted, bytes (close 1009 above)"),
    CHAT_CONF_INT_ENTRY(T, body_max, "4096", 1, 1048576, "largest message body, bytes"),
    CHAT_CONF_INT_ENTRY(T, http_body_max, "65536", 256, 16777216,
                        "largest HTTP request body, bytes (413 above)"),
    CHAT_CONF_INT_ENTRY(T, outbound_max, "1048576", 4096, 1073741824,
                        "bytes queued to one client before it is closed as too slow (4001)"),
    CHAT_CONF_INT_ENTRY(T, heartbeat_s, "20", 1, 3600, "server ping after this idle time"),
    CHAT_CONF_INT_ENTRY(T, idle_timeout_s, "60", 2, 7200,
                        "close (4000) a connection silent for this long"),
    CHAT_CONF_INT_ENTRY(T, presence_ttl_s, "60", 5, 86400,
                        "presence entries lapse after this unless refreshed"),
    CHAT_CONF_INT_ENTRY(T, sync_page, "50", 1, 50, "messages per sync page"),
    CHAT_CONF_INT_ENTRY(T, pending_frames_max, "64", 1, 4096,
                        "frames one connection may have waiting on a store lookup"),
    CHAT_CONF_INT_ENTRY(T, member_cache_s, "30", 0, 3600, "how long a membership answer is cached"),
    CHAT_CONF_INT_ENTRY(T, group_max, "256", 2, 100000, "largest group, in members"),
    CHAT_CONF_INT_ENTRY(T, backlog, "4096", 16, 65535, "listen backlog"),
    CHAT_CONF_STR_ENTRY(T, log_level, "info", "error, warn, info or debug"),
    CHAT_CONF_STR_ENTRY(T, web_root, GW_WEB_ROOT, "folder of the web client's static files"),
    CHAT_CONF_STR_ENTRY(T, mongo_read_pref, "primary",
                        "read preference for history (primary, secondaryPreferred, ...)"),
    CHAT_CONF_INT_ENTRY(T, token_ttl_s, "86400", 60, 31536000, "lifetime of issued tokens"),
    CHAT_CONF_INT_ENTRY(T, login_user_per_min, "10", 1, 1000000,
                        "login attempts per username per minute (all gateways)"),
    CHAT_CONF_INT_ENTRY(T, login_addr_per_min, "60", 1, 1000000,
                        "login and register attempts per client address per minute"),
    CHAT_CONF_INT_ENTRY(T, pwhash_mem_kib, "65536", 8192, 4194304,
                        "argon2id memory per password hash, KiB"),
    CHAT_CONF_INT_ENTRY(T, msg_rate, "50", 1, 1000000,
                        "frames per second one connection may send (token bucket)"),
    CHAT_CONF_INT_ENTRY(T, msg_burst, "100", 1, 1000000, "burst size of that bucket"),
    CHAT_CONF_INT_ENTRY(T, conn_rate, "5000", 1, 10000000,
                        "new WebSocket sessions per second this gateway accepts"),
    CHAT_CONF_INT_ENTRY(T, conn_burst, "50000", 1, 10000000, "burst size of that bucket"),
    CHAT_CONF_INT_ENTRY(T, user_conn_max, "10", 1, 100000,
                        "concurrent connections per user, across gateways"),
    CHAT_CONF_INT_ENTRY(T, typing_debounce_ms, "2000", 0, 60000,
                        "typing starts passed on per connection and conversation"),
    CHAT_CONF_INT_ENTRY(T, typing_ttl_ms, "6000", 1000, 60000,
                        "receivers drop a typing indicator after this"),
};
#undef T

int gw_config_load(gw_config_t *cfg, int argc, char **argv, chat_error_t *err)
{
    memset(cfg, 0, sizeof(*cfg));
    int rc = chat_config_load(gw_config_table, sizeof(gw_config_table) / sizeof(gw_config_table[0]),
                              cfg, argc, argv, err);
    if (rc != 0)
        return rc;
    if (cfg->jwt_secret[0] == '\0')
        return chat_error_set(err, CHAT_EINVAL, "jwt_secret is required (CHAT_JWT_SECRET)");
    if (strlen(cfg->jwt_secret) < 16)
        return chat_error_set(err, CHAT_EINVAL, "jwt_secret must be at least 16 bytes");
    if (cfg->idle_timeout_s <= cfg->heartbeat_s)
        return chat_error_set(err, CHAT_EINVAL, "idle_timeout_s must exceed heartbeat_s");
    return 0;
}
