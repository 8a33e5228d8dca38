/* Identifiers. Event ids are 26 characters of Crockford base32: either a
 * time-ordered random id (48 bits of milliseconds, 80 random bits, as ULID)
 * or, for a client send that carries its own id, a hash of (sender,
 * conversation, client id) so that a resend is the same event. User,
 * conversation, device and client ids share one syntax: 1 to 64 characters
 * of [A-Za-z0-9_.:-]. */
#ifndef CHAT_ID_H
#define CHAT_ID_H

#include <stddef.h>
#include <stdint.h>

#define CHAT_ID_LEN   26 /* an event id, without the NUL */
#define CHAT_NAME_MAX 64 /* user, conversation, device and client ids */

/* Writes a new time-ordered id and a NUL to out. Thread-safe. */
void chat_id_new(char out[CHAT_ID_LEN + 1], uint64_t now_ms);

/* Writes the id of the event that (sender, conv, cid) names, and a NUL. The
 * same three strings always give the same id. */
void chat_id_for_client(char out[CHAT_ID_LEN + 1], const char *sender, const char *conv,
                        const char *cid);

/* Returns 1 if s[0..len) is a valid user/conversation/device/client id. */
int chat_name_valid(const char *s, size_t len);

/* Milliseconds since the Unix epoch (wall clock). */
uint64_t chat_now_ms(void);

/* Milliseconds of a clock that never jumps (CLOCK_MONOTONIC), for
 * intervals and deadlines. */
uint64_t chat_mono_ms(void);

#endif
