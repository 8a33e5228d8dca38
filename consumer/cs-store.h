/* The consumer's MongoDB reads and writes (collections in lib/chat-mongo.h).
 *
 * Reads are one query per kind per batch ($in over the batch's ids). Writes
 * are gathered during a batch and executed by cs_store_write as ordered
 * bulks per kind: event inserts (in lanes, by conversation), then edits and
 * deletes of messages, then conversations, then members. Ordered, because a
 * batch may add and remove the same member, and because a failed insert
 * must leave each conversation a prefix (see cs_store_write). Every write is idempotent when
 * replayed in order.
 *
 * Every call blocks the calling thread (the consumer has one; the store's
 * insert lanes have their own, see cs_store_new); timeouts are bounded by
 * the options cs_store_new puts on the URI. */
#ifndef CS_STORE_H
#define CS_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "chat-envelope.h"
#include "chat-error.h"

typedef struct cs_store_s cs_store_t;

/* What cs_store_write saw, for counters and logs. */
typedef struct cs_store_result_s {
    int64_t inserted; /* new messages */
    int dup_id;       /* duplicate-key errors known to be on _id */
    int dup_seq;      /* ... known to be on {conv, seq} */
    int dup_unknown;  /* ... on an index the server did not name (FerretDB) */
} cs_store_result_t;

/* The most lanes cs_store_new takes. */
#define CS_STORE_LANES_MAX 8

/* Connects lazily to uri (the database is its path, default "chat"), adding
 * bounded timeouts and majority write concern unless the URI sets them.
 * appname is copied.
 *
 * lanes (1 to CS_STORE_LANES_MAX): cs_store_write sends the event inserts
 * over this many connections at once, each conversation's always in the
 * same lane (a hash of its id), the other lanes from threads of their own.
 * A store serves concurrent writers faster than one: FerretDB overlaps the
 * work of each command around its one writer, MongoDB takes them in
 * parallel (docs/performance.md, "Persist"). Every other call uses lane
 * 0's connection on the caller's thread.
 *
 * Returns the store, or NULL with err set (invalid URI or lanes, no
 * memory, no thread). */
cs_store_t *cs_store_new(const char *uri, const char *appname, int lanes, chat_error_t *err);

/* The lane of conv's inserts, in [0, lanes). */
size_t cs_store_lane(const cs_store_t *store, const char *conv);

/* Frees the store and any unwritten batch. NULL is a no-op. */
void cs_store_destroy(cs_store_t *store);

/* The database name in use. */
const char *cs_store_db(const cs_store_t *store);

/* Pings the server and creates the indexes (idempotent). Returns 0 or
 * CHAT_EMONGO with err set. */
int cs_store_prepare(cs_store_t *store, chat_error_t *err);

/* A conversations document as cs_store_find_convs hands it over; the
 * strings are valid during the callback only. */
typedef struct cs_store_conv_s {
    const char *id;
    int group;         /* kind is "group" */
    const char *owner; /* NULL when none */
    int deleted;
    int64_t last_seq; /* the denormalised field; may lag max(seq) after a crash */
    const char *const *members;
    size_t n_members;
} cs_store_conv_t;

/* Looks up conversations ids[0..n) and calls cb once for each one found
 * (members: only string entries). Returns 0 or CHAT_EMONGO (cb may have run
 * for some). */
typedef void (*cs_store_conv_cb)(const cs_store_conv_t *conv, void *data);
int cs_store_find_convs(cs_store_t *store, const char *const *ids, size_t n, cs_store_conv_cb cb,
                        void *data, chat_error_t *err);

/* Sets *seq to the highest seq stored for conv (0 when none), from the
 * unique {conv, seq} index. Returns 0 or CHAT_EMONGO. */
int cs_store_last_seq(cs_store_t *store, const char *conv, int64_t *seq, chat_error_t *err);

/* Looks up messages by event id and calls cb for each one stored, with its
 * seq. Returns 0 or CHAT_EMONGO. */
typedef void (*cs_store_seq_cb)(const char *id, int64_t seq, void *data);
int cs_store_find_messages(cs_store_t *store, const char *const *ids, size_t n, cs_store_seq_cb cb,
                           void *data, chat_error_t *err);

/* Looks up members documents by _id ("<conv>/<user>") and calls cb for each
 * one stored (absent watermarks read as 0). Returns 0 or CHAT_EMONGO. */
typedef void (*cs_store_mark_cb)(const char *key, int64_t delivered, int64_t read, void *data);
int cs_store_find_marks(cs_store_t *store, const char *const *keys, size_t n, cs_store_mark_cb cb,
                        void *data, chat_error_t *err);

/* Looks up the events (convs[i], seqs[i]) and calls cb for each one found
 * with its sender, whether it is a plain message (not an edit, delete or
 * membership event) and whether it is deleted. Returns 0 or CHAT_EMONGO. */
typedef void (*cs_store_target_cb)(const char *conv, int64_t seq, const char *from, int is_message,
                                   int deleted, void *data);
int cs_store_find_targets(cs_store_t *store, const char *const *convs, const int64_t *seqs,
                          size_t n, cs_store_target_cb cb, void *data, chat_error_t *err);

/* Queue one write for the next cs_store_write. Each copies what it needs.
 * They return 0, CHAT_ENOMEM, or CHAT_EINVAL with err set (a document the
 * driver refused, which does not happen with valid events; an event's
 * document is handed to the driver only by cs_store_write, which then
 * fails with CHAT_EINVAL); cs_store_add_event also CHAT_ETOOBIG when a
 * lane's documents of one batch would pass 512 MiB.
 *
 * An event with a seq is one messages document, _id = event id:
 *   message       {conv, seq, from, dev?, cid?, ts, body}
 *   edit          {t: "edit", ..., target, body}
 *   delete        {t: "delete", ..., target}
 *   member_add    {t: "member", ..., action: "add", user}
 *   member_remove {t: "member", ..., action: "remove", user}
 *   conv_delete   {t: "conv_deleted", ...}
 * (no t: a message), so that a reader turns each into the frame of that t. */
int cs_store_add_event(cs_store_t *store, const chat_event_t *ev, int64_t seq, chat_error_t *err);

/* An edit sets {body, edited_ts, edit_seq: seq} on message ev->target of
 * ev->conv if ev->from sent it, it is not deleted and no later edit (by seq)
 * was applied: replaying an old edit never undoes a newer one. A delete
 * sets {deleted: true, body: "", edited_ts, edit_seq} likewise. */
int cs_store_add_change(cs_store_t *store, const chat_event_t *ev, int64_t seq, chat_error_t *err);

/* Membership: $addToSet/$pull user in conversations.members, and create
 * (watermarks 0) or delete the members document "<conv>/<user>". */
int cs_store_add_member(cs_store_t *store, const char *conv, const char *user, int add,
                        chat_error_t *err);

/* Marks the conversation deleted and deletes its members documents, so that
 * it leaves every member's list and sync. */
int cs_store_add_conv_delete(cs_store_t *store, const char *conv, chat_error_t *err);

int cs_store_add_last_seq(cs_store_t *store, const char *conv, int64_t seq, chat_error_t *err);
/* delivered or read may be 0: that watermark is left alone. */
int cs_store_add_marks(cs_store_t *store, const char *conv, const char *user, int64_t delivered,
                       int64_t read, chat_error_t *err);

/* Executes what was queued, event inserts first: each lane's sorted by
 * {conv, seq} (the index's order, which the store takes faster than the
 * order of the batch), as ordered bulks of at most 100 inserts, one after
 * the other, stopping at the first that fails, the lanes at once; then,
 * once every lane has succeeded, the other kinds in turn, ordered bulks of
 * at most 16. The server stops an ordered bulk at its first error and a
 * conversation keeps to one lane, so what a failed or interrupted write
 * leaves stored of each conversation is always a prefix of its events in
 * the batch, in seq order (another conversation's may be stored whole),
 * and the retry (which finds what is stored by _id and continues each
 * conversation from its highest seq) can neither leave a gap nor reorder.
 * (100, because FerretDB 1.24 honours ordered:true only within
 * 100-document chunks of a command; see CHUNK in cs-store.c.) Returns 0,
 * CHAT_EDUP when a unique index refused a document and no lane failed
 * otherwise (res says which), or CHAT_EMONGO (CHAT_ENOMEM or CHAT_EINVAL
 * when a lane could not hand a document to the driver); err says what.
 * Everything queued is discarded either way. */
int cs_store_write(cs_store_t *store, cs_store_result_t *res, chat_error_t *err);

/* Discards what was queued. */
void cs_store_write_abort(cs_store_t *store);

#endif
