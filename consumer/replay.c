/* chat-replay: the operator's tool that re-reads the events topic from an
 * offset or a time up to an end fixed at start (the high watermark, or
 * to_offset/to_time) and applies it to MongoDB again through the
 * consumer's own pipeline (cs-pipeline.h), so a replay is exactly as
 * idempotent as the consumer: an event already stored keeps its seq, a new
 * one gets the next of its conversation.
 *
 * It joins no group and commits nothing: the partitions are assigned with
 * explicit starting offsets (cs_source_new_assigned), so it may run beside
 * the live consumers. Every batch runs in the pipeline's thorough mode, in
 * which a conversation's last_seq comes from its stored messages: replayed
 * from the beginning of a partition onto a store whose messages were lost,
 * events get the seqs they had, because the partition's order is the same.
 * docs/operations.md ("Replay") says when that holds.
 *
 * Routing to live clients is off unless --route; a dry run reads the store
 * but writes nothing and produces nothing, and counts what it would do. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "chat-config.h"
#include "chat-id.h"
#include "chat-log.h"
#include "chat-mongo.h"
#include "cs-config.h"
#include "cs-dlq.h"
#include "cs-pipeline.h"
#include "cs-route.h"
#include "cs-source.h"
#include "cs-state.h"
#include "cs-stop.h"
#include "cs-store.h"

#define POLL_WAIT_MS  100
#define KAFKA_WAIT_MS 10000
#define RETRIES_MAX   20
#define PARTS_MAX     4096

typedef struct rp_config_s {
    const char *kafka_brokers;
    const char *topic;
    const char *dlq_topic;
    const char *mongo_uri;
    int route;
    const char *redis_host;
    int64_t redis_port;
    const char *partitions;
    const char *from_offset;
    const char *from_time;
    const char *to_offset;
    const char *to_time;
    int dry_run;
    int64_t batch_max;
    int64_t progress;
    int64_t group_max;
    int64_t body_max;
    int64_t store_lanes;
    const char *log_level;
} rp_config_t;

#define E_INT(f, d, lo, hi, h) CHAT_CONF_INT_ENTRY(rp_config_t, f, d, lo, hi, h)
#define E_STR(f, d, h)         CHAT_CONF_STR_ENTRY(rp_config_t, f, d, h)
#define E_BOOL(f, d, h)        CHAT_CONF_BOOL_ENTRY(rp_config_t, f, d, h)

static const chat_conf_entry_t table[] = {
    E_STR(kafka_brokers, "127.0.0.1:19092", "Kafka bootstrap servers"),
    E_STR(topic, "chat.events", "topic to replay"),
    E_STR(dlq_topic, "chat.events.dlq", "dead-letter topic for events that cannot be applied"),
    E_STR(mongo_uri, "mongodb://127.0.0.1:27018/chat", "MongoDB URI; its path names the database"),
    E_BOOL(route, "false", "also route live deliveries to gateways through Redis"),
    E_STR(redis_host, "127.0.0.1", "Redis host (with --route only)"),
    E_INT(redis_port, "16379", 1, 65535, "Redis port (with --route only)"),
    E_STR(partitions, "", "comma-separated partitions to replay (default: all)"),
    E_STR(from_offset, "beginning",
          "start: beginning (or earliest) or an offset (ignored when from_time is set)"),
    E_STR(from_time, "", "start at the first event at or after this time (ms or ISO-8601 UTC)"),
    E_STR(to_offset, "", "stop before this offset (default: the high watermark at start)"),
    E_STR(to_time, "", "stop before the first event at or after this time (ms or ISO-8601 UTC)"),
    E_BOOL(dry_run, "false", "decode, check and count; write nothing, produce nothing"),
    E_INT(batch_max, "500", 1, 10000, "most events handled in one batch"),
    E_INT(progress, "5", 0, 86400, "seconds between progress lines (0: none)"),
    E_INT(group_max, "256", 1, 100000, "most members a conversation may have (as the consumer)"),
    E_INT(body_max, "4096", 1, 1048576, "largest message body in bytes (as the consumer)"),
    E_INT(store_lanes, "2", 1, CS_STORE_LANES_MAX,
          "connections the event inserts of a batch use at once (as the consumer)"),
    E_STR(log_level, "info", "error, warn, info or debug"),
};

/* One partition's range and where the replay is in it. */
typedef struct rp_part_s {
    int32_t id;
    int64_t start, end; /* [start, end) */
    int64_t applied;    /* next offset to apply */
    int done;
} rp_part_t;

/* Parses a non-negative decimal integer filling all of s. Returns 0 or
 * CHAT_EINVAL. */
static int parse_i64(const char *s, int64_t *out)
{
    char *end;
    if (s[0] == '\0' || !isdigit((unsigned char)s[0]))
        return CHAT_EINVAL;
    long long v = strtoll(s, &end, 10);
    if (*end != '\0' || v < 0)
        return CHAT_EINVAL;
    *out = v;
    return 0;
}

/* Parses ms since the epoch, or YYYY-MM-DDTHH:MM:SS[.mmm]Z (UTC; the Z may
 * be left out). Returns 0 or CHAT_EINVAL. */
static int parse_time(const char *s, int64_t *ms)
{
    struct tm tm;
    int ms_part = 0, used = 0;
    if (parse_i64(s, ms) == 0)
        return 0;
    memset(&tm, 0, sizeof(tm));
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &used) != 6)
        return CHAT_EINVAL;
    s += used;
    if (*s == '.') {
        int digits = 0;
        for (s++; isdigit((unsigned char)*s); s++, digits++) {
            if (digits < 3)
                ms_part = ms_part * 10 + (*s - '0');
        }
        for (; digits < 3; digits++)
            ms_part *= 10;
    }
    if (*s == 'Z')
        s++;
    if (*s != '\0' || tm.tm_mon < 1 || tm.tm_mon > 12)
        return CHAT_EINVAL;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return CHAT_EINVAL;
    *ms = (int64_t)t * 1000 + ms_part;
    return 0;
}

/* Checks what the table cannot. Returns 0 or CHAT_EINVAL with err set. */
static int check_config(const rp_config_t *rc, chat_error_t *err)
{
    int64_t v;
    if (chat_log_level_parse(rc->log_level) < 0)
        return chat_error_set(err, CHAT_EINVAL, "log_level: '%s' is not error, warn, info or debug",
                              rc->log_level);
    if (strcmp(rc->from_offset, "beginning") != 0 && strcmp(rc->from_offset, "earliest") != 0 &&
        parse_i64(rc->from_offset, &v) != 0)
        return chat_error_set(err, CHAT_EINVAL,
                              "from_offset: '%s' is not beginning, earliest or an offset",
                              rc->from_offset);
    if (rc->to_offset[0] != '\0' && parse_i64(rc->to_offset, &v) != 0)
        return chat_error_set(err, CHAT_EINVAL, "to_offset: '%s' is not an offset", rc->to_offset);
    if (rc->from_time[0] != '\0' && parse_time(rc->from_time, &v) != 0)
        return chat_error_set(err, CHAT_EINVAL, "from_time: '%s' is not ms or ISO-8601 UTC",
                              rc->from_time);
    if (rc->to_time[0] != '\0' && parse_time(rc->to_time, &v) != 0)
        return chat_error_set(err, CHAT_EINVAL, "to_time: '%s' is not ms or ISO-8601 UTC",
                              rc->to_time);
    return 0;
}

/* Fills parts with the topic's partitions (all, or those listed). Returns
 * 0 or CHAT_EKAFKA/CHAT_EINVAL with err set. */
static int list_partitions(rd_kafka_t *rk, const rp_config_t *rc, rp_part_t *parts, size_t *n,
                           chat_error_t *err)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, rc->topic, NULL);
    int count = -1;
    *n = 0;
    if (rkt == NULL)
        return chat_error_set(err, CHAT_EKAFKA, "kafka: topic handle for %s", rc->topic);
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, KAFKA_WAIT_MS);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 && md->topics[0].err == 0)
        count = md->topics[0].partition_cnt;
    else if (e == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1)
        e = md->topics[0].err;
    if (md != NULL)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    if (count <= 0)
        return chat_error_set(err, CHAT_EKAFKA, "kafka: metadata of %s: %s", rc->topic,
                              e ? rd_kafka_err2str(e) : "no partitions");
    if (rc->partitions[0] == '\0') {
        for (int i = 0; i < count && *n < PARTS_MAX; i++)
            parts[(*n)++].id = i;
        return 0;
    }
    const char *s = rc->partitions;
    while (*s != '\0') {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v >= count || (*end != ',' && *end != '\0'))
            return chat_error_set(err, CHAT_EINVAL,
                                  "partitions: '%s' is not a list of partitions of %s (0..%d)",
                                  rc->partitions, rc->topic, count - 1);
        int seen = 0;
        for (size_t k = 0; k < *n; k++)
            seen |= parts[k].id == (int32_t)v;
        if (!seen && *n < PARTS_MAX)
            parts[(*n)++].id = (int32_t)v;
        s = *end == ',' ? end + 1 : end;
    }
    return 0;
}

/* The first offset of each partition at or after ms (the high watermark
 * where there is none), into out[k]. Returns 0 or CHAT_EKAFKA. */
static int offsets_at(rd_kafka_t *rk, const char *topic, const rp_part_t *parts, size_t n,
                      int64_t ms, int64_t *out, chat_error_t *err)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)n);
    for (size_t k = 0; k < n; k++)
        rd_kafka_topic_partition_list_add(list, topic, parts[k].id)->offset = ms;
    rd_kafka_resp_err_t e = rd_kafka_offsets_for_times(rk, list, KAFKA_WAIT_MS);
    int rc = 0;
    for (size_t k = 0; k < n && e == RD_KAFKA_RESP_ERR_NO_ERROR && rc == 0; k++) {
        const rd_kafka_topic_partition_t *tp = &list->elems[k];
        if (tp->err != RD_KAFKA_RESP_ERR_NO_ERROR)
            rc = chat_error_set(err, CHAT_EKAFKA, "kafka %s/%d: offset for time %lld: %s", topic,
                                (int)tp->partition, (long long)ms, rd_kafka_err2str(tp->err));
        else
            out[k] = tp->offset; /* -1: no event at or after ms */
    }
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        rc = chat_error_set(err, CHAT_EKAFKA, "kafka %s: offsets for time %lld: %s", topic,
                            (long long)ms, rd_kafka_err2str(e));
    rd_kafka_topic_partition_list_destroy(list);
    return rc;
}

/* Fixes each partition's [start, end). Returns 0 or CHAT_EKAFKA. */
static int plan(rd_kafka_t *rk, const rp_config_t *rc, rp_part_t *parts, size_t n,
                chat_error_t *err)
{
    int64_t *at = calloc(n, sizeof(*at));
    int64_t v = 0;
    int ret = 0;
    if (at == NULL)
        return chat_error_set(err, CHAT_ENOMEM, "out of memory");
    for (size_t k = 0; k < n && ret == 0; k++) {
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t e =
            rd_kafka_query_watermark_offsets(rk, rc->topic, parts[k].id, &lo, &hi, KAFKA_WAIT_MS);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            ret = chat_error_set(err, CHAT_EKAFKA, "kafka %s/%d: watermarks: %s", rc->topic,
                                 (int)parts[k].id, rd_kafka_err2str(e));
            break;
        }
        parts[k].start = lo;
        parts[k].end = hi;
        if (rc->from_time[0] == '\0' && parse_i64(rc->from_offset, &v) == 0)
            parts[k].start = v < lo ? lo : v > hi ? hi : v;
        if (rc->to_offset[0] != '\0' && parse_i64(rc->to_offset, &v) == 0 && v < hi)
            parts[k].end = v;
    }
    if (ret == 0 && rc->from_time[0] != '\0' && parse_time(rc->from_time, &v) == 0 &&
        (ret = offsets_at(rk, rc->topic, parts, n, v, at, err)) == 0) {
        for (size_t k = 0; k < n; k++) {
            if (at[k] < 0 || at[k] > parts[k].start)
                parts[k].start = at[k] < 0 ? parts[k].end : at[k];
        }
    }
    if (ret == 0 && rc->to_time[0] != '\0' && parse_time(rc->to_time, &v) == 0 &&
        (ret = offsets_at(rk, rc->topic, parts, n, v, at, err)) == 0) {
        for (size_t k = 0; k < n; k++) {
            if (at[k] >= 0 && at[k] < parts[k].end)
                parts[k].end = at[k];
        }
    }
    for (size_t k = 0; k < n && ret == 0; k++) {
        parts[k].applied = parts[k].start;
        parts[k].done = parts[k].start >= parts[k].end;
        CHAT_INFO("partition %d: replaying offsets [%lld, %lld): %lld events", (int)parts[k].id,
                  (long long)parts[k].start, (long long)parts[k].end,
                  (long long)(parts[k].done ? 0 : parts[k].end - parts[k].start));
    }
    free(at);
    return ret;
}

static rp_part_t *find_part(rp_part_t *parts, size_t n, int32_t id)
{
    for (size_t k = 0; k < n; k++) {
        if (parts[k].id == id)
            return &parts[k];
    }
    return NULL;
}

static int all_done(const rp_part_t *parts, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        if (!parts[k].done)
            return 0;
    }
    return 1;
}

/* Stops fetching a partition that reached its end. */
static void pause_part(rd_kafka_t *rk, const char *topic, int32_t id)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, topic, id);
    rd_kafka_pause_partitions(rk, list);
    rd_kafka_topic_partition_list_destroy(list);
}

typedef struct rp_run_s {
    const rp_config_t *rc;
    cs_source_t *src;
    cs_pipeline_t *p;
    rp_part_t *parts;
    size_t n_parts;
    uint64_t read; /* events of applied batches */
    uint64_t started;
} rp_run_t;

static void log_progress(const rp_run_t *run, const char *what)
{
    const cs_stats_t *s = cs_pipeline_stats(run->p);
    char pos[1024] = "";
    size_t len = 0;
    uint64_t ms = chat_mono_ms() - run->started;
    for (size_t k = 0; k < run->n_parts && len + 48 < sizeof(pos); k++) {
        const rp_part_t *part = &run->parts[k];
        len += (size_t)snprintf(pos + len, sizeof(pos) - len, "%s%d:%lld/%lld", k ? " " : "",
                                (int)part->id, (long long)part->applied, (long long)part->end);
    }
    CHAT_INFO("%s%s: read %llu, stored %llu, duplicates %llu, receipts %llu (stale %llu), "
              "changes %llu, dead letters %llu, retries %llu; %.0f events/s; positions [%s]",
              what, run->rc->dry_run ? " (dry run)" : "", (unsigned long long)run->read,
              (unsigned long long)s->messages, (unsigned long long)s->duplicates,
              (unsigned long long)s->receipts, (unsigned long long)s->stale,
              (unsigned long long)s->changes, (unsigned long long)s->dlq,
              (unsigned long long)s->retries,
              ms > 0 ? (double)run->read * 1000.0 / (double)ms : 0.0, pos);
}

/* The final line, on stdout, for scripts. */
static void print_summary(const rp_run_t *run, int status)
{
    const cs_stats_t *s = cs_pipeline_stats(run->p);
    uint64_t ms = chat_mono_ms() - run->started;
    printf("chat-replay: %s%s: read %llu events in %.1f s, %s %llu, duplicates %llu, "
           "receipts %llu, stale receipts %llu, changes %llu, dead letters %llu;",
           status == 0 ? "done" : "FAILED", run->rc->dry_run ? " (dry run, nothing written)" : "",
           (unsigned long long)run->read, (double)ms / 1000.0,
           run->rc->dry_run ? "would store" : "stored", (unsigned long long)s->messages,
           (unsigned long long)s->duplicates, (unsigned long long)s->receipts,
           (unsigned long long)s->stale, (unsigned long long)s->changes,
           (unsigned long long)s->dlq);
    for (size_t t = 0; t < CS_STATS_TYPES; t++) {
        const char *name = t == 0 ? "undecodable" : chat_event_type_name((chat_event_type_t)t);
        if (s->applied_by_type[t] > 0 || s->dlq_by_type[t] > 0)
            printf(" %s: new %llu, dlq %llu;", name, (unsigned long long)s->applied_by_type[t],
                   (unsigned long long)s->dlq_by_type[t]);
    }
    printf("\n");
    fflush(stdout);
}

/* Keeps in msgs[0..*n) the messages inside their partition's range and
 * destroys the rest. */
static void trim(rp_run_t *run, rd_kafka_message_t **msgs, size_t *n)
{
    size_t kept = 0;
    for (size_t i = 0; i < *n; i++) {
        rp_part_t *part = find_part(run->parts, run->n_parts, msgs[i]->partition);
        if (part != NULL && msgs[i]->offset >= part->start && msgs[i]->offset < part->end)
            msgs[kept++] = msgs[i];
        else
            rd_kafka_message_destroy(msgs[i]);
    }
    *n = kept;
}

/* The loop. Returns the exit status. */
static int replay(rp_run_t *run)
{
    size_t max = (size_t)run->rc->batch_max;
    rd_kafka_message_t **msgs = calloc(max, sizeof(*msgs));
    rd_kafka_t *rk = cs_source_handle(run->src);
    uint64_t backoff = 0, every = (uint64_t)run->rc->progress * 1000;
    uint64_t next = chat_mono_ms() + every;
    int failures = 0, status = 0;
    if (msgs == NULL) {
        CHAT_ERROR("out of memory");
        return 1;
    }
    while (!cs_stopping() && !all_done(run->parts, run->n_parts)) {
        size_t n = 0, got;
        cs_source_fill(run->src, msgs, max, max, POLL_WAIT_MS, 5, &n);
        got = n;
        /* A message past its partition's end says that everything before
         * it was fetched: gaps (a compacted or transactional topic) cannot
         * then keep the partition open. */
        int32_t beyond[64];
        size_t n_beyond = 0;
        for (size_t i = 0; i < got; i++) {
            rp_part_t *part = find_part(run->parts, run->n_parts, msgs[i]->partition);
            if (part != NULL && msgs[i]->offset >= part->end && n_beyond < 64)
                beyond[n_beyond++] = part->id;
        }
        trim(run, msgs, &n);
        if (n > 0) {
            if (cs_pipeline_run(run->p, msgs, n, NULL, 0) == 0) {
                failures = 0;
                backoff = 0;
                run->read += n;
                for (size_t i = 0; i < n; i++) {
                    rp_part_t *part = find_part(run->parts, run->n_parts, msgs[i]->partition);
                    if (msgs[i]->offset + 1 > part->applied)
                        part->applied = msgs[i]->offset + 1;
                }
            } else {
                n_beyond = 0; /* read again: nothing is settled */
                if (++failures > RETRIES_MAX || cs_source_rewind(run->src, msgs, n) != 0) {
                    CHAT_ERROR("giving up after %d failed attempts at a batch", failures);
                    status = 1;
                    cs_stop_request();
                } else {
                    backoff = cs_stop_backoff(backoff);
                    cs_stop_pause_ms(backoff);
                }
            }
            for (size_t i = 0; i < n; i++)
                rd_kafka_message_destroy(msgs[i]);
        }
        for (size_t k = 0; k < run->n_parts; k++) {
            rp_part_t *part = &run->parts[k];
            int past = 0;
            for (size_t b = 0; b < n_beyond && !past; b++)
                past = beyond[b] == part->id;
            if (!part->done && (part->applied >= part->end || past)) {
                part->done = 1;
                pause_part(rk, run->rc->topic, part->id);
                CHAT_INFO("partition %d: done at offset %lld", (int)part->id,
                          (long long)part->applied);
            }
        }
        if (every > 0 && chat_mono_ms() >= next) {
            log_progress(run, "progress");
            next = chat_mono_ms() + every;
        }
    }
    free(msgs);
    if (cs_pipeline_flush(run->p, NULL, 0, 1) != 0 && status == 0)
        status = 1; /* the conversations' last_seq could not be written */
    if (status == 0 && !all_done(run->parts, run->n_parts)) {
        CHAT_WARN("interrupted before the end");
        status = 1;
    }
    return status;
}

/* Assigns the partitions at their starts and replays them. Returns the
 * exit status. */
static int start_and_run(const rp_config_t *rc, cs_source_t *src, cs_pipeline_t *p,
                         cs_store_t *store, rp_part_t *parts, size_t n_parts)
{
    rd_kafka_topic_partition_list_t *start = rd_kafka_topic_partition_list_new((int)n_parts);
    for (size_t k = 0; k < n_parts; k++) {
        if (!parts[k].done)
            rd_kafka_topic_partition_list_add(start, rc->topic, parts[k].id)->offset =
                parts[k].start;
    }
    rd_kafka_resp_err_t e = rd_kafka_assign(cs_source_handle(src), start);
    rd_kafka_topic_partition_list_destroy(start);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        CHAT_ERROR("kafka: assign %s: %s", rc->topic, rd_kafka_err2str(e));
        return 1;
    }
    CHAT_INFO("replaying %s into %s (%zu partitions, no group, no commits), routing %s%s",
              rc->topic, cs_store_db(store), n_parts, rc->route ? "on" : "off",
              rc->dry_run ? ", DRY RUN: nothing is written or produced" : "");
    rp_run_t run = {rc, src, p, parts, n_parts, 0, chat_mono_ms()};
    int status = replay(&run);
    log_progress(&run, status == 0 ? "finished" : "stopped");
    print_summary(&run, status);
    return status;
}

int main(int argc, char **argv)
{
    rp_config_t rc;
    cs_config_t cfg;
    chat_error_t err = {0, ""};
    cs_state_t *state = NULL;
    cs_store_t *store = NULL;
    cs_route_t *route = NULL;
    cs_dlq_t *dlq = NULL;
    cs_pipeline_t *p = NULL;
    cs_source_t *src = NULL;
    rp_part_t *parts = NULL;
    size_t n_parts = 0;
    char client_id[CHAT_NAME_MAX + 1], host[40] = "replay";
    int status = 1;

    memset(&rc, 0, sizeof(rc));
    int ret = chat_config_load(table, sizeof(table) / sizeof(table[0]), &rc, argc, argv, &err);
    if (ret == 1)
        return 0;
    if (ret != 0 || check_config(&rc, &err) != 0) {
        fprintf(stderr, "chat-replay: %s\n", err.message);
        return 2;
    }
    chat_log_init("chat-replay", chat_log_level_parse(rc.log_level));

    cs_stop_install();

    if (gethostname(host, sizeof(host)) != 0)
        strcpy(host, "replay");
    host[sizeof(host) - 1] = '\0';
    snprintf(client_id, sizeof(client_id), "replay-%.30s-%ld", host, (long)getpid());

    /* The pipeline's options: those of the consumer that matter to a
     * batch, and thorough mode always (see the top of this file). */
    memset(&cfg, 0, sizeof(cfg));
    cfg.kafka_brokers = rc.kafka_brokers;
    cfg.topic = rc.topic;
    cfg.dlq_topic = rc.dlq_topic;
    cfg.group = client_id;
    cfg.consumer_id = client_id;
    cfg.redis_host = rc.redis_host;
    cfg.redis_port = rc.redis_port;
    cfg.mongo_uri = rc.mongo_uri;
    cfg.batch_max = rc.batch_max;
    cfg.batch_ms = 5;
    cfg.group_max = rc.group_max;
    cfg.body_max = rc.body_max;
    cfg.log_level = rc.log_level;
    cfg.thorough = 1;
    cfg.last_seq_ms = 0; /* a repaired store is whole when the replay ends */
    cfg.dry_run = rc.dry_run;

    parts = calloc(PARTS_MAX, sizeof(*parts));
    rd_kafka_topic_partition_list_t *none = rd_kafka_topic_partition_list_new(1);
    if (parts == NULL || none == NULL) {
        CHAT_ERROR("out of memory");
        goto out;
    }
    /* Assigned nothing yet: the handle first serves the metadata and the
     * offsets that fix the range. */
    src = cs_source_new_assigned(rc.kafka_brokers, client_id, rc.topic, client_id, none, &err);
    rd_kafka_topic_partition_list_destroy(none);
    if (src == NULL || list_partitions(cs_source_handle(src), &rc, parts, &n_parts, &err) != 0 ||
        plan(cs_source_handle(src), &rc, parts, n_parts, &err) != 0) {
        CHAT_ERROR("%s", err.message);
        goto out;
    }
    if ((state = cs_state_new()) == NULL) {
        CHAT_ERROR("out of memory");
        goto out;
    }
    if ((store = cs_store_new(rc.mongo_uri, client_id, (int)rc.store_lanes, &err)) == NULL ||
        (rc.route && (route = cs_route_new(rc.redis_host, (int)rc.redis_port, &err)) == NULL) ||
        (!rc.dry_run &&
         (dlq = cs_dlq_new(rc.kafka_brokers, rc.dlq_topic, client_id, &err)) == NULL) ||
        (p = cs_pipeline_new(&cfg, state, store, route, dlq, &err)) == NULL) {
        CHAT_ERROR("%s", err.message);
        goto out;
    }
    /* The unique indexes are what makes the replay idempotent: a store
     * being rebuilt gets them before the first write. */
    if (!rc.dry_run && cs_store_prepare(store, &err) != 0) {
        CHAT_ERROR("store %s: %s", cs_store_db(store), err.message);
        goto out;
    }

    status = start_and_run(&rc, src, p, store, parts, n_parts);
out:
    cs_source_destroy(src);
    cs_pipeline_destroy(p);
    cs_dlq_destroy(dlq);
    cs_route_destroy(route);
    cs_store_destroy(store);
    cs_state_destroy(state);
    free(parts);
    mongoc_cleanup();
    return status;
}
