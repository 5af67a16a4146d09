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

/* The decimal value ARG of option OPT, MIN .. MAX, else a usage error
 * "invalid OPT 'ARG' (MIN to MAX)" (exit 2). */
long cmd_long_arg (const char *opt, const char *arg, long min, long max);

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

/* --metrics-file PATH (metrics.h).  Begin: *m a new, empty set for this
 * run, *prev what PATH holds now, for the last success times of a failed
 * run (NULL when PATH is absent or unreadable: they start from 0).  PATH
 * NULL: both NULL (and every metrics_* call on them does nothing).  Out of
 * memory: one line and exit 1. */
struct metrics;
void cmd_metrics_begin (const char *path, struct metrics **m, struct metrics **prev);

/* End: write M to PATH (on failure too: the alert must see the attempt),
 * free M and PREV, and return STATUS, or 3 (done with warnings) when the
 * run was done (0) but PATH could not be written; the failure is one line,
 * "PROG: cannot write metrics 'PATH': REASON".  PATH NULL: STATUS. */
int cmd_metrics_end (const char *path, struct metrics *m, struct metrics *prev, int status);

#endif
