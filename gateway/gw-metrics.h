/* Counters exported at GET /metrics in Prometheus' text format. Single
 * writer (the loop thread); plain integers suffice. */
#ifndef GW_METRICS_H
#define GW_METRICS_H

#include <stdint.h>

#include "chat-buf.h"

#define GW_METRICS(XX)                                                                             \
    XX(connections_accepted, counter, "TCP connections accepted")                                  \
    XX(connections_open, gauge, "connections open now")                                            \
    XX(ws_open, gauge, "WebSocket sessions open now")                                              \
    XX(ws_upgrades, counter, "WebSocket upgrades completed")                                       \
    XX(auth_failures, counter, "upgrades refused for a bad or missing token")                      \
    XX(http_requests, counter, "HTTP requests served")                                             \
    XX(frames_in, counter, "client frames received")                                               \
    XX(frames_out, counter, "frames written to clients")                                           \
    XX(frame_errors, counter, "client frames answered with an error")                              \
    XX(events_produced, counter, "events acknowledged by Kafka")                                   \
    XX(produce_failures, counter, "events Kafka did not acknowledge")                              \
    XX(routed_frames, counter, "frames routed in from Redis")                                      \
    XX(routed_repeats, counter, "routed frames dropped: that connection had that seq already")     \
    XX(slow_closes, counter, "connections closed for a full outbound queue")                       \
    XX(idle_closes, counter, "connections closed for silence")                                     \
    XX(sync_pages, counter, "sync pages streamed")                                                 \
    XX(sync_rounds, counter, "sync store rounds (each serves up to 1,024 syncs)")                  \
    XX(sync_waiting, gauge, "syncs waiting for a store round")                                     \
    XX(member_rounds, counter, "membership lookup rounds (each serves up to 1,024 lookups)")       \
    XX(member_waiting, gauge, "membership lookups waiting for a store round")                      \
    XX(store_jobs, counter, "store lookups run off the loop")                                      \
    XX(presence_dropped, counter, "presence changes not fanned out: their queue was full")

typedef struct gw_metrics_s {
#define GW_METRIC_FIELD(name, type, help) uint64_t name;
    GW_METRICS(GW_METRIC_FIELD)
#undef GW_METRIC_FIELD
} gw_metrics_t;

/* Appends the Prometheus text of m, labelled with the gateway id. */
int gw_metrics_render(const gw_metrics_t *m, const char *gateway_id, chat_buf_t *out);

#endif
