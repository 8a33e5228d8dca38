#include "cs-config.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "chat-config.h"
#include "chat-log.h"
#include "cs-store.h"

#define E_INT(f, d, lo, hi, h) CHAT_CONF_INT_ENTRY(cs_config_t, f, d, lo, hi, h)
#define E_STR(f, d, h)         CHAT_CONF_STR_ENTRY(cs_config_t, f, d, h)
#define E_BOOL(f, d, h)        CHAT_CONF_BOOL_ENTRY(cs_config_t, f, d, h)

static const chat_conf_entry_t table[] = {
    E_STR(kafka_brokers, "127.0.0.1:19092", "Kafka bootstrap servers"),
    E_STR(topic, "chat.events", "topic of client events, keyed by conversation id"),
    E_STR(dlq_topic, "chat.events.dlq", "dead-letter topic for events that cannot be applied"),
    E_STR(group, "chat-consumers", "Kafka consumer group"),
    E_STR(consumer_id, "", "this member's client id (default: hostname-pid)"),
    E_STR(redis_host, "127.0.0.1", "Redis host (presence and gateway channels)"),
    E_INT(redis_port, "16379", 1, 65535, "Redis port"),
    E_STR(mongo_uri, "mongodb://127.0.0.1:27018/chat", "MongoDB URI; its path names the database"),
    E_INT(batch_max, "500", 1, 10000, "most events handled in one batch"),
    /* 0: a fetch already gathers up to fetch_wait_ms, and what it brought
     * is in the local queue at once; waiting more for the next one only
     * delayed low rates (docs/operations.md). */
    E_INT(batch_ms, "0", 0, 10000,
          "how long a batch waits to fill after its first event (0: what has arrived)"),
    E_INT(group_max, "256", 1, 100000, "most members a conversation may have"),
    E_BOOL(route_first, "false", "route live deliveries before the store write, not after"),
    E_INT(body_max, "4096", 1, 1048576, "largest message body in bytes"),
    E_INT(last_seq_ms, "10000", 0, 3600000,
          "how long a busy conversation's stored last_seq may lag (0: written every batch)"),
    E_INT(fetch_wait_ms, "10", 0, 1000,
          "how long the broker may hold a fetch to gather fetch_min_bytes (latency at low rates)"),
    E_INT(fetch_min_bytes, "65536", 1, 16777216, "bytes a fetch waits for, up to fetch_wait_ms"),
    E_INT(store_lanes, "2", 1, CS_STORE_LANES_MAX,
          "connections the event inserts of a batch use at once (by conversation)"),
    E_STR(log_level, "info", "error, warn, info or debug"),
};

int cs_config_load(cs_config_t *cfg, int argc, char **argv, chat_error_t *err)
{
    size_t n = sizeof(table) / sizeof(table[0]);
    int rc = chat_config_load(table, n, cfg, argc, argv, err);
    if (rc != 0)
        return rc;
    if (chat_log_level_parse(cfg->log_level) < 0)
        return chat_error_set(err, CHAT_EINVAL, "log_level: '%s' is not error, warn, info or debug",
                              cfg->log_level);
    if (cfg->consumer_id[0] == '\0') {
        char host[CHAT_NAME_MAX + 1] = "consumer";
        /* A hostname longer than the id allows is cut; the pid keeps it
         * unique on one machine, which is all a client id needs. */
        if (gethostname(host, sizeof(host)) != 0)
            strcpy(host, "consumer");
        host[40] = '\0';
        /* 40 + 1 + at most 11 digits fits; the precision says so to gcc. */
        snprintf(cfg->consumer_id_buf, sizeof(cfg->consumer_id_buf), "%.40s-%ld", host,
                 (long)getpid());
        cfg->consumer_id = cfg->consumer_id_buf;
    }
    return 0;
}
