#include <config.h>

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmd-repo.h"
#include "progress.h"

static double
now (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + ts.tv_nsec / 1e9;
}

void
progress_init (struct progress *p, int force)
{
  memset (p, 0, sizeof *p);
  p->on = force == 1 || (force == -1 && isatty (STDERR_FILENO));
  pthread_mutex_init (&p->lock, NULL);
}

void
progress_begin (struct progress *p, const char *label)
{
  p->label = label;
  p->start = now ();
  p->last = 0;
}

void
progress_cb (void *opaque, uint64_t done, uint64_t total)
{
  struct progress *p = opaque;
  char d[16], r[16], eta[32] = "";
  double t, rate;

  if (!p->on)
    return;
  pthread_mutex_lock (&p->lock);
  t = now ();
  if (t - p->last < 0.1 && !(total && done >= total)) {   /* ~10 Hz */
    pthread_mutex_unlock (&p->lock);
    return;
  }
  p->last = t;
  rate = t > p->start ? (double) done / (t - p->start) : 0;
  if (total && rate > 0 && done <= total) {
    unsigned s = (unsigned) ((double) (total - done) / rate);
    snprintf (eta, sizeof eta, "  ETA %u:%02u", s / 60, s % 60);
  }
  cmd_size ((uint64_t) rate, r);
  fprintf (stderr, "\r\033[K%s: %s%s%s  %s/s%s", p->label ? p->label : "", cmd_size (done, d),
           total ? " of " : "", total ? cmd_size (total, (char[16]) { 0 }) : "", r, eta);
  p->drawn = true;
  pthread_mutex_unlock (&p->lock);
}

void
progress_end (struct progress *p)
{
  if (p->on && p->drawn)
    fprintf (stderr, "\r\033[K");
  p->drawn = false;
}
