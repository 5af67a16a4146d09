/* Stream indexes: byte streams (memory images) cut by content-defined
 * chunking and stored as a tree of stream index nodes
 * (docs/repository-format.md section 7.2).
 *
 * Writing: the caller feeds the stream in buffers of any size (or hands
 * over a file descriptor); the chunker cuts it (cdc.h, parameters from the
 * repository config), worker threads hash each chunk once and store the
 * chunks the repository lacks (all-zero chunks are never stored), and the
 * index is built as the chunks come back, in stream order.  Memory is
 * bounded by the pipeline (a few chunks per worker) and one partial node
 * per tree level: neither the stream nor its list of chunks is held.
 *
 * Reading: every node is read, verified and checked (magic, level, entry
 * count, lengths adding up to the parent's entry) before it is trusted;
 * every chunk is verified against its digest.  Damage gives -EBADMSG or
 * -EILSEQ, never a crash or a short stream without an error.
 *
 * A writer is used by one thread (it starts its own workers); reads and
 * walks of different trees may run in different threads.
 */
#ifndef VMDR_STREAM_INDEX_H
#define VMDR_STREAM_INDEX_H

#include <stdint.h>

#include "disk-io.h"            /* VMDR_MAX_THREADS, vmdr_progress_fn, vmdr_restore_error */
#include "repo.h"

/* The part of a manifest's "memory" entry that locates a stream. */
struct vmdr_stream_tree {
  uint64_t size;                /* bytes in the stream */
  uint32_t fanout;              /* entries per node: the repository's */
  uint32_t depth;               /* 0: empty stream; 1: the root is a leaf */
  struct vmdr_digest root;      /* zero digest: every byte is zero */
};

#define VMDR_STREAM_MAX_DEPTH 8

/* One entry of a node: a chunk (in a leaf) or a subtree (interior), and the
 * stream bytes it covers.  The zero digest: LEN zero bytes, nothing stored. */
struct vmdr_stream_entry {
  struct vmdr_digest d;
  uint64_t len;
};

struct vmdr_stream_write_stats {
  uint64_t bytes;               /* stream bytes taken */
  uint64_t chunks;              /* chunks cut, zero ones included */
  uint64_t chunks_zero;         /* all zero: not stored */
  uint64_t chunks_new, bytes_new;   /* stored now: blobs' bytes incl. headers */
  uint64_t nodes_new;           /* index nodes stored now */
};

struct vmdr_stream_writer;

/* Start a stream in REPO (its chunk index loaded) with THREADS hashing and
 * compressing workers (1 .. VMDR_MAX_THREADS).  Chunking parameters and
 * fanout come from the repository config.
 * 0, -EINVAL (threads, or a config the chunker refuses), -ENOMEM, -EAGAIN
 * (no thread could be started). */
int vmdr_stream_writer_new (struct vmdr_repo *repo, unsigned threads,
                            struct vmdr_stream_writer **out);

/* Stop the workers and free everything, discarding an unfinished stream
 * (chunks already put stay in the repository as garbage until GC).
 * NULL is fine. */
void vmdr_stream_writer_free (struct vmdr_stream_writer *w);

/* The next LEN bytes of the stream (copied: BUF is the caller's again on
 * return).  0, or the first error of storing a chunk or a node; after an
 * error every later call returns it too.  -EINVAL after finish. */
int vmdr_stream_writer_feed (struct vmdr_stream_writer *w, const void *buf,
                             size_t len);

/* End of stream: store the last chunk and the index nodes, and fill *tree
 * and *st (may be NULL).  The nodes are put in the repository: flush it
 * before writing a manifest.  Call at most once; then free.
 * 0, or the writer's first error; -EFBIG when the tree would be deeper
 * than VMDR_STREAM_MAX_DEPTH. */
int vmdr_stream_writer_finish (struct vmdr_stream_writer *w,
                               struct vmdr_stream_tree *tree,
                               struct vmdr_stream_write_stats *st);

/* Write everything read from FD (a file, pipe or socket, read to its end
 * from where it is) as one stream.  PROGRESS (may be NULL) gets the bytes
 * read so far, from the calling thread.  0, the errors of read(2) as
 * -errno, or the writer's. */
int vmdr_stream_write_fd (struct vmdr_repo *repo, int fd, unsigned threads,
                          vmdr_progress_fn progress, void *popaque,
                          struct vmdr_stream_tree *tree,
                          struct vmdr_stream_write_stats *st);

/* Called for each leaf, in stream order: the entries E[0 .. n) cover the
 * stream bytes from OFFSET on, one after the other.  A subtree of zero
 * chunks comes as one entry with the zero digest, whatever its length.
 * A negative return stops the walk and is returned. */
typedef int (*vmdr_stream_walk_fn) (void *opaque, uint64_t offset,
                                    const struct vmdr_stream_entry *e, size_t n);

/* Walk TREE, reading and checking every node (not the chunks).  0, the
 * callback's value, -EBADMSG (a malformed tree or node: geometry, magic,
 * level, count, lengths that do not add up), -EILSEQ (a node's digest does
 * not match), -ENOENT (a node is missing), -ENOMEM, or the backend's. */
int vmdr_stream_tree_walk (struct vmdr_repo *repo, struct vmdr_zctx *z,
                           const struct vmdr_stream_tree *tree,
                           vmdr_stream_walk_fn fn, void *opaque);

/* Called for each stored node before its children: 1 skips the subtree
 * (already seen: GC marking), 0 goes on, negative stops the walk. */
typedef int (*vmdr_stream_node_fn) (void *opaque, const struct vmdr_digest *node);

/* vmdr_stream_tree_walk with a node callback too (NODE_FN may be NULL). */
int vmdr_stream_tree_walk_nodes (struct vmdr_repo *repo, struct vmdr_zctx *z,
                                 const struct vmdr_stream_tree *tree,
                                 vmdr_stream_node_fn node_fn, vmdr_stream_walk_fn fn,
                                 void *opaque);

struct vmdr_stream_read_stats {
  uint64_t chunks, bytes;       /* non-zero chunks read and verified */
  uint64_t bytes_zero;          /* zero bytes written (or skipped as holes) */
};

/* Write the stream TREE to FD, in order, from FD's current position, with
 * THREADS readers (1 .. VMDR_MAX_THREADS) fetching and verifying chunks
 * ahead of the writer.  FD may be a pipe or socket.  Zero runs are written
 * as zeros, except that on a regular file positioned at or beyond its end
 * they become holes (the file is extended at the end).  FD -1: verify only.
 * 0; -EBADMSG, -EILSEQ or -ENOENT for a damaged or missing node or chunk
 * (then *err, may be NULL, says where: the stream offset of the chunk or
 * of the subtree whose node is bad, and its digest); -EINVAL (threads);
 * the errors of write(2) as -errno, or the backend's.  On error part of the
 * stream may have been written. */
int vmdr_stream_restore (struct vmdr_repo *repo, const struct vmdr_stream_tree *tree,
                         int fd, unsigned threads,
                         struct vmdr_stream_read_stats *st,
                         struct vmdr_restore_error *err);

#endif
