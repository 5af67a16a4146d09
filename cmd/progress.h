/* A progress line for people: only on a terminal (or when asked), about ten
 * times a second, with bytes, rate and ETA; nothing on a pipe or in cron. */
#ifndef VMDR_PROGRESS_H
#define VMDR_PROGRESS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct progress {
  bool on;
  const char *label;            /* e.g. the domain; borrowed */
  double start, last;
  bool drawn;
  pthread_mutex_t lock;
};

/* FORCE: 1 --progress, 0 --no-progress, -1 decide by isatty (stderr). */
void progress_init (struct progress *p, int force);

/* Start a new line of work called LABEL. */
void progress_begin (struct progress *p, const char *label);

/* A vmdr_progress_fn: OPAQUE is a struct progress. */
void progress_cb (void *opaque, uint64_t done, uint64_t total);

/* Clear the line (before other messages, and at the end). */
void progress_end (struct progress *p);

#endif
