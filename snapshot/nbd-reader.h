/* Reading a disk export over NBD: its size, its extents under a metadata
 * context (base:allocation, or qemu:dirty-bitmap:backup-TARGET in a libvirt
 * pull-mode backup), and its bytes.
 *
 * A reader owns one libnbd connection and is used by one thread at a time;
 * open one reader per worker for parallel reads.  Errors are -errno; the
 * libnbd message of the last failure is kept for the caller to print
 * (vmdr_nbd_last_error).
 */
#ifndef VMDR_NBD_READER_H
#define VMDR_NBD_READER_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#define VMDR_NBD_CTX_ALLOCATION "base:allocation"
#define VMDR_NBD_CTX_DIRTY_PREFIX "qemu:dirty-bitmap:"

/* Flag bits as the contexts define them.  base:allocation: bit 0 = hole,
 * bit 1 = reads as zero.  qemu:dirty-bitmap: bit 0 = dirty. */
#define VMDR_NBD_STATE_HOLE  1u
#define VMDR_NBD_STATE_ZERO  2u
#define VMDR_NBD_STATE_DIRTY 1u

struct vmdr_nbd;

/* Connect to EXPORT on the unix socket SOCKET and request the metadata
 * contexts in CONTEXTS (a NULL-terminated array, may be NULL or empty).
 * A context the server does not offer is not an error here; ask with
 * vmdr_nbd_has_context.  Only vmdr_nbd_pwrite and vmdr_nbd_trim write
 * (a restore into an image); nothing else does.
 * Returns 0 and *out, or -errno (-ECONNREFUSED, -ENOENT, -EIO, ...). */
int vmdr_nbd_open_unix (const char *socket, const char *export,
                        const char *const *contexts, struct vmdr_nbd **out);

/* Closes the connection.  NULL is allowed. */
void vmdr_nbd_close (struct vmdr_nbd *r);

uint64_t vmdr_nbd_size (const struct vmdr_nbd *r);
bool vmdr_nbd_has_context (struct vmdr_nbd *r, const char *context);

/* Called for each maximal run of equal flags, in offset order.  Returning a
 * negative value stops the walk and vmdr_nbd_extents returns it.  The callback
 * runs inside a libnbd reply handler: it must not use the same reader (no
 * vmdr_nbd_pread); collect the runs and read after the walk. */
typedef int (*vmdr_extent_fn) (void *opaque, uint64_t offset, uint64_t length,
                               uint32_t flags);

/* Walk the extents of CONTEXT over [offset, offset+length), which must lie in
 * the export.  Adjacent extents with equal flags are merged, so a client sees
 * each run once however the server splits its replies.  Returns 0, the
 * callback's negative value, or -errno (-ENOTSUP when CONTEXT was not
 * negotiated, -EPROTO when the server does not make progress). */
int vmdr_nbd_extents (struct vmdr_nbd *r, const char *context,
                      uint64_t offset, uint64_t length,
                      vmdr_extent_fn fn, void *opaque);

/* Read exactly COUNT bytes at OFFSET into BUF.  COUNT is at most
 * VMDR_NBD_MAX_REQUEST (larger reads are the caller's loop).  0 or -errno. */
#define VMDR_NBD_MAX_REQUEST (32u << 20)
int vmdr_nbd_pread (struct vmdr_nbd *r, void *buf, size_t count,
                    uint64_t offset);

/* Write COUNT (at most VMDR_NBD_MAX_REQUEST) bytes at OFFSET; make every
 * write so far durable.  0 or -errno. */
int vmdr_nbd_pwrite (struct vmdr_nbd *r, const void *buf, size_t count,
                     uint64_t offset);
int vmdr_nbd_flush (struct vmdr_nbd *r);

/* Discard COUNT (at most VMDR_NBD_MAX_TRIM) bytes at OFFSET: the server
 * may make them a hole that reads as zeros.  0 or -errno. */
#define VMDR_NBD_MAX_TRIM (1ull << 30)
int vmdr_nbd_trim (struct vmdr_nbd *r, uint64_t count, uint64_t offset);

/* The libnbd message of the last failure on this thread, never NULL. */
const char *vmdr_nbd_last_error (void);

#endif
