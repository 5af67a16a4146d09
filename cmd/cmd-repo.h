/* What the tools that open a repository share: finding its address,
 * opening it with one clear message per failure, and formatting. */
#ifndef VMDR_CMD_REPO_H
#define VMDR_CMD_REPO_H

#include <stdbool.h>
#include <stdint.h>

#include "repo.h"

/* -r/--repo if given, else $VMDR_REPO; a usage error (exit 2) if neither. */
const char *cmd_repo_address (const char *opt);

/* Open the repository at ADDRESS (and load its chunk index when asked),
 * printing "PROG: ..." for every failure.  NULL on failure. */
struct vmdr_repo *cmd_open_repo (const char *address, bool load_index);

/* -j/--jobs: 1 .. VMDR_MAX_THREADS, else a usage error (exit 2). */
unsigned cmd_jobs_arg (const char *arg);

/* "1.5 GiB", "512 B": BUF holds at least 16 bytes. */
const char *cmd_size (uint64_t bytes, char *buf);

/* Seconds on the monotonic clock, for durations. */
double cmd_now (void);

#endif
