/* Server frames (docs/protocol.md) built once per event by the consumer and
 * passed through by gateways unparsed. Each appends one JSON object, no
 * newline, to out (a buffer reused across the batch). They return 0,
 * CHAT_ETOOBIG or CHAT_ENOMEM (out's limit or memory). */
#ifndef CS_FRAME_H
#define CS_FRAME_H

#include <stdint.h>

#include "chat-buf.h"
#include "chat-envelope.h"

/* {"t":"message","id","conv","seq","from","dev","cid","ts","body"}; dev and
 * cid are left out when empty. */
int cs_frame_message(chat_buf_t *out, const chat_event_t *ev, int64_t seq);

/* {"t":"receipt","conv","user","kind":"delivered"|"read","upto"} */
int cs_frame_receipt(chat_buf_t *out, const char *conv, const char *user, chat_event_type_t kind,
                     int64_t upto);

/* {"t":"edit","id","conv","seq","from","dev","cid","ts","target","body"} or
 * {"t":"delete",... without body}: the event seq changed message target;
 * dev and cid are left out when empty. */
int cs_frame_change(chat_buf_t *out, const chat_event_t *ev, int64_t seq);

/* {"t":"member","id","conv","seq","from","ts","action":"add"|"remove","user"} */
int cs_frame_member(chat_buf_t *out, const chat_event_t *ev, int64_t seq);

/* {"t":"conv_deleted","id","conv","seq","from","ts"} */
int cs_frame_conv_deleted(chat_buf_t *out, const chat_event_t *ev, int64_t seq);

#endif
