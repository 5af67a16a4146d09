/* Moving a disk's bytes into and out of a repository, in parallel.
 *
 * vmdr_disk_write reads chunks from a source (a file, an NBD export, ...),
 * skips all-zero chunks, hashes each chunk once, stores the new ones, and
 * builds the disk's index tree on top of a parent tree (an incremental) or
 * none (a full).  vmdr_disk_restore writes a tree back out sparsely,
 * verifying every chunk against its digest.
 */
#ifndef VMDR_DISK_IO_H
#define VMDR_DISK_IO_H

#include <stdbool.h>
#include <stdint.h>

#include "disk-index.h"
#include "repo.h"

#define VMDR_MAX_THREADS 64

struct vmdr_chunk_range {
  uint64_t first, count;        /* chunks [first, first + count) */
};

struct vmdr_disk_source {
  uint64_t virtual_size;
  /* Read LEN bytes at OFF into BUF for worker WORKER (0 .. threads-1), so a
   * source can keep one connection per worker.  0 or -errno. */
  int (*read) (void *opaque, unsigned worker, void *buf, size_t len, uint64_t off);
  void *opaque;
  /* The chunks to read, sorted and disjoint; the others are zero (no parent)
   * or the parent's.  ALL: read every chunk (ranges ignored). */
  const struct vmdr_chunk_range *ranges;
  size_t nranges;
  bool all;
};

struct vmdr_disk_write_stats {
  uint64_t chunks_read, bytes_read;
  uint64_t chunks_zero;         /* read, found all zero, not stored */
  uint64_t chunks_new, bytes_new;   /* stored: blobs' bytes incl. headers */
};

/* Progress, called from worker threads under a lock, at most once per chunk:
 * bytes done so far, of TOTAL (0 when not known in advance).  May be NULL. */
typedef void (*vmdr_progress_fn) (void *opaque, uint64_t bytes_done, uint64_t total);

/* Write SRC into REPO with THREADS workers (1 .. VMDR_MAX_THREADS), chunk size
 * and fanout from the repository config, on top of PARENT (may be NULL).
 * *out is the new tree (its nodes are put; flush before a manifest).
 * 0, or the first error of a source read, the repository or the tree. */
int vmdr_disk_write (struct vmdr_repo *repo, const struct vmdr_disk_source *src,
                     const struct vmdr_disk_tree *parent, unsigned threads,
                     vmdr_progress_fn progress, void *popaque,
                     struct vmdr_disk_tree *out, struct vmdr_disk_write_stats *st);

/* Source helpers for a raw image file: reads with pread, and the chunk
 * ranges holding data (SEEK_DATA/SEEK_HOLE; holes are never read).
 * *ranges is malloc'd.  0 or -errno.
 *
 * Reads of whole pages into page-aligned buffers (vmdr_disk_write's) go
 * around the page cache through a second, O_DIRECT descriptor, where the
 * file system has it: a backup reads each byte once, and the cache is the
 * guests'.  vmdr_file_source_init never fails (without O_DIRECT, every
 * read is buffered); FD stays the caller's. */
struct vmdr_file_source {
  int fd;
  int direct;                   /* the same file with O_DIRECT, or -1 */
};
void vmdr_file_source_init (struct vmdr_file_source *s, int fd);
void vmdr_file_source_fini (struct vmdr_file_source *s);
int vmdr_file_source_read (void *opaque /* struct vmdr_file_source */, unsigned worker,
                           void *buf, size_t len, uint64_t off);
int vmdr_file_data_ranges (int fd, uint64_t size, uint32_t chunk_size,
                           struct vmdr_chunk_range **ranges, size_t *n);

struct vmdr_restore_error {
  bool chunk;                   /* about one chunk: offset and digest are set */
  uint64_t offset;              /* byte offset in the disk of the bad chunk */
  struct vmdr_digest digest;
};

struct vmdr_disk_read_stats {
  uint64_t chunks, bytes;       /* non-zero chunks read, verified, written */
};

/* Write TREE to FD (a regular file or block device, already the right size
 * or growable, open for writing) with THREADS workers: zero chunks are left
 * as holes (the caller provides a sparse or zeroed target), every other
 * chunk is read, verified against its digest and written at its offset,
 * then FD is fsync'd.  Writes bypass the page cache where the file system
 * allows it (FD is reopened through /proc/self/fd with O_DIRECT; FD itself
 * is not changed).  On a damaged or missing chunk returns -EBADMSG,
 * -EILSEQ or -ENOENT and fills *err (may be NULL) with where. */
int vmdr_disk_restore (struct vmdr_repo *repo, const struct vmdr_disk_tree *tree,
                       int fd, unsigned threads, vmdr_progress_fn progress,
                       void *popaque, struct vmdr_disk_read_stats *st,
                       struct vmdr_restore_error *err);

/* Called for a damaged or missing chunk when reading goes on past damage:
 * ERR is -EBADMSG, -EILSEQ or -ENOENT.  Under the reader's lock. */
typedef void (*vmdr_damage_fn) (void *opaque, const struct vmdr_restore_error *where,
                                int err);

/* Whether chunk D (at chunk INDEX) should be read at all: sampling, and
 * chunks already verified elsewhere.  Under the reader's lock. */
typedef bool (*vmdr_chunk_filter_fn) (void *opaque, uint64_t index,
                                      const struct vmdr_digest *d);

/* Where restored chunks go when not to a file descriptor: LEN bytes at
 * OFF, for worker WORKER (0 .. threads-1), so a sink can keep one
 * connection per worker: calls for one WORKER never overlap (they come
 * from that worker's writer thread).  Consecutive chunks come in one call,
 * LEN at most 4 MiB (or one chunk, if chunks are larger), OFF a multiple
 * of the chunk size.  0 or -errno. */
typedef int (*vmdr_sink_fn) (void *opaque, unsigned worker, const void *buf,
                             size_t len, uint64_t off);

/* A piece of an output file's layout: the disk's bytes [start, start +
 * len) are in the file from offset host on (a qcow2 image's data
 * clusters, as qemu-img reports them). */
struct vmdr_out_extent {
  uint64_t start, len, host;
};

struct vmdr_read_opts {
  int fd;                       /* where to write; -1: verify only */
  const struct vmdr_out_extent *layout;   /* NULL: each byte at its own offset
                                 * in fd; else sorted by start, and every
                                 * chunk written must lie in its extents
                                 * (-ERANGE if not) */
  size_t nlayout;
  vmdr_sink_fn sink;            /* if not NULL, chunks go here, not to fd */
  void *sopaque;
  bool ordered;                 /* sink calls one at a time and in disk order,
                                 * for a stream; the workers still read and
                                 * verify ahead (each holds at most two
                                 * batches while it waits its turn) */
  unsigned threads;
  vmdr_progress_fn progress;    /* may be NULL */
  void *popaque;
  vmdr_damage_fn damage;        /* NULL: stop at the first damaged chunk */
  void *dopaque;
  vmdr_chunk_filter_fn filter;  /* NULL: every non-zero chunk */
  void *fopaque;
};

/* The general form of vmdr_disk_restore.  Each worker takes up to 4 MiB
 * of consecutive chunks at once, reads them with vmdr_repo_get_chunks (a
 * few large pack reads) and verifies them; its writer thread writes each
 * run of them without a hole in one call while the worker goes on with
 * the next 4 MiB (two buffers of 4 MiB a worker).  With a damage
 * callback, damaged chunks are reported and the read goes on (it still
 * returns the first error at the end); damage to the tree itself always
 * stops it. */
int vmdr_disk_read (struct vmdr_repo *repo, const struct vmdr_disk_tree *tree,
                    const struct vmdr_read_opts *o, struct vmdr_disk_read_stats *st,
                    struct vmdr_restore_error *err);

#endif
