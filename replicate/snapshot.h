/* Whole snapshots: disks in, manifest last; and disks out again.
 *
 * vmdr_snapshot_write_images is the library entry point that stores raw
 * images (files or block devices) as one snapshot; the tests use it, and the
 * snapshot tool builds its libvirt path on the same pieces.
 */
#ifndef VMDR_SNAPSHOT_H
#define VMDR_SNAPSHOT_H

#include "disk-io.h"
#include "manifest.h"
#include "stream-index.h"

struct vmdr_image_disk {
  const char *target;           /* "vda" */
  const char *path;             /* a raw image */
};

struct vmdr_snapshot_opts {
  unsigned threads;             /* 1 .. VMDR_MAX_THREADS */
  enum vmdr_consistency consistency;
  const char *uuid;             /* may be NULL */
  const char *domain_xml;       /* may be NULL */
  vmdr_progress_fn progress;    /* may be NULL */
  void *popaque;
  const char *memory;           /* a memory image (any file) to store, or NULL */
};

struct vmdr_snapshot_stats {
  uint64_t bytes_read, bytes_new, chunks_new;
};

/* Store the images as a new snapshot of DOMAIN, under DOMAIN's writer lock:
 * data is read (holes skipped), chunks the repository has are not stored
 * again, then the manifest is written.  The chunk index is (re)loaded once
 * the locks are held, so a GC that ran before cannot leave it stale.
 * *m (may be NULL) gets the manifest; the caller clears it.
 * A running GC is waited for (up to two minutes).
 * 0, -EBUSY (another writer holds the domain, or GC ran too long), -EINVAL (bad name, too many
 * disks), or the errors of reading the images and writing the repository;
 * on any error no snapshot becomes visible. */
int vmdr_snapshot_write_images (struct vmdr_repo *repo, const char *domain,
                                const struct vmdr_image_disk *disks, size_t n,
                                const struct vmdr_snapshot_opts *opts,
                                struct vmdr_manifest *m,
                                struct vmdr_snapshot_stats *st);

/* Take DOMAIN's writer lock and wait out a running GC (up to two
 * minutes), then reload the chunk index: what the lock protects.  -EBUSY
 * (*holder, if not NULL, names the live holder), or -errno; *took_over
 * (may be NULL) says a dead writer's lock was taken over. */
struct vmdr_lock;
struct vmdr_lock_holder;
int vmdr_writer_lock (struct vmdr_repo *repo, const char *domain,
                      struct vmdr_lock **out, struct vmdr_lock_holder *holder,
                      bool *took_over);

/* Store the stream read from FD as M's memory image (flush before the
 * manifest).  0 or -errno. */
int vmdr_snapshot_write_memory (struct vmdr_repo *repo, int fd, unsigned threads,
                                struct vmdr_manifest_memory *mem);

/* The stream tree of a manifest's memory image. */
void vmdr_manifest_memory_tree (const struct vmdr_manifest_memory *mem,
                                struct vmdr_stream_tree *t);

/* The disk tree recorded for disk D of a manifest. */
void vmdr_manifest_disk_tree (const struct vmdr_manifest_disk *d,
                              struct vmdr_disk_tree *t);

#endif
