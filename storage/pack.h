/* Packs and pack indexes (docs/repository-format.md sections 5 and 6).
 *
 * A pack writer collects encoded blobs in memory up to a target size; finish
 * turns them into the pack object (blobs, a copy of the index, a trailer),
 * the separate index object, and the pack's id (the digest of its bytes).
 * Not thread-safe: the repository serialises access to its writer.
 */
#ifndef VMDR_PACK_H
#define VMDR_PACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blob.h"
#include "digest.h"

#define VMDR_PACK_INDEX_MAX_ENTRIES (1u << 20)
#define VMDR_PACK_ENTRY_LEN 48
#define VMDR_PACK_MAX_SIZE (1ull << 30)

struct vmdr_pack_entry {
  struct vmdr_digest digest;
  uint32_t offset;              /* of the blob header within the pack */
  uint32_t stored_len;          /* payload bytes (the blob is 56 more) */
  uint32_t raw_len;
  uint8_t kind;                 /* enum vmdr_blob_kind */
  uint8_t grouped;              /* 1: a member of the group blob at offset */
};

struct vmdr_pack_writer;

/* A writer for packs of about TARGET bytes (1 MiB .. 1 GiB).
 * 0, -EINVAL, -ENOMEM. */
int vmdr_pack_writer_new (size_t target, struct vmdr_pack_writer **out);
void vmdr_pack_writer_free (struct vmdr_pack_writer *w);   /* NULL is fine */

/* Append one encoded blob (header + payload, as vmdr_blob_encode made it;
 * a group blob gets an entry for each member, at the group's offset).
 * 0, -EBADMSG (not a blob), -EFBIG (the pack would exceed 4 GiB offsets or
 * the entry limit: finish it first), -ENOMEM. */
int vmdr_pack_add (struct vmdr_pack_writer *w, const void *blob, size_t len);

/* Bytes and blobs collected so far. */
size_t vmdr_pack_bytes (const struct vmdr_pack_writer *w);
size_t vmdr_pack_count (const struct vmdr_pack_writer *w);

/* True once the collected bytes reach the target: time to finish. */
int vmdr_pack_full (const struct vmdr_pack_writer *w);

/* The pack's entries so far, in the order added (valid until the next add or
 * finish). */
const struct vmdr_pack_entry *vmdr_pack_entries (const struct vmdr_pack_writer *w);

/* Finish the pack: *pack (the writer's own buffer, valid until the writer
 * is reset or freed) and *index (malloc'd, the caller's) are the objects
 * to put, pack first; *id, its name, is the digest under H of its bytes
 * (BY_BYTES: an S3 put signs it as the payload's SHA-256), else of its
 * XXH3-128 and its index (docs/repository-format.md section 1).  The writer is
 * sealed afterwards: adds fail with -EINVAL until vmdr_pack_writer_reset.
 * -ENODATA if it holds no blob, -ENOMEM. */
int vmdr_pack_finish (struct vmdr_pack_writer *w, enum vmdr_hash h, bool by_bytes,
                      const void **pack, size_t *pack_len,
                      void **index, size_t *index_len,
                      struct vmdr_digest *id);

/* Empty W for the next pack, keeping its buffers: a pack's worth of memory
 * is not mapped, faulted in and unmapped again for every pack. */
void vmdr_pack_writer_reset (struct vmdr_pack_writer *w);

/* Parse an index object (or the copy at the end of a pack): magic, bounds,
 * sorted unique digests, in-range offsets, checksum.  *entries is malloc'd
 * (*n of them, sorted by digest).  0 or -EBADMSG, -ENOMEM. */
int vmdr_pack_index_parse (const void *buf, size_t len,
                           struct vmdr_pack_entry **entries, size_t *n);

/* Keys of a pack and its index: "data/XX/HEX", "index/XX/HEX".
 * KEY holds at least VMDR_PACK_KEY_LEN bytes. */
#define VMDR_PACK_KEY_LEN 80
void vmdr_pack_key (const struct vmdr_digest *id, char *key);
void vmdr_pack_index_key (const struct vmdr_digest *id, char *key);

/* The pack id in an index key ("index/XX/HEX" -> digest); 0 or -EINVAL. */
int vmdr_pack_id_from_index_key (const char *key, struct vmdr_digest *id);

#endif
