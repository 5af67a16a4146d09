/* An NBD export as the source of vmdr_disk_write: one connection per
 * worker, and the chunks worth reading (allocated data for a full backup,
 * dirty clusters for an incremental). */
#ifndef VMDR_NBD_SOURCE_H
#define VMDR_NBD_SOURCE_H

#include "disk-io.h"
#include "nbd-reader.h"

struct vmdr_nbd_source {
  const char *socket;
  const char *export;
  struct vmdr_nbd *conn[VMDR_MAX_THREADS];   /* opened on first use */
};

/* A vmdr_disk_source read callback; OPAQUE is a struct vmdr_nbd_source. */
int vmdr_nbd_source_read (void *opaque, unsigned worker, void *buf, size_t len,
                          uint64_t off);

/* Close every connection.  The struct can be used again. */
void vmdr_nbd_source_close (struct vmdr_nbd_source *s);

/* Connect to EXPORT and list the chunks of CHUNK bytes worth reading: those
 * touching allocated, non-zero extents (DIRTY_BITMAP NULL), or touching
 * dirty extents of qemu:dirty-bitmap:DIRTY_BITMAP.  *size gets the export
 * size, *ranges (malloc'd) the chunk ranges.  -ENOTSUP when the export has
 * no such bitmap, or the reader's errors. */
int vmdr_nbd_chunk_ranges (const char *socket, const char *export,
                           const char *dirty_bitmap, uint32_t chunk,
                           uint64_t *size, struct vmdr_chunk_range **ranges,
                           size_t *n);

#endif
