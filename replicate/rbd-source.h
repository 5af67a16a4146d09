/* A guest disk that is a Ceph RBD image, as the source of a snapshot.
 *
 * QEMU's dirty bitmaps need qcow2, so for an RBD disk the point in time is
 * an RBD snapshot (vmdr-TIME, taken at the backup point) and what changed
 * comes from Ceph: rbd_diff_iterate2 from the previous vmdr snapshot of the
 * image.  Diff hints have been wrong before (Ceph has shipped such bugs:
 * an object map out of step, fast-diff after a crash), so a random sample
 * of the chunks the diff calls unchanged is read and compared with the
 * parent snapshot's digests; one mismatch and the whole disk is read.
 * Only the newest vmdr snapshot of an image is needed as the next diff's
 * base: older ones are removed once a snapshot is stored.
 *
 * The hook for vmdr-snapshot, per RBD disk (<disk type='network'> with
 * <source protocol='rbd' name='POOL/IMAGE'>), with RBD from vmdr_rbd_open
 * ("rbd://POOL?conf=...&id=..."):
 *   vmdr_rbd_source_open      before the backup point
 *   vmdr_rbd_source_snap      at the backup point (the guest paused, or its
 *                             file systems frozen, with the other disks'
 *                             backup-begin)
 *   vmdr_rbd_source_write     the disk into the repository: its tree for
 *                             the manifest, with "rbd" as the disk's format
 *                             and vmdr_rbd_source_base() as its
 *                             checkpoint_name (the next incremental's base)
 *   vmdr_rbd_source_prune     after the manifest is written
 *   vmdr_rbd_source_drop      instead, when the snapshot failed
 */
#ifndef VMDR_RBD_SOURCE_H
#define VMDR_RBD_SOURCE_H

#include <stdbool.h>
#include <stdint.h>

#include "disk-io.h"
#include "rbd-replica.h"

struct vmdr_rbd_source;

/* Open image IMAGE of RBD's pool for reading.  0, -ENOENT, -errno. */
int vmdr_rbd_source_open (struct vmdr_rbd *rbd, const char *image,
                          struct vmdr_rbd_source **out);
void vmdr_rbd_source_close (struct vmdr_rbd_source *s);    /* NULL is fine */

/* Take the RBD snapshot vmdr-TIME (TIME as in snapshot ids) now, and read
 * from it from here on.  0, -EEXIST, -errno. */
int vmdr_rbd_source_snap (struct vmdr_rbd_source *s, const char *time);

/* The snapshot taken ("vmdr-TIME"), to record in the manifest. */
const char *vmdr_rbd_source_base (const struct vmdr_rbd_source *s);

struct vmdr_rbd_source_opts {
  const char *base;             /* the parent's RBD snapshot ("vmdr-TIME"), when
                                 * it is still on the image; NULL: full */
  const struct vmdr_disk_tree *parent;  /* the parent's tree (with BASE) */
  unsigned sample;              /* unchanged chunks to check (0: none) */
  unsigned threads;             /* 1 .. VMDR_MAX_THREADS */
  vmdr_progress_fn progress;
  void *popaque;
  bool test_drop_hints;         /* for tests: ignore what the diff reports, as
                                 * a diff bug would, so that only the sample
                                 * can find the changes */
};

struct vmdr_rbd_source_stats {
  struct vmdr_disk_write_stats w;
  uint64_t extents;             /* reported by the diff */
  uint64_t sampled;             /* unchanged chunks read and compared */
  bool full;                    /* read whole: no base, or ... */
  bool fell_back;               /* ... a sampled chunk differed from the parent */
};

/* Store the snapshot taken into REPO as a disk tree (*out; flush the
 * repository before the manifest): every chunk the diff from o->base
 * reports (or, without a base, every allocated extent), on top of
 * o->parent; the others keep the parent's digests unless the sample finds
 * one that changed, when the disk is read whole.  0, -ENOENT (o->base
 * gone from the image: store a full), -EINVAL, or the errors of reading
 * the image and writing the repository. */
int vmdr_rbd_source_write (struct vmdr_rbd_source *s, struct vmdr_repo *repo,
                           const struct vmdr_rbd_source_opts *o,
                           struct vmdr_disk_tree *out, struct vmdr_rbd_source_stats *st);

/* Remove the image's other vmdr-* snapshots (not protected ones): only the
 * newest is the next base.  0 or the first error. */
int vmdr_rbd_source_prune (struct vmdr_rbd_source *s);

/* Remove the snapshot taken (the snapshot failed).  0 or -errno. */
int vmdr_rbd_source_drop (struct vmdr_rbd_source *s);

#endif
