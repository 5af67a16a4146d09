/* Where a repository's objects live: one const ops struct per backend
 * (local directory now; S3, RBD and others behind the same slots), so nothing
 * above storage/ knows which one it talks to.
 *
 * Keys are relative, '/'-separated, 1..VMDR_KEY_MAX bytes of
 * [A-Za-z0-9._%-/], never starting with '/' and without "." or ".."
 * components (vmdr_key_valid).  All functions return 0 or -errno and never
 * print; output parameters are untouched on failure.
 */
#ifndef VMDR_BACKEND_H
#define VMDR_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define VMDR_KEY_MAX 512

struct vmdr_backend;

struct vmdr_object_info {
  uint64_t size;
  time_t mtime;                 /* when it was written, for GC grace periods */
};

/* Called once per object by list, in no particular order.  A negative
 * return stops the listing and list returns it. */
typedef int (*vmdr_list_fn) (void *opaque, const char *key,
                             const struct vmdr_object_info *info);

/* put flags */
#define VMDR_PUT_EXCLUSIVE 1u   /* fail with -EEXIST if the key exists */

struct vmdr_backend_ops {
  const char *name;             /* "file", "s3", ... for messages */

  /* Capability: a put is visible whole or not at all, even if the writer
   * dies midway.  Every backend here guarantees it (the local backend by
   * writing a temporary file and renaming it). */
  bool atomic_put;

  /* Open LOCATION (the part after "scheme://", or a plain path).  The
   * location need not hold a repository yet.  -ENOENT when it does not
   * exist, -ENOTDIR, -EACCES, -ENOMEM. */
  int (*open) (const char *location, struct vmdr_backend **out);

  /* Release everything.  NULL is allowed. */
  void (*close) (struct vmdr_backend *b);

  /* Store LEN bytes under KEY, replacing an existing object unless
   * VMDR_PUT_EXCLUSIVE.  Durable when it returns (fsync'd, or acknowledged
   * by the server).  -EEXIST, -ENOSPC, -EROFS, -EACCES, -EIO. */
  int (*put) (struct vmdr_backend *b, const char *key, const void *data,
              size_t len, unsigned flags);

  /* Read LEN bytes at OFFSET of KEY (LEN = 0: from OFFSET to the end),
   * refusing with -EFBIG an answer larger than MAX.  *data is malloc'd with
   * *len_out bytes plus a NUL byte, and is the caller's.  -ENOENT if absent,
   * -ERANGE when the object is shorter than OFFSET+LEN. */
  int (*get) (struct vmdr_backend *b, const char *key, uint64_t offset,
              size_t len, size_t max, void **data, size_t *len_out);

  /* Size and mtime of KEY.  -ENOENT if absent. */
  int (*stat) (struct vmdr_backend *b, const char *key,
               struct vmdr_object_info *info);

  /* Every object whose key starts with PREFIX ("" for all).  Objects put
   * during the listing may or may not appear. */
  int (*list) (struct vmdr_backend *b, const char *prefix, vmdr_list_fn fn,
               void *opaque);

  /* Delete KEY; deleting an absent key succeeds. */
  int (*del) (struct vmdr_backend *b, const char *key);

  /* Remove what writers that died left half-written (temporary files),
   * if older than CUTOFF; *removed counts them.  NULL when the backend
   * leaves nothing behind (its puts need no temporary objects). */
  int (*sweep_temp) (struct vmdr_backend *b, time_t cutoff, uint64_t *removed);
};

/* The base every backend's state embeds first. */
struct vmdr_backend {
  const struct vmdr_backend_ops *ops;
};

extern const struct vmdr_backend_ops vmdr_backend_local;

/* Open a repository address: "file:///path", "file://path" or a plain path.
 * -EAFNOSUPPORT for a scheme no backend handles (the caller names it). */
int vmdr_backend_open (const char *address, struct vmdr_backend **out);

/* Convenience wrappers over the ops, so callers read naturally. */
static inline void
vmdr_backend_close (struct vmdr_backend *b)
{
  if (b)
    b->ops->close (b);
}

bool vmdr_key_valid (const char *key);

#endif
