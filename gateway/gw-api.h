/* The HTTP API under /v1 (docs/api.md). */
#ifndef GW_API_H
#define GW_API_H

#include <stddef.h>

#include "gw-private.h"

/* Answers one request whose path had "/v1/" stripped; query is what follows
 * '?'. Returns 1 if the answer comes later (the connection then waits and
 * gw_http_resume is called after answering), 0 if it was answered now. */
int gw_api_dispatch(gw_conn_t *conn, int method, const char *path, size_t len, const char *query,
                    size_t qlen, const char *body, size_t blen);

/* The done of a job that answers a request: answers job->status on the
 * job's connection, if still open, and resumes it. job->out holds the JSON
 * body of a 2xx, else the message of an error whose code is job->arg
 * ("bad_request" when empty); a 5xx logs job->err. */
void gw_api_answer(gw_job_t *job);

#endif
