/* A local repository end to end: init/open errors, chunk puts and gets,
 * damage found on read, and disk images of many shapes written and restored
 * byte for byte, full and incremental. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "disk-io.h"
#include "manifest.h"
#include "pack.h"
#include "repo.h"
#include "scratch-repo.h"

static uint32_t fanout_wanted;
static bool single_blobs;       /* no groups: damage lands on one chunk */

static void
tune (struct vmdr_repo_config *c)
{
  c->fanout = fanout_wanted;
  c->pack_size = 1u << 20;      /* several packs even for small images */
  if (single_blobs)
    c->group_size = 0;
}

static struct vmdr_repo *
make_repo (uint32_t fanout)
{
  fanout_wanted = fanout;
  return scratch_repo (tune);
}

TestSuite (repo, .init = setup, .fini = teardown);

Test (repo, open_errors)
{
  struct vmdr_repo_config c;
  struct vmdr_repo *r = NULL;
  char path[128];

  snprintf (path, sizeof path, "%s/missing", dir);
  cr_assert_eq (vmdr_repo_open (path, &r), -ENOENT);
  cr_assert_eq (vmdr_repo_open (dir, &r), -ENOTRECOVERABLE, "not a repository");
  snprintf (path, sizeof path, "file://%s", dir);
  cr_assert_eq (vmdr_repo_open (path, &r), -ENOTRECOVERABLE);
  cr_assert_eq (vmdr_repo_open ("nosuch://x", &r), -EAFNOSUPPORT);
  cr_assert_null (r, "output untouched on error");

  cr_assert_eq (vmdr_repo_config_default (&c), 0);
  cr_assert_eq (vmdr_repo_init (dir, &c), 0);
  cr_assert_eq (vmdr_repo_init (dir, &c), -EEXIST, "init twice");
  cr_assert_eq (vmdr_repo_open (dir, &r), 0);
  cr_assert_eq (strcmp (vmdr_repo_config (r)->id, c.id), 0);
  vmdr_repo_close (r);

  /* A config from a newer vmdr. */
  snprintf (path, sizeof path, "%s/config", dir);
  FILE *f = fopen (path, "w");
  fprintf (f, "{\"format\":\"vmdr-repository\",\"version\":99}");
  fclose (f);
  cr_assert_eq (vmdr_repo_open (dir, &r), -EPROTONOSUPPORT);
}

Test (repo, chunks_put_flush_reopen_get)
{
  struct vmdr_repo *r = make_repo (256);
  struct vmdr_zctx *z;
  static uint8_t data[100][20000], out[20000];
  struct vmdr_digest d[100];
  size_t stored, len;
  char path[256];

  cr_assert_eq (vmdr_zctx_new (1, &z), 0);
  for (int i = 0; i < 100; i++) {
    for (size_t j = 0; j < sizeof data[i]; j++)
      data[i][j] = (uint8_t) ((j * (unsigned) (i + 3)) ^ (j >> 5));
    vmdr_digest (vmdr_repo_config (r)->hash, data[i], sizeof data[i], &d[i]);
    cr_assert_eq (vmdr_repo_put_chunk (r, z, VMDR_BLOB_DATA, &d[i], data[i], sizeof data[i], &stored), 0);
    cr_assert_gt (stored, 0);
  }
  cr_assert_eq (vmdr_repo_put_chunk (r, z, VMDR_BLOB_DATA, &d[5], data[5], sizeof data[5], &stored), 0);
  cr_assert_eq (stored, 0, "a chunk that exists is not stored again");
  /* Readable before the flush too (it flushes). */
  cr_assert_eq (vmdr_repo_get_chunk (r, z, &d[99], out, sizeof out, &len), 0);
  cr_assert_eq (vmdr_repo_flush (r), 0);
  vmdr_repo_close (r);

  snprintf (path, sizeof path, "%s/repo", dir);
  cr_assert_eq (vmdr_repo_open (path, &r), 0);
  cr_assert_eq (vmdr_repo_load_index (r, NULL), 0);
  cr_assert_eq (vmdr_repo_chunk_count (r), 100);
  for (int i = 0; i < 100; i++) {
    cr_assert_eq (vmdr_repo_get_chunk (r, z, &d[i], out, sizeof out, &len), 0);
    cr_assert_eq (len, sizeof data[i]);
    cr_assert_eq (memcmp (out, data[i], len), 0);
  }

  /* Damage one byte of the pack holding chunk 42: its read fails. */
  struct vmdr_digest pack;
  uint32_t off, slen;
  char key[VMDR_PACK_KEY_LEN];
  cr_assert_eq (vmdr_repo_locate (r, &d[42], &pack, &off, &slen), 0);
  vmdr_pack_key (&pack, key);
  snprintf (path, sizeof path, "%s/repo/%s", dir, key);
  int fd = open (path, O_RDWR);
  cr_assert_geq (fd, 0);
  uint8_t byte;
  cr_assert_eq (pread (fd, &byte, 1, off + 100), 1);
  byte ^= 1;
  cr_assert_eq (pwrite (fd, &byte, 1, off + 100), 1);
  close (fd);
  cr_assert_eq (vmdr_repo_get_chunk (r, z, &d[42], out, sizeof out, &len), -EBADMSG);
  cr_assert_eq (vmdr_repo_get_chunk (r, z, &d[41], out, sizeof out, &len), 0, "neighbours still read");
  memset (&pack, 0x11, sizeof pack);
  cr_assert_eq (vmdr_repo_get_chunk (r, z, &pack, out, sizeof out, &len), -ENOENT);
  vmdr_zctx_free (z);
  vmdr_repo_close (r);
}

/* ---- disk images --------------------------------------------------------- */

TestSuite (disk, .init = setup, .fini = teardown);

/* An image of SIZE bytes: zero, random or patterned data at the given
 * regions, holes elsewhere.  Returns an open fd. */
static int
make_image (const char *name, uint64_t size, const uint64_t (*regions)[2],
            size_t n, unsigned seed)
{
  char path[160];
  int fd;

  snprintf (path, sizeof path, "%s/%s", dir, name);
  fd = open (path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  cr_assert_geq (fd, 0);
  cr_assert_eq (ftruncate (fd, (off_t) size), 0);
  for (size_t i = 0; i < n; i++) {
    size_t len = regions[i][1];
    uint8_t *buf = malloc (len);
    for (size_t j = 0; j < len; j++) {
      seed = seed * 1103515245 + 12345;
      /* half compressible, half random */
      buf[j] = (j / 4096) % 2 ? (uint8_t) (seed >> 16) : (uint8_t) (j / 64);
    }
    cr_assert_eq (pwrite (fd, buf, len, (off_t) regions[i][0]), (ssize_t) len);
    free (buf);
  }
  return fd;
}

static void
assert_same (int a, int b, uint64_t size)
{
  static uint8_t x[1 << 16], y[1 << 16];
  struct stat st;

  cr_assert_eq (fstat (b, &st), 0);
  cr_assert_eq ((uint64_t) st.st_size, size, "restored size");
  for (uint64_t off = 0; off < size; off += sizeof x) {
    size_t n = size - off < sizeof x ? (size_t) (size - off) : sizeof x;
    cr_assert_eq (pread (a, x, n, (off_t) off), (ssize_t) n);
    cr_assert_eq (pread (b, y, n, (off_t) off), (ssize_t) n);
    cr_assert_eq (memcmp (x, y, n), 0, "bytes differ near offset %llu",
                  (unsigned long long) off);
  }
}

static void
write_image (struct vmdr_repo *r, int *fd, uint64_t size, bool sparse,
             const struct vmdr_disk_tree *parent, unsigned threads,
             struct vmdr_disk_tree *t, struct vmdr_disk_write_stats *st)
{
  struct vmdr_chunk_range *ranges = NULL;
  size_t n = 0;
  struct vmdr_file_source fs;
  vmdr_file_source_init (&fs, *fd);
  struct vmdr_disk_source src = { .virtual_size = size, .read = vmdr_file_source_read,
                                  .opaque = &fs, .all = !sparse };

  if (sparse) {
    cr_assert_eq (vmdr_file_data_ranges (*fd, size, vmdr_repo_config (r)->chunk_size,
                                         &ranges, &n), 0);
    src.ranges = ranges;
    src.nranges = n;
  }
  cr_assert_eq (vmdr_disk_write (r, &src, parent, threads, NULL, NULL, t, st), 0);
  cr_assert_eq (vmdr_repo_flush (r), 0);
  vmdr_file_source_fini (&fs);
  free (ranges);
}

static int
restore_image (struct vmdr_repo *r, const struct vmdr_disk_tree *t, const char *name,
               unsigned threads, struct vmdr_restore_error *err)
{
  char path[160];
  int fd, e;

  snprintf (path, sizeof path, "%s/%s", dir, name);
  fd = open (path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  cr_assert_geq (fd, 0);
  cr_assert_eq (ftruncate (fd, (off_t) t->virtual_size), 0);
  e = vmdr_disk_restore (r, t, fd, threads, NULL, NULL, NULL, err);
  if (e < 0) {
    close (fd);
    return e;
  }
  return fd;
}

Test (disk, shapes_round_trip)
{
  static const struct {
    uint64_t size;
    uint64_t regions[4][2];
    size_t n;
  } cases[] = {
    { 1, { { 0, 1 } }, 1 },                               /* one byte */
    { 65535, { { 0, 65535 } }, 1 },                       /* chunk - 1 */
    { 65537, { { 0, 65537 } }, 1 },                       /* chunk + 1 */
    { 5u << 20, { { 0, 0 } }, 0 },                        /* all zero */
    { (3u << 20) + 12345, { { 100, 200000 }, { 3u << 20, 12345 } }, 2 },
    /* 40 MiB: depth 3 with fanout 16, a zero subtree in the middle */
    { 40u << 20, { { 0, 70000 }, { 17u << 20, 65536 }, { (40u << 20) - 5000, 5000 } }, 3 },
  };
  struct vmdr_repo *r = make_repo (16);

  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    for (unsigned threads = 1; threads <= 3; threads += 2) {
      for (int sparse = 0; sparse <= 1; sparse++) {
        struct vmdr_disk_tree t;
        struct vmdr_disk_write_stats st;
        int fd = make_image ("img", cases[i].size, cases[i].regions, cases[i].n, (unsigned) i);
        write_image (r, &fd, cases[i].size, sparse, NULL, threads, &t, &st);
        cr_assert_eq (t.virtual_size, cases[i].size);
        int out = restore_image (r, &t, "out", threads, NULL);
        cr_assert_geq (out, 0, "case %zu: restore failed: %d", i, out);
        assert_same (fd, out, cases[i].size);
        close (out);
        close (fd);
      }
    }
  }
  vmdr_repo_close (r);
}

Test (disk, incremental_stores_only_changes)
{
  static const uint64_t regions[][2] = { { 0, 8u << 20 }, { 30u << 20, 1u << 20 } };
  struct vmdr_repo *r = make_repo (16);
  struct vmdr_disk_tree full, inc;
  struct vmdr_disk_write_stats st;
  uint64_t size = 48u << 20;
  int fd = make_image ("img", size, regions, 2, 7);

  write_image (r, &fd, size, true, NULL, 2, &full, &st);
  cr_assert_eq (st.chunks_new, 8 * 16 + 16, "every non-zero chunk stored once");

  /* Guest writes: 3 scattered 4 KiB writes in 3 chunks, one into a hole. */
  static const uint64_t writes[] = { 4096 * 7, (5u << 20) + 100, 40u << 20 };
  struct vmdr_chunk_range ranges[3];
  uint8_t buf[4096];
  memset (buf, 0x5a, sizeof buf);
  for (int i = 0; i < 3; i++) {
    cr_assert_eq (pwrite (fd, buf, sizeof buf, (off_t) writes[i]), (ssize_t) sizeof buf);
    ranges[i] = (struct vmdr_chunk_range) { writes[i] / 65536, 1 };
  }
  struct vmdr_file_source fs;
  vmdr_file_source_init (&fs, fd);
  struct vmdr_disk_source src = { .virtual_size = size, .read = vmdr_file_source_read,
                                  .opaque = &fs, .ranges = ranges, .nranges = 3 };
  cr_assert_eq (vmdr_disk_write (r, &src, &full, 2, NULL, NULL, &inc, &st), 0);
  cr_assert_eq (vmdr_repo_flush (r), 0);
  cr_assert_eq (st.chunks_read, 3, "only the dirty chunks are read");
  cr_assert_eq (st.chunks_new, 3);
  cr_assert_neq (memcmp (&full.root, &inc.root, 32), 0);

  int out = restore_image (r, &inc, "inc", 2, NULL);
  cr_assert_geq (out, 0);
  assert_same (fd, out, size);
  close (out);

  /* The full is unchanged by the incremental. */
  out = restore_image (r, &full, "full", 1, NULL);
  cr_assert_geq (out, 0);
  uint8_t got[4096];
  cr_assert_eq (pread (out, got, sizeof got, 4096 * 7), 4096);
  cr_assert_neq (memcmp (got, buf, sizeof got), 0);
  close (out);
  close (fd);
  vmdr_repo_close (r);
}

Test (disk, grow_and_shrink_against_parent)
{
  static const uint64_t regions[][2] = { { 0, 3u << 20 } };
  struct vmdr_repo *r = make_repo (16);
  struct vmdr_disk_tree full, grown, shrunk;
  struct vmdr_disk_write_stats st;
  int fd = make_image ("img", 3u << 20, regions, 1, 9);

  write_image (r, &fd, 3u << 20, false, NULL, 1, &full, &st);
  cr_assert_eq (ftruncate (fd, (off_t) (5u << 20) + 7), 0);
  struct vmdr_chunk_range none = { 0, 0 };
  struct vmdr_file_source fs;
  vmdr_file_source_init (&fs, fd);
  struct vmdr_disk_source src = { .virtual_size = (5u << 20) + 7, .read = vmdr_file_source_read,
                                  .opaque = &fs, .ranges = &none, .nranges = 1 };
  cr_assert_eq (vmdr_disk_write (r, &src, &full, 1, NULL, NULL, &grown, &st), 0);
  cr_assert_eq (vmdr_repo_flush (r), 0);
  int out = restore_image (r, &grown, "grown", 1, NULL);
  cr_assert_geq (out, 0);
  assert_same (fd, out, (5u << 20) + 7);
  close (out);

  cr_assert_eq (ftruncate (fd, (1u << 20) + 3), 0);
  src.virtual_size = (1u << 20) + 3;
  struct vmdr_chunk_range last = { 16, 1 };   /* the short last chunk changed */
  src.ranges = &last;
  cr_assert_eq (vmdr_disk_write (r, &src, &grown, 1, NULL, NULL, &shrunk, &st), 0);
  cr_assert_eq (vmdr_repo_flush (r), 0);
  out = restore_image (r, &shrunk, "shrunk", 1, NULL);
  cr_assert_geq (out, 0);
  assert_same (fd, out, (1u << 20) + 3);
  close (out);
  close (fd);
  vmdr_repo_close (r);
}

Test (disk, damaged_chunk_names_its_offset)
{
  static const uint64_t regions[][2] = { { 0, 2u << 20 } };
  single_blobs = true;
  struct vmdr_repo *r = make_repo (16);
  single_blobs = false;
  struct vmdr_disk_tree t;
  struct vmdr_disk_write_stats st;
  struct vmdr_restore_error err;
  struct vmdr_zctx *z;
  int fd = make_image ("img", 2u << 20, regions, 1, 3);

  write_image (r, &fd, 2u << 20, false, NULL, 1, &t, &st);
  /* Find chunk 20's digest by reading it back, then damage its pack. */
  uint8_t buf[65536];
  struct vmdr_digest d, pack;
  uint32_t off, slen;
  char key[VMDR_PACK_KEY_LEN], path[200];
  cr_assert_eq (pread (fd, buf, sizeof buf, 20 * 65536), 65536);
  vmdr_digest (vmdr_repo_config (r)->hash, buf, sizeof buf, &d);
  cr_assert_eq (vmdr_repo_locate (r, &d, &pack, &off, &slen), 0);
  vmdr_pack_key (&pack, key);
  snprintf (path, sizeof path, "%s/repo/%s", dir, key);
  int pf = open (path, O_RDWR);
  cr_assert_eq (pwrite (pf, "X", 1, off + 60), 1);
  close (pf);

  cr_assert_eq (vmdr_zctx_new (1, &z), 0);
  int e = restore_image (r, &t, "out", 2, &err);
  cr_assert_eq (e, -EBADMSG);
  cr_assert_eq (err.offset, 20 * 65536);
  cr_assert_eq (memcmp (&err.digest, &d, 32), 0);
  vmdr_zctx_free (z);
  close (fd);
  vmdr_repo_close (r);
}

/* ---- chain positions from the manifests' parent links ------------------ */

TestSuite (chain, .init = setup, .fini = teardown);

/* A snapshot of "dom" at second T, incremental from PARENT ("" : a full). */
static void
put_snapshot (struct vmdr_repo *r, time_t t, const char *parent, struct vmdr_manifest *m)
{
  cr_assert_eq (vmdr_manifest_start (m, "dom", 1700000000 + t, 0), 0);
  m->kind = parent[0] ? VMDR_KIND_INCREMENTAL : VMDR_KIND_FULL;
  snprintf (m->parent, sizeof m->parent, "%s", parent);
  cr_assert_eq (vmdr_manifest_put (r, m), 0);
}

Test (chain, lengths_pruned_links_and_damage)
{
  struct vmdr_repo *r = scratch_repo (NULL);
  struct vmdr_manifest m[4] = { 0 }, bad = { 0 };
  struct vmdr_chain c;

  put_snapshot (r, 0, "", &m[0]);
  for (int i = 1; i < 4; i++)
    put_snapshot (r, i, m[i - 1].id, &m[i]);
  cr_assert_eq (vmdr_manifest_chain (r, &m[0], &c), 0);
  cr_assert (c.length == 1 && c.complete && strcmp (c.base, m[0].id) == 0);
  cr_assert_eq (vmdr_manifest_chain (r, &m[3], &c), 0);
  cr_assert (c.length == 4 && c.complete && strcmp (c.base, m[0].id) == 0);

  /* Retention removed a link: the walk ends at the oldest one left. */
  cr_assert_eq (vmdr_manifest_delete (r, m[1].id), 0);
  cr_assert_eq (vmdr_manifest_chain (r, &m[3], &c), 0);
  cr_assert (c.length == 2 && !c.complete && strcmp (c.base, m[2].id) == 0);

  /* A parent that is not older (a loop) or of another domain: damage. */
  put_snapshot (r, 9, m[3].id, &bad);
  snprintf (bad.parent, sizeof bad.parent, "%s", bad.id);
  c.length = 77;
  cr_assert_eq (vmdr_manifest_chain (r, &bad, &c), -EBADMSG);
  cr_assert_eq (c.length, 77, "untouched on failure");
  snprintf (bad.parent, sizeof bad.parent, "other/%s", strchr (m[3].id, '/') + 1);
  cr_assert_eq (vmdr_manifest_chain (r, &bad, &c), -EBADMSG);
  bad.parent[0] = '\0';
  cr_assert_eq (vmdr_manifest_chain (r, &bad, &c), -EBADMSG, "an incremental without a parent");

  for (int i = 0; i < 4; i++)
    vmdr_manifest_clear (&m[i]);
  vmdr_manifest_clear (&bad);
  vmdr_repo_close (r);
}
