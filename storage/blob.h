/* Blobs: one stored chunk or index node, as in docs/repository-format.md
 * section 4: a 56-byte header (kind, compression, lengths, XXH3-64 of the
 * header and payload, digest of the plaintext) and the payload, raw or one zstd frame.
 *
 * Every decode checks the XXH3 of the header and stored bytes, then the
 * digest of the plaintext: damage is found whatever it hits.
 */
#ifndef VMDR_BLOB_H
#define VMDR_BLOB_H

#include <stddef.h>
#include <stdint.h>

#include "digest.h"

#define VMDR_BLOB_HEADER_LEN 56
#define VMDR_BLOB_MAX_RAW (16u << 20)
#define VMDR_BLOB_MAX_STORED (VMDR_BLOB_MAX_RAW + (64u << 10))

enum vmdr_blob_kind {
  VMDR_BLOB_DATA = 1,
  VMDR_BLOB_DISK_NODE = 2,
  VMDR_BLOB_STREAM_NODE = 3,
};

enum vmdr_blob_compression {
  VMDR_BLOB_RAW = 0,
  VMDR_BLOB_ZSTD = 1,
};

struct vmdr_blob_header {
  enum vmdr_blob_kind kind;
  enum vmdr_blob_compression compression;
  uint32_t raw_len;
  uint32_t stored_len;
  uint64_t checksum;            /* XXH3-64 of header (less this) + payload */
  struct vmdr_digest digest;    /* of the plaintext */
};

/* Compression state for one thread: zstd contexts are expensive to make and
 * not thread-safe, so each worker owns one. */
struct vmdr_zctx;

/* LEVEL: zstd level, negative levels allowed (ZSTD_minCLevel .. ZSTD_maxCLevel).
 * 0, -EINVAL for a level out of range, -ENOMEM. */
int vmdr_zctx_new (int level, struct vmdr_zctx **out);
void vmdr_zctx_free (struct vmdr_zctx *z);       /* NULL is fine */

/* Bytes an encoded blob of RAW_LEN plaintext bytes may take at most. */
size_t vmdr_blob_bound (size_t raw_len);

/* Encode LEN bytes of plaintext RAW with digest D into OUT (CAP bytes, at
 * least vmdr_blob_bound (len)); compressed unless that does not make it
 * smaller, or Z is NULL (for a stream compressed whole around the blobs).
 * *out_len: header + payload.  0, -EINVAL (len 0 or above
 * VMDR_BLOB_MAX_RAW, cap too small), -EIO (zstd failed). */
int vmdr_blob_encode (struct vmdr_zctx *z, enum vmdr_blob_kind kind,
                      const struct vmdr_digest *d, const void *raw, size_t len,
                      void *out, size_t cap, size_t *out_len);

/* Parse and range-check the header at BUF (LEN bytes available, at least the
 * header).  Does not look at the payload.  0 or -EBADMSG (bad magic, kind,
 * compression or lengths). */
int vmdr_blob_parse_header (const void *buf, size_t len,
                            struct vmdr_blob_header *h);

/* Decode the blob of LEN bytes at BLOB (header + payload, exactly) into OUT
 * (CAP bytes, at least the header's raw_len).  Checks, in order: header,
 * length, XXH3 of the payload, decompression, the plaintext's digest under
 * algorithm H, and that digest against EXPECT (when not NULL).
 * 0 and *raw_len, or -EBADMSG (malformed, checksum mismatch, zstd error),
 * -EILSEQ (the plaintext does not have the digest it claims or is expected
 * to), -ENOBUFS (CAP too small). */
int vmdr_blob_decode (struct vmdr_zctx *z, enum vmdr_hash h,
                      const void *blob, size_t len,
                      const struct vmdr_digest *expect,
                      void *out, size_t cap, size_t *raw_len);

#endif
