#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "buf.h"
#include "endian-util.h"
#include "pack.h"

static const char index_magic[4] = { 'V', 'M', 'I', '1' };
static const char trailer_magic[4] = { 'V', 'M', 'P', 'T' };

struct vmdr_pack_writer {
  size_t target;
  uint8_t *buf;
  size_t len, cap;
  struct vmdr_pack_entry *entries;
  size_t n, ncap;
  bool sealed;                  /* finished: buf is the pack until a reset */
};

int
vmdr_pack_writer_new (size_t target, struct vmdr_pack_writer **out)
{
  struct vmdr_pack_writer *w;

  if (target < (1u << 20) || target > VMDR_PACK_MAX_SIZE)
    return -EINVAL;
  w = calloc (1, sizeof *w);
  if (w == NULL)
    return -ENOMEM;
  w->target = target;
  *out = w;
  return 0;
}

void
vmdr_pack_writer_free (struct vmdr_pack_writer *w)
{
  if (w == NULL)
    return;
  free (w->buf);
  free (w->entries);
  free (w);
}

static int
grow (void **p, size_t *cap, size_t need, size_t elem)
{
  size_t c = *cap ? *cap : 64;
  void *q;

  if (need <= *cap)
    return 0;
  while (c < need)
    c *= 2;
  q = reallocarray (*p, c, elem);
  if (q == NULL)
    return -ENOMEM;
  *p = q;
  *cap = c;
  return 0;
}

static int
grow_buf (struct vmdr_pack_writer *w, size_t need)
{
  /* Room at once for a pack of the target size, the blob that takes it
   * past the target (by default an 8 MiB group, half a pack) and its
   * index: growing by doubling copies and faults in as much again, for
   * every pack writer a run keeps. */
  size_t c = w->cap ? w->cap : w->target + w->target / 2 + (1u << 20);
  uint8_t *q;

  if (need <= w->cap)
    return 0;
  while (c < need)
    c *= 2;
  c = vmdr_buf_round (c);
  /* Aligned: a local backend writes it with O_DIRECT as it is, without a
   * copy through a bounce buffer. */
  if ((q = vmdr_buf_alloc (c)) == NULL)
    return -ENOMEM;
  if (w->len)
    memcpy (q, w->buf, w->len);
  free (w->buf);
  w->buf = q;
  w->cap = c;
  return 0;
}

int
vmdr_pack_add (struct vmdr_pack_writer *w, const void *blob, size_t len)
{
  struct vmdr_blob_header h;
  const uint8_t *table = NULL;
  size_t members = 1;
  int r;

  r = vmdr_blob_parse_header (blob, len, &h);
  if (r < 0)
    return r;
  if (len != VMDR_BLOB_HEADER_LEN + (size_t) h.stored_len)
    return -EBADMSG;
  /* A group's members each get an entry, all at the group's offset. */
  if (h.compression == VMDR_BLOB_GROUP &&
      (r = vmdr_blob_group_table (blob, len, &h, &table, &members)) < 0)
    return r;
  if (w->sealed)
    return -EINVAL;
  if (w->len + len > UINT32_MAX || w->n + members > VMDR_PACK_INDEX_MAX_ENTRIES)
    return -EFBIG;
  if ((r = grow_buf (w, w->len + len)) < 0 ||
      (r = grow ((void **) &w->entries, &w->ncap, w->n + members, sizeof *w->entries)) < 0)
    return r;
  for (size_t i = 0; i < members; i++) {
    struct vmdr_pack_entry *e = &w->entries[w->n++];
    *e = (struct vmdr_pack_entry) {
      .digest = h.digest, .offset = (uint32_t) w->len,
      .stored_len = h.stored_len, .raw_len = h.raw_len, .kind = (uint8_t) h.kind,
    };
    if (table) {
      e->grouped = 1;
      vmdr_blob_group_member (table, i, &e->digest, &e->raw_len);
    }
  }
  memcpy (w->buf + w->len, blob, len);
  w->len += len;
  return 0;
}

size_t vmdr_pack_bytes (const struct vmdr_pack_writer *w) { return w->len; }
size_t vmdr_pack_count (const struct vmdr_pack_writer *w) { return w->n; }
int vmdr_pack_full (const struct vmdr_pack_writer *w) { return w->len >= w->target; }

const struct vmdr_pack_entry *
vmdr_pack_entries (const struct vmdr_pack_writer *w)
{
  return w->entries;
}

static int
cmp_entry (const void *a, const void *b)
{
  return memcmp (&((const struct vmdr_pack_entry *) a)->digest,
                 &((const struct vmdr_pack_entry *) b)->digest,
                 VMDR_DIGEST_LEN);
}

/* Serialise sorted ENTRIES as an index object into OUT (8 + 48n + 8 bytes). */
static void
encode_index (const struct vmdr_pack_entry *e, size_t n, uint8_t *out)
{
  uint8_t *p = out + 8;

  memcpy (out, index_magic, 4);
  put_le32 (out + 4, (uint32_t) n);
  for (size_t i = 0; i < n; i++, p += VMDR_PACK_ENTRY_LEN) {
    memcpy (p, e[i].digest.b, VMDR_DIGEST_LEN);
    put_le32 (p + 32, e[i].offset);
    put_le32 (p + 36, e[i].stored_len);
    put_le32 (p + 40, e[i].raw_len);
    p[44] = e[i].kind;
    p[45] = e[i].grouped;
    p[46] = p[47] = 0;
  }
  put_le64 (p, XXH3_64bits (out, (size_t) (p - out)));
}

/* The cheap name: the digest of the pack's XXH3-128 and its index (every
 * blob's digest, place and lengths).  Digesting the whole pack again would
 * cost 5 % of a full backup's CPU. */
static int
name_by_index (enum vmdr_hash h, const struct vmdr_pack_writer *w, const uint8_t *idx,
               size_t ilen, struct vmdr_digest *id)
{
  XXH128_hash_t x = XXH3_128bits (w->buf, w->len);
  uint8_t *b = malloc (16 + ilen);
  int r;

  if (b == NULL)
    return -ENOMEM;
  put_le64 (b, x.low64);
  put_le64 (b + 8, x.high64);
  memcpy (b + 16, idx, ilen);
  r = vmdr_digest (h, b, 16 + ilen, id);
  free (b);
  return r;
}

int
vmdr_pack_finish (struct vmdr_pack_writer *w, enum vmdr_hash h, bool by_bytes,
                  const void **pack, size_t *pack_len,
                  void **index, size_t *index_len, struct vmdr_digest *id)
{
  size_t ilen = 8 + VMDR_PACK_ENTRY_LEN * w->n + 8;
  uint8_t *idx, *p;
  int r;

  if (w->n == 0)
    return -ENODATA;
  /* The index lists each digest once, even if a caller added a blob twice
   * (the pack then carries a dead copy, which GC reclaims). */
  qsort (w->entries, w->n, sizeof *w->entries, cmp_entry);
  size_t u = 1;
  for (size_t i = 1; i < w->n; i++)
    if (cmp_entry (&w->entries[u - 1], &w->entries[i]) != 0)
      w->entries[u++] = w->entries[i];
  w->n = u;
  ilen = 8 + VMDR_PACK_ENTRY_LEN * w->n + 8;
  idx = malloc (ilen);
  if (idx == NULL)
    return -ENOMEM;
  encode_index (w->entries, w->n, idx);
  /* The pack: blobs, the index copy, its length and the trailer magic. */
  r = grow_buf (w, w->len + ilen + 8);
  if (r < 0) {
    free (idx);
    return r;
  }
  p = w->buf + w->len;
  memcpy (p, idx, ilen);
  put_le32 (p + ilen, (uint32_t) ilen);
  memcpy (p + ilen + 4, trailer_magic, 4);
  w->len += ilen + 8;
  r = by_bytes ? vmdr_digest (h, w->buf, w->len, id) : name_by_index (h, w, idx, ilen, id);
  if (r < 0) {
    w->len -= ilen + 8;
    free (idx);
    return r;
  }
  *pack = w->buf;
  *pack_len = w->len;
  *index = idx;
  *index_len = ilen;
  w->n = 0;
  w->sealed = true;
  return 0;
}

void
vmdr_pack_writer_reset (struct vmdr_pack_writer *w)
{
  w->len = 0;
  w->n = 0;
  w->sealed = false;
}

int
vmdr_pack_index_parse (const void *buf, size_t len,
                       struct vmdr_pack_entry **entries, size_t *n)
{
  const uint8_t *b = buf, *p;
  struct vmdr_pack_entry *e;
  uint32_t count;

  if (len < 16 || memcmp (b, index_magic, 4) != 0)
    return -EBADMSG;
  count = get_le32 (b + 4);
  if (count == 0 || count > VMDR_PACK_INDEX_MAX_ENTRIES ||
      len != 16 + (size_t) count * VMDR_PACK_ENTRY_LEN)
    return -EBADMSG;
  if (XXH3_64bits (b, len - 8) != get_le64 (b + len - 8))
    return -EBADMSG;
  e = calloc (count, sizeof *e);
  if (e == NULL)
    return -ENOMEM;
  p = b + 8;
  for (uint32_t i = 0; i < count; i++, p += VMDR_PACK_ENTRY_LEN) {
    memcpy (e[i].digest.b, p, VMDR_DIGEST_LEN);
    e[i].offset = get_le32 (p + 32);
    e[i].stored_len = get_le32 (p + 36);
    e[i].raw_len = get_le32 (p + 40);
    e[i].kind = p[44];
    e[i].grouped = p[45];
    if (e[i].kind < VMDR_BLOB_DATA || e[i].kind > VMDR_BLOB_STREAM_NODE || e[i].grouped > 1 ||
        e[i].stored_len == 0 || e[i].stored_len > VMDR_BLOB_MAX_STORED ||
        e[i].raw_len == 0 || e[i].raw_len > VMDR_BLOB_MAX_RAW ||
        (uint64_t) e[i].offset + VMDR_BLOB_HEADER_LEN + e[i].stored_len > UINT32_MAX ||
        (i > 0 && memcmp (&e[i - 1].digest, &e[i].digest, VMDR_DIGEST_LEN) >= 0)) {
      free (e);
      return -EBADMSG;
    }
  }
  *entries = e;
  *n = count;
  return 0;
}

static void
key_of (const char *dir, const struct vmdr_digest *id, char *key)
{
  char hex[VMDR_DIGEST_HEX_LEN + 1];

  vmdr_digest_to_hex (id, hex);
  snprintf (key, VMDR_PACK_KEY_LEN, "%s/%.2s/%s", dir, hex, hex);
}

void vmdr_pack_key (const struct vmdr_digest *id, char *key) { key_of ("data", id, key); }
void vmdr_pack_index_key (const struct vmdr_digest *id, char *key) { key_of ("index", id, key); }

int
vmdr_pack_id_from_index_key (const char *key, struct vmdr_digest *id)
{
  /* "index/" + 2 + "/" + 64 hex */
  if (strlen (key) != 6 + 3 + VMDR_DIGEST_HEX_LEN ||
      strncmp (key, "index/", 6) != 0 || key[8] != '/' ||
      strncmp (key + 6, key + 9, 2) != 0)
    return -EINVAL;
  return vmdr_digest_from_hex (key + 9, id);
}
