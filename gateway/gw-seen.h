/* Dropping repeats of routed frames. A consumer that takes over a
 * partition (a rebalance, a crash) re-applies the events its predecessor
 * stored but had not committed; the store keeps their seqs, but they are
 * routed to the gateways again. So that a live client sees each (conv, seq)
 * once, each connection remembers the last seq routed to it in its
 * GW_SEEN_SLOTS most recent conversations, and a sequenced frame at or below
 * it is a repeat. Routing keeps a conversation's order (one consumer at a
 * time routes a partition, in seq order), so a lower seq is always a
 * repeat. A connection pays for this only once something is routed to it;
 * a user active in more conversations than that at once may still see a
 * repeat after a rebalance, as after a sync (clients key messages by conv
 * and seq). Pure logic: no I/O, no loop. */
#ifndef GW_SEEN_H
#define GW_SEEN_H

#include <stddef.h>
#include <stdint.h>

#define GW_SEEN_SLOTS 8

typedef struct gw_seen_s gw_seen_t;

/* Reads conv (as a 64-bit FNV-1a hash, never 0) and seq from a sequenced
 * frame as chat-consumer writes them (consumer/cs-frame.c):
 * {"t":"...","id":"...","conv":"<id>","seq":<n>,...}. Returns 0, or -1 for
 * frames without a seq (receipts, typing) and anything malformed. */
int gw_seen_frame_seq(const char *frame, size_t len, uint64_t *conv, int64_t *seq);

/* Returns 1 when (conv, seq) is at or below what *seen last recorded for
 * conv (a repeat); else records it and returns 0. Allocates *seen on first
 * use (about 140 bytes); out of memory, nothing is a repeat. */
int gw_seen_repeat(gw_seen_t **seen, uint64_t conv, int64_t seq);

/* Frees what gw_seen_repeat allocated. NULL is a no-op. */
void gw_seen_free(gw_seen_t *seen);

#endif
