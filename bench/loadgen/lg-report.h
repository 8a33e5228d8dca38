/* What a run measured: counters, times and histograms. Each child process
 * fills one report and sends it to the parent through a pipe as raw bytes
 * (same binary, same layout); the parent merges them, prints the summary
 * and writes the JSON file. */
#ifndef LG_REPORT_H
#define LG_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include "chat-error.h"
#include "lg-config.h"
#include "lg-hist.h"

/* Counters add up across processes. name, then what it counts. */
#define LG_COUNTERS(XX)                                                                            \
    XX(conns_target, "connections asked for")                                                      \
    XX(conns_opened, "connections that reached the server's hello at start")                       \
    XX(conns_failed, "connections given up after all retries")                                     \
    XX(connect_retries, "connection attempts retried")                                             \
    XX(refused_429, "upgrades refused with 429 (the gateway's connection rate)")                   \
    XX(refused_other, "upgrades answered with another status than 101")                            \
    XX(connect_errors, "TCP or handshake errors")                                                  \
    XX(connect_timeouts, "connections without hello within connect_timeout")                       \
    XX(convs_target, "conversations asked for")                                                    \
    XX(convs_created, "conversations created over HTTP")                                           \
    XX(setup_retries, "conversation creations retried")                                            \
    XX(setup_failed, "conversations that could not be created")                                    \
    XX(convs_excluded, "conversations left out of the load (a member never connected)")            \
    XX(sent, "send frames written")                                                                \
    XX(acked, "sends answered with sent")                                                          \
    XX(acked_late, "sent frames that came after ack_timeout")                                      \
    XX(ack_timeouts, "sends without an answer within ack_timeout")                                 \
    XX(lost_unacked, "sends unanswered when their connection closed")                              \
    XX(send_errors, "sends answered with an error frame")                                          \
    XX(received, "messages received by the other members (each once)")                             \
    XX(echoes, "messages received back by the sending connection (each once)")                     \
    XX(duplicates, "the same message received twice by one connection (not through sync)")         \
    XX(sync_duplicates, "the same (conv, seq) received live and through sync (allowed)")           \
    XX(seq_mismatches, "one message seen with two different seqs")                                 \
    XX(unexpected_messages, "message frames not sent by this run")                                 \
    XX(delivered_unacked, "messages delivered although their send was never answered")             \
    XX(missing, "acknowledged messages another member never received")                             \
    XX(missing_echo, "acknowledged messages the sending connection never got back")                \
    XX(receipts_sent, "delivered receipts sent")                                                   \
    XX(receipts_received, "delivered receipts received by senders")                                \
    XX(error_frames, "error frames received")                                                      \
    XX(err_bad_frame, "error bad_frame")                                                           \
    XX(err_unknown_type, "error unknown_type")                                                     \
    XX(err_too_large, "error too_large")                                                           \
    XX(err_forbidden, "error forbidden")                                                           \
    XX(err_rate_limited, "error rate_limited")                                                     \
    XX(err_too_many_connections, "error too_many_connections")                                     \
    XX(err_unavailable, "error unavailable")                                                       \
    XX(err_not_found, "error not_found")                                                           \
    XX(err_internal, "error internal")                                                             \
    XX(err_other, "error with another code")                                                       \
    XX(closes_unexpected, "connections the server or the network closed")                          \
    XX(close_1001, "server closes 1001 (going away)")                                              \
    XX(close_1011, "server closes 1011 (internal error)")                                          \
    XX(close_4000, "server closes 4000 (heartbeat timeout)")                                       \
    XX(close_4001, "server closes 4001 (too slow)")                                                \
    XX(close_other, "server closes with another code")                                             \
    XX(close_eof, "TCP closed or failed without a close frame")                                    \
    XX(reconnects, "reconnections after an unexpected close")                                      \
    XX(pings_received, "WebSocket pings from the server (answered)")                               \
    XX(pings_sent, "WebSocket pings sent (ping_interval)")                                         \
    XX(frames_in, "server frames received")                                                        \
    XX(bytes_in, "bytes read from the gateways")                                                   \
    XX(bytes_out, "bytes written to the gateways")                                                 \
    XX(sent_in_window, "send frames written during the measured seconds")                          \
    XX(received_in_window, "messages sent in the measured seconds and received")                   \
    XX(acked_in_window, "messages sent in the measured seconds and acknowledged")                  \
    XX(window_stalls, "paced sends postponed because the window was full")                         \
    XX(storm_dropped, "storm: connections dropped")                                                \
    XX(storm_sent, "storm: messages sent to the absent side")                                      \
    XX(storm_acked, "storm: of those, acknowledged")                                               \
    XX(storm_reconnected, "storm: connections back (hello)")                                       \
    XX(storm_synced, "storm: connections that got synced")                                         \
    XX(storm_sync_frames, "storm: frames the syncs sent (sum of synced.count)")                    \
    XX(storm_caught_up, "storm: connections synced and holding every missed message")              \
    XX(storm_retries, "storm: reconnect attempts retried (429 and errors)")                        \
    XX(storm_incomplete, "storm: processes whose storm did not finish in storm_timeout")

typedef struct lg_counts_s {
#define LG_COUNTER_FIELD(name, what) uint64_t name;
    LG_COUNTERS(LG_COUNTER_FIELD)
#undef LG_COUNTER_FIELD
} lg_counts_t;

typedef enum {
    LG_H_CONNECT,         /* connect to hello */
    LG_H_SENT,            /* send to sent */
    LG_H_RECV,            /* send to message at another member */
    LG_H_ECHO,            /* send to message back at the sender */
    LG_H_RECEIPT,         /* send to delivered receipt at the sender */
    LG_H_STORM_SYNCED,    /* storm reconnect to synced */
    LG_H_STORM_CAUGHT_UP, /* storm reconnect to synced with every missed message */
    LG_H_N
} lg_hist_id_t;

typedef struct lg_times_s {
    uint64_t setup_us;       /* longest setup of a process */
    uint64_t connect_us;     /* longest connect phase of a process */
    uint64_t prime_us;       /* longest prime of a process */
    uint64_t measure_us;     /* length of the measured window */
    uint64_t drain_us;       /* longest drain */
    uint64_t storm_us;       /* longest storm of a process, from the reconnect order */
    uint64_t storm_done_abs; /* monotonic us when the last process's storm ended */
    uint64_t settle_us;      /* the storm's settle command, until it exited */
    uint64_t cpu_user_us;    /* the load generator's own CPU, all processes */
    uint64_t cpu_sys_us;
    uint64_t maxrss_kib; /* sum of the processes' peak resident memory */
} lg_times_t;

typedef struct lg_report_s {
    lg_counts_t c;
    lg_times_t t;
    lg_hist_t h[LG_H_N];
} lg_report_t;

typedef struct lg_machine_s {
    long nproc;
    uint64_t mem_bytes;
    char kernel[256];
    char host[64];
    char cpu[128];
    char date[32]; /* ISO 8601, UTC */
} lg_machine_t;

void lg_report_init(lg_report_t *r);

/* Adds src to dst: counters and histograms add up, times take the max
 * (CPU and memory add up). */
void lg_report_merge(lg_report_t *dst, const lg_report_t *src);

/* Describes the machine the run is on, and the date. */
void lg_machine_probe(lg_machine_t *m);

/* Returns the run's exit status: 0 when every message arrived exactly once,
 * 1 on any missing or duplicated message, 2 when the run could not be set
 * up as asked (connections or conversations missing, storm unfinished, an
 * idle connection dropped, nothing acknowledged). */
int lg_report_verdict(const lg_report_t *r, const lg_config_t *cfg);

/* Prints the human summary. */
void lg_report_print(const lg_report_t *r, const lg_config_t *cfg, const lg_plan_t *plan,
                     const lg_machine_t *m, FILE *out);

/* Writes every figure, the options and the machine to path as JSON.
 * Returns 0, or CHAT_EIO with err saying why. */
int lg_report_write_json(const lg_report_t *r, const lg_config_t *cfg, const lg_plan_t *plan,
                         const lg_machine_t *m, const char *path, chat_error_t *err);

#endif
