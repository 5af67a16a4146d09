/* The difference between two disk index trees of one repository
 * (docs/repository-format.md section 7.1), for bringing a copy of the
 * disk as the OLD tree had it up to the NEW tree by writing only what
 * changed.
 *
 * The trees are walked side by side: an entry whose digest is the same in
 * both at the same place is a subtree with the same chunks, never read.
 * An incremental therefore costs the nodes on the paths to its changes,
 * not the size of the disk.  The trees may be of disks of other sizes (a
 * disk grown or shrunk between two snapshots): beyond the end of the old
 * disk the copy is taken to read as zeros (what a grown image does).
 */
#ifndef VMDR_DISK_DIFF_H
#define VMDR_DISK_DIFF_H

#include "disk-index.h"

/* Chunks [first, first + count) of NEW differ from OLD: their digests are
 * DIGESTS (count of them, any of which may be the zero digest), or, when
 * DIGESTS is NULL, they are all zero in NEW (and not all zero in OLD, or
 * OLD is unknown).  Called in chunk order; the ranges are disjoint.  A
 * negative return stops the walk and is returned. */
typedef int (*vmdr_disk_diff_fn) (void *opaque, uint64_t first, uint64_t count,
                                  const struct vmdr_digest *digests);

/* Report what differs between OLD and NEW, both trees of REPO with the
 * same chunk size and fanout.  OLD NULL: the copy's content is unknown,
 * so every chunk of NEW is reported (zero ones as zero ranges); to start
 * from an empty copy (all zeros), pass a tree with depth 0 instead.
 * Every node read is verified (digest, magic, level, count).  Z is the
 * calling thread's.  0, the callback's value, -EINVAL (geometries
 * differ), -EBADMSG / -EILSEQ (a damaged node), -ENOENT (a missing node),
 * -ENOMEM, or the backend's errors. */
int vmdr_disk_tree_diff (struct vmdr_repo *repo, struct vmdr_zctx *z,
                         const struct vmdr_disk_tree *old,
                         const struct vmdr_disk_tree *new,
                         vmdr_disk_diff_fn fn, void *opaque);

/* The digests of chunks IDX[0 .. n) of TREE into OUT (the zero digest for
 * a zero chunk), each by one walk from the root to its leaf: a few node
 * reads per chunk whatever the size of the disk.  0, -ERANGE (an index
 * beyond the disk), or the errors of reading a node as above. */
int vmdr_disk_tree_lookup (struct vmdr_repo *repo, struct vmdr_zctx *z,
                           const struct vmdr_disk_tree *tree, const uint64_t *idx,
                           size_t n, struct vmdr_digest *out);

#endif
