/* Retention and garbage collection (docs/repository-format.md section 11).
 *
 * Every snapshot's index is complete (an incremental shares chunks with its
 * parent but does not depend on the parent's manifest), so removing any
 * snapshot leaves the others restorable; GC then frees what none reference.
 */
#ifndef VMDR_PRUNE_H
#define VMDR_PRUNE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "repo.h"

struct vmdr_keep {
  unsigned last, hourly, daily, weekly, monthly, yearly;
};

/* Which of the snapshot ids IDS (of one domain, sorted oldest first, as
 * vmdr_snapshot_list returns them) the rules keep: the newest LAST, and the
 * newest snapshot of each of the newest HOURLY hours (DAILY days, ISO weeks,
 * months, years) that have one.  KEEP[i] is set for kept ids.
 * -EINVAL for a malformed id or when no rule keeps anything (all zero). */
int vmdr_retention_select (char *const *ids, size_t n, const struct vmdr_keep *k,
                           bool *keep);

/* Apply K to DOMAIN's snapshots in REPO: remove (DRY_RUN: only name)
 * each one no rule keeps, oldest first, with its damage mark; FN (may be
 * NULL) hears of each, *REMOVED counts them.  0, -EINVAL (no rule keeps
 * anything, or a malformed id), or the error of listing or removing (the
 * snapshots before it are gone). */
typedef void (*vmdr_removed_fn) (void *opaque, const char *id);
int vmdr_retention_apply (struct vmdr_repo *repo, const char *domain, const struct vmdr_keep *k,
                          bool dry_run, vmdr_removed_fn fn, void *opaque, size_t *removed);

/* The distinct domains with snapshots in REPO, sorted: *out and each string
 * malloc'd (vmdr_strv_free).  0 or -errno. */
int vmdr_snapshot_domains (struct vmdr_repo *repo, char ***out, size_t *n);

struct vmdr_gc_stats {
  uint64_t snapshots;           /* manifests marked from */
  uint64_t objects_reachable;   /* chunks and nodes */
  uint64_t packs, packs_deleted, bytes_deleted;
  uint64_t packs_young;         /* unreferenced but within the grace period */
  uint64_t packs_partial, bytes_unreferenced;   /* kept: some blobs live */
  uint64_t temp_removed;        /* dead writers' temporary objects */
};

/* Collect garbage under the repository's gc lock: mark every chunk and node
 * reachable from a manifest, then delete each pack none of whose blobs is
 * reachable and whose index is older than GRACE seconds (index first, then
 * pack: a crash leaves at worst a pack without index, swept next time), and
 * packs without an index older than GRACE, and dead writers' temporary
 * objects older than GRACE and at least 15 minutes (locks are put through
 * them too, before any lock protects them).  DRY_RUN: count only.
 * -EBUSY when a writer holds a domain lock or another GC runs; -EBADMSG when
 * a manifest or index cannot be read (GC never guesses what is live). */
int vmdr_gc (struct vmdr_repo *repo, time_t grace, bool dry_run,
             struct vmdr_gc_stats *st);

#endif
