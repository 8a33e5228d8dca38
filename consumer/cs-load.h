/* Loading what a batch needs and the cache lacks, one query per kind per
 * batch (cs-pipeline.c runs these in this order). Each returns 0, or
 * CHAT_EMONGO with err set: the batch must then be retried. */
#ifndef CS_LOAD_H
#define CS_LOAD_H

#include "cs-pipeline-private.h"

/* Loads unknown conversations (members and last seq), reloads the members
 * of a cached one whose member list lacks a sender (a conversation may have
 * gained members), then checks each event: unknown conversation, too many
 * members or a sender who is not a member make it a dead letter; the others
 * get item->conv. */
int cs_load_convs(cs_pipeline_t *p, chat_error_t *err);

/* Finds which message ids are stored (item->stored_seq) and links repeats
 * within the batch to their first copy (item->first). */
int cs_load_messages(cs_pipeline_t *p, chat_error_t *err);

/* Loads the watermarks of each receipt's sender into the cache (absent
 * documents are 0) and sets item->mark. */
int cs_load_marks(cs_pipeline_t *p, chat_error_t *err);

/* Loads the stored messages that edits and deletes target. */
int cs_load_targets(cs_pipeline_t *p, chat_error_t *err);

/* Records a target (conv, seq) sent by from; it overwrites nothing. Returns
 * the entry or NULL when the table is full. */
cs_target_t *cs_load_add_target(cs_pipeline_t *p, const char *conv, int64_t seq,
                                const char *from, int deleted);

/* Returns the target (conv, seq), or NULL. */
cs_target_t *cs_load_find_target(cs_pipeline_t *p, const char *conv, int64_t seq);

#endif
