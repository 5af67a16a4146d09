/* Repository-to-repository replication: every snapshot the destination
 * lacks, oldest first, sending only the chunks and index nodes it does not
 * have, each verified against its digest as it is read, and the manifest
 * last.
 *
 * Order makes a run resumable: a snapshot's data chunks go first, then its
 * index nodes children before parents, then (after a flush) its manifest.
 * So a node present at the destination always has its whole subtree there,
 * and a rerun after an interruption skips what arrived.
 */
#ifndef VMDR_SYNC_H
#define VMDR_SYNC_H

#include <stdbool.h>
#include <stdint.h>

#include "disk-io.h"
#include "manifest.h"

#define VMDR_SYNC_MAX_WARNINGS 16

/* Each snapshot as it starts (for the tool's log); may be NULL. */
typedef void (*vmdr_sync_step_fn) (void *opaque, const char *id, size_t no, size_t of);

struct vmdr_sync_opts {
  const char *const *domains;   /* NULL: every domain */
  size_t ndomains;
  const char *since;            /* only snapshots at or after this time; NULL: all */
  uint64_t bwlimit;             /* bytes per second put to the destination; 0: none */
  unsigned threads;             /* 1 .. VMDR_MAX_THREADS */
  vmdr_sync_step_fn step;
  void *sopaque;
  vmdr_progress_fn progress;    /* bytes read from the source */
  void *popaque;
};

struct vmdr_sync_stats {
  size_t snapshots_copied, snapshots_present, snapshots_failed;
  uint64_t chunks_sent, bytes_sent;     /* blobs stored at the destination */
  uint64_t chunks_present;              /* already there: not sent */
  uint64_t bytes_read;                  /* plaintext read from the source */
  char warnings[VMDR_SYNC_MAX_WARNINGS][256];   /* snapshots that failed, why */
  size_t nwarnings;
};

/* Can DST hold SRC's snapshots as they are (same digest, chunk size and
 * index fanout)?  0 or -EXDEV. */
int vmdr_sync_compatible (struct vmdr_repo *src, struct vmdr_repo *dst);

/* Is snapshot ID one to copy: of one of DOMAINS (NULL: any), and taken at or
 * after SINCE (a vmdr_time_key; "": any)? */
bool vmdr_sync_wanted (const char *const *domains, size_t ndomains, const char *id,
                       const char *since);

/* Copy what DST lacks.  A snapshot that cannot be read whole (damage at the
 * source) is skipped with a warning and the others go on; it then makes
 * the result -EBADMSG.  0, -EXDEV (incompatible), -EBUSY (a writer or GC
 * holds a domain at DST), or the first other error. */
int vmdr_sync (struct vmdr_repo *src, struct vmdr_repo *dst,
               const struct vmdr_sync_opts *o, struct vmdr_sync_stats *st);

#endif
