/* Disk indexes: the tree of index nodes that maps a disk's fixed-size chunks
 * to digests (docs/repository-format.md section 7.1).
 *
 * The builder makes a new tree from a parent tree (or none, for a full
 * backup) and the chunks that changed.  It holds the digests of all leaves
 * (32 bytes per `fanout` chunks: 2 MiB for 1 TiB of 64 KiB chunks with
 * fanout 256) and only the leaves being changed; an unchanged leaf is never
 * read or rewritten, so an incremental costs what it changed.
 *
 * Not thread-safe: one collector thread feeds a builder.
 */
#ifndef VMDR_DISK_INDEX_H
#define VMDR_DISK_INDEX_H

#include <stdint.h>

#include "repo.h"

/* The part of a manifest's disk entry that locates its index. */
struct vmdr_disk_tree {
  uint64_t virtual_size;
  uint32_t chunk_size;
  uint32_t fanout;
  uint32_t depth;               /* 0: no chunks; 1: the root is a leaf */
  struct vmdr_digest root;      /* zero digest: every chunk is zero */
};

#define VMDR_DISK_MAX_DEPTH 8

struct vmdr_disk_builder;

/* Start a tree for a disk of VIRTUAL_SIZE bytes.  PARENT (may be NULL) must
 * have the same chunk size and fanout; chunks not set keep the parent's
 * digest (or zero beyond the parent's size).  Z is the compression state of
 * the calling thread, used for reading parent nodes and writing new ones.
 * 0, -EINVAL (geometry), -EBADMSG/-EILSEQ (damaged parent), -ENOMEM. */
int vmdr_disk_builder_new (struct vmdr_repo *repo, struct vmdr_zctx *z,
                           uint64_t virtual_size, uint32_t chunk_size,
                           uint32_t fanout, const struct vmdr_disk_tree *parent,
                           struct vmdr_disk_builder **out);
void vmdr_disk_builder_free (struct vmdr_disk_builder *b);   /* NULL is fine */

/* Chunk INDEX now has digest D (the zero digest for an all-zero chunk).
 * Any order; setting a chunk twice keeps the last.  0, -ERANGE, -ENOMEM, or
 * the repository's errors from reading a parent leaf. */
int vmdr_disk_builder_set (struct vmdr_disk_builder *b, uint64_t index,
                           const struct vmdr_digest *d);

/* Promise that no chunk below INDEX will be set again: leaves wholly below
 * it are written now, bounding the memory of a long run. */
int vmdr_disk_builder_done_below (struct vmdr_disk_builder *b, uint64_t index);

/* Write the remaining leaves and the interior nodes; *out gets the tree.
 * The nodes are put in the repository: flush it before the manifest. */
int vmdr_disk_builder_finish (struct vmdr_disk_builder *b,
                              struct vmdr_disk_tree *out);

/* Called for each leaf, in order: chunks [first, first + count) have the
 * digests DIGESTS, or all are zero when DIGESTS is NULL (a zero subtree may
 * come as one call spanning many leaves).  A negative return stops the walk. */
typedef int (*vmdr_disk_walk_fn) (void *opaque, uint64_t first, uint64_t count,
                                  const struct vmdr_digest *digests);

/* Walk TREE, reading and verifying every node.  0, the callback's value,
 * -EBADMSG (a malformed node: wrong level, count, or magic), -EILSEQ,
 * -ENOENT (a node is missing), or the backend's errors. */
int vmdr_disk_tree_walk (struct vmdr_repo *repo, struct vmdr_zctx *z,
                         const struct vmdr_disk_tree *tree,
                         vmdr_disk_walk_fn fn, void *opaque);

/* Called for each stored node before its children (not for zero subtrees):
 * return 1 to skip the node's subtree (already seen), 0 to go on, or a
 * negative value to stop the walk. */
typedef int (*vmdr_disk_node_fn) (void *opaque, const struct vmdr_digest *node);

/* vmdr_disk_tree_walk with a node callback too (NODE_FN may be NULL).  A
 * skipped subtree's leaves are not reported. */
int vmdr_disk_tree_walk_nodes (struct vmdr_repo *repo, struct vmdr_zctx *z,
                               const struct vmdr_disk_tree *tree,
                               vmdr_disk_node_fn node_fn, vmdr_disk_walk_fn fn,
                               void *opaque);

/* Number of chunks of a disk. */
static inline uint64_t
vmdr_disk_chunks (uint64_t virtual_size, uint32_t chunk_size)
{
  return virtual_size / chunk_size + (virtual_size % chunk_size != 0);
}

#endif
