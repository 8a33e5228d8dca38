/* chat-loadgen's options (one table, chat-config.h) and the plan derived
 * from them: which conversations and users each process owns, which
 * gateway and source address each connection uses. */
#ifndef LG_CONFIG_H
#define LG_CONFIG_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#include "chat-error.h"
#include "chat-id.h"

#define LG_GATEWAYS_MAX 64
#define LG_RUN_ID_MAX   16
#define LG_FDS_PER_PROC 19000 /* of the 20,000 open files a process may hold */

typedef struct lg_config_s {
    const char *gateways;
    const char *jwt_secret;
    int64_t conns;
    int64_t procs;
    int64_t src_addrs;
    const char *mode;
    int64_t group_size;
    const char *run_id;
    int64_t rate;
    int64_t window;
    int64_t body_size;
    int64_t duration;
    int64_t warmup;
    int64_t drain;
    int idle;
    int ingest_only;
    int storm;
    int64_t storm_missed;
    int64_t storm_timeout;
    int64_t storm_concurrency;
    const char *storm_settle;
    int receipts;
    int64_t connect_concurrency;
    int64_t connect_timeout;
    int64_t connect_retries;
    int64_t setup_concurrency;
    int64_t ack_timeout;
    int64_t ping_interval;
    int reconnect;
    int prime;
    int64_t prime_timeout;
    const char *json;
    int progress;
    const char *log_level;
} lg_config_t;

typedef struct lg_plan_s {
    struct sockaddr_in gw[LG_GATEWAYS_MAX];
    char gw_text[LG_GATEWAYS_MAX][64]; /* "host:port", for logs and the Host header */
    uint32_t n_gw;
    uint32_t group; /* members per conversation: 2 for pairs */
    uint32_t convs; /* in the whole run */
    uint32_t procs;
    uint32_t src_addrs;
    int groups; /* 1 for --mode groups */
    char run_id[LG_RUN_ID_MAX + 1];
} lg_plan_t;

/* Reads the options (defaults, CHAT_<NAME> environment, command line) and
 * checks them together; fills plan. Returns 0, 1 when --help was printed,
 * or CHAT_EINVAL / CHAT_ERANGE with err saying which option is wrong. */
int lg_config_load(lg_config_t *cfg, lg_plan_t *plan, int argc, char **argv, chat_error_t *err);

/* The first conversation of process proc and how many it owns: whole
 * conversations, so that every member of one lives in the same process. */
void lg_plan_slice(const lg_plan_t *plan, uint32_t proc, uint32_t *first, uint32_t *n);

/* The gateway of member m of global conversation c: round-robin over the
 * gateways, so that consecutive members sit on different ones. */
static inline uint32_t lg_plan_gateway(const lg_plan_t *plan, uint32_t c, uint32_t m)
{
    return (c * plan->group + m) % plan->n_gw;
}

/* Writes the user id of member m of global conversation c ("<run>.u12a",
 * "<run>.u12b" for pairs, "<run>.u12g3" for groups) to out. */
void lg_plan_user(const lg_plan_t *plan, uint32_t c, uint32_t m, char out[CHAT_NAME_MAX + 1]);

/* Reads a user id written by lg_plan_user back into (c, m). Returns 0, or
 * CHAT_EINVAL for a name of another run or shape. */
int lg_plan_parse_user(const lg_plan_t *plan, const char *s, size_t n, uint32_t *c, uint32_t *m);

#endif
