/* Messages between the parent and its child processes over pipes: the
 * children say where they are (ready, progress, storm ready) and send their
 * report at the end; the parent orders go, reconnect (the storm) and stop.
 * Both ends are the same binary, so structs travel as raw bytes. */
#ifndef LG_PIPE_H
#define LG_PIPE_H

#include <stddef.h>
#include <stdint.h>

#include "lg-report.h"

typedef enum {
    LG_UP_READY = 1,   /* setup and connections done; payload lg_progress_t */
    LG_UP_PROGRESS,    /* payload lg_progress_t */
    LG_UP_STORM_READY, /* one side dropped, missed messages acknowledged */
    LG_UP_REPORT,      /* payload lg_report_t; the last message */
} lg_up_t;

typedef enum {
    LG_DOWN_GO = 1,    /* start sending: the clock starts */
    LG_DOWN_RECONNECT, /* the storm: everyone who dropped reconnects now */
    LG_DOWN_STOP,      /* finish now (Ctrl-C) */
} lg_down_t;

typedef struct lg_progress_s {
    uint32_t phase; /* lg_phase_t */
    uint32_t open;  /* connections open now */
    lg_counts_t c;
} lg_progress_t;

typedef struct lg_pipe_hdr_s {
    uint32_t type;
    uint32_t len;
} lg_pipe_hdr_t;

/* Writes one message whole (blocking). Returns 0 or -errno. */
int lg_pipe_send(int fd, uint32_t type, const void *data, uint32_t len);

/* Reads exactly n bytes (blocking). Returns 0, CHAT_ECLOSED at end of
 * file, or -errno. */
int lg_pipe_read_all(int fd, void *buf, size_t n);

#endif
