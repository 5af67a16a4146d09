/* Durations and rate limits: seconds on the monotonic clock. */
#ifndef VMDR_CLOCK_H
#define VMDR_CLOCK_H

#include <stdint.h>
#include <time.h>
#include <unistd.h>

static inline double
vmdr_mono_seconds (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A --bwlimit of RATE bytes a second (0: none) for a transfer that began
 * at T0 (vmdr_mono_seconds) and has sent SENT bytes: sleep until SENT fits
 * the rate, at most a second at a time. */
static inline void
vmdr_bwlimit_sleep (uint64_t rate, double t0, uint64_t sent)
{
  double ahead;

  if (rate == 0)
    return;
  ahead = (double) sent / (double) rate - (vmdr_mono_seconds () - t0);
  if (ahead > 0)
    usleep ((useconds_t) (ahead > 1 ? 1e6 : ahead * 1e6));
}

#endif
