/* Thin helpers over mongo-c-driver. The store is reached through a
 * mongodb:// URI (FerretDB locally, a replica set in production). Programs
 * hold one mongoc_client_pool_t and pop a client per unit of work, on a
 * worker thread, never on an event loop.
 *
 * Collections (database from the URI's path, default "chat"):
 *   messages       _id = event id; {conv, seq, from, dev, cid, ts, body,
 *                  edited_ts?, deleted?}; unique {conv, seq}
 *   conversations  _id = conversation id; {kind, members, last_seq, ...}
 *   members        _id = "<conv>/<user>"; {conv, user, delivered_seq,
 *                  read_seq}; index {user}
 */
#ifndef CHAT_MONGO_H
#define CHAT_MONGO_H

#include <mongoc/mongoc.h>

#include "chat-error.h"

#define CHAT_MONGO_DUPLICATE_KEY 11000

/* Calls mongoc_init once per process (thread-safe) and sends the driver's
 * log lines through chat-log, at its levels. */
void chat_mongo_global_init(void);

/* Creates a client pool on uri with error API 2 and the given app name.
 * Returns NULL with err set when the URI is invalid. */
mongoc_client_pool_t *chat_mongo_pool_new(const char *uri, const char *appname, chat_error_t *err);

/* The database the pool's URI names, or "chat" when it names none. The
 * string lives as long as the pool. */
const char *chat_mongo_db_name(mongoc_client_pool_t *pool);

/* Destroys a pool made by chat_mongo_pool_new. NULL is a no-op. */
void chat_mongo_pool_destroy(mongoc_client_pool_t *pool);

/* Runs {ping: 1}. Returns 0 or CHAT_EMONGO with err set. */
int chat_mongo_ping(mongoc_client_t *client, chat_error_t *err);

/* Creates the indexes listed above (idempotent). Returns 0 or CHAT_EMONGO. */
int chat_mongo_ensure_indexes(mongoc_client_t *client, const char *db, chat_error_t *err);

/* Appends key: {$in: [values[0..n)]} to doc. */
void chat_mongo_append_in(bson_t *doc, const char *key, const char *const *values, size_t n);

/* Whether a failed bulk's reply says only that some documents were there
 * already: write errors, every one a duplicate key, and no write concern
 * error. An unordered insert that fails so wrote all the others. */
int chat_mongo_only_duplicates(const bson_t *reply);

/* Fills err from a bson_error_t; returns CHAT_EMONGO. */
int chat_mongo_error(chat_error_t *err, const bson_error_t *berr, const char *what);

#endif
