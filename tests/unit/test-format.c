/* Blobs, packs and the repository config: round trips, and every kind of
 * damage or hostile input gives an error, never a crash. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "blob.h"
#include "buf.h"
#include "pack.h"
#include "repo.h"

static struct vmdr_zctx *z;

static void setup (void) { cr_assert_eq (vmdr_zctx_new (3, &z), 0); }
static void teardown (void) { vmdr_zctx_free (z); }

static void
fill_random (uint8_t *p, size_t n, unsigned seed)
{
  for (size_t i = 0; i < n; i++) {
    seed = seed * 1103515245 + 12345;
    p[i] = (uint8_t) (seed >> 16);
  }
}

/* Encode LEN bytes of DATA; returns a malloc'd blob. */
static uint8_t *
encode (const uint8_t *data, size_t len, size_t *blen, struct vmdr_digest *d)
{
  uint8_t *blob = malloc (vmdr_blob_bound (len));

  cr_assert_eq (vmdr_digest (VMDR_HASH_BLAKE2B256, data, len, d), 0);
  cr_assert_eq (vmdr_blob_encode (z, VMDR_BLOB_DATA, d, data, len, blob,
                                  vmdr_blob_bound (len), blen), 0);
  return blob;
}

TestSuite (blob, .init = setup, .fini = teardown);

Test (blob, round_trip_compressible_and_random)
{
  static uint8_t text[65536], rnd[65536], out[65536];
  struct vmdr_blob_header h;
  struct vmdr_digest d;
  size_t blen, len;

  for (size_t i = 0; i < sizeof text; i++)
    text[i] = "vmdr repository "[i % 16];
  fill_random (rnd, sizeof rnd, 1);

  uint8_t *b = encode (text, sizeof text, &blen, &d);
  cr_assert_eq (vmdr_blob_parse_header (b, blen, &h), 0);
  cr_assert_eq (h.compression, VMDR_BLOB_ZSTD);
  cr_assert_lt (blen, 2000);
  cr_assert_eq (vmdr_blob_decode (z, VMDR_HASH_BLAKE2B256, b, blen, &d, out, sizeof out, &len), 0);
  cr_assert_eq (len, sizeof text);
  cr_assert_eq (memcmp (out, text, len), 0);
  free (b);

  b = encode (rnd, sizeof rnd, &blen, &d);
  cr_assert_eq (vmdr_blob_parse_header (b, blen, &h), 0);
  cr_assert_eq (h.compression, VMDR_BLOB_RAW, "random data is stored raw");
  cr_assert_eq (blen, VMDR_BLOB_HEADER_LEN + sizeof rnd);
  cr_assert_eq (vmdr_blob_decode (z, VMDR_HASH_BLAKE2B256, b, blen, &d, out, sizeof out, &len), 0);
  cr_assert_eq (memcmp (out, rnd, len), 0);
  free (b);
}

/* N members of 65536 bytes, half compressible, from SEED; digests in D. */
static uint8_t group_data[8][65536];

static void
make_members (struct vmdr_blob_member *m, size_t n, unsigned seed)
{
  for (size_t i = 0; i < n; i++) {
    fill_random (group_data[i], 32768, seed + (unsigned) i);
    for (size_t j = 32768; j < 65536; j++)
      group_data[i][j] = "group members "[j % 14];
    m[i].data = group_data[i];
    m[i].len = 65536 - (uint32_t) i;      /* lengths differ */
    vmdr_digest (VMDR_HASH_SHA256, m[i].data, m[i].len, &m[i].d);
  }
}

Test (blob, group_round_trip_members_and_damage)
{
  struct vmdr_blob_member m[8];
  struct vmdr_blob_header h;
  struct vmdr_blob_group g;
  static uint8_t out[65536];
  size_t cap = vmdr_blob_group_bound (8, 8 * 65536), blen, len, n;
  uint8_t *b = malloc (cap);
  const uint8_t *table;

  make_members (m, 8, 7);
  cr_assert_eq (vmdr_blob_encode_group (z, VMDR_HASH_SHA256, VMDR_BLOB_DATA, m, 8, b, cap, &blen), 0);
  cr_assert_eq (vmdr_blob_parse_header (b, blen, &h), 0);
  cr_assert_eq (h.compression, VMDR_BLOB_GROUP);
  cr_assert_lt (blen, 8 * 65536 * 3 / 4, "the text halves compress");
  cr_assert_eq (vmdr_blob_group_table (b, blen, &h, &table, &n), 0);
  cr_assert_eq (n, 8);
  /* Every member comes back, by digest, from a decode and from an open. */
  cr_assert_eq (vmdr_blob_group_open (z, VMDR_HASH_SHA256, b, blen, &g), 0);
  for (size_t i = 0; i < 8; i++) {
    cr_assert_eq (vmdr_blob_group_get (&g, VMDR_HASH_SHA256, &m[i].d, out, sizeof out, &len), 0);
    cr_assert_eq (len, m[i].len);
    cr_assert_eq (memcmp (out, m[i].data, len), 0);
  }
  cr_assert_eq (vmdr_blob_group_get (&g, VMDR_HASH_SHA256, &m[0].d, out, 100, &len), -ENOBUFS);
  for (size_t i = 0; i < 8; i++) {
    cr_assert_eq (vmdr_blob_decode (z, VMDR_HASH_SHA256, b, blen, &m[i].d, out, sizeof out, &len), 0);
    cr_assert_eq (memcmp (out, m[i].data, len), 0);
  }
  struct vmdr_digest other;
  vmdr_digest (VMDR_HASH_SHA256, "x", 1, &other);
  cr_assert_eq (vmdr_blob_decode (z, VMDR_HASH_SHA256, b, blen, &other, out, sizeof out, &len),
                -EILSEQ, "not a member");
  cr_assert_eq (vmdr_blob_decode (z, VMDR_HASH_SHA256, b, blen, NULL, out, sizeof out, &len), -EINVAL);
  /* Any byte spoiled: refused, never a crash. */
  for (size_t at = 0; at < blen; at += 997) {
    b[at] ^= 0x20;
    int e = vmdr_blob_decode (z, VMDR_HASH_SHA256, b, blen, &m[3].d, out, sizeof out, &len);
    cr_assert (e == -EBADMSG || e == -EILSEQ, "byte %zu: %d", at, e);
    b[at] ^= 0x20;
  }
  /* Truncated: refused. */
  for (size_t l = 0; l < blen; l += 4099)
    cr_assert_neq (vmdr_blob_decode (z, VMDR_HASH_SHA256, b, l, &m[0].d, out, sizeof out, &len), 0);
  /* A pack indexes each member at the group's offset. */
  struct vmdr_pack_writer *w;
  struct vmdr_pack_entry *e;
  const void *pack;
  void *idx;
  size_t plen, ilen, ne;
  struct vmdr_digest id;
  cr_assert_eq (vmdr_pack_writer_new (1u << 20, &w), 0);
  cr_assert_eq (vmdr_pack_add (w, b, blen), 0);
  cr_assert_eq (vmdr_pack_finish (w, VMDR_HASH_SHA256, true, &pack, &plen, &idx, &ilen, &id), 0);
  cr_assert_eq (vmdr_pack_index_parse (idx, ilen, &e, &ne), 0);
  cr_assert_eq (ne, 8);
  for (size_t i = 0; i < ne; i++) {
    cr_assert_eq (e[i].offset, 0);
    cr_assert_eq (e[i].stored_len, blen - VMDR_BLOB_HEADER_LEN);
    cr_assert_eq (e[i].grouped, 1);
  }
  free (e);
  free (idx);
  vmdr_pack_writer_free (w);
  free (b);
}

Test (blob, group_of_random_data_is_refused_and_bad_counts)
{
  struct vmdr_blob_member m[8];
  size_t cap = vmdr_blob_group_bound (8, 8 * 65536), blen;
  uint8_t *b = malloc (cap);

  make_members (m, 8, 9);
  uint64_t x = 88172645463325252ull;    /* xorshift64: no pattern zstd finds */
  for (size_t i = 0; i < 8; i++) {
    for (size_t j = 0; j < 65536; j++) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      group_data[i][j] = (uint8_t) (x >> 24);
    }
    vmdr_digest (VMDR_HASH_SHA256, m[i].data, m[i].len, &m[i].d);
  }
  cr_assert_eq (vmdr_blob_encode_group (z, VMDR_HASH_SHA256, VMDR_BLOB_DATA, m, 8, b, cap, &blen),
                -ERANGE, "no smaller than the plaintext: stored one by one instead");
  /* Not contiguous in memory: the streaming path, same answer. */
  struct vmdr_blob_member odd[2] = { m[1], m[0] };
  cr_assert_eq (vmdr_blob_encode_group (z, VMDR_HASH_SHA256, VMDR_BLOB_DATA, odd, 2, b, cap, &blen),
                -ERANGE);
  make_members (m, 8, 11);
  odd[0] = m[2];
  odd[1] = m[0];
  cr_assert_eq (vmdr_blob_encode_group (z, VMDR_HASH_SHA256, VMDR_BLOB_DATA, odd, 2, b, cap, &blen), 0);
  cr_assert_eq (vmdr_blob_decode (z, VMDR_HASH_SHA256, b, blen, &m[2].d, group_data[7], 65536, &blen),
                0);
  cr_assert_eq (vmdr_blob_encode_group (z, VMDR_HASH_SHA256, VMDR_BLOB_DATA, m, 1, b, cap, &blen),
                -EINVAL, "a group has two members at least");
  cr_assert_eq (vmdr_blob_encode_group (z, VMDR_HASH_SHA256, VMDR_BLOB_DATA, m, 8, b, 100, &blen),
                -EINVAL, "room");
  free (b);
}

Test (blob, every_damage_is_caught)
{
  static uint8_t text[4096], out[4096];
  struct vmdr_digest d, other;
  size_t blen, len;

  for (size_t i = 0; i < sizeof text; i++)
    text[i] = (uint8_t) (i / 7);
  uint8_t *b = encode (text, sizeof text, &blen, &d);

  /* Any single flipped bit anywhere: an error, never success. */
  for (size_t i = 0; i < blen; i++) {
    for (int bit = 0; bit < 8; bit += 3) {
      b[i] ^= (uint8_t) (1 << bit);
      int r = vmdr_blob_decode (z, VMDR_HASH_BLAKE2B256, b, blen, &d, out, sizeof out, &len);
      cr_assert (r == -EBADMSG || r == -EILSEQ, "byte %zu bit %d: got %d", i, bit, r);
      b[i] ^= (uint8_t) (1 << bit);
    }
  }
  /* Truncated, padded, wrong expectation, small buffer. */
  for (size_t n = 0; n < blen; n += 97)
    cr_assert_eq (vmdr_blob_decode (z, VMDR_HASH_BLAKE2B256, b, n, NULL, out, sizeof out, &len), -EBADMSG);
  cr_assert_eq (vmdr_blob_decode (z, VMDR_HASH_BLAKE2B256, b, blen + 1, NULL, out, sizeof out, &len), -EBADMSG);
  memset (&other, 7, sizeof other);
  cr_assert_eq (vmdr_blob_decode (z, VMDR_HASH_BLAKE2B256, b, blen, &other, out, sizeof out, &len), -EILSEQ);
  cr_assert_eq (vmdr_blob_decode (z, VMDR_HASH_SHA256, b, blen, NULL, out, sizeof out, &len), -EILSEQ);
  cr_assert_eq (vmdr_blob_decode (z, VMDR_HASH_BLAKE2B256, b, blen, NULL, out, 100, &len), -ENOBUFS);
  free (b);
}

/* A buffer asked for a little more each time (each new largest blob of a
 * run) grows by doubling, not to each size: fresh memory is faulted in
 * page by page, and the buffer once was a dozen times over. */
Test (blob, buffers_grow_by_doubling)
{
  size_t len = 3u << 20;
  uint8_t *first = vmdr_zctx_buffer (z, VMDR_ZBUF_READ, len), *p;
  unsigned moves = 0;

  cr_assert_not_null (first);
  memset (first, 1, len);
  for (p = first; len < (48u << 20); len += len / 8) {
    uint8_t *q = vmdr_zctx_buffer (z, VMDR_ZBUF_READ, len);
    cr_assert_not_null (q);
    memset (q, 2, len);                 /* all of it is ours */
    moves += q != p;
    p = q;
  }
  cr_assert_leq (moves, 5, "moved %u times on the way to 48 MiB", moves);
  cr_assert_eq (vmdr_buf_round (1), 4096);
  cr_assert_eq (vmdr_buf_round (4096), 4096);
  cr_assert_eq (vmdr_buf_round (3u << 20), 4u << 20);
  cr_assert_eq (vmdr_buf_round (SIZE_MAX - 5), SIZE_MAX - 5);
}

Test (blob, hostile_headers)
{
  uint8_t h[VMDR_BLOB_HEADER_LEN] = "VMB1";
  struct vmdr_blob_header hdr;

  h[4] = VMDR_BLOB_DATA;
  h[5] = VMDR_BLOB_ZSTD;
  h[8] = 1;                      /* raw 1 */
  h[12] = 1;                     /* stored 1 */
  cr_assert_eq (vmdr_blob_parse_header (h, sizeof h, &hdr), 0);
  h[15] = 0xff;                  /* stored length 4 GiB */
  cr_assert_eq (vmdr_blob_parse_header (h, sizeof h, &hdr), -EBADMSG);
  h[15] = 0;
  h[11] = 0x10;                  /* raw length 256 MiB */
  cr_assert_eq (vmdr_blob_parse_header (h, sizeof h, &hdr), -EBADMSG);
  h[11] = 0;
  h[5] = 9;                      /* unknown compression */
  cr_assert_eq (vmdr_blob_parse_header (h, sizeof h, &hdr), -EBADMSG);
  h[5] = VMDR_BLOB_RAW;
  h[12] = 2;                     /* raw with stored != raw */
  cr_assert_eq (vmdr_blob_parse_header (h, sizeof h, &hdr), -EBADMSG);
  h[12] = 1;
  h[4] = 0;                      /* unknown kind */
  cr_assert_eq (vmdr_blob_parse_header (h, sizeof h, &hdr), -EBADMSG);
  cr_assert_eq (vmdr_blob_parse_header (h, 10, &hdr), -EBADMSG);
}

TestSuite (pack, .init = setup, .fini = teardown);

Test (pack, finish_and_parse)
{
  struct vmdr_pack_writer *w;
  struct vmdr_pack_entry *e;
  struct vmdr_digest ds[3], id;
  const void *pack;
  void *index;
  size_t plen, ilen, n, blen;
  static uint8_t data[3][8192];

  cr_assert_eq (vmdr_pack_writer_new (1u << 20, &w), 0);
  for (int i = 0; i < 3; i++) {
    fill_random (data[i], sizeof data[i], (unsigned) i + 10);
    uint8_t *b = encode (data[i], sizeof data[i], &blen, &ds[i]);
    cr_assert_eq (vmdr_pack_add (w, b, blen), 0);
    if (i == 1)                  /* a duplicate: indexed once */
      cr_assert_eq (vmdr_pack_add (w, b, blen), 0);
    free (b);
  }
  cr_assert_eq (vmdr_pack_finish (w, VMDR_HASH_BLAKE2B256, true, &pack, &plen, &index, &ilen, &id), 0);
  cr_assert_eq (vmdr_pack_index_parse (index, ilen, &e, &n), 0);
  cr_assert_eq (n, 3);
  for (size_t i = 0; i < n; i++) {
    uint8_t out[8192];
    size_t len;
    cr_assert_eq (vmdr_blob_decode (z, VMDR_HASH_BLAKE2B256, (uint8_t *) pack + e[i].offset,
                                    VMDR_BLOB_HEADER_LEN + e[i].stored_len, &e[i].digest,
                                    out, sizeof out, &len), 0);
    if (i > 0)
      cr_assert_lt (memcmp (&e[i - 1].digest, &e[i].digest, 32), 0, "sorted");
  }
  /* The copy at the end of the pack is the same index. */
  cr_assert_eq (memcmp ((uint8_t *) pack + plen - 8 - ilen, index, ilen), 0);
  cr_assert_eq (memcmp ((uint8_t *) pack + plen - 4, "VMPT", 4), 0);
  struct vmdr_digest check;
  vmdr_digest (VMDR_HASH_BLAKE2B256, pack, plen, &check);
  cr_assert_eq (memcmp (&check, &id, 32), 0, "pack id is the digest of its bytes");

  /* Damage to the index object. */
  struct vmdr_pack_entry *e2;
  size_t n2;
  for (size_t i = 0; i < ilen; i += 5) {
    ((uint8_t *) index)[i] ^= 0x40;
    cr_assert_eq (vmdr_pack_index_parse (index, ilen, &e2, &n2), -EBADMSG, "byte %zu", i);
    ((uint8_t *) index)[i] ^= 0x40;
  }
  cr_assert_eq (vmdr_pack_index_parse (index, ilen - 1, &e2, &n2), -EBADMSG);
  cr_assert_eq (vmdr_pack_index_parse (index, 3, &e2, &n2), -EBADMSG);
  cr_assert_eq (vmdr_pack_finish (w, VMDR_HASH_BLAKE2B256, true, &pack, &plen, &index, &ilen, &id), -ENODATA);

  /* Sealed until reset; then a new pack in the same buffers. */
  size_t blen0;
  struct vmdr_digest d0;
  uint8_t *b0 = encode (data[0], sizeof data[0], &blen0, &d0);
  cr_assert_eq (vmdr_pack_add (w, b0, blen0), -EINVAL, "sealed");
  vmdr_pack_writer_reset (w);
  cr_assert_eq (vmdr_pack_count (w), 0);
  cr_assert_eq (vmdr_pack_add (w, b0, blen0), 0);
  void *index2;
  cr_assert_eq (vmdr_pack_finish (w, VMDR_HASH_BLAKE2B256, true, &pack, &plen, &index2, &ilen, &id), 0);
  cr_assert_eq (plen, blen0 + 8 + VMDR_PACK_ENTRY_LEN + 8 + 8, "one blob, its index, trailer");
  cr_assert_eq (memcmp (pack, b0, blen0), 0);
  vmdr_digest (VMDR_HASH_BLAKE2B256, pack, plen, &check);
  cr_assert_eq (memcmp (&check, &id, 32), 0);
  /* Named by its index and XXH3-128: the same pack the same name, another
   * pack (one byte of a payload different) another. */
  struct vmdr_digest cheap[3];
  for (int k = 0; k < 3; k++) {
    void *ix;
    vmdr_pack_writer_reset (w);
    if (k == 2)
      b0[VMDR_BLOB_HEADER_LEN + 10] ^= 1;  /* checksum now wrong: a pack takes it */
    cr_assert_eq (vmdr_pack_add (w, b0, blen0), 0);
    cr_assert_eq (vmdr_pack_finish (w, VMDR_HASH_BLAKE2B256, false, &pack, &plen, &ix, &ilen,
                                    &cheap[k]), 0);
    free (ix);
  }
  cr_assert_neq (memcmp (&cheap[0], &id, 32), 0);
  cr_assert_eq (memcmp (&cheap[0], &cheap[1], 32), 0);
  cr_assert_neq (memcmp (&cheap[1], &cheap[2], 32), 0);
  free (b0);
  free (index2);
  free (index);
  free (e);
  vmdr_pack_writer_free (w);
}

Test (pack, keys)
{
  struct vmdr_digest id, back;
  char key[VMDR_PACK_KEY_LEN];

  memset (&id, 0xab, sizeof id);
  vmdr_pack_index_key (&id, key);
  cr_assert_eq (strncmp (key, "index/ab/abab", 13), 0);
  cr_assert_eq (vmdr_pack_id_from_index_key (key, &back), 0);
  cr_assert_eq (memcmp (&id, &back, 32), 0);
  key[7] = 'c';                  /* fan-out does not match the id */
  cr_assert_eq (vmdr_pack_id_from_index_key (key, &back), -EINVAL);
  cr_assert_eq (vmdr_pack_id_from_index_key ("index/ab/../../etc", &back), -EINVAL);
}

Test (config, round_trip)
{
  struct vmdr_repo_config c, back;
  char *json;

  cr_assert_eq (vmdr_repo_config_default (&c), 0);
  cr_assert_eq (vmdr_repo_config_check (&c), 0);
  cr_assert_eq (vmdr_repo_config_format (&c, &json), 0);
  cr_assert_eq (vmdr_repo_config_parse (json, strlen (json), &back), 0);
  cr_assert_eq (memcmp (&c, &back, sizeof c), 0);
  free (json);
}

Test (config, rejects)
{
  struct vmdr_repo_config c;
  char *json, buf[4096];

  cr_assert_eq (vmdr_repo_config_default (&c), 0);
  c.version = 2;                 /* written by a newer vmdr */
  c.version = 1;
  cr_assert_eq (vmdr_repo_config_format (&c, &json), 0);

  /* Newer version. */
  snprintf (buf, sizeof buf, "%s", json);
  char *v = strstr (buf, "\"version\":1");
  cr_assert_not_null (v, "%s", buf);
  v[10] = '3';
  cr_assert_eq (vmdr_repo_config_parse (buf, strlen (buf), &c), -EPROTONOSUPPORT);
  /* Version 2 needs its group size, in range. */
  v[10] = '2';
  cr_assert_eq (vmdr_repo_config_parse (buf, strlen (buf), &c), -EBADMSG, "no group_size");
  {
    struct vmdr_repo_config g;
    char *gj;
    cr_assert_eq (vmdr_repo_config_default (&g), 0);
    cr_assert_eq (g.version, 2);
    cr_assert_eq (vmdr_repo_config_format (&g, &gj), 0);
    cr_assert_eq (vmdr_repo_config_parse (gj, strlen (gj), &c), 0);
    cr_assert_eq (c.group_size, 8u << 20);
    char *gs = strstr (gj, "\"group_size\":8388608");
    cr_assert_not_null (gs, "%s", gj);
    memcpy (gs + 13, "9388608", 7);   /* above what a restore batch holds */
    cr_assert_eq (vmdr_repo_config_parse (gj, strlen (gj), &c), -EINVAL);
    memcpy (gs + 13, "0000000", 7);   /* no groups: fine */
    cr_assert_eq (vmdr_repo_config_parse (gj, strlen (gj), &c), 0);
    cr_assert_eq (c.group_size, 0);
    free (gj);
  }
  /* Out of range chunk size. */
  snprintf (buf, sizeof buf, "%s", json);
  char *cs = strstr (buf, "\"chunk_size\":65536");
  cr_assert_not_null (cs);
  memcpy (cs + 13, "65537", 5);
  cr_assert_eq (vmdr_repo_config_parse (buf, strlen (buf), &c), -EINVAL);
  /* Truncations of a valid config: never success, never a crash. */
  for (size_t n = 0; n + 1 < strlen (json); n++)
    cr_assert_neq (vmdr_repo_config_parse (json, n, &c), 0, "prefix %zu", n);
  cr_assert_eq (vmdr_repo_config_parse ("[]", 2, &c), -EBADMSG);
  cr_assert_eq (vmdr_repo_config_parse ("{\"format\":\"other\",\"version\":1}", 31, &c), -EBADMSG);
  cr_assert_eq (vmdr_repo_config_parse ("{", 1, &c), -EBADMSG);
  cr_assert_eq (vmdr_repo_config_parse (json, VMDR_CONFIG_MAX + 1, &c), -EBADMSG);
  /* Deep nesting stops at the tokenizer's bound. */
  char deep[200];
  memset (deep, '[', sizeof deep);
  cr_assert_eq (vmdr_repo_config_parse (deep, sizeof deep, &c), -EBADMSG);
  free (json);
}
