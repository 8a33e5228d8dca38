/* What the C tests share: the addresses of the real services (from the
 * environment, with the dev stack's defaults), unique names so that runs do
 * not see each other's data, assertions that print CHAT_E* names, and a
 * bounded way to run a libuv loop.
 *
 * No test asserts on elapsed time. A loop runs for a bounded number of
 * iterations; a guard timer only makes sure that each iteration returns even
 * when nothing else happens, so a lost callback fails the test instead of
 * hanging it. */
#ifndef CHAT_TEST_H
#define CHAT_TEST_H

/* cmocka.h needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <uv.h>

#include "chat-error.h"
#include "chat-mongo.h"

/* Returns the environment variable name, or def when it is unset or empty. */
const char *chat_test_env(const char *name, const char *def);

/* Service addresses: CHAT_KAFKA_BROKERS, CHAT_REDIS_HOST, CHAT_REDIS_PORT and
 * CHAT_MONGO_URI, defaulting to the dev stack (scripts/stack.sh). */
const char *chat_test_kafka_brokers(void);
const char *chat_test_redis_host(void);
int chat_test_redis_port(void);
const char *chat_test_mongo_uri(void);

/* Writes prefix followed by 16 random lower-case hex digits and a NUL to out,
 * truncated to size. Lower case and [a-z0-9_] only, so the result is a valid
 * chat name, Kafka key, Redis key and FerretDB database name. */
void chat_test_unique(char *out, size_t size, const char *prefix);

/* A database of the test program's own on the real store (CHAT_MONGO_URI),
 * so that runs do not see each other's data: name is prefix and a unique
 * suffix, uri the store's URI with name as its path (options kept), pool a
 * client pool on uri. */
typedef struct chat_test_db_s {
    char name[64];
    char uri[512];
    mongoc_client_pool_t *pool;
} chat_test_db_t;

/* Fills db and makes its pool (appname names it to the server). Returns 0,
 * or -1 after printing why. */
int chat_test_db_open(chat_test_db_t *db, const char *prefix, const char *appname);

/* Drops the database and frees the pool. Returns 0, or -1 after printing
 * why. */
int chat_test_db_close(chat_test_db_t *db);

/* Returns non-zero once the test's condition holds. */
typedef int (*chat_test_cond_cb)(void *data);

/* Runs loop with UV_RUN_ONCE until cond(data) holds, at most max_iterations
 * times. A repeating guard timer of guard_ms wakes the loop so that each
 * iteration returns. Returns 1 if cond held, 0 if the iterations ran out. */
int chat_test_run_until(uv_loop_t *loop, chat_test_cond_cb cond, void *data, int max_iterations,
                        unsigned guard_ms);

/* Runs loop until no handle is left (at most max_iterations UV_RUN_NOWAIT
 * passes, so that pending close callbacks run) and closes it. Returns what
 * uv_loop_close returns: 0, or UV_EBUSY when a handle was left open. */
int chat_test_loop_close(uv_loop_t *loop, int max_iterations);

/* Prints every handle still open on loop as a TAP comment. */
void chat_test_loop_dump(uv_loop_t *loop);

/* Asserts that expr returns 0, printing the error's name otherwise. */
#define assert_chat_ok(expr)                                                                       \
    do {                                                                                           \
        int chat_test_rc_ = (expr);                                                                \
        if (chat_test_rc_ != 0)                                                                    \
            fail_msg("%s returned %s (%d): %s", #expr, chat_err_name(chat_test_rc_),               \
                     chat_test_rc_, chat_strerror(chat_test_rc_));                                 \
    } while (0)

/* Asserts that expr returns the error code, printing both names otherwise. */
#define assert_chat_err(expr, code)                                                                \
    do {                                                                                           \
        int chat_test_rc_ = (expr), chat_test_want_ = (code);                                      \
        if (chat_test_rc_ != chat_test_want_)                                                      \
            fail_msg("%s returned %s (%d), expected %s (%d)", #expr, chat_err_name(chat_test_rc_), \
                     chat_test_rc_, chat_err_name(chat_test_want_), chat_test_want_);              \
    } while (0)

#endif
