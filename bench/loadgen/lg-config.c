#include "lg-config.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "chat-config.h"
#include "chat-log.h"

#define T lg_config_t
static const chat_conf_entry_t table[] = {
    CHAT_CONF_STR_ENTRY(T, gateways, "127.0.0.1:8081,127.0.0.1:8082",
                        "gateway addresses host:port, comma-separated (IPv4)"),
    CHAT_CONF_STR_ENTRY(T, jwt_secret, "", "the gateways' HS256 secret, to mint tokens (required)"),
    CHAT_CONF_INT_ENTRY(T, conns, "200", 2, 10000000, "WebSocket connections (one user each)"),
    CHAT_CONF_INT_ENTRY(T, procs, "0", 0, 1024,
                        "processes sharing the connections (0: as few as the fd limit allows)"),
    CHAT_CONF_INT_ENTRY(T, src_addrs, "0", 0, 254,
                        "loopback source addresses 127.0.0.1..K (0: one per 10,000 conns, >= 2)"),
    CHAT_CONF_STR_ENTRY(T, mode, "pairs", "pairs (1:1 conversations) or groups"),
    CHAT_CONF_INT_ENTRY(T, group_size, "5", 2, 1000, "members per group in --mode groups"),
    CHAT_CONF_STR_ENTRY(T, run_id, "", "prefix of this run's user ids (default: random)"),
    CHAT_CONF_INT_ENTRY(T, rate, "1000", 0, 100000000,
                        "messages per second, all processes together (0: as fast as the window "
                        "allows)"),
    CHAT_CONF_INT_ENTRY(T, window, "16", 1, 100000,
                        "messages one connection may have unacknowledged"),
    CHAT_CONF_INT_ENTRY(T, body_size, "100", 1, 1048576, "message body, bytes"),
    CHAT_CONF_INT_ENTRY(T, duration, "10", 0, 86400, "measured seconds"),
    CHAT_CONF_INT_ENTRY(T, warmup, "2", 0, 3600, "seconds of load before measuring"),
    CHAT_CONF_INT_ENTRY(T, drain, "30", 0, 3600,
                        "seconds to wait after sending for outstanding deliveries"),
    CHAT_CONF_BOOL_ENTRY(T, idle, "false",
                         "hold the connections without sending (heartbeats only)"),
    CHAT_CONF_BOOL_ENTRY(T, ingest_only, "false",
                         "measure the gateways' ingest alone (sent -> Kafka acknowledged): no "
                         "delivery is expected or checked, so run it with no consumer"),
    CHAT_CONF_BOOL_ENTRY(T, storm, "false",
                         "after the run, drop one side, send to it, reconnect all at once, sync"),
    CHAT_CONF_INT_ENTRY(T, storm_missed, "50", 0, 1000000,
                        "messages per conversation sent while the storm's side is away"),
    CHAT_CONF_INT_ENTRY(T, storm_timeout, "120", 1, 86400,
                        "seconds the storm may take before it counts as failed"),
    CHAT_CONF_INT_ENTRY(T, storm_concurrency, "0", 0, 10000000,
                        "storm reconnects in progress at once per process (0: all)"),
    CHAT_CONF_STR_ENTRY(T, storm_settle, "",
                        "a command (sh -c) run once every missed message is acknowledged; the "
                        "reconnect is ordered when it exits 0 (say, once the consumers have "
                        "stored everything), and its time is reported"),
    CHAT_CONF_BOOL_ENTRY(T, receipts, "false",
                         "receivers send delivered receipts; measure send to receipt"),
    CHAT_CONF_INT_ENTRY(T, connect_concurrency, "512", 1, 1000000,
                        "connection attempts in progress at once per process"),
    CHAT_CONF_INT_ENTRY(T, connect_timeout, "15", 1, 3600,
                        "seconds from connect to the server's hello"),
    CHAT_CONF_INT_ENTRY(T, connect_retries, "8", 0, 1000,
                        "retries of a failed or refused (429/503) connection"),
    CHAT_CONF_INT_ENTRY(T, setup_concurrency, "32", 1, 10000,
                        "conversation creations in flight at once per process"),
    CHAT_CONF_INT_ENTRY(T, ack_timeout, "30", 1, 3600,
                        "seconds after which an unanswered send counts as lost"),
    CHAT_CONF_INT_ENTRY(T, ping_interval, "0", 0, 3600,
                        "seconds between client pings per connection (0: only answer the "
                        "server's)"),
    CHAT_CONF_BOOL_ENTRY(T, reconnect, "true", "reconnect and sync a connection the server closed"),
    CHAT_CONF_BOOL_ENTRY(T, prime, "true",
                         "before the clock, each connection sends one message and all are "
                         "delivered (fills the gateways' membership caches)"),
    CHAT_CONF_INT_ENTRY(T, prime_timeout, "900", 1, 86400,
                        "seconds the prime may take before the run starts anyway"),
    CHAT_CONF_STR_ENTRY(T, json, "", "write the results to this file as JSON"),
    CHAT_CONF_BOOL_ENTRY(T, progress, "true", "print a progress line every second"),
    CHAT_CONF_STR_ENTRY(T, log_level, "warn", "error, warn, info or debug"),
};
#undef T

static int parse_gateways(const char *s, lg_plan_t *plan, chat_error_t *err)
{
    plan->n_gw = 0;
    while (*s != '\0') {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        char one[64], host[48];
        if (len == 0 || len >= sizeof(one))
            return chat_error_set(err, CHAT_EINVAL, "gateways: '%.*s' is not host:port", (int)len,
                                  s);
        memcpy(one, s, len);
        one[len] = '\0';
        char *colon = strrchr(one, ':');
        char *end = NULL;
        long port = colon ? strtol(colon + 1, &end, 10) : 0;
        if (colon == NULL || end == colon + 1 || *end != '\0' || port < 1 || port > 65535 ||
            (size_t)(colon - one) >= sizeof(host))
            return chat_error_set(err, CHAT_EINVAL, "gateways: '%s' is not host:port", one);
        memcpy(host, one, (size_t)(colon - one));
        host[colon - one] = '\0';
        if (plan->n_gw == LG_GATEWAYS_MAX)
            return chat_error_set(err, CHAT_ERANGE, "gateways: at most %d", LG_GATEWAYS_MAX);
        struct sockaddr_in *sa = &plan->gw[plan->n_gw];
        memset(sa, 0, sizeof(*sa));
        sa->sin_family = AF_INET;
        sa->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
            return chat_error_set(err, CHAT_EINVAL, "gateways: '%s' is not an IPv4 address", host);
        snprintf(plan->gw_text[plan->n_gw], sizeof(plan->gw_text[0]), "%s:%ld", host, port);
        plan->n_gw++;
        s += len;
        if (*s == ',')
            s++;
    }
    if (plan->n_gw == 0)
        return chat_error_set(err, CHAT_EINVAL, "gateways: at least one is needed");
    return 0;
}

static void random_run_id(char out[LG_RUN_ID_MAX + 1])
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char rnd[6];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        uint64_t x = chat_now_ms() ^ ((uint64_t)getpid() << 20);
        memcpy(rnd, &x, sizeof(rnd));
    }
    out[0] = 'l';
    out[1] = 'g';
    for (size_t i = 0; i < sizeof(rnd); i++)
        out[2 + i] = alphabet[rnd[i] % (sizeof(alphabet) - 1)];
    out[2 + sizeof(rnd)] = '\0';
}

int lg_config_load(lg_config_t *cfg, lg_plan_t *plan, int argc, char **argv, chat_error_t *err)
{
    memset(cfg, 0, sizeof(*cfg));
    memset(plan, 0, sizeof(*plan));
    int rc = chat_config_load(table, sizeof(table) / sizeof(table[0]), cfg, argc, argv, err);
    if (rc != 0)
        return rc;
    if (chat_log_level_parse(cfg->log_level) < 0)
        return chat_error_set(err, CHAT_EINVAL, "log_level: '%s' is not error, warn, info or debug",
                              cfg->log_level);
    if (strlen(cfg->jwt_secret) < 16)
        return chat_error_set(err, CHAT_EINVAL,
                              "jwt_secret (CHAT_JWT_SECRET) is required, at least 16 bytes");
    if ((rc = parse_gateways(cfg->gateways, plan, err)) != 0)
        return rc;

    if (strcmp(cfg->mode, "pairs") == 0) {
        plan->group = 2;
    } else if (strcmp(cfg->mode, "groups") == 0) {
        plan->groups = 1;
        plan->group = (uint32_t)cfg->group_size;
    } else {
        return chat_error_set(err, CHAT_EINVAL, "mode: '%s' is not pairs or groups", cfg->mode);
    }
    if (cfg->conns % plan->group != 0)
        return chat_error_set(err, CHAT_EINVAL,
                              "conns (%lld) must be a multiple of the conversation size (%u)",
                              (long long)cfg->conns, plan->group);
    plan->convs = (uint32_t)(cfg->conns / plan->group);

    /* Each process holds whole conversations and at most LG_FDS_PER_PROC
     * connections; the rest of its 20,000 files are for setup and pipes. */
    uint32_t need = (uint32_t)((cfg->conns + LG_FDS_PER_PROC - 1) / LG_FDS_PER_PROC);
    plan->procs = cfg->procs > 0 ? (uint32_t)cfg->procs : need;
    if (plan->procs < need)
        return chat_error_set(err, CHAT_ERANGE,
                              "procs: %u processes cannot hold %lld connections (%d per process "
                              "at most); use --procs %u or more",
                              plan->procs, (long long)cfg->conns, LG_FDS_PER_PROC, need);
    if (plan->procs > plan->convs)
        return chat_error_set(err, CHAT_ERANGE,
                              "procs: %u processes for %u conversations; each needs one",
                              plan->procs, plan->convs);
    uint32_t most = (plan->convs + plan->procs - 1) / plan->procs * plan->group;
    if (most > LG_FDS_PER_PROC)
        return chat_error_set(err, CHAT_ERANGE,
                              "procs: one process would hold %u connections; use more", most);
    if (cfg->src_addrs > 0) {
        plan->src_addrs = (uint32_t)cfg->src_addrs;
    } else {
        uint64_t k = ((uint64_t)cfg->conns + 9999) / 10000;
        plan->src_addrs = (uint32_t)(k < 2 ? 2 : k > 254 ? 254 : k);
    }

    if (cfg->run_id[0] == '\0') {
        random_run_id(plan->run_id);
    } else {
        size_t n = strlen(cfg->run_id);
        if (n > LG_RUN_ID_MAX || !chat_name_valid(cfg->run_id, n))
            return chat_error_set(err, CHAT_EINVAL,
                                  "run_id: 1-%d characters of [A-Za-z0-9_.:-] please",
                                  LG_RUN_ID_MAX);
        memcpy(plan->run_id, cfg->run_id, n + 1);
    }
    if (cfg->idle && cfg->storm)
        return chat_error_set(err, CHAT_EINVAL, "idle and storm do not go together");
    if (cfg->storm_settle[0] != '\0' && !cfg->storm)
        return chat_error_set(err, CHAT_EINVAL, "storm_settle needs storm");
    if (cfg->idle && cfg->receipts)
        return chat_error_set(err, CHAT_EINVAL, "idle sends nothing to acknowledge (receipts)");
    return 0;
}

void lg_plan_slice(const lg_plan_t *plan, uint32_t proc, uint32_t *first, uint32_t *n)
{
    uint64_t a = (uint64_t)plan->convs * proc / plan->procs;
    uint64_t b = (uint64_t)plan->convs * (proc + 1) / plan->procs;
    *first = (uint32_t)a;
    *n = (uint32_t)(b - a);
}

void lg_plan_user(const lg_plan_t *plan, uint32_t c, uint32_t m, char out[CHAT_NAME_MAX + 1])
{
    if (plan->groups)
        snprintf(out, CHAT_NAME_MAX + 1, "%s.u%ug%u", plan->run_id, c, m);
    else
        snprintf(out, CHAT_NAME_MAX + 1, "%s.u%u%c", plan->run_id, c, m == 0 ? 'a' : 'b');
}

/* Reads decimal digits at *p; returns 0 and moves *p, or -1. */
static int read_u32(const char **p, const char *end, uint32_t *v)
{
    uint64_t x = 0;
    const char *s = *p;
    while (s < end && *s >= '0' && *s <= '9' && x <= UINT32_MAX)
        x = x * 10 + (uint64_t)(*s++ - '0');
    if (s == *p || x > UINT32_MAX)
        return -1;
    *v = (uint32_t)x;
    *p = s;
    return 0;
}

int lg_plan_parse_user(const lg_plan_t *plan, const char *s, size_t n, uint32_t *c, uint32_t *m)
{
    size_t rl = strlen(plan->run_id);
    const char *end = s + n;
    if (n < rl + 3 || memcmp(s, plan->run_id, rl) != 0 || s[rl] != '.' || s[rl + 1] != 'u')
        return CHAT_EINVAL;
    const char *p = s + rl + 2;
    if (read_u32(&p, end, c) != 0 || p >= end)
        return CHAT_EINVAL;
    if (plan->groups) {
        if (*p++ != 'g' || read_u32(&p, end, m) != 0 || p != end || *m >= plan->group)
            return CHAT_EINVAL;
    } else {
        if (p + 1 != end || (*p != 'a' && *p != 'b'))
            return CHAT_EINVAL;
        *m = *p == 'a' ? 0 : 1;
    }
    return *c < plan->convs ? 0 : CHAT_EINVAL;
}
