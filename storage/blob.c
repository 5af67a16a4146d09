#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define XXH_STATIC_LINKING_ONLY   /* XXH3_state_t on the stack */
#include <xxhash.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "blob.h"
#include "endian-util.h"

static const char blob_magic[4] = { 'V', 'M', 'B', '1' };

struct vmdr_zctx {
  ZSTD_CCtx *c;
  ZSTD_DCtx *d;
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
                                     : t.compression != VMDR_BLOB_ZSTD)
    return -EBADMSG;
  *h = t;
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
