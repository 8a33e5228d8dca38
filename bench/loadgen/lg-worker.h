/* One load generator process: its share of the conversations, one libuv
 * loop, from setup to the report it sends the parent. */
#ifndef LG_WORKER_H
#define LG_WORKER_H

#include <stdint.h>

#include "lg-config.h"

/* Runs process number proc of the plan: creates its conversations,
 * connects its users, tells the parent it is ready (through to_parent),
 * follows the parent's orders (from from_parent), and sends its report.
 * Returns the process's exit status: 0, or 2 when it could not run
 * (out of memory, the parent gone). */
int lg_worker_run(const lg_config_t *cfg, const lg_plan_t *plan, uint32_t proc, int to_parent,
                  int from_parent);

/* The name of phase (an lg_phase_t), for progress lines. */
const char *lg_phase_name(uint32_t phase);

#endif
