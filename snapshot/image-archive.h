/* A snapshot's images as entries of one POSIX pax tar stream (vmdr-restore
 * --archive), for handing them to other tools without staging them twice.
 *
 * Disks and memory images become GNU sparse entries (format 1.0, which GNU
 * tar and bsdtar extract as sparse files): their zero chunks are holes, not
 * bytes in the stream.  Other files (the domain XML) are plain entries.
 *
 * The stream is written in one pass, in order, to a file descriptor that
 * need not seek (a pipe).  A sparse entry's map comes before its data, so
 * an image's index is walked first (its nodes only) to make the map; then
 * its chunks are read and verified against their digests by parallel
 * workers and written out in disk order.  Memory: the map, at most
 * VMDR_ARCHIVE_MAX_EXTENTS data extents (beyond that, the shortest holes
 * are written as zeros instead), the read path's buffers (two batches of
 * 4 MiB per worker), and libarchive's output block (1000 KiB).
 *
 * An archive object is used by one thread at a time.
 */
#ifndef VMDR_IMAGE_ARCHIVE_H
#define VMDR_IMAGE_ARCHIVE_H

#include <stdint.h>
#include <time.h>

#include "restore.h"

#define VMDR_ARCHIVE_MAX_EXTENTS (1u << 18)

struct vmdr_image_archive;

/* Start a pax stream to FD, which stays the caller's (never closed here).
 * Every entry gets mode 0600, owner 0:0 and MTIME.  0 or -ENOMEM. */
int vmdr_image_archive_new (int fd, time_t mtime, struct vmdr_image_archive **out);

/* Free AR (NULL is fine).  A stream not closed with
 * vmdr_image_archive_close lacks its end-of-archive blocks: a reader sees
 * it cut short. */
void vmdr_image_archive_free (struct vmdr_image_archive *ar);

/* A regular entry NAME with the LEN bytes at DATA.  0, or the output's
 * -errno (-EIO when libarchive gives no errno). */
int vmdr_image_archive_put_file (struct vmdr_image_archive *ar, const char *name,
                                 const void *data, size_t len);

/* Disk TREE as the sparse entry NAME, every chunk verified, with
 * O->threads workers (O->force is not used; O->progress gets the data
 * bytes written).  0, -EINVAL, the repository's damage errors (-EBADMSG,
 * -EILSEQ, -ENOENT with f->damage, f->where saying where), or another
 * -errno (the output's, the repository's, -ENOMEM).  After an error the
 * stream is unusable: free it. */
int vmdr_image_archive_put_disk (struct vmdr_image_archive *ar, struct vmdr_repo *repo,
                                 const char *name, const struct vmdr_disk_tree *tree,
                                 const struct vmdr_restore_opts *o,
                                 struct vmdr_disk_read_stats *st,
                                 struct vmdr_restore_failure *f);

/* The byte stream TREE (a memory image) as the sparse entry NAME, its zero
 * runs holes, the same way.  Errors as for a disk. */
int vmdr_image_archive_put_stream (struct vmdr_image_archive *ar, struct vmdr_repo *repo,
                                   const char *name, const struct vmdr_stream_tree *tree,
                                   const struct vmdr_restore_opts *o,
                                   struct vmdr_restore_failure *f);

/* End the archive and write out what is buffered.  0 or the output's
 * -errno.  Syncing FD is the caller's business. */
int vmdr_image_archive_close (struct vmdr_image_archive *ar);

/* Bytes written to FD so far. */
uint64_t vmdr_image_archive_bytes (const struct vmdr_image_archive *ar);

#endif
