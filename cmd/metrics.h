/* Prometheus metrics in the text exposition format, for node_exporter's
 * textfile collector (--metrics-file) and vmdr-ls --metrics:
 *
 *   # HELP vmdr_snapshot_bytes_read Bytes read from the domain's disks ...
 *   # TYPE vmdr_snapshot_bytes_read gauge
 *   vmdr_snapshot_bytes_read{domain="web1",repo="/srv/vmdr"} 1048576
 *
 * A set of gauges, grouped by metric name in the order first set; within a
 * name, series in the order first set.  Every value is a gauge: each run
 * states what its last attempt did, nothing counts up across runs.
 *
 * No function prints.  Errors are -errno; a failed set is also remembered
 * in the set (like a stdio error flag), and metrics_render and
 * metrics_write then fail with it, so a tool may check once, at the end.
 * Every function taking a set accepts NULL for it (a tool run without
 * --metrics-file): sets do nothing, lookups find nothing.
 */
#ifndef VMDR_METRICS_H
#define VMDR_METRICS_H

#include <stddef.h>

#define METRICS_MAX_SERIES 100000     /* per set: a bound on memory and on the file */
#define METRICS_MAX_LABELS 16         /* per series */
#define METRICS_LABEL_VALUE_MAX 4096  /* bytes, per label value */
#define METRICS_READ_MAX (1u << 20)   /* the largest previous file metrics_read reads */

struct metrics;

/* A new, empty set in *out.  0 or -ENOMEM. */
int metrics_new (struct metrics **out);

/* Free M.  NULL is fine. */
void metrics_free (struct metrics *m);

/* Set the gauge NAME{LABELS} to VALUE, replacing its value if the series is
 * there.  NAME matches [a-zA-Z_:][a-zA-Z0-9_:]*.  LABELS is NULL (none) or
 * a NULL-terminated array of name, value pairs, rendered in that order:
 * names match [a-zA-Z_][a-zA-Z0-9_]* and do not start with "__"; values are
 * any bytes, escaped as the format wants (backslash, double quote, line
 * feed), bytes that are not UTF-8 replaced by U+FFFD.  HELP (may be NULL)
 * is the name's "# HELP" text; the first one given is kept.
 * 0, -EINVAL (a bad name, an odd or overlong label list, a repeated label
 * name, a value over METRICS_LABEL_VALUE_MAX), -E2BIG (already
 * METRICS_MAX_SERIES series), -ENOMEM, or the error an earlier call left. */
int metrics_set (struct metrics *m, const char *name, const char *help,
                 const char *const *labels, double value);

/* The same, but add VALUE to the series (a new series starts from 0). */
int metrics_add (struct metrics *m, const char *name, const char *help,
                 const char *const *labels, double value);

/* The value of NAME{LABELS} (labels in the same order as set) in *value.
 * 0, or -ENOENT when M has no such series (or M is NULL). */
int metrics_get (const struct metrics *m, const char *name,
                 const char *const *labels, double *value);

/* M as exposition text: *text is malloc'd and NUL-terminated, *len its
 * length (both untouched on failure).  An empty set is an empty text.
 * 0, -ENOMEM, or the error a set left. */
int metrics_render (const struct metrics *m, char **text, size_t *len);

/* Write M to PATH so that a reader sees the old file or the new one, whole:
 * a temporary file next to it (".NAME.XXXXXX": the textfile collector
 * reads only *.prom), mode 0644 (node_exporter runs as another user; no
 * credential is in it), written, fsync'd, renamed over PATH, and the
 * directory fsync'd.  Nothing is left behind on failure.
 * 0, the -errno of the step that failed, or the error a set left. */
int metrics_write (const struct metrics *m, const char *path);

/* Read the text file PATH (as metrics_write writes it) into a new set in
 * *out: every sample's value under its name and labels; comments, HELP
 * and TYPE lines and timestamps are skipped.  For carrying values over
 * from the previous run.  0, -ENOENT, another -errno of open or read,
 * -EINVAL (not a regular file), -EFBIG (over METRICS_READ_MAX bytes),
 * -EBADMSG (not in the text format, or a last line without its line
 * feed: someone else's half-written file), -E2BIG (over
 * METRICS_MAX_SERIES series), -ENOMEM. */
int metrics_read (const char *path, struct metrics **out);

/* ADDRESS, a repository address, as a label value with nothing secret in
 * it: for "SCHEME://..." without user information ("USER:KEY@"), query
 * and fragment; a plain path as it is.  Into BUF (SIZE > 0 bytes,
 * truncated to fit); returns BUF. */
const char *metrics_address_label (const char *address, char *buf, size_t size);

/* Now, in seconds since the epoch (the wall clock, for timestamps). */
double metrics_now (void);

/* The four series of one attempt of vmdr-TOOL ("snapshot") at LABELS:
 *   vmdr_TOOL_last_attempt_timestamp_seconds  ENDED (when it ended)
 *   vmdr_TOOL_last_success_timestamp_seconds  ENDED if it succeeded (STATUS
 *       0, or 3: done with warnings), else the value PREV (the previous
 *       file, may be NULL) holds for these labels, else 0 (never)
 *   vmdr_TOOL_last_result                     STATUS, the exit status
 *   vmdr_TOOL_duration_seconds                SECONDS
 * 0 or the error of metrics_set. */
int metrics_set_attempt (struct metrics *m, const struct metrics *prev,
                         const char *tool, const char *const *labels,
                         int status, double ended, double seconds);

#endif
