/* The consumer's in-memory state, per conversation and per member, for the
 * partitions this process owns. Everything here is a cache of the store:
 * it is loaded lazily, advanced as batches are applied, and may be dropped
 * at any batch boundary (the pipeline drops it after a failed write, and the
 * rebalance callback drops the partitions that come and go). That holds
 * because this process is the only writer of its partitions' conversations
 * while it owns them, and writes before it commits. The one thing the cache
 * knows before the store does is a busy conversation's last_seq; dropping
 * it unwritten costs a scan later, never a wrong seq (cs-pipeline.h). */
#ifndef CS_STATE_H
#define CS_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "chat-id.h"

typedef char cs_name_t[CHAT_NAME_MAX + 1];

typedef struct cs_conv_s {
    char id[CHAT_NAME_MAX + 1];
    int32_t partition; /* the partition whose events it was loaded for */
    int64_t last_seq;  /* the highest seq given */
    int group;         /* kind "group" (members may change) */
    int deleted;       /* a conv_delete was applied */
    char owner[CHAT_NAME_MAX + 1];
    size_t n_members, cap_members;
    cs_name_t *members; /* sorted, for bsearch; changed in place */
    /* The batch number that lets the pipeline name a conversation's members
     * as recipients once per batch without a second index. */
    uint64_t wanted;
    /* The store's denormalised last_seq lags this one while the
     * conversation is busy (cs-pipeline.h, "last_seq"): stored_seq is what
     * the store holds as far as this process knows, and a conversation
     * with last_seq > stored_seq is on the state's dirty list, oldest
     * first, since dirty_ms. */
    int64_t stored_seq;
    uint64_t dirty_ms;
    struct cs_conv_s *dirty_prev, *dirty_next;
    int dirty; /* on the dirty list */
} cs_conv_t;

/* A member's receipt watermarks. */
typedef struct cs_mark_s {
    char key[2 * CHAT_NAME_MAX + 2]; /* "<conv>/<user>", the members _id */
    int32_t partition;
    int64_t delivered;
    int64_t read;
    uint64_t batch; /* the batch that must write it (see cs-pipeline) */
} cs_mark_t;

typedef struct cs_state_s cs_state_t;

/* Returns an empty state, or NULL when out of memory. */
cs_state_t *cs_state_new(void);
/* Frees the state and every entry. NULL is a no-op. */
void cs_state_destroy(cs_state_t *state);

/* Returns the cached conversation, or NULL. The pointer stays valid until
 * the entry is dropped (cs_state_clear*); member changes keep it. */
cs_conv_t *cs_state_conv_get(cs_state_t *state, const char *conv);

/* Caches conversation conv with a copy of members[0..n) (repeats are kept
 * once) and owner (NULL: none), replacing any entry it had (whose pointer
 * dies). last_seq is what the store holds (stored_seq too). Returns 0 and
 * the entry in *out, or CHAT_ENOMEM. */
int cs_state_conv_put(cs_state_t *state, const char *conv, int32_t partition, int group,
                      const char *owner, int deleted, const char *const *members, size_t n,
                      int64_t last_seq, cs_conv_t **out);

/* Returns 1 if user is a member of conv. */
int cs_conv_has_member(const cs_conv_t *conv, const char *user);

/* Adds user to conv's members (no-op if there). Returns 0 or CHAT_ENOMEM. */
int cs_conv_add_member(cs_conv_t *conv, const char *user);

/* Removes user from conv's members (no-op if absent). */
void cs_conv_remove_member(cs_conv_t *conv, const char *user);

/* Writes "<conv>/<user>" to key (2 * CHAT_NAME_MAX + 2 bytes). */
void cs_mark_key(char *key, const char *conv, const char *user);

/* Returns the cached watermarks for key ("<conv>/<user>"), or NULL. */
cs_mark_t *cs_state_mark_get(cs_state_t *state, const char *key);

/* Caches the watermarks of key, replacing the values of any entry (whose
 * pointer stays valid). Returns 0 and the entry in *out, or CHAT_ENOMEM. */
int cs_state_mark_put(cs_state_t *state, const char *key, int32_t partition, int64_t delivered,
                      int64_t read, cs_mark_t **out);

/* Puts conv at the end of the dirty list, dirty since now_ms, if its
 * last_seq is past stored_seq and it is not listed yet. */
void cs_state_conv_touch(cs_state_t *state, cs_conv_t *conv, uint64_t now_ms);

/* Writes to out (at most max) the dirty conversations, oldest first, that
 * have been dirty since before_ms or earlier and (parts != NULL) belong to
 * one of parts[0..nparts). Returns how many. */
size_t cs_state_dirty(const cs_state_t *state, uint64_t before_ms, const int32_t *parts,
                      size_t nparts, cs_conv_t **out, size_t max);

/* Records that the store holds last_seq >= seq for conv; takes it off the
 * dirty list when that is its last_seq. */
void cs_state_conv_stored(cs_state_t *state, cs_conv_t *conv, int64_t seq);

/* How many conversations are on the dirty list. */
size_t cs_state_dirty_count(const cs_state_t *state);

/* Drops conversations ids[0..n) and every member's watermarks in them
 * (those not cached are skipped). Returns 0 or CHAT_ENOMEM (nothing is
 * dropped then; dropping everything is always safe). */
int cs_state_drop_convs(cs_state_t *state, const char *const *ids, size_t n);

/* Drops every entry loaded for one of parts[0..n). */
void cs_state_clear_partitions(cs_state_t *state, const int32_t *parts, size_t n);

/* Drops every entry. */
void cs_state_clear(cs_state_t *state);

/* How many entries (conversations plus members) are cached. */
size_t cs_state_size(const cs_state_t *state);

#endif
