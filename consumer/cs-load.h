/* Loading what a batch needs and the cache lacks, one query per kind per
 * batch (cs-pipeline.c runs these in this order). Each returns 0, or
 * CHAT_EMONGO with err set: the batch must then be retried. */
#ifndef CS_LOAD_H
#define CS_LOAD_H

#include "cs-pipeline-private.h"

/* Loads the conversations the cache lacks, with their last seq: max(seq) of
 * the messages in careful mode, the denormalised conversations.last_seq in
 * the fast mode (which may lag after a crash; the unique {conv, seq} index
 * then refuses the first reused seq and the batch is run carefully). An
 * event of an unknown conversation becomes a dead letter; the others get
 * item->conv. Membership is checked later, in order, by the apply pass. */
int cs_load_convs(cs_pipeline_t *p, chat_error_t *err);

/* Links repeats within the batch to their first copy (item->first) and, in
 * careful mode, finds which event ids are stored (item->stored_seq). */
int cs_load_messages(cs_pipeline_t *p, chat_error_t *err);

/* Loads the watermarks of each receipt's sender into the cache (absent
 * documents are 0) and sets item->mark. */
int cs_load_marks(cs_pipeline_t *p, chat_error_t *err);

/* Loads the stored events that edits and deletes target. */
int cs_load_targets(cs_pipeline_t *p, chat_error_t *err);

/* Records a target (conv, seq) sent by from; it overwrites nothing. Returns
 * the entry or NULL when the table is full. */
cs_target_t *cs_load_add_target(cs_pipeline_t *p, const char *conv, int64_t seq,
                                const char *from, int is_message, int deleted);

/* Returns the target (conv, seq), or NULL. */
cs_target_t *cs_load_find_target(cs_pipeline_t *p, const char *conv, int64_t seq);

#endif
