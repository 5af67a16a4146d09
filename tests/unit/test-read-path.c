/* The restore's read path: the backend's read op (the local backend's kept
 * descriptors, and get where a backend has no read op), vmdr_repo_get_chunks
 * (coalesced pack reads that still name each damaged chunk), and
 * vmdr_disk_read's batches (runs of chunks to the sink, holes kept,
 * damage reported in place, targets without O_DIRECT, ordered sinks). */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "disk-io.h"
#include "pack.h"
#include "repo.h"
#include "scratch-repo.h"

static void
small_packs (struct vmdr_repo_config *c)
{
  c->fanout = 16;
  c->pack_size = 1u << 20;      /* several packs even for small images */
}

/* The same, a blob per chunk (no groups): damage lands on one chunk. */
static void
single_blobs (struct vmdr_repo_config *c)
{
  small_packs (c);
  c->group_size = 0;
}

/* LEN bytes of a pattern that differs with SEED, half of it compressible. */
static void
fill (uint8_t *p, size_t len, unsigned seed)
{
  unsigned x = seed * 2654435761u + 1;

  for (size_t j = 0; j < len; j++) {
    x = x * 1103515245 + 12345;
    p[j] = (j / 4096) % 2 ? (uint8_t) (x >> 16) : (uint8_t) (j / 64 + seed);
  }
}

static void
path_of (char *buf, size_t size, const char *name)
{
  snprintf (buf, size, "%s/%s", dir, name);
}

/* ---- the backend's read op ---------------------------------------------- */

TestSuite (backend_read, .init = setup, .fini = teardown);

/* The local backend's ops, with a counter on read. */
static struct vmdr_backend_ops counting_ops;
static unsigned reads;

static int
counting_read (struct vmdr_backend *b, const char *key, uint64_t offset,
               size_t len, void *buf)
{
  __atomic_add_fetch (&reads, 1, __ATOMIC_RELAXED);
  return vmdr_backend_local.read (b, key, offset, len, buf);
}

Test (backend_read, ranges_errors_and_replacement)
{
  static uint8_t obj[100000], other[5000], buf[100000];
  struct vmdr_backend *b;

  fill (obj, sizeof obj, 1);
  fill (other, sizeof other, 2);
  cr_assert_eq (vmdr_backend_open (dir, &b), 0);
  cr_assert_eq (b->ops->put (b, "data/aa/obj", obj, sizeof obj, 0), 0);

  cr_assert_eq (vmdr_backend_read (b, "data/aa/obj", 0, sizeof obj, buf), 0);
  cr_assert_eq (memcmp (buf, obj, sizeof obj), 0);
  cr_assert_eq (vmdr_backend_read (b, "data/aa/obj", 777, 1000, buf), 0);
  cr_assert_eq (memcmp (buf, obj + 777, 1000), 0);
  cr_assert_eq (vmdr_backend_read (b, "data/aa/obj", sizeof obj - 1, 1, buf), 0);
  cr_assert_eq (buf[0], obj[sizeof obj - 1]);

  cr_assert_eq (vmdr_backend_read (b, "data/aa/obj", sizeof obj - 10, 11, buf), -ERANGE);
  cr_assert_eq (vmdr_backend_read (b, "data/aa/obj", sizeof obj + 5, 1, buf), -ERANGE);
  cr_assert_eq (vmdr_backend_read (b, "data/aa/none", 0, 1, buf), -ENOENT);
  cr_assert_eq (vmdr_backend_read (b, "data/aa/obj", 0, 0, buf), -EINVAL);
  cr_assert_eq (vmdr_backend_read (b, "data/aa/obj", 0, VMDR_READ_MAX + 1, buf), -EINVAL);
  cr_assert_eq (vmdr_backend_read (b, "../obj", 0, 1, buf), -EINVAL);
  cr_assert_eq (vmdr_backend_read (b, "data", 0, 1, buf), -EINVAL, "a directory");

  /* Its own put and del are seen although the descriptor is kept. */
  cr_assert_eq (b->ops->put (b, "data/aa/obj", other, sizeof other, 0), 0);
  cr_assert_eq (vmdr_backend_read (b, "data/aa/obj", 0, sizeof other, buf), 0);
  cr_assert_eq (memcmp (buf, other, sizeof other), 0, "the replacement, not the old file");
  cr_assert_eq (vmdr_backend_read (b, "data/aa/obj", 0, sizeof other + 1, buf), -ERANGE);
  cr_assert_eq (b->ops->del (b, "data/aa/obj"), 0);
  cr_assert_eq (vmdr_backend_read (b, "data/aa/obj", 0, 1, buf), -ENOENT);
  vmdr_backend_close (b);
}

Test (backend_read, without_a_read_op_get_is_used)
{
  static uint8_t obj[70000], buf[70000];
  struct vmdr_backend *b;
  const struct vmdr_backend_ops *real;

  fill (obj, sizeof obj, 3);
  cr_assert_eq (vmdr_backend_open (dir, &b), 0);
  cr_assert_eq (b->ops->put (b, "data/bb/obj", obj, sizeof obj, 0), 0);
  real = b->ops;
  counting_ops = *real;
  counting_ops.read = NULL;
  b->ops = &counting_ops;
  cr_assert_eq (vmdr_backend_read (b, "data/bb/obj", 1000, 60000, buf), 0);
  cr_assert_eq (memcmp (buf, obj + 1000, 60000), 0);
  cr_assert_eq (vmdr_backend_read (b, "data/bb/obj", 69999, 2, buf), -ERANGE);
  cr_assert_eq (vmdr_backend_read (b, "data/bb/none", 0, 2, buf), -ENOENT);
  b->ops = real;
  vmdr_backend_close (b);
}

/* Large objects go around the page cache (O_DIRECT through an aligned
 * bounce buffer, the unaligned tail buffered): whatever the length and the
 * data's alignment, the object holds exactly the bytes put. */
Test (backend_read, large_puts_are_exact)
{
  static const size_t lens[] = { (1u << 20) - 1, 1u << 20, (1u << 20) + 3 * 4096 + 17,
                                 (3u << 20) + 1, 5u << 20 };
  size_t max = (5u << 20) + 1;
  uint8_t *obj = malloc (max), *buf = malloc (max);
  struct vmdr_backend *b;
  struct stat st;
  char path[4096];

  cr_assert (obj && buf);
  fill (obj, max, 7);
  cr_assert_eq (vmdr_backend_open (dir, &b), 0);
  for (size_t i = 0; i < sizeof lens / sizeof *lens; i++) {
    const uint8_t *src = obj + (i % 2);         /* odd addresses too */
    memset (buf, 0, max);
    cr_assert_eq (b->ops->put (b, "data/cc/big", src, lens[i], 0), 0);
    path_of (path, sizeof path, "data/cc/big");
    cr_assert_eq (stat (path, &st), 0);
    cr_assert_eq ((size_t) st.st_size, lens[i], "length %zu", lens[i]);
    cr_assert_eq (vmdr_backend_read (b, "data/cc/big", 0, lens[i], buf), 0);
    cr_assert_eq (memcmp (buf, src, lens[i]), 0, "bytes of length %zu", lens[i]);
    /* Large reads at odd offsets, up to the last byte and one past it. */
    size_t n = 300001;
    cr_assert_eq (vmdr_backend_read (b, "data/cc/big", 777, n, buf), 0);
    cr_assert_eq (memcmp (buf, src + 777, n), 0);
    cr_assert_eq (vmdr_backend_read (b, "data/cc/big", lens[i] - n, n, buf), 0);
    cr_assert_eq (memcmp (buf, src + lens[i] - n, n), 0, "the tail of length %zu", lens[i]);
    cr_assert_eq (vmdr_backend_read (b, "data/cc/big", lens[i] - n + 1, n, buf), -ERANGE);
    cr_assert_eq (vmdr_backend_read (b, "data/cc/big", 4096, 4u << 20, buf),
                  lens[i] >= 4096 + (4u << 20) ? 0 : -ERANGE);
  }
  vmdr_backend_close (b);
  free (obj);
  free (buf);
}

/* More objects than descriptors kept, read by several threads at once:
 * evictions never close a descriptor another thread is reading from. */
#define NOBJ 40
#define OBJ_LEN 32768
static uint8_t objs[NOBJ][OBJ_LEN];

struct reader_arg {
  struct vmdr_backend *b;
  unsigned seed;
  int bad;
};

static void *
read_many (void *opaque)
{
  struct reader_arg *a = opaque;
  uint8_t buf[OBJ_LEN];
  unsigned x = a->seed;

  for (int i = 0; i < 3000; i++) {
    char key[32];
    x = x * 1103515245 + 12345;
    unsigned o = (x >> 8) % NOBJ, off = (x >> 4) % (OBJ_LEN / 2);
    size_t len = 1 + (x >> 16) % (OBJ_LEN / 2);
    snprintf (key, sizeof key, "data/%02x/obj", o);
    if (vmdr_backend_read (a->b, key, off, len, buf) != 0 ||
        memcmp (buf, objs[o] + off, len) != 0)
      a->bad++;
  }
  return NULL;
}

Test (backend_read, many_objects_many_threads)
{
  struct reader_arg args[4];
  pthread_t t[4];
  struct vmdr_backend *b;

  cr_assert_eq (vmdr_backend_open (dir, &b), 0);
  for (unsigned o = 0; o < NOBJ; o++) {
    char key[32];
    fill (objs[o], OBJ_LEN, o + 10);
    snprintf (key, sizeof key, "data/%02x/obj", o);
    cr_assert_eq (b->ops->put (b, key, objs[o], OBJ_LEN, 0), 0);
  }
  for (unsigned i = 0; i < 4; i++) {
    args[i] = (struct reader_arg) { .b = b, .seed = i + 1 };
    cr_assert_eq (pthread_create (&t[i], NULL, read_many, &args[i]), 0);
  }
  for (unsigned i = 0; i < 4; i++) {
    pthread_join (t[i], NULL);
    cr_assert_eq (args[i].bad, 0, "thread %u read wrong bytes", i);
  }
  vmdr_backend_close (b);
}

/* ---- vmdr_repo_get_chunks --------------------------------------------------- */

TestSuite (get_chunks, .init = setup, .fini = teardown);

#define NCH 60
#define CH_LEN 20000
static uint8_t chunks[NCH][CH_LEN];
static struct vmdr_digest digests[NCH];

/* NCH chunks put (and flushed when FLUSH) into a repository with 1 MiB
 * packs: about 20 of them to a pack. */
static struct vmdr_repo *
repo_with_chunks (bool flush)
{
  struct vmdr_repo *r = scratch_repo (small_packs);
  struct vmdr_zctx *z;

  cr_assert_eq (vmdr_zctx_new (1, &z), 0);
  for (int i = 0; i < NCH; i++) {
    unsigned x = (unsigned) i * 7919 + 1;
    /* Random: blobs as large as the chunks, two packs. */
    for (size_t j = 0; j < CH_LEN; j++) {
      x = x * 1103515245 + 12345;
      chunks[i][j] = (uint8_t) (x >> 16);
    }
    vmdr_digest (vmdr_repo_config (r)->hash, chunks[i], CH_LEN, &digests[i]);
    cr_assert_eq (vmdr_repo_put_chunk (r, z, VMDR_BLOB_DATA, &digests[i], chunks[i],
                                       CH_LEN, NULL), 0);
  }
  vmdr_zctx_free (z);
  if (flush)
    cr_assert_eq (vmdr_repo_flush (r), 0);
  return r;
}

static uint8_t outs[VMDR_GET_CHUNKS_MAX][CH_LEN];

/* Requests for chunks IDX[0..n) (-1: a digest that is not stored). */
static void
ask (struct vmdr_chunk_get *q, const int *idx, size_t n)
{
  for (size_t k = 0; k < n; k++) {
    q[k] = (struct vmdr_chunk_get) { .buf = outs[k], .cap = CH_LEN, .err = 12345 };
    if (idx[k] >= 0)
      q[k].d = digests[idx[k]];
    else
      memset (&q[k].d, 0x5c, sizeof q[k].d);
  }
}

static void
assert_got (const struct vmdr_chunk_get *q, int i)
{
  cr_assert_eq (q->err, 0, "chunk %d: %d", i, q->err);
  cr_assert_eq (q->len, CH_LEN);
  cr_assert_eq (memcmp (q->buf, chunks[i], CH_LEN), 0, "chunk %d's bytes", i);
}

/* The pack file of chunk I, and where its blob starts. */
static void
pack_of (struct vmdr_repo *r, int i, char *path, size_t size, uint32_t *off)
{
  struct vmdr_digest pack;
  char key[VMDR_PACK_KEY_LEN];
  uint32_t slen;

  cr_assert_eq (vmdr_repo_locate (r, &digests[i], &pack, off, &slen), 0);
  vmdr_pack_key (&pack, key);
  snprintf (path, size, "%s/repo/%s", dir, key);
}

Test (get_chunks, any_order_duplicates_and_unknown)
{
  struct vmdr_repo *r = repo_with_chunks (true);
  struct vmdr_backend *b = vmdr_repo_backend (r);
  const struct vmdr_backend_ops *real = b->ops;
  struct vmdr_repo_reader *rd;
  static struct vmdr_chunk_get q[NCH + 3];
  int idx[NCH + 3];

  /* Backwards, one chunk twice, one unknown. */
  for (int k = 0; k < NCH; k++)
    idx[k] = NCH - 1 - k;
  idx[NCH] = 7;
  idx[NCH + 1] = -1;
  idx[NCH + 2] = 7;
  ask (q, idx, NCH + 3);
  counting_ops = *real;
  counting_ops.read = counting_read;
  b->ops = &counting_ops;
  reads = 0;
  cr_assert_eq (vmdr_repo_reader_new (r, &rd), 0);
  cr_assert_eq (vmdr_repo_get_chunks (r, rd, q, NCH + 3), 0);
  b->ops = real;
  for (int k = 0; k < NCH + 3; k++) {
    if (idx[k] < 0)
      cr_assert_eq (q[k].err, -ENOENT);
    else
      assert_got (&q[k], idx[k]);
  }
  /* 60 blobs in 2 or 3 packs, each pack in one read (at most 4 MiB). */
  cr_assert_leq (reads, 4, "%u reads for %d blobs", reads, NCH);

  cr_assert_eq (vmdr_repo_get_chunks (r, rd, q, VMDR_GET_CHUNKS_MAX + 1), -EINVAL);
  cr_assert_eq (q[0].err, 0, "untouched");

  /* A buffer too small is that request's error only. */
  ask (q, (int[]) { 1, 2 }, 2);
  q[0].cap = CH_LEN - 1;
  cr_assert_eq (vmdr_repo_get_chunks (r, rd, q, 2), 0);
  cr_assert_eq (q[0].err, -ENOBUFS);
  assert_got (&q[1], 2);
  vmdr_repo_reader_free (rd);
  vmdr_repo_close (r);
}

/* vmdr_repo_prefetch: the backend is told the runs of blobs a later
 * get_chunks reads, each within its pack; unknown chunks are left out. */
static struct { char key[VMDR_PACK_KEY_LEN]; uint64_t off; size_t len; } advised[64];
static unsigned nadvised;

static void
counting_prefetch (struct vmdr_backend *b, const char *key, uint64_t off, size_t len)
{
  (void) b;
  cr_assert_lt (nadvised, 64);
  snprintf (advised[nadvised].key, sizeof advised[nadvised].key, "%s", key);
  advised[nadvised].off = off;
  advised[nadvised++].len = len;
}

Test (get_chunks, prefetch_advises_the_runs_read)
{
  struct vmdr_repo *r = repo_with_chunks (true);
  struct vmdr_backend *b = vmdr_repo_backend (r);
  const struct vmdr_backend_ops *real = b->ops;
  struct vmdr_digest d[NCH + 1];

  for (int k = 0; k < NCH; k++)
    d[k] = digests[NCH - 1 - k];
  memset (&d[NCH], 0x5c, sizeof d[NCH]);          /* not stored */
  counting_ops = *real;
  counting_ops.prefetch = counting_prefetch;
  b->ops = &counting_ops;
  nadvised = 0;
  vmdr_repo_prefetch (r, d, NCH + 1);
  vmdr_repo_prefetch (r, d, VMDR_GET_CHUNKS_MAX + 1);     /* too many: nothing */
  b->ops = real;
  /* 60 blobs in 2 or 3 packs: a run each, as get_chunks reads them. */
  cr_assert (nadvised >= 2 && nadvised <= 4, "%u runs", nadvised);
  for (int i = 0; i < NCH; i++) {
    struct vmdr_digest pack;
    char key[VMDR_PACK_KEY_LEN];
    uint32_t off, slen;
    bool covered = false;
    cr_assert_eq (vmdr_repo_locate (r, &digests[i], &pack, &off, &slen), 0);
    vmdr_pack_key (&pack, key);
    for (unsigned k = 0; k < nadvised; k++)
      covered |= strcmp (advised[k].key, key) == 0 && advised[k].off <= off &&
                 off + VMDR_BLOB_HEADER_LEN + slen <= advised[k].off + advised[k].len;
    cr_assert (covered, "chunk %d's blob is in an advised run", i);
  }
  vmdr_repo_close (r);
}

Test (get_chunks, chunks_not_flushed_yet)
{
  struct vmdr_repo *r = repo_with_chunks (false);
  struct vmdr_repo_reader *rd;
  static struct vmdr_chunk_get q[NCH];
  int idx[NCH];

  for (int k = 0; k < NCH; k++)
    idx[k] = k;
  ask (q, idx, NCH);
  cr_assert_eq (vmdr_repo_reader_new (r, &rd), 0);
  cr_assert_eq (vmdr_repo_get_chunks (r, rd, q, NCH), 0);
  for (int k = 0; k < NCH; k++)
    assert_got (&q[k], k);
  vmdr_repo_reader_free (rd);
  vmdr_repo_close (r);
}

Test (get_chunks, damage_is_named_per_chunk)
{
  struct vmdr_repo *r = repo_with_chunks (true);
  struct vmdr_repo_reader *rd;
  static struct vmdr_chunk_get q[NCH];
  char path[256], path2[256], path3[256];
  int idx[NCH], fd;
  uint32_t off, off2, off3;

  /* One flipped byte in the middle of a run read as a whole... */
  pack_of (r, 10, path, sizeof path, &off);
  fd = open (path, O_RDWR);
  cr_assert_geq (fd, 0);
  cr_assert_eq (pwrite (fd, "X", 1, off + 1000), 1);
  close (fd);
  /* ...a pack cut short after chunk 30's blob began... */
  pack_of (r, 30, path2, sizeof path2, &off2);
  cr_assert_eq (truncate (path2, off2 + 100), 0);
  /* ...and the second pack, holding chunk 59, gone. */
  pack_of (r, NCH - 1, path3, sizeof path3, &off3);
  cr_assert (strcmp (path3, path) != 0 && strcmp (path3, path2) != 0,
             "60 random chunks fill more than one 1 MiB pack");
  cr_assert_eq (unlink (path3), 0);

  for (int k = 0; k < NCH; k++)
    idx[k] = k;
  ask (q, idx, NCH);
  cr_assert_eq (vmdr_repo_reader_new (r, &rd), 0);
  cr_assert_eq (vmdr_repo_get_chunks (r, rd, q, NCH), 0);
  for (int k = 0; k < NCH; k++) {
    char pk[256];
    uint32_t o;
    pack_of (r, k, pk, sizeof pk, &o);
    if (k == 10)
      cr_assert_eq (q[k].err, -EBADMSG, "the damaged blob");
    else if (strcmp (pk, path2) == 0 && o >= off2)
      cr_assert_eq (q[k].err, -EBADMSG, "chunk %d lies past the cut", k);
    else if (strcmp (pk, path3) == 0)
      cr_assert_eq (q[k].err, -ENOENT, "chunk %d's pack is gone", k);
    else
      assert_got (&q[k], k);
  }
  vmdr_repo_reader_free (rd);
  vmdr_repo_close (r);
}

/* ---- vmdr_disk_read --------------------------------------------------------- */

TestSuite (disk_read, .init = setup, .fini = teardown);

/* An image file NAME of SIZE bytes with data at REGIONS, holes elsewhere,
 * written into R; *t its tree.  Returns the image, open. */
static int
image_in_repo (struct vmdr_repo *r, const char *name, uint64_t size,
               const uint64_t (*regions)[2], size_t n, struct vmdr_disk_tree *t)
{
  struct vmdr_chunk_range *ranges = NULL;
  struct vmdr_disk_write_stats st;
  size_t nr = 0;
  char path[160];
  int fd;

  path_of (path, sizeof path, name);
  fd = open (path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  cr_assert_geq (fd, 0);
  cr_assert_eq (ftruncate (fd, (off_t) size), 0);
  for (size_t i = 0; i < n; i++) {
    uint8_t *buf = malloc (regions[i][1]);
    fill (buf, regions[i][1], (unsigned) i + 7);
    cr_assert_eq (pwrite (fd, buf, regions[i][1], (off_t) regions[i][0]),
                  (ssize_t) regions[i][1]);
    free (buf);
  }
  cr_assert_eq (vmdr_file_data_ranges (fd, size, vmdr_repo_config (r)->chunk_size,
                                       &ranges, &nr), 0);
  struct vmdr_file_source fs;
  vmdr_file_source_init (&fs, fd);
  struct vmdr_disk_source src = { .virtual_size = size, .read = vmdr_file_source_read,
                                  .opaque = &fs, .ranges = ranges, .nranges = nr };
  cr_assert_eq (vmdr_disk_write (r, &src, NULL, 2, NULL, NULL, t, &st), 0);
  cr_assert_eq (vmdr_repo_flush (r), 0);
  vmdr_file_source_fini (&fs);
  free (ranges);
  return fd;
}

static void
assert_same (int a, int b, uint64_t size)
{
  static uint8_t x[1 << 16], y[1 << 16];

  for (uint64_t off = 0; off < size; off += sizeof x) {
    size_t n = size - off < sizeof x ? (size_t) (size - off) : sizeof x;
    cr_assert_eq (pread (a, x, n, (off_t) off), (ssize_t) n);
    cr_assert_eq (pread (b, y, n, (off_t) off), (ssize_t) n);
    cr_assert_eq (memcmp (x, y, n), 0, "bytes differ near offset %llu",
                  (unsigned long long) off);
  }
}

/* A sink into a memory image that records its calls, and whether two
 * calls for one worker ever overlapped (a connection per worker). */
struct mem_sink {
  pthread_mutex_t lock;
  uint8_t *img;
  uint64_t size;
  unsigned threads, calls, multi, bad, overlaps;
  bool busy[4];
};

static int
mem_sink_write (void *opaque, unsigned worker, const void *buf, size_t len, uint64_t off)
{
  struct mem_sink *s = opaque;
  bool ok;

  pthread_mutex_lock (&s->lock);
  s->calls++;
  if (len > 65536)
    s->multi++;
  ok = worker < s->threads && len > 0 && len <= (8u << 20) && off % 65536 == 0 &&
       off + len <= s->size;
  if (!ok)
    s->bad++;
  else if (s->busy[worker])
    s->overlaps++;
  else
    s->busy[worker] = true;
  pthread_mutex_unlock (&s->lock);
  if (ok) {
    memcpy (s->img + off, buf, len);    /* the calls' ranges are disjoint */
    usleep (200);                       /* time for an overlap to show */
    pthread_mutex_lock (&s->lock);
    s->busy[worker] = false;
    pthread_mutex_unlock (&s->lock);
  }
  return 0;
}

Test (disk_read, runs_of_chunks_to_the_sink)
{
  static const uint64_t regions[][2] = {
    { 0, 9u << 20 }, { (12u << 20) + 5, 70000 }, { 20u << 20, 3u << 20 },
  };
  const uint64_t size = (24u << 20) + 4097;     /* a short last chunk */
  struct vmdr_repo *r = scratch_repo (small_packs);
  struct mem_sink s = { .size = size };
  struct vmdr_disk_read_stats st;
  struct vmdr_disk_tree t;
  int fd = image_in_repo (r, "img", size, regions, 3, &t);

  pthread_mutex_init (&s.lock, NULL);
  s.img = calloc (1, size);
  for (unsigned threads = 1; threads <= 3; threads += 2) {
    struct vmdr_read_opts o = { .fd = -1, .sink = mem_sink_write, .sopaque = &s,
                                .threads = threads };
    s.calls = s.multi = 0;
    s.threads = threads;
    memset (s.img, 0, size);
    cr_assert_eq (vmdr_disk_read (r, &t, &o, &st, NULL), 0);
    cr_assert_eq (s.bad, 0, "a call too large, unaligned, out of the disk or of the workers");
    cr_assert_eq (s.overlaps, 0, "two calls for one worker at once");
    cr_assert_gt (s.multi, 0, "consecutive chunks come in one call");
    /* 9 MiB, 2 chunks, 3 MiB: runs of at most 8 MiB, none across a hole. */
    cr_assert_leq (s.calls, 3 + 2 + 1 + 2, "%u calls", s.calls);
    cr_assert_eq (st.chunks, 144 + 2 + 48);
    cr_assert_eq (st.bytes, (144 + 2 + 48) * 65536ull);
    uint8_t *x = malloc (size);
    cr_assert_eq (pread (fd, x, size, 0), (ssize_t) size);
    cr_assert_eq (memcmp (x, s.img, size), 0, "the image, through the sink");
    free (x);
  }
  free (s.img);
  pthread_mutex_destroy (&s.lock);
  close (fd);
  vmdr_repo_close (r);
}

/* An ordered read's sink: one call at a time over all workers, each past
 * the one before. */
struct ordered_sink {
  pthread_mutex_t lock;
  uint8_t *img;
  uint64_t size, next;          /* the previous call's end */
  unsigned calls, in_flight, overlaps, backwards;
};

static int
ordered_sink_write (void *opaque, unsigned worker, const void *buf, size_t len, uint64_t off)
{
  struct ordered_sink *s = opaque;

  (void) worker;
  pthread_mutex_lock (&s->lock);
  s->calls++;
  if (s->in_flight++)
    s->overlaps++;
  if (off < s->next || off + len > s->size)
    s->backwards++;
  s->next = off + len;
  pthread_mutex_unlock (&s->lock);
  memcpy (s->img + off, buf, len);
  usleep (300);                         /* time for a later batch to overtake */
  pthread_mutex_lock (&s->lock);
  s->in_flight--;
  pthread_mutex_unlock (&s->lock);
  return 0;
}

/* Spoil one byte in the middle of the stored blob of the 64 KiB chunk
 * INDEX of the image FD, in its pack file. */
static void
damage_chunk (struct vmdr_repo *r, int fd, uint64_t index)
{
  static uint8_t buf[65536];
  struct vmdr_digest d, pack;
  char key[VMDR_PACK_KEY_LEN], path[4096];
  uint32_t off, slen;

  cr_assert_eq (pread (fd, buf, sizeof buf, (off_t) (index * 65536)), 65536);
  vmdr_digest (vmdr_repo_config (r)->hash, buf, sizeof buf, &d);
  cr_assert_eq (vmdr_repo_locate (r, &d, &pack, &off, &slen), 0);
  vmdr_pack_key (&pack, key);
  snprintf (path, sizeof path, "%s/repo/%s", dir, key);
  int pf = open (path, O_RDWR);
  cr_assert_geq (pf, 0);
  cr_assert_eq (pwrite (pf, "X", 1, off + 60 + slen / 2), 1);
  close (pf);
}

Test (disk_read, ordered_sink_calls_in_disk_order)
{
  static const uint64_t regions[][2] = {
    { 0, 9u << 20 }, { (12u << 20) + 5, 70000 }, { 14u << 20, 10u << 20 },
  };
  const uint64_t size = (24u << 20) + 4097;
  struct vmdr_repo *r = scratch_repo (single_blobs);
  struct ordered_sink s = { .size = size };
  struct vmdr_disk_read_stats st;
  struct vmdr_restore_error where;
  struct vmdr_disk_tree t;
  int fd = image_in_repo (r, "img", size, regions, 3, &t);
  uint8_t *x = malloc (size);

  pthread_mutex_init (&s.lock, NULL);
  s.img = calloc (1, size);
  cr_assert_eq (pread (fd, x, size, 0), (ssize_t) size);
  for (unsigned threads = 1; threads <= 4; threads++) {
    struct vmdr_read_opts o = { .fd = -1, .sink = ordered_sink_write, .sopaque = &s,
                                .ordered = true, .threads = threads };
    s.calls = s.next = 0;
    memset (s.img, 0, size);
    cr_assert_eq (vmdr_disk_read (r, &t, &o, &st, NULL), 0);
    cr_assert_eq (s.overlaps, 0, "-j %u: two calls at once", threads);
    cr_assert_eq (s.backwards, 0, "-j %u: a call before the one it followed", threads);
    cr_assert_geq (s.calls, 5, "runs on the 8 MiB grid: 8 + 1 MiB, 2 chunks, 2 + 8 MiB");
    cr_assert_eq (memcmp (x, s.img, size), 0, "-j %u: the image, through the sink", threads);
  }

  /* A damaged chunk late in the disk stops it (no worker waits forever
   * for a turn that will not come), named; what came out is in order. */
  damage_chunk (r, fd, 300);
  struct vmdr_read_opts o = { .fd = -1, .sink = ordered_sink_write, .sopaque = &s,
                              .ordered = true, .threads = 3 };
  s.calls = s.next = 0;
  cr_assert_eq (vmdr_disk_read (r, &t, &o, &st, &where), -EBADMSG);
  cr_assert (where.chunk && where.offset == 300 * 65536ull);
  cr_assert_eq (s.overlaps + s.backwards, 0);
  cr_assert_leq (s.next, 300 * 65536ull, "nothing past the damaged chunk came out");
  free (x);
  free (s.img);
  pthread_mutex_destroy (&s.lock);
  close (fd);
  vmdr_repo_close (r);
}

struct damage_log {
  unsigned n;
  uint64_t offsets[8];
  int errs[8];
};

static void
log_damage (void *opaque, const struct vmdr_restore_error *where, int err)
{
  struct damage_log *l = opaque;

  if (l->n < 8) {
    l->offsets[l->n] = where->offset;
    l->errs[l->n] = err;
  }
  l->n++;
}

Test (disk_read, damage_reported_in_place_and_the_rest_written)
{
  static const uint64_t regions[][2] = { { 0, 6u << 20 } };
  const uint64_t size = 8u << 20;
  struct vmdr_repo *r = scratch_repo (single_blobs);
  struct damage_log log = { 0 };
  struct vmdr_disk_read_stats st;
  struct vmdr_restore_error where;
  struct vmdr_disk_tree t;
  char path[200];
  int fd = image_in_repo (r, "img", size, regions, 1, &t);

  /* Damage chunks 5 and 70 (different batches). */
  damage_chunk (r, fd, 5);
  damage_chunk (r, fd, 70);

  path_of (path, sizeof path, "out");
  int out = open (path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  cr_assert_eq (ftruncate (out, (off_t) size), 0);
  struct vmdr_read_opts o = { .fd = out, .threads = 2, .damage = log_damage,
                              .dopaque = &log };
  cr_assert_eq (vmdr_disk_read (r, &t, &o, &st, &where), -EBADMSG);
  cr_assert_eq (log.n, 2);
  cr_assert (log.offsets[0] + log.offsets[1] == 75 * 65536ull &&
             (log.offsets[0] == 5 * 65536ull || log.offsets[0] == 70 * 65536ull));
  cr_assert_eq (st.chunks, 96 - 2);
  /* Every other chunk is there; the damaged ones stay holes. */
  static uint8_t a[65536], b[65536], zero[65536];
  for (uint64_t i = 0; i < 128; i++) {
    cr_assert_eq (pread (fd, a, sizeof a, (off_t) (i * 65536)), 65536);
    cr_assert_eq (pread (out, b, sizeof b, (off_t) (i * 65536)), 65536);
    if (i == 5 || i == 70)
      cr_assert_eq (memcmp (b, zero, sizeof b), 0);
    else
      cr_assert_eq (memcmp (a, b, sizeof a), 0, "chunk %llu", (unsigned long long) i);
  }
  /* Holes stay holes: nothing was written past the data. */
  cr_assert_eq (lseek (out, 6u << 20, SEEK_DATA), -1);

  /* Without a damage callback the first one stops it, named. */
  o.damage = NULL;
  cr_assert_eq (vmdr_disk_read (r, &t, &o, &st, &where), -EBADMSG);
  cr_assert (where.chunk && (where.offset == 5 * 65536ull || where.offset == 70 * 65536ull));
  close (out);
  close (fd);
  vmdr_repo_close (r);
}

/* A disk whose size is no multiple of the block size, data up to its end:
 * the last bytes are written through the page cache, the rest directly;
 * and a target without O_DIRECT (tmpfs) gets everything through the page
 * cache. */
Test (disk_read, short_tail_and_tmpfs_target)
{
  const uint64_t size = (5u << 20) + 1000;
  const uint64_t regions[][2] = { { 4096, 3u << 20 }, { size - 70000, 70000 } };
  struct vmdr_repo *r = scratch_repo (small_packs);
  struct vmdr_disk_tree t;
  struct statfs sf;
  char path[160];
  int fd = image_in_repo (r, "img", size, regions, 2, &t);

  path_of (path, sizeof path, "out");
  int out = open (path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  cr_assert_eq (ftruncate (out, (off_t) size), 0);
  cr_assert_eq (vmdr_disk_restore (r, &t, out, 2, NULL, NULL, NULL, NULL), 0);
  assert_same (fd, out, size);
  close (out);

  if (statfs ("/dev/shm", &sf) < 0 || sf.f_type != 0x01021994 /* TMPFS_MAGIC */) {
    close (fd);
    vmdr_repo_close (r);
    cr_skip_test ("no tmpfs at /dev/shm");
  }
  snprintf (path, sizeof path, "/dev/shm/vmdr-unit-XXXXXX");
  out = mkstemp (path);
  cr_assert_geq (out, 0);
  unlink (path);
  cr_assert_eq (ftruncate (out, (off_t) size), 0);
  cr_assert_eq (vmdr_disk_restore (r, &t, out, 2, NULL, NULL, NULL, NULL), 0);
  assert_same (fd, out, size);
  close (out);
  close (fd);
  vmdr_repo_close (r);
}

/* With a layout, each disk range goes to its extent's place in the file
 * (a split between chunks, an unaligned host offset), nothing goes
 * anywhere else, and data outside every extent is -ERANGE. */
Test (disk_read, into_a_layout)
{
  static const uint64_t regions[][2] = { { 0, 3u << 20 }, { 5u << 20, 2u << 20 } };
  static const struct vmdr_out_extent layout[] = {
    { 0, (1u << 20) + 4096, 16u << 20 },
    { (1u << 20) + 4096, (2u << 20) - 4096, 10u << 20 },
    { 5u << 20, 2u << 20, (12u << 20) + 512 },
  };
  const uint64_t size = 8u << 20;
  struct vmdr_repo *r = scratch_repo (small_packs);
  struct vmdr_disk_read_stats st;
  struct vmdr_disk_tree t;
  static uint8_t a[65536], b[65536];
  char path[160];
  int fd = image_in_repo (r, "img", size, regions, 2, &t);

  path_of (path, sizeof path, "out");
  int out = open (path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  cr_assert_geq (out, 0);
  struct vmdr_read_opts o = { .fd = out, .threads = 2, .layout = layout, .nlayout = 3 };
  cr_assert_eq (vmdr_disk_read (r, &t, &o, &st, NULL), 0);
  for (size_t i = 0; i < 3; i++)
    for (uint64_t at = 0; at < layout[i].len; at += sizeof a) {
      size_t n = layout[i].len - at < sizeof a ? (size_t) (layout[i].len - at) : sizeof a;
      cr_assert_eq (pread (fd, a, n, (off_t) (layout[i].start + at)), (ssize_t) n);
      cr_assert_eq (pread (out, b, n, (off_t) (layout[i].host + at)), (ssize_t) n);
      cr_assert_eq (memcmp (a, b, n), 0, "extent %zu at %llu", i, (unsigned long long) at);
    }
  cr_assert_eq (lseek (out, 0, SEEK_DATA), 10u << 20, "written below the layout");

  o.nlayout = 2;                /* the second region has nowhere to go */
  cr_assert_eq (vmdr_disk_read (r, &t, &o, &st, NULL), -ERANGE);
  close (out);
  close (fd);
  vmdr_repo_close (r);
}
