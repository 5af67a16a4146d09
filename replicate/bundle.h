/* Bundles: a repository subset as one POSIX pax tar stream
 * (docs/bundle-format.md), for sites reached by carrying a disk, for tape,
 * or for a pipe through ssh.
 *
 * A bundle holds a header (what it is, which snapshots, which base), the
 * source repository's config, every blob (chunk or index node, encoded as
 * stored) the snapshots need and the base lacks, and the manifests last.
 *
 * Export streams: memory is a set of digests (50 to 100 bytes per blob of
 * the snapshots and of the base), a list of index nodes per snapshot and a
 * few blobs, never the bundle.  Every blob is verified as it is read.
 *
 * Import trusts nothing in the stream: entry names, types and sizes are
 * checked against the layout, every count and size has a bound, every
 * blob is verified against the digest it is named by before it counts, an
 * index node is stored only after its children, and the manifests, held
 * until the stream ended cleanly, are stored last and only when the trees
 * they name are whole.  So an import that fails or is killed leaves at most
 * blobs no snapshot references (GC's to sweep), and the repository keeps
 * the rule that a stored index node has its whole subtree stored.
 *
 * Functions return 0 or -errno and never print; where they can explain a
 * failure better than an errno (a hostile entry, a missing base), they say
 * it in the text given by vmdr_bundle_reader_error or WHY.
 */
#ifndef VMDR_BUNDLE_H
#define VMDR_BUNDLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "disk-io.h"            /* vmdr_progress_fn, VMDR_MAX_THREADS */
#include "manifest.h"

#define VMDR_BUNDLE_VERSION 1

/* Bounds an importer holds every bundle to. */
#define VMDR_BUNDLE_MAX_SNAPSHOTS 4096
#define VMDR_BUNDLE_MAX_BLOBS (1u << 28)        /* 16 TiB of 64 KiB chunks */
#define VMDR_BUNDLE_HEADER_MAX (4u << 20)
#define VMDR_BUNDLE_MANIFESTS_MAX (128u << 20)  /* all manifests together */

/* Room for a message: the reason a call failed, in words. */
#define VMDR_BUNDLE_WHY_MAX 512

/* ---- export ------------------------------------------------------------- */

struct vmdr_bundle_export_opts {
  const char *base;             /* a snapshot id of REPO: leave out what it has
                                 * (an incremental bundle); NULL: a full one */
  bool zstd;                    /* compress the whole stream with zstd */
  int zstd_level;               /* 1 .. 19; 0: 3 */
  vmdr_progress_fn progress;    /* blob bytes written of the total; may be NULL */
  void *popaque;
};

struct vmdr_bundle_stats {
  uint64_t snapshots;           /* in the bundle */
  uint64_t blobs, blob_bytes;   /* in the bundle: count, encoded bytes */
  uint64_t bundle_bytes;        /* export: bytes written (after zstd) */
  /* import only */
  uint64_t snapshots_present;   /* already in the repository, identical */
  uint64_t blobs_new, bytes_new;        /* stored now (bytes as stored) */
};

/* Write a bundle of the N snapshots IDS of REPO (ids, not selectors; each
 * once) to FD, a file or pipe, from its current position.  The chunk index
 * of REPO must be loaded.  Snapshots go in as given; pass them oldest first
 * for a chain.  *st (may be NULL) gets the counts.
 * 0; -ENOENT (a snapshot or the base is not in REPO), -EBADMSG, -EILSEQ
 * (damage at the source), -EINVAL (N is 0 or above
 * VMDR_BUNDLE_MAX_SNAPSHOTS, a bad level), -EIO (a write failed: WHY says
 * why), or the repository's errors.  On error FD holds part of a bundle,
 * which an importer refuses.  WHY (WHYLEN bytes, may be NULL) gets the
 * reason in words. */
int vmdr_bundle_export (struct vmdr_repo *repo, const char *const *ids, size_t n,
                        const struct vmdr_bundle_export_opts *o, int fd,
                        struct vmdr_bundle_stats *st, char *why, size_t whylen);

/* ---- import ------------------------------------------------------------- */

struct vmdr_bundle_reader;

/* Read a bundle (a pax tar, plain or zstd) from FD, a file or pipe, or
 * from LEN bytes at BUF (which must outlive the reader).  Nothing is read
 * yet.  0, -ENOMEM. */
int vmdr_bundle_reader_open_fd (int fd, struct vmdr_bundle_reader **out);
int vmdr_bundle_reader_open_memory (const void *buf, size_t len,
                                    struct vmdr_bundle_reader **out);
void vmdr_bundle_reader_free (struct vmdr_bundle_reader *rd);   /* NULL is fine */

/* Why the last call on RD failed, in words ("entry '/etc/x': an absolute
 * path"); "" when it did not. */
const char *vmdr_bundle_reader_error (const struct vmdr_bundle_reader *rd);

/* What a bundle's first two entries say.  Owned by the reader. */
struct vmdr_bundle_info {
  struct vmdr_repo_config config;       /* the source repository's */
  char base[VMDR_SNAPSHOT_ID_MAX];      /* "" for a full bundle */
  char **snapshots;                     /* ids, in bundle order */
  size_t nsnapshots;
  uint64_t blobs, blob_bytes;
};

/* Read and check the header and the config.  Call once, first.
 * 0; -EBADMSG (not a bundle, or a malformed or hostile one: see the
 * error), -EPROTONOSUPPORT (a newer bundle version or repository format),
 * or -EIO (the stream could not be read). */
int vmdr_bundle_read_header (struct vmdr_bundle_reader *rd,
                             const struct vmdr_bundle_info **info);

/* Can REPO take the bundle's blobs as they are: the same digest, chunk
 * size, index fanout and stream chunking?  0 or -EXDEV, with the first
 * difference in the reader's error. */
int vmdr_bundle_compatible (struct vmdr_bundle_reader *rd, struct vmdr_repo *repo);

struct vmdr_bundle_import_opts {
  unsigned threads;             /* workers that verify and store chunks
                                 * (0 .. VMDR_MAX_THREADS; 0: the reading
                                 * thread does it) */
  vmdr_progress_fn progress;    /* blob bytes read of the declared total */
  void *popaque;
};

/* Import the rest of the bundle into REPO (after vmdr_bundle_read_header),
 * under the writer lock of every domain it holds (which also keeps GC out
 * and loads the chunk index): the base must be in REPO; blobs are verified
 * and stored as they come, in order; the manifests are stored once the
 * stream has ended cleanly and every snapshot's trees are whole in REPO.
 * A snapshot REPO already holds with the same manifest is counted as
 * present.  *st (may be NULL) gets the counts.
 * 0; -EXDEV (other chunking), -ENOENT (the base is missing), -EBUSY (a
 * writer or GC holds a domain), -EBADMSG (a malformed, damaged, hostile or
 * truncated bundle), -EEXIST (REPO holds a snapshot of that id with other
 * content), -EIO (the stream could not be read), or the repository's
 * errors; the error says more.  On error no snapshot of the bundle has
 * become visible unless storing the manifests themselves failed half way
 * (then those stored are whole). */
int vmdr_bundle_import (struct vmdr_bundle_reader *rd, struct vmdr_repo *repo,
                        const struct vmdr_bundle_import_opts *o,
                        struct vmdr_bundle_stats *st);

#endif
