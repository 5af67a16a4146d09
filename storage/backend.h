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
#define VMDR_READ_MAX (64u << 20)      /* the most one read op returns */

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

  /* The same as put, with SHA256 the SHA-256 of DATA, known to the caller
   * (a pack's id), so that a backend that signs the payload's hash need not
   * compute it again.  NULL: put is called (vmdr_backend_put_sha256). */
  int (*put_sha256) (struct vmdr_backend *b, const char *key, const void *data,
                     size_t len, unsigned flags, const uint8_t sha256[32]);

  /* Read LEN bytes at OFFSET of KEY (LEN = 0: from OFFSET to the end),
   * refusing with -EFBIG an answer larger than MAX.  *data is malloc'd with
   * *len_out bytes plus a NUL byte, and is the caller's.  -ENOENT if absent,
   * -ERANGE when the object is shorter than OFFSET+LEN. */
  int (*get) (struct vmdr_backend *b, const char *key, uint64_t offset,
              size_t len, size_t max, void **data, size_t *len_out);

  /* Read exactly LEN (1 .. VMDR_READ_MAX) bytes at OFFSET of KEY into BUF,
   * which the caller owns: the read path's get, without an allocation per
   * call.  Only for objects that are never replaced once written (packs,
   * whose key is the digest of their bytes): a backend may keep such an
   * object open between calls (the local one keeps a few descriptors), so
   * a replacement by another process may go unseen; its own put and del
   * are seen.  May be called from several threads at once.  BUF is
   * unspecified on failure.  -ENOENT if absent, -ERANGE when the object
   * is shorter than OFFSET+LEN, -EINVAL (bad key or LEN), -EIO.
   * NULL when the backend has nothing cheaper than get: callers then use
   * get (vmdr_backend_read does). */
  int (*read) (struct vmdr_backend *b, const char *key, uint64_t offset,
               size_t len, void *buf);

  /* Advice: LEN bytes at OFFSET of KEY will be read soon (by read), so a
   * backend may start fetching them now, without waiting.  Errors are not
   * reported.  NULL when a backend has no use for it. */
  void (*prefetch) (struct vmdr_backend *b, const char *key, uint64_t offset,
                    size_t len);

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

  /* Words for the last call of B that failed for good, from any thread, into
   * BUF (SIZE bytes, NUL-terminated): what the server said where the errno
   * cannot say it ("HTTP 403 AccessDenied: Access Denied").  False (BUF
   * empty) when there is none.  An absent key is not recorded: the errno
   * says it all.  Never a credential.  NULL for backends whose errnos say
   * everything (the local one). */
  bool (*describe_error) (struct vmdr_backend *b, char *buf, size_t size);
};

/* The base every backend's state embeds first. */
struct vmdr_backend {
  const struct vmdr_backend_ops *ops;
};

extern const struct vmdr_backend_ops vmdr_backend_local;
extern const struct vmdr_backend_ops vmdr_backend_s3;

/* Open a repository address: "file:///path", "file://path", a plain path,
 * or "s3://BUCKET[/PREFIX]" (backend-s3.c; endpoint, region and credentials
 * from the AWS environment and files, see vmdr_s3_config_from_env).
 * -EAFNOSUPPORT for a scheme no backend handles (the caller names it). */
int vmdr_backend_open (const char *address, struct vmdr_backend **out);

/* Convenience wrappers over the ops, so callers read naturally. */
static inline void
vmdr_backend_close (struct vmdr_backend *b)
{
  if (b)
    b->ops->close (b);
}

/* The read op, or get and a copy where the backend has none.  Same
 * contract as the op. */
int vmdr_backend_read (struct vmdr_backend *b, const char *key,
                       uint64_t offset, size_t len, void *buf);

/* The put_sha256 op, or put where the backend has none. */
int vmdr_backend_put_sha256 (struct vmdr_backend *b, const char *key, const void *data,
                             size_t len, unsigned flags, const uint8_t sha256[32]);

bool vmdr_key_valid (const char *key);

/* Why the calling thread's last backend call failed, in words its errno
 * cannot carry: "HTTP 404 NoSuchBucket", "HTTP 403 SignatureDoesNotMatch",
 * "Failed to connect to ... (gave up after 5 attempts in 15 s)", "no S3
 * credentials: ...".  NULL when that call set none (the local backend
 * never does) or succeeded.  For the tools' messages: above all after a
 * failed vmdr_backend_open or vmdr_repo_open, when there is no backend to
 * ask describe_error.  Never holds a credential. */
const char *vmdr_backend_error (void);

/* For backends: set the calling thread's text (printf FMT), or clear it
 * (FMT NULL; every call of a backend that sets texts starts so). */
void vmdr_backend_set_error (const char *fmt, ...)
  __attribute__((format (printf, 1, 2)));

#endif
