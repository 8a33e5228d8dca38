#include "cs-source.h"

#include <stdlib.h>
#include <string.h>

#include "chat-id.h"
#include "chat-kafka.h"
#include "chat-log.h"

/* How long a consumer stopped before its first assignment waits for it
 * (cs_source_destroy): a little more than the session timeout. */
#define CLOSE_JOIN_WAIT_MS 12000
/* Each of the two steps of leaving the group (cs_source_destroy). */
#define CLOSE_STEP_WAIT_MS 10000

struct cs_source_s {
    rd_kafka_t *rk;
    char topic[256];
    cs_source_change_cb change_cb;
    void *data;

    /* The batch being collected, so that a revocation inside a poll can
     * take its lost partitions' messages out. */
    rd_kafka_message_t **msgs;
    size_t *n;

    int32_t *parts; /* scratch for change_cb */
    size_t parts_cap;
    int subscribed;    /* a group member (not chat-replay's assigned source) */
    int assigned_once; /* the group has given it an assignment */

    /* Commits are asynchronous (their results come back through the
     * consumer queue, served by the next poll); sent[p] is the offset last
     * sent for partition p (-1: none since the last synchronous one), which
     * the revocation commits again synchronously before the partition
     * goes, so that its next owner starts from it. */
    rd_kafka_queue_t *queue;
    int64_t *sent;
    size_t sent_cap;
};

static void commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t code,
                      rd_kafka_topic_partition_list_t *list, void *data)
{
    (void)rk;
    cs_source_t *src = data;
    if (code != RD_KAFKA_RESP_ERR_NO_ERROR && code != RD_KAFKA_RESP_ERR__NO_OFFSET) {
        CHAT_WARN("kafka %s: commit failed: %s (a later commit or a replay covers it)", src->topic,
                  rd_kafka_err2str(code));
        return;
    }
    for (int i = 0; list != NULL && i < list->cnt; i++) {
        if (list->elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR)
            CHAT_WARN("kafka %s/%d: commit failed: %s", src->topic, (int)list->elems[i].partition,
                      rd_kafka_err2str(list->elems[i].err));
    }
}

/* Commits again, synchronously, the offsets last sent for parts[0..np),
 * and forgets them. Called as they are revoked: the async commit may still
 * be on its way or may have failed. */
static void commit_sent(cs_source_t *src, const int32_t *parts, size_t np)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)np);
    for (size_t k = 0; k < np; k++) {
        size_t part = (size_t)parts[k];
        if (parts[k] >= 0 && part < src->sent_cap && src->sent[part] >= 0) {
            rd_kafka_topic_partition_list_add(list, src->topic, parts[k])->offset = src->sent[part];
            src->sent[part] = -1;
        }
    }
    if (list->cnt > 0)
        rd_kafka_commit_queue(src->rk, list, NULL, commit_cb, src);
    rd_kafka_topic_partition_list_destroy(list);
}

static void drop_from_batch(cs_source_t *src, const int32_t *parts, size_t np)
{
    size_t kept = 0, dropped = 0;
    if (src->msgs == NULL)
        return;
    for (size_t i = 0; i < *src->n; i++) {
        rd_kafka_message_t *rkm = src->msgs[i];
        int lost = 0;
        for (size_t k = 0; k < np && !lost; k++)
            lost = rkm->partition == parts[k];
        if (lost) {
            rd_kafka_message_destroy(rkm);
            dropped++;
        } else {
            src->msgs[kept++] = rkm;
        }
    }
    *src->n = kept;
    if (dropped > 0)
        CHAT_INFO("kafka: dropped %zu uncommitted messages of revoked partitions; their new "
                  "owner reads them again",
                  dropped);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t code,
                         rd_kafka_topic_partition_list_t *list, void *data)
{
    cs_source_t *src = data;
    int cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    int gained = code == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
    size_t np = 0;
    char desc[512] = "";

    if ((size_t)list->cnt > src->parts_cap) {
        int32_t *p = realloc(src->parts, (size_t)list->cnt * sizeof(*p));
        if (p != NULL) {
            src->parts = p;
            src->parts_cap = (size_t)list->cnt;
        }
    }
    for (int i = 0; i < list->cnt; i++) {
        size_t l = strlen(desc);
        if (l + 8 < sizeof(desc))
            snprintf(desc + l, sizeof(desc) - l, "%s%d", i ? "," : "",
                     (int)list->elems[i].partition);
        if (np < src->parts_cap)
            src->parts[np++] = list->elems[i].partition;
    }
    if (np < (size_t)list->cnt) {
        /* Out of memory for the list: forgetting everything is always safe. */
        CHAT_WARN("kafka: rebalance list too long to copy; dropping all cached state");
        src->change_cb(NULL, 0, gained, src->data);
    }

    if (gained) {
        src->assigned_once = 1;
        CHAT_INFO("kafka: assigned %s partitions [%s]", cooperative ? "incremental" : "all", desc);
        src->change_cb(src->parts, np, 1, src->data);
        rd_kafka_error_t *error = NULL;
        rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
        if (cooperative)
            error = rd_kafka_incremental_assign(rk, list);
        else
            e = rd_kafka_assign(rk, list);
        if (error != NULL) {
            CHAT_ERROR("kafka: incremental assign failed: %s", rd_kafka_error_string(error));
            rd_kafka_error_destroy(error);
        } else if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            CHAT_ERROR("kafka: assign failed: %s", rd_kafka_err2str(e));
        }
        return;
    }

    if (rd_kafka_assignment_lost(rk))
        CHAT_WARN("kafka: lost partitions [%s] (session timed out?); uncommitted work is "
                  "replayed by their new owner",
                  desc);
    else
        CHAT_INFO("kafka: revoked partitions [%s]", desc);
    if (!rd_kafka_assignment_lost(rk))
        commit_sent(src, src->parts, np);
    drop_from_batch(src, src->parts, np);
    src->change_cb(src->parts, np, 0, src->data);
    if (cooperative) {
        rd_kafka_error_t *error = rd_kafka_incremental_unassign(rk, list);
        if (error != NULL) {
            CHAT_ERROR("kafka: incremental unassign failed: %s", rd_kafka_error_string(error));
            rd_kafka_error_destroy(error);
        }
    } else {
        rd_kafka_assign(rk, NULL);
    }
}

cs_source_t *cs_source_new(const char *brokers, const char *group, const char *topic,
                           const char *client_id, int fetch_wait_ms, int fetch_min_bytes,
                           cs_source_change_cb change_cb, void *data, chat_error_t *err)
{
    cs_source_t *src = calloc(1, sizeof(*src));
    if (src == NULL) {
        chat_error_set(err, CHAT_ENOMEM, "kafka: out of memory");
        return NULL;
    }
    snprintf(src->topic, sizeof(src->topic), "%s", topic);
    src->change_cb = change_cb;
    src->data = data;
    /* A member killed with SIGKILL holds its partitions until its session
     * times out; librdkafka's 45 s default would stall those conversations
     * that long. 10 s (heartbeats every 3 s) still rides out a GC pause of
     * the broker or a slow store call. Fetches wait to fill
     * (docs/operations.md, fetch_wait_ms): answering a fetch per message or
     * two cost the broker more CPU than anything else at 2,000 messages/s. */
    char wait[16], min[16];
    snprintf(wait, sizeof(wait), "%d", fetch_wait_ms);
    snprintf(min, sizeof(min), "%d", fetch_min_bytes);
    const char *const extra[] = {"client.id",
                                 client_id,
                                 "session.timeout.ms",
                                 "10000",
                                 "heartbeat.interval.ms",
                                 "3000",
                                 "fetch.wait.max.ms",
                                 wait,
                                 "fetch.min.bytes",
                                 min,
                                 NULL};
    src->rk = chat_kafka_consumer_new_with_rebalance(brokers, group, extra, rebalance_cb, src, err);
    if (src->rk == NULL) {
        free(src);
        return NULL;
    }
    src->queue = rd_kafka_queue_get_consumer(src->rk);
    rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(subs, topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(src->rk, subs);
    src->subscribed = e == RD_KAFKA_RESP_ERR_NO_ERROR;
    rd_kafka_topic_partition_list_destroy(subs);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        chat_error_set(err, CHAT_EKAFKA, "kafka: subscribe to %s: %s", topic, rd_kafka_err2str(e));
        if (src->queue != NULL)
            rd_kafka_queue_destroy(src->queue);
        rd_kafka_destroy(src->rk);
        free(src);
        return NULL;
    }
    return src;
}

static void no_change_cb(const int32_t *parts, size_t n, int gained, void *data)
{
    (void)parts;
    (void)n;
    (void)gained;
    (void)data;
}

cs_source_t *cs_source_new_assigned(const char *brokers, const char *group, const char *topic,
                                    const char *client_id,
                                    const rd_kafka_topic_partition_list_t *start, chat_error_t *err)
{
    cs_source_t *src = calloc(1, sizeof(*src));
    if (src == NULL) {
        chat_error_set(err, CHAT_ENOMEM, "kafka: out of memory");
        return NULL;
    }
    snprintf(src->topic, sizeof(src->topic), "%s", topic);
    src->change_cb = no_change_cb;
    /* Without subscribe there is no rebalance; the offsets are ours. */
    const char *const extra[] = {"client.id", client_id, "enable.auto.commit", "false", NULL};
    src->rk = chat_kafka_consumer_new(brokers, group, extra, err);
    if (src->rk == NULL) {
        free(src);
        return NULL;
    }
    rd_kafka_resp_err_t e = rd_kafka_assign(src->rk, start);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        chat_error_set(err, CHAT_EKAFKA, "kafka: assign %s: %s", topic, rd_kafka_err2str(e));
        rd_kafka_destroy(src->rk);
        free(src);
        return NULL;
    }
    return src;
}

rd_kafka_t *cs_source_handle(cs_source_t *src)
{
    return src->rk;
}

void cs_source_destroy(cs_source_t *src)
{
    if (src == NULL)
        return;
    src->msgs = NULL;
    /* librdkafka before 2.3 aborts when a cooperative-sticky member closes
     * between joining the group and its first assignment (the assignor's
     * state is still NULL: librdkafka#4312, Debian ships 2.0.2): a consumer
     * stopped during its start-up lets the assignment arrive first. What
     * it polls meanwhile is neither applied nor committed. */
    uint64_t deadline = chat_mono_ms() + CLOSE_JOIN_WAIT_MS;
    while (src->subscribed && !src->assigned_once && chat_mono_ms() < deadline) {
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(src->rk, 100);
        if (rkm != NULL)
            rd_kafka_message_destroy(rkm);
    }
    /* librdkafka before 2.4 can hang for good in close when an incremental
     * assignment reaches a member that is closing (librdkafka#4527): two
     * consumers stopped together, the first one's partitions handed to the
     * second as it leaves. So leave first: unsubscribe and serve the
     * revocation (its synchronous commit, while still a member) until
     * nothing is assigned; then close, serving its callbacks, within a
     * bound. Past the bound the handle is destroyed without the close; the
     * group's session timeout takes back whatever it still held, and an
     * uncommitted batch is replayed, which is idempotent. */
    if (src->subscribed) {
        rd_kafka_unsubscribe(src->rk);
        deadline = chat_mono_ms() + CLOSE_STEP_WAIT_MS;
        while (chat_mono_ms() < deadline) {
            rd_kafka_topic_partition_list_t *assigned = NULL;
            int held = rd_kafka_assignment(src->rk, &assigned) != RD_KAFKA_RESP_ERR_NO_ERROR ||
                       assigned->cnt > 0;
            if (assigned != NULL)
                rd_kafka_topic_partition_list_destroy(assigned);
            if (!held)
                break;
            rd_kafka_message_t *rkm = rd_kafka_consumer_poll(src->rk, 100);
            if (rkm != NULL)
                rd_kafka_message_destroy(rkm);
        }
    }
    int destroy_flags = 0;
    rd_kafka_queue_t *closing = rd_kafka_queue_new(src->rk);
    rd_kafka_error_t *error = rd_kafka_consumer_close_queue(src->rk, closing);
    if (error != NULL) {
        CHAT_WARN("kafka: leaving the group: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
        destroy_flags = RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE; /* not a blocking one instead */
    } else {
        deadline = chat_mono_ms() + CLOSE_STEP_WAIT_MS;
        while (!rd_kafka_consumer_closed(src->rk) && chat_mono_ms() < deadline)
            rd_kafka_queue_poll_callback(closing, 100);
        if (!rd_kafka_consumer_closed(src->rk)) {
            CHAT_WARN("kafka: leaving the group did not end within %d ms (librdkafka#4527); "
                      "leaving it to the group's session timeout",
                      CLOSE_STEP_WAIT_MS);
            destroy_flags = RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE;
        }
    }
    rd_kafka_queue_destroy(closing);
    if (src->queue != NULL)
        rd_kafka_queue_destroy(src->queue);
    rd_kafka_destroy_flags(src->rk, destroy_flags);
    free(src->parts);
    free(src->sent);
    free(src);
}

int cs_source_fill(cs_source_t *src, rd_kafka_message_t **msgs, size_t want, size_t max,
                   int wait_ms, int batch_ms, size_t *n)
{
    uint64_t deadline = chat_mono_ms() + (uint64_t)batch_ms;
    src->msgs = msgs;
    src->n = n;
    while (*n < max) {
        int timeout;
        if (*n == 0) {
            timeout = wait_ms;
        } else if (*n >= want) {
            timeout = 0; /* beyond a batch: only what has arrived */
        } else {
            uint64_t now = chat_mono_ms();
            timeout = now >= deadline ? 0 : (int)(deadline - now);
        }
        int had = *n > 0;
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(src->rk, timeout);
        if (rkm == NULL) {
            if (*n == 0 || timeout == 0)
                break;
            continue;
        }
        if (rkm->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (rkm->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                CHAT_WARN("kafka %s/%d: %s", src->topic, (int)rkm->partition,
                          rd_kafka_message_errstr(rkm));
            rd_kafka_message_destroy(rkm);
            if (*n == 0)
                break; /* let the caller look at its clock and flags */
            continue;
        }
        if (!had)
            deadline = chat_mono_ms() + (uint64_t)batch_ms;
        msgs[(*n)++] = rkm;
    }
    src->msgs = NULL;
    return 0;
}

/* Builds the list of each partition's first (first=1) or last+1 offset. */
static rd_kafka_topic_partition_list_t *offsets(cs_source_t *src, rd_kafka_message_t *const *msgs,
                                                size_t n, int first)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(16);
    for (size_t i = 0; i < n; i++) {
        const rd_kafka_message_t *rkm = msgs[i];
        int64_t off = first ? rkm->offset : rkm->offset + 1;
        rd_kafka_topic_partition_t *tp =
            rd_kafka_topic_partition_list_find(list, src->topic, rkm->partition);
        if (tp == NULL)
            rd_kafka_topic_partition_list_add(list, src->topic, rkm->partition)->offset = off;
        else if (first ? off < tp->offset : off > tp->offset)
            tp->offset = off;
    }
    return list;
}

/* Records the offsets being sent; returns -1 when out of memory (the
 * commit is then synchronous: nothing to remember). */
static int remember(cs_source_t *src, const rd_kafka_topic_partition_list_t *list)
{
    for (int i = 0; i < list->cnt; i++) {
        size_t part = (size_t)list->elems[i].partition;
        if (list->elems[i].partition < 0)
            return -1;
        if (part >= src->sent_cap) {
            size_t cap = part + 16;
            int64_t *s = realloc(src->sent, cap * sizeof(*s));
            if (s == NULL)
                return -1;
            for (size_t k = src->sent_cap; k < cap; k++)
                s[k] = -1;
            src->sent = s;
            src->sent_cap = cap;
        }
    }
    for (int i = 0; i < list->cnt; i++)
        src->sent[list->elems[i].partition] = list->elems[i].offset;
    return 0;
}

int cs_source_commit(cs_source_t *src, rd_kafka_message_t *const *msgs, size_t n)
{
    if (n == 0)
        return 0;
    rd_kafka_topic_partition_list_t *list = offsets(src, msgs, n, 0);
    /* Asynchronous where the group can be told again on revocation: a
     * commit's broker round trip per batch kept the store idle (lost, it
     * only replays applied events, which is idempotent). */
    int async = src->queue != NULL && remember(src, list) == 0;
    rd_kafka_resp_err_t e =
        rd_kafka_commit_queue(src->rk, list, async ? src->queue : NULL, commit_cb, src);
    int rc = 0;
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        CHAT_WARN("kafka %s: commit of %d partitions failed: %s", src->topic, list->cnt,
                  rd_kafka_err2str(e));
        rc = CHAT_EKAFKA;
    }
    rd_kafka_topic_partition_list_destroy(list);
    return rc;
}

int cs_source_rewind(cs_source_t *src, rd_kafka_message_t *const *msgs, size_t n)
{
    if (n == 0)
        return 0;
    rd_kafka_topic_partition_list_t *list = offsets(src, msgs, n, 1);
    rd_kafka_error_t *error = rd_kafka_seek_partitions(src->rk, list, 5000);
    int rc = 0;
    if (error != NULL) {
        CHAT_ERROR("kafka %s: seek failed: %s", src->topic, rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
        rc = CHAT_EKAFKA;
    }
    rd_kafka_topic_partition_list_t *owned = NULL;
    if (rc == 0 && rd_kafka_assignment(src->rk, &owned) != RD_KAFKA_RESP_ERR_NO_ERROR)
        owned = NULL;
    for (int i = 0; i < list->cnt && rc == 0; i++) {
        const rd_kafka_topic_partition_t *tp = &list->elems[i];
        if (tp->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            CHAT_DEBUG("kafka %s/%d: rewound to %lld", src->topic, (int)tp->partition,
                       (long long)tp->offset);
            continue;
        }
        /* A partition revoked since the batch was read cannot be seeked, and
         * need not be: its new owner starts from the committed offset. One we
         * still own must be, or a later commit would skip the batch. */
        int still_ours =
            owned == NULL || rd_kafka_topic_partition_list_find(owned, src->topic, tp->partition);
        CHAT_LOG(still_ours ? CHAT_LOG_ERROR : CHAT_LOG_INFO,
                 "kafka %s/%d: seek to %lld failed: %s", src->topic, (int)tp->partition,
                 (long long)tp->offset, rd_kafka_err2str(tp->err));
        if (still_ours)
            rc = CHAT_EKAFKA;
    }
    if (owned != NULL)
        rd_kafka_topic_partition_list_destroy(owned);
    rd_kafka_topic_partition_list_destroy(list);
    return rc;
}
