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

/* The retention rules --keep-last ... --keep-yearly, for a getopt_long
 * table: their values are BASE .. BASE + 5. */
#define CMD_KEEP_OPTIONS(base) \
  { "keep-last", required_argument, NULL, (base) }, \
  { "keep-hourly", required_argument, NULL, (base) + 1 }, \
  { "keep-daily", required_argument, NULL, (base) + 2 }, \
  { "keep-weekly", required_argument, NULL, (base) + 3 }, \
  { "keep-monthly", required_argument, NULL, (base) + 4 }, \
  { "keep-yearly", required_argument, NULL, (base) + 5 }
#define CMD_KEEP_COUNT 6

/* Option C (one of CMD_KEEP_OPTIONS (BASE)) with ARG into K: 0 to 1000000,
 * else a usage error (exit 2). */
struct vmdr_keep;
void cmd_keep_arg (int c, int base, const char *arg, struct vmdr_keep *k);

/* "1.5 GiB", "512 B": BUF holds at least 16 bytes. */
const char *cmd_size (uint64_t bytes, char *buf);

/* --disks=vda,vdb: a copy of ARG (*BUF, malloc'd; free it) split into OUT,
 * at most MAX targets of under 32 bytes each; a usage error (exit 2)
 * otherwise.  The number of targets. */
size_t cmd_disks_arg (const char *arg, char **buf, const char **out, size_t max);

/* Print J as the tool's one JSON object on stdout, and free it. */
struct json_object;
void cmd_json_print (struct json_object *j);

/* Seconds on the monotonic clock, for durations. */
double cmd_now (void);

#endif
