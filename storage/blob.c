#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define XXH_STATIC_LINKING_ONLY   /* XXH3_state_t on the stack */
#include <xxhash.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "blob.h"
#include "buf.h"
#include "endian-util.h"

static const char blob_magic[4] = { 'V', 'M', 'B', '1' };

struct vmdr_zctx {
  ZSTD_CCtx *c;
  ZSTD_DCtx *d;
  uint8_t *plain;               /* a group's plaintext, decompressed */
  size_t plain_cap;
  uint8_t *gather;              /* scattered members, side by side */
  size_t gather_cap;
  uint8_t *buf[2];              /* vmdr_zctx_buffer's */
  size_t buf_cap[2];
};

int
vmdr_zctx_new (int level, struct vmdr_zctx **out)
{
  struct vmdr_zctx *z;

  if (level < ZSTD_minCLevel () || level > ZSTD_maxCLevel ())
    return -EINVAL;
  z = calloc (1, sizeof *z);
  if (z == NULL)
    return -ENOMEM;
  z->c = ZSTD_createCCtx ();
  z->d = ZSTD_createDCtx ();
  if (z->c == NULL || z->d == NULL ||
      ZSTD_isError (ZSTD_CCtx_setParameter (z->c, ZSTD_c_compressionLevel, level)) ||
      /* Frames carry their size: the decoder checks it against raw_len. */
      ZSTD_isError (ZSTD_CCtx_setParameter (z->c, ZSTD_c_contentSizeFlag, 1)) ||
      /* Our own XXH3 covers the payload; a second checksum is waste. */
      ZSTD_isError (ZSTD_CCtx_setParameter (z->c, ZSTD_c_checksumFlag, 0))) {
    vmdr_zctx_free (z);
    return -ENOMEM;
  }
  *out = z;
  return 0;
}

void
vmdr_zctx_free (struct vmdr_zctx *z)
{
  if (z == NULL)
    return;
  ZSTD_freeCCtx (z->c);
  ZSTD_freeDCtx (z->d);
  free (z->plain);
  free (z->gather);
  free (z->buf[0]);
  free (z->buf[1]);
  free (z);
}

size_t
vmdr_blob_bound (size_t raw_len)
{
  return VMDR_BLOB_HEADER_LEN + ZSTD_compressBound (raw_len);
}

/* XXH3-64 over the header (without the checksum field) and the payload: a
 * damaged kind, length or digest is caught as surely as damaged data. */
static uint64_t
blob_checksum (const uint8_t *header, const uint8_t *payload, size_t len)
{
  XXH3_state_t st;

  XXH3_64bits_reset (&st);
  XXH3_64bits_update (&st, header, 16);
  XXH3_64bits_update (&st, header + 24, VMDR_BLOB_HEADER_LEN - 24);
  XXH3_64bits_update (&st, payload, len);
  return XXH3_64bits_digest (&st);
}

static void
write_header (uint8_t *p, const struct vmdr_blob_header *h)
{
  memcpy (p, blob_magic, 4);
  p[4] = (uint8_t) h->kind;
  p[5] = (uint8_t) h->compression;
  p[6] = p[7] = 0;
  put_le32 (p + 8, h->raw_len);
  put_le32 (p + 12, h->stored_len);
  put_le64 (p + 16, h->checksum);
  memcpy (p + 24, h->digest.b, VMDR_DIGEST_LEN);
}

int
vmdr_blob_encode (struct vmdr_zctx *z, enum vmdr_blob_kind kind,
                  const struct vmdr_digest *d, const void *raw, size_t len,
                  void *out, size_t cap, size_t *out_len)
{
  struct vmdr_blob_header h = { .kind = kind, .raw_len = (uint32_t) len,
                                .digest = *d };
  uint8_t *payload = (uint8_t *) out + VMDR_BLOB_HEADER_LEN;
  size_t n;

  if (len == 0 || len > VMDR_BLOB_MAX_RAW || cap < vmdr_blob_bound (len))
    return -EINVAL;
  /* Ask zstd for at most len - 1 bytes: a frame no smaller than the input is
   * worthless, and then the raw bytes are stored instead. */
  n = z ? ZSTD_compress2 (z->c, payload, len - 1, raw, len) : 0;
  if (z && !ZSTD_isError (n)) {
    h.compression = VMDR_BLOB_ZSTD;
  }
  else if (z == NULL || ZSTD_getErrorCode (n) == ZSTD_error_dstSize_tooSmall) {
    memcpy (payload, raw, len);
    n = len;
    h.compression = VMDR_BLOB_RAW;
  }
  else
    return -EIO;
  h.stored_len = (uint32_t) n;
  write_header (out, &h);
  put_le64 ((uint8_t *) out + 16, blob_checksum (out, payload, n));
  *out_len = VMDR_BLOB_HEADER_LEN + n;
  return 0;
}

int
vmdr_blob_parse_header (const void *buf, size_t len, struct vmdr_blob_header *h)
{
  const uint8_t *p = buf;
  struct vmdr_blob_header t;

  if (len < VMDR_BLOB_HEADER_LEN || memcmp (p, blob_magic, 4) != 0 ||
      p[6] != 0 || p[7] != 0)
    return -EBADMSG;
  t.kind = p[4];
  t.compression = p[5];
  t.raw_len = get_le32 (p + 8);
  t.stored_len = get_le32 (p + 12);
  t.checksum = get_le64 (p + 16);
  memcpy (t.digest.b, p + 24, VMDR_DIGEST_LEN);
  if (t.kind < VMDR_BLOB_DATA || t.kind > VMDR_BLOB_STREAM_NODE)
    return -EBADMSG;
  if (t.raw_len == 0 || t.raw_len > VMDR_BLOB_MAX_RAW ||
      t.stored_len == 0 || t.stored_len > VMDR_BLOB_MAX_STORED)
    return -EBADMSG;
  if (t.compression == VMDR_BLOB_RAW ? t.stored_len != t.raw_len
                                     : t.compression != VMDR_BLOB_ZSTD &&
                                       t.compression != VMDR_BLOB_GROUP)
    return -EBADMSG;
  *h = t;
  return 0;
}

/* ---- groups ---------------------------------------------------------------- */

size_t
vmdr_blob_group_bound (size_t n, size_t raw_len)
{
  return VMDR_BLOB_HEADER_LEN + 4 + n * VMDR_GROUP_ENTRY_LEN + ZSTD_compressBound (raw_len);
}

/* 8 MiB: VMDR_GROUP_SIZE_MAX (repo.h); zstd narrows it to a smaller
 * group's size, which the frame header then records. */
#define GROUP_WINDOW_LOG 23

/* *BUF holds at least LEN bytes, in huge pages (common/buf.h): a group's
 * matches reach across its whole 8 MiB.  Its contents are not kept.  It
 * grows by doubling: fresh memory costs a page fault per page, and a
 * buffer grown to each new largest blob of a run was faulted in a dozen
 * times over (half the faults of a replication). */
static int
reserve (uint8_t **buf, size_t *cap, size_t len)
{
  size_t want;

  if (*cap >= len)
    return 0;
  want = vmdr_buf_round (*cap <= SIZE_MAX / 2 && 2 * *cap > len ? 2 * *cap : len);
  free (*buf);
  *cap = 0;
  if ((*buf = vmdr_buf_alloc (want)) == NULL)
    return -ENOMEM;
  *cap = want;
  return 0;
}

void *
vmdr_zctx_buffer (struct vmdr_zctx *z, enum vmdr_zbuf which, size_t len)
{
  unsigned i = which == VMDR_ZBUF_READ;

  return reserve (&z->buf[i], &z->buf_cap[i], len) < 0 ? NULL : z->buf[i];
}

/* The N members' RAW bytes side by side: in place when they already are,
 * else copied into Z's gather buffer.  NULL when out of memory. */
static const void *
gather (struct vmdr_zctx *z, const struct vmdr_blob_member *m, size_t n, size_t raw)
{
  bool contiguous = true;

  for (size_t i = 1; i < n; i++)
    contiguous &= (const uint8_t *) m[i - 1].data + m[i - 1].len == m[i].data;
  if (contiguous)
    return m[0].data;
  if (reserve (&z->gather, &z->gather_cap, raw) < 0)
    return NULL;
  for (size_t i = 0, at = 0; i < n; at += m[i++].len)
    memcpy (z->gather + at, m[i].data, m[i].len);
  return z->gather;
}

/* One zstd frame of the N members' RAW bytes into OUT (at most CAP bytes):
 * *framed.  -ERANGE when it does not fit, -ENOMEM, -EIO.  Members that
 * are not side by side (zero or known chunks between them) are copied
 * together first: one-shot compression of a whole buffer is faster than
 * zstd's streaming, which copies them into its window anyway. */
static int
compress_members (struct vmdr_zctx *z, const struct vmdr_blob_member *m, size_t n,
                  size_t raw, void *out, size_t cap, size_t *framed)
{
  const void *src = gather (z, m, n, raw);
  size_t left;
  int r = 0;

  if (src == NULL)
    return -ENOMEM;
  /* A window over the whole group: zstd 2's own (512 KiB) lets chunks
   * match only their neighbours; over 8 MiB groups the bench image's
   * frames are 675 MB instead of 692 MB, for no more CPU. */
  if (ZSTD_isError (ZSTD_CCtx_reset (z->c, ZSTD_reset_session_only)) ||
      ZSTD_isError (ZSTD_CCtx_setParameter (z->c, ZSTD_c_windowLog, GROUP_WINDOW_LOG)))
    return -EIO;
  left = ZSTD_compress2 (z->c, out, cap, src, raw);
  if (ZSTD_isError (left))
    r = ZSTD_getErrorCode (left) == ZSTD_error_dstSize_tooSmall ? -ERANGE : -EIO;
  else
    *framed = left;
  /* A frame cut short leaves a session open: parameters change only
   * between sessions. */
  ZSTD_CCtx_reset (z->c, ZSTD_reset_session_only);
  ZSTD_CCtx_setParameter (z->c, ZSTD_c_windowLog, 0);     /* the level's own again */
  return r;
}

int
vmdr_blob_encode_group (struct vmdr_zctx *z, enum vmdr_hash hash, enum vmdr_blob_kind kind,
                        const struct vmdr_blob_member *m, size_t n,
                        void *out, size_t cap, size_t *out_len)
{
  struct vmdr_blob_header h = { .kind = kind, .compression = VMDR_BLOB_GROUP };
  uint8_t *table = (uint8_t *) out + VMDR_BLOB_HEADER_LEN, *p = table + 4;
  size_t tlen = 4 + n * VMDR_GROUP_ENTRY_LEN, raw = 0, framed;
  int r;

  if (n < 2 || n > VMDR_GROUP_MAX)
    return -EINVAL;
  for (size_t i = 0; i < n; i++) {
    if (m[i].len == 0)
      return -EINVAL;
    raw += m[i].len;
  }
  if (raw > VMDR_BLOB_MAX_RAW || cap < vmdr_blob_group_bound (n, raw))
    return -EINVAL;
  put_le32 (table, (uint32_t) n);
  for (size_t i = 0; i < n; i++, p += VMDR_GROUP_ENTRY_LEN) {
    memcpy (p, m[i].d.b, VMDR_DIGEST_LEN);
    put_le32 (p + VMDR_DIGEST_LEN, m[i].len);
  }
  if ((r = compress_members (z, m, n, raw, p, raw - 1, &framed)) < 0)
    return r;
  h.raw_len = (uint32_t) raw;
  h.stored_len = (uint32_t) (tlen + framed);
  if ((r = vmdr_digest (hash, table + 4, tlen - 4, &h.digest)) < 0)
    return r;
  write_header (out, &h);
  put_le64 ((uint8_t *) out + 16, blob_checksum (out, table, h.stored_len));
  *out_len = VMDR_BLOB_HEADER_LEN + h.stored_len;
  return 0;
}

int
vmdr_blob_group_table (const void *blob, size_t len, const struct vmdr_blob_header *hdr,
                       const uint8_t **table, size_t *n)
{
  const uint8_t *t = (const uint8_t *) blob + VMDR_BLOB_HEADER_LEN;
  uint64_t sum = 0;
  uint32_t count;

  if (hdr->compression != VMDR_BLOB_GROUP || len < VMDR_BLOB_HEADER_LEN + 4 ||
      len != VMDR_BLOB_HEADER_LEN + (size_t) hdr->stored_len)
    return -EBADMSG;
  count = get_le32 (t);
  if (count < 2 || count > VMDR_GROUP_MAX ||
      hdr->stored_len <= 4 + (size_t) count * VMDR_GROUP_ENTRY_LEN)
    return -EBADMSG;
  for (uint32_t i = 0; i < count; i++) {
    uint32_t l = get_le32 (t + 4 + (size_t) i * VMDR_GROUP_ENTRY_LEN + VMDR_DIGEST_LEN);
    if (l == 0)
      return -EBADMSG;
    sum += l;
  }
  if (sum != hdr->raw_len)
    return -EBADMSG;
  *table = t + 4;
  *n = count;
  return 0;
}

int
vmdr_blob_group_open (struct vmdr_zctx *z, enum vmdr_hash hash, const void *blob, size_t len,
                      struct vmdr_blob_group *g)
{
  const uint8_t *table, *frame;
  struct vmdr_blob_header h;
  struct vmdr_digest got;
  size_t n, tlen, r;
  int e;

  if ((e = vmdr_blob_parse_header (blob, len, &h)) < 0)
    return e;
  if (h.compression != VMDR_BLOB_GROUP)
    return -EINVAL;
  if ((e = vmdr_blob_group_table (blob, len, &h, &table, &n)) < 0)
    return e;
  if (blob_checksum (blob, (const uint8_t *) blob + VMDR_BLOB_HEADER_LEN, h.stored_len) !=
      h.checksum)
    return -EBADMSG;
  tlen = n * VMDR_GROUP_ENTRY_LEN;
  if ((e = vmdr_digest (hash, table, tlen, &got)) < 0)
    return e;
  if (memcmp (&got, &h.digest, sizeof got) != 0)
    return -EILSEQ;
  if ((e = reserve (&z->plain, &z->plain_cap, h.raw_len)) < 0)
    return e;
  frame = table + tlen;
  r = ZSTD_decompressDCtx (z->d, z->plain, h.raw_len, frame, h.stored_len - 4 - tlen);
  if (ZSTD_isError (r) || r != h.raw_len)
    return -EBADMSG;
  *g = (struct vmdr_blob_group) { table, n, z->plain, h.raw_len };
  return 0;
}

void
vmdr_blob_group_member (const uint8_t *table, size_t i, struct vmdr_digest *d, uint32_t *len)
{
  const uint8_t *e = table + i * VMDR_GROUP_ENTRY_LEN;

  memcpy (d->b, e, VMDR_DIGEST_LEN);
  *len = get_le32 (e + VMDR_DIGEST_LEN);
}

int
vmdr_blob_group_get (const struct vmdr_blob_group *g, enum vmdr_hash hash,
                     const struct vmdr_digest *d, void *out, size_t cap, size_t *len)
{
  struct vmdr_digest got, md;
  size_t off = 0;
  uint32_t l;
  int e;

  for (size_t i = 0; i < g->n; i++, off += l) {
    vmdr_blob_group_member (g->table, i, &md, &l);
    if (memcmp (&md, d, sizeof md) != 0)
      continue;
    if (cap < l)
      return -ENOBUFS;
    if ((e = vmdr_digest (hash, g->plain + off, l, &got)) < 0)
      return e;
    if (memcmp (&got, d, sizeof got) != 0)
      return -EILSEQ;
    memcpy (out, g->plain + off, l);
    *len = l;
    return 0;
  }
  return -ENOENT;
}

/* vmdr_blob_decode of a group: every member checked, EXPECT copied out. */
static int
decode_member (struct vmdr_zctx *z, enum vmdr_hash hash, const void *blob, size_t len,
               const struct vmdr_digest *expect, void *out, size_t cap, size_t *raw_len)
{
  struct vmdr_blob_group g;
  struct vmdr_digest got, md;
  const uint8_t *found = NULL;
  size_t off = 0;
  uint32_t l, flen = 0;
  int e;

  if ((e = vmdr_blob_group_open (z, hash, blob, len, &g)) < 0)
    return e;
  for (size_t i = 0; i < g.n; i++, off += l) {
    vmdr_blob_group_member (g.table, i, &md, &l);
    if ((e = vmdr_digest (hash, g.plain + off, l, &got)) < 0)
      return e;
    if (memcmp (&got, &md, sizeof md) != 0)
      return -EILSEQ;
    if (found == NULL && expect && memcmp (&md, expect, sizeof md) == 0)
      found = g.plain + off, flen = l;
  }
  if (found == NULL)
    return expect ? -EILSEQ : -EINVAL;  /* not a member / which member? */
  if (cap < flen)
    return -ENOBUFS;
  memcpy (out, found, flen);
  *raw_len = flen;
  return 0;
}

int
vmdr_blob_decode (struct vmdr_zctx *z, enum vmdr_hash hash,
                  const void *blob, size_t len,
                  const struct vmdr_digest *expect,
                  void *out, size_t cap, size_t *raw_len)
{
  const uint8_t *payload = (const uint8_t *) blob + VMDR_BLOB_HEADER_LEN;
  struct vmdr_blob_header h;
  struct vmdr_digest got;
  size_t n;
  int r;

  r = vmdr_blob_parse_header (blob, len, &h);
  if (r < 0)
    return r;
  if (h.compression == VMDR_BLOB_GROUP)
    return decode_member (z, hash, blob, len, expect, out, cap, raw_len);
  if (len != VMDR_BLOB_HEADER_LEN + (size_t) h.stored_len)
    return -EBADMSG;
  if (blob_checksum (blob, payload, h.stored_len) != h.checksum)
    return -EBADMSG;
  if (cap < h.raw_len)
    return -ENOBUFS;
  if (h.compression == VMDR_BLOB_RAW)
    memcpy (out, payload, h.raw_len);
  else {
    n = ZSTD_decompressDCtx (z->d, out, h.raw_len, payload, h.stored_len);
    if (ZSTD_isError (n) || n != h.raw_len)
      return -EBADMSG;
  }
  r = vmdr_digest (hash, out, h.raw_len, &got);
  if (r < 0)
    return r;
  if (memcmp (&got, &h.digest, sizeof got) != 0 ||
      (expect && memcmp (&got, expect, sizeof got) != 0))
    return -EILSEQ;
  *raw_len = h.raw_len;
  return 0;
}
