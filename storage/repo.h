/* A repository: its config, its chunk index, and chunk reads and writes
 * (docs/repository-format.md).  Backend-independent: everything goes
 * through struct vmdr_backend.
 *
 * Thread safety: vmdr_repo_put_chunk, vmdr_repo_has_chunk,
 * vmdr_repo_get_chunk and vmdr_repo_get_chunks may be called from several
 * threads at once (each with its own struct vmdr_zctx or
 * vmdr_repo_reader); the other calls are not concurrent with them.
 */
#ifndef VMDR_REPO_H
#define VMDR_REPO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "backend.h"
#include "blob.h"
#include "digest.h"

#define VMDR_FORMAT_VERSION 2
#define VMDR_CONFIG_MAX (64u << 10)
#define VMDR_CHUNK_MIN (64u << 10)
#define VMDR_CHUNK_MAX (4u << 20)

struct vmdr_repo_config {
  int version;
  char id[33];                  /* 32 hex digits */
  char created[32];             /* ISO 8601 UTC */
  enum vmdr_hash hash;
  uint32_t chunk_size;          /* power of two, VMDR_CHUNK_MIN .. MAX */
  uint32_t fanout;              /* power of two, 16 .. 4096 */
  uint32_t cdc_min, cdc_avg, cdc_max;
  int zstd_level;
  uint64_t pack_size;
  /* Version 2: a disk's new chunks in each aligned run of group_size bytes
   * are stored as one group blob (0: one blob per chunk, version 1). */
  uint32_t group_size;
};
/* A restore reads 8 MiB batches: a bigger group would be decompressed by
 * each batch it spans. */
#define VMDR_GROUP_SIZE_MAX (8u << 20)

/* The defaults vmdr-init uses: the hash by vmdr_hash_default, a fresh random
 * id, the creation time now.  0 or -errno (no randomness). */
int vmdr_repo_config_default (struct vmdr_repo_config *cfg);

/* 0 when every value is in range, else -EINVAL. */
int vmdr_repo_config_check (const struct vmdr_repo_config *cfg);

/* JSON <-> config.  parse: -EBADMSG when not JSON or not a vmdr config,
 * -EPROTONOSUPPORT for a version newer than VMDR_FORMAT_VERSION, -EINVAL for
 * values out of range.  format: a malloc'd NUL-terminated string. */
int vmdr_repo_config_parse (const char *json, size_t len,
                            struct vmdr_repo_config *cfg);
int vmdr_repo_config_format (const struct vmdr_repo_config *cfg, char **json);

struct vmdr_repo;

/* Create a repository at ADDRESS (the directory must exist; it may hold
 * other files but no config).  -EEXIST when it already is a repository. */
int vmdr_repo_init (const char *address, const struct vmdr_repo_config *cfg);

/* Open the repository at ADDRESS and read its config.  -ENOENT for a missing
 * location, -ENOTRECOVERABLE when the location holds no repository (no
 * config), -EPROTONOSUPPORT for a newer format, -EBADMSG for a damaged
 * config, and the backend's errors. */
int vmdr_repo_open (const char *address, struct vmdr_repo **out);

/* Close, discarding chunks not flushed.  NULL is fine. */
void vmdr_repo_close (struct vmdr_repo *repo);

const struct vmdr_repo_config *vmdr_repo_config (const struct vmdr_repo *repo);
struct vmdr_backend *vmdr_repo_backend (struct vmdr_repo *repo);

/* Read every pack index, building the chunk index that put (to skip chunks
 * already stored) and get (to find them) need, afresh: a second call drops
 * what a GC deleted meanwhile.  Damaged index objects are skipped and
 * counted in *damaged (may be NULL).  0, -EBUSY (chunks not flushed yet),
 * or -errno. */
int vmdr_repo_load_index (struct vmdr_repo *repo, size_t *damaged);

/* Stored (or waiting in the current pack)? */
bool vmdr_repo_has_chunk (struct vmdr_repo *repo, const struct vmdr_digest *d);

/* Store LEN bytes with digest D unless a chunk with that digest exists.
 * *stored_bytes (may be NULL) gets the bytes it added to the repository
 * (0 for a duplicate).  Full packs are written as they fill.  0 or -errno. */
int vmdr_repo_put_chunk (struct vmdr_repo *repo, struct vmdr_zctx *z,
                         enum vmdr_blob_kind kind, const struct vmdr_digest *d,
                         const void *data, size_t len, size_t *stored_bytes);

/* Store the N chunks of M (at most VMDR_GROUP_MAX, data pointers set) that
 * the repository lacks: as one group blob when the config asks for groups
 * and two or more are new and compress, else one by one as put_chunk
 * does.  STORED[i] (may be NULL) gets the bytes chunk i added (a group's
 * bytes shared out by plaintext length; 0 for one already there).
 * 0 or -errno. */
int vmdr_repo_put_chunks (struct vmdr_repo *repo, struct vmdr_zctx *z,
                          enum vmdr_blob_kind kind, const struct vmdr_blob_member *m,
                          size_t n, size_t *stored);

/* Store BLOB (BLEN bytes, header and payload, as vmdr_repo_get_blob gave
 * it: verified) as it is, unless a chunk with digest D exists: a copy
 * between repositories neither decompresses nor compresses again.  A group
 * blob brings all its members.  *stored_bytes as for put_chunk.  0, -EINVAL
 * (not a blob of D), -EPROTONOSUPPORT (a group, into a version 1
 * repository: put the chunk instead), -errno. */
int vmdr_repo_put_blob (struct vmdr_repo *repo, const struct vmdr_digest *d,
                        const void *blob, size_t blen, size_t *stored_bytes);

/* Write the current pack and its index.  After it returns 0 every chunk put
 * so far is durable and visible.  0 or -errno.
 * Packs become visible in the order they were filled, and after a pack
 * failed no later one does: a blob put after others is never visible
 * without them (an index node without the chunks below it). */
int vmdr_repo_flush (struct vmdr_repo *repo);

/* Read chunk D into BUF (CAP bytes), verifying it.  0 and *len, or -ENOENT
 * (not in the index), -EBADMSG / -EILSEQ (damaged, see vmdr_blob_decode),
 * -ENOBUFS, and the backend's errors. */
int vmdr_repo_get_chunk (struct vmdr_repo *repo, struct vmdr_zctx *z,
                         const struct vmdr_digest *d, void *buf, size_t cap,
                         size_t *len);

/* The same, and the stored blob as read: *blob and *blen, for
 * vmdr_repo_put_blob.  *blob is in Z's read buffer (vmdr_zctx_buffer):
 * valid until Z reads another.  On failure *blob is NULL. */
int vmdr_repo_get_blob (struct vmdr_repo *repo, struct vmdr_zctx *z, const struct vmdr_digest *d,
                        const void **blob, size_t *blen, void *buf, size_t cap, size_t *len);

/* Per-thread state for vmdr_repo_get_chunks: a decompression context and
 * the read buffer, kept from call to call (no allocation per chunk).
 * 0, -ENOMEM. */
struct vmdr_repo_reader;
int vmdr_repo_reader_new (struct vmdr_repo *repo, struct vmdr_repo_reader **out);
void vmdr_repo_reader_free (struct vmdr_repo_reader *rd);     /* NULL is fine */

/* One chunk to read: the caller fills d, buf and cap; vmdr_repo_get_chunks
 * sets err (0 or what vmdr_repo_get_chunk would return for it) and, when
 * err is 0, len. */
struct vmdr_chunk_get {
  struct vmdr_digest d;
  void *buf;
  size_t cap;
  size_t len;
  int err;
};

/* The most chunks one vmdr_repo_get_chunks call takes, and the most bytes
 * it reads from a pack at once. */
#define VMDR_GET_CHUNKS_MAX 256
#define VMDR_GET_READ_MAX (4u << 20)

/* Read and verify the N chunks of REQ (every one, as vmdr_repo_get_chunk
 * does), with one backend read for each run of blobs that lie close
 * together in one pack (up to VMDR_GET_READ_MAX bytes, small gaps read
 * and ignored): a full backup's chunks lie in pack order, so a disk's
 * consecutive chunks come in a few large reads.  When such a read fails,
 * its blobs are read one by one, so that each request gets its own
 * error.  The same chunk may be asked for twice.  RD is the calling
 * thread's.  0 (each request's err says how it went), or -EINVAL (N
 * above VMDR_GET_CHUNKS_MAX) with no request touched. */
int vmdr_repo_get_chunks (struct vmdr_repo *repo, struct vmdr_repo_reader *rd,
                          struct vmdr_chunk_get *req, size_t n);

/* Advice: the N chunks of D (at most VMDR_GET_CHUNKS_MAX) will be read
 * soon; where the backend can, it starts fetching their runs of blobs now
 * (vmdr_backend_ops.prefetch).  Chunks not found are left out. */
void vmdr_repo_prefetch (struct vmdr_repo *repo, const struct vmdr_digest *d, size_t n);

/* Where chunk D is stored: 0 and the pack id, or -ENOENT. */
int vmdr_repo_locate (struct vmdr_repo *repo, const struct vmdr_digest *d,
                      struct vmdr_digest *pack, uint32_t *offset,
                      uint32_t *stored_len);
/* Its plaintext length, as its pack index says, and (GROUPED may be NULL)
 * whether it is stored in a group blob: 0, or -ENOENT. */
int vmdr_repo_raw_len (struct vmdr_repo *repo, const struct vmdr_digest *d,
                       uint32_t *raw_len, bool *grouped);

/* Number of chunks in the index (stored and pending). */
size_t vmdr_repo_chunk_count (struct vmdr_repo *repo);

#endif
