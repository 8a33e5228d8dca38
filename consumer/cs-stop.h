/* How chat-consumer and chat-replay stop: SIGINT and SIGTERM set a flag
 * that their loops read between batches (a batch that is running finishes
 * and commits: the clean stop), and the waits between retries end early
 * when it is set. */
#ifndef CS_STOP_H
#define CS_STOP_H

#include <stdint.h>

/* Installs the SIGINT/SIGTERM handlers and ignores SIGPIPE. */
void cs_stop_install(void);

/* Whether a stop was asked for, by a signal or by cs_stop_request. */
int cs_stopping(void);

/* Asks the loops to stop, as a signal would. */
void cs_stop_request(void);

/* Sleeps ms milliseconds in short steps, returning early on a stop. */
void cs_stop_pause_ms(uint64_t ms);

/* The wait before the next retry after one that waited ms (0 for the
 * first): 100 ms, doubling, at most 5 s. */
uint64_t cs_stop_backoff(uint64_t ms);

#endif
