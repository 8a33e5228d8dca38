/* Loading what a batch needs and the cache lacks, one query per kind per
 * batch (cs-pipeline.c runs these in this order). Each returns 0, or
 * CHAT_EMONGO with err set: the batch must then be retried. */
#ifndef CS_LOAD_H
#define CS_LOAD_H

#include "cs-pipeline-private.h"

/* Loads the conversations the cache lacks, with their last seq: max(seq) of
 * the messages in thorough mode, else the denormalised
 * conversations.last_seq (which lags after a crash between the two writes;
 * careful mode corrects it from the stored ids, see cs_load_messages). An
 * event of an unknown conversation becomes a dead letter; the others get
 * item->conv. Membership is checked later, in order, by the apply pass. */
int cs_load_convs(cs_pipeline_t *p, chat_error_t *err);

/* Links repeats within the batch to their first copy (item->first) and, in
 * careful mode, finds which event ids are stored (item->stored_seq) and
 * raises each conversation's last_seq to the stored seqs found. */
int cs_load_messages(cs_pipeline_t *p, chat_error_t *err);

/* Loads the watermarks of each receipt's sender into the cache (absent
 * documents are 0) and sets item->mark. */
int cs_load_marks(cs_pipeline_t *p, chat_error_t *err);

/* Loads the stored events that edits and deletes target. */
int cs_load_targets(cs_pipeline_t *p, chat_error_t *err);

/* Records a target (conv, seq) sent by from; it overwrites nothing. Returns
 * the entry or NULL when the table is full. */
cs_target_t *cs_load_add_target(cs_pipeline_t *p, const char *conv, int64_t seq, const char *from,
                                int is_message, int deleted);

/* Returns the target (conv, seq), or NULL. */
cs_target_t *cs_load_find_target(cs_pipeline_t *p, const char *conv, int64_t seq);

#endif
