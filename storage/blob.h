/* Blobs: one stored chunk or index node, as in docs/repository-format.md
 * section 4: a 56-byte header (kind, compression, lengths, XXH3-64 of the
 * header and payload, digest of the plaintext) and the payload, raw or one zstd frame.
 * A group blob (format version 2) holds several chunks: a table of their
 * digests and lengths, and one zstd frame of their plaintexts in order.
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
  VMDR_BLOB_GROUP = 2,          /* member table + one zstd frame of them all */
};

/* A group's members: 2 .. VMDR_GROUP_MAX, a table entry of 36 bytes each. */
#define VMDR_GROUP_MAX 256
#define VMDR_GROUP_ENTRY_LEN (VMDR_DIGEST_LEN + 4)

struct vmdr_blob_header {
  enum vmdr_blob_kind kind;
  enum vmdr_blob_compression compression;
  uint32_t raw_len;
  uint32_t stored_len;
  uint64_t checksum;            /* XXH3-64 of header (less this) + payload */
  struct vmdr_digest digest;    /* of the plaintext; a group's: of its table */
};

/* Compression state for one thread: zstd contexts are expensive to make and
 * not thread-safe, so each worker owns one. */
struct vmdr_zctx;

/* LEVEL: zstd level, negative levels allowed (ZSTD_minCLevel .. ZSTD_maxCLevel).
 * 0, -EINVAL for a level out of range, -ENOMEM. */
int vmdr_zctx_new (int level, struct vmdr_zctx **out);
void vmdr_zctx_free (struct vmdr_zctx *z);       /* NULL is fine */

/* Buffers a zctx keeps for its thread from call to call, so that blobs do
 * not each cost an allocation and the page faults of fresh memory: one for
 * a blob being encoded, one for a blob as read.  At least LEN bytes, the
 * contents not kept; valid until the next call for the same one, or the
 * zctx's end.  NULL when out of memory. */
enum vmdr_zbuf { VMDR_ZBUF_ENCODE, VMDR_ZBUF_READ };
void *vmdr_zctx_buffer (struct vmdr_zctx *z, enum vmdr_zbuf which, size_t len);

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
 * (CAP bytes, at least the header's raw_len).  A group blob yields member
 * EXPECT (required then), and every member is checked against its digest:
 * a group copied whole is a group verified whole.  Checks, in order: header,
 * length, XXH3 of the payload, decompression, the plaintext's digest under
 * algorithm H, and that digest against EXPECT (when not NULL).
 * 0 and *raw_len, or -EBADMSG (malformed, checksum mismatch, zstd error),
 * -EILSEQ (the plaintext does not have the digest it claims or is expected
 * to), -ENOBUFS (CAP too small). */
int vmdr_blob_decode (struct vmdr_zctx *z, enum vmdr_hash h,
                      const void *blob, size_t len,
                      const struct vmdr_digest *expect,
                      void *out, size_t cap, size_t *raw_len);

/* One chunk of a group: its digest, plaintext (for encoding) and length. */
struct vmdr_blob_member {
  struct vmdr_digest d;
  const void *data;
  uint32_t len;
};

/* Bytes a group blob of N members with RAW_LEN plaintext bytes in all may
 * take at most. */
size_t vmdr_blob_group_bound (size_t n, size_t raw_len);

/* Encode the N members M (2 .. VMDR_GROUP_MAX, distinct, non-zero digests
 * under H, RAW_LEN bytes in all at most VMDR_BLOB_MAX_RAW) as one group
 * blob of KIND into OUT (CAP bytes, at least vmdr_blob_group_bound).
 * Chunks that lie side by side compress together: an 8 MiB frame of a
 * disk's chunks at zstd 2 is 14 % smaller than their 64 KiB frames at
 * zstd 1, for about the same CPU.
 * 0, -EINVAL, -ERANGE (the frame is not smaller than the plaintext: store
 * the members one by one, raw), -EIO. */
int vmdr_blob_encode_group (struct vmdr_zctx *z, enum vmdr_hash h, enum vmdr_blob_kind kind,
                            const struct vmdr_blob_member *m, size_t n,
                            void *out, size_t cap, size_t *out_len);

/* The member table of the group blob BLOB (LEN bytes, header parsed into
 * HDR): *n entries of VMDR_GROUP_ENTRY_LEN bytes at *table (digest, le32
 * length), in the blob.  Checks the count, lengths and their sum, not the
 * checksum.  0 or -EBADMSG. */
int vmdr_blob_group_table (const void *blob, size_t len, const struct vmdr_blob_header *hdr,
                           const uint8_t **table, size_t *n);

/* Entry I of a member table (as vmdr_blob_group_table gives it): the
 * member's digest and length. */
void vmdr_blob_group_member (const uint8_t *table, size_t i, struct vmdr_digest *d,
                             uint32_t *len);

/* A group blob checked and decompressed by vmdr_blob_group_open: the table
 * in the blob, the plaintext in the zctx's own buffer (valid until the
 * zctx is used again). */
struct vmdr_blob_group {
  const uint8_t *table;
  size_t n;
  const uint8_t *plain;
  size_t raw_len;
};

/* Check the group blob BLOB of LEN bytes (header, length, XXH3, the table
 * and its digest under H) and decompress it.  0, -EBADMSG, -EILSEQ (the
 * table does not have its digest), -ENOMEM, -EINVAL (not a group). */
int vmdr_blob_group_open (struct vmdr_zctx *z, enum vmdr_hash h, const void *blob, size_t len,
                          struct vmdr_blob_group *g);

/* Member D of G: its plaintext checked against D and copied into OUT (CAP
 * bytes).  0 and *len, -ENOENT (not a member), -EILSEQ, -ENOBUFS. */
int vmdr_blob_group_get (const struct vmdr_blob_group *g, enum vmdr_hash h,
                         const struct vmdr_digest *d, void *out, size_t cap, size_t *len);

#endif
