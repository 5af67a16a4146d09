/* Streams: the content-defined chunker against the rule of the format
 * (pinned gear table and cut points, a byte-by-byte reference, any split of
 * the input), stream indexes written and restored byte for byte, the
 * sharing between two captures of a changing "memory", and damage found on
 * read, never a crash. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "cdc.h"
#include "endian-util.h"
#include "pack.h"
#include "repo.h"
#include "scratch-repo.h"
#include "stream-index.h"

/* The chunk geometry these tests write with: the recommended defaults
 * (docs/repository-format.md section 7.2). */
#define CDC_MIN (2u << 10)
#define CDC_AVG (8u << 10)
#define CDC_MAX (32u << 10)

static uint64_t
xorshift (uint64_t *s)
{
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static void
fill_random (uint8_t *p, size_t n, uint64_t *s)
{
  size_t i = 0;

  for (; i + 8 <= n; i += 8) {
    uint64_t v = xorshift (s);
    memcpy (p + i, &v, 8);
  }
  for (; i < n; i++)
    p[i] = (uint8_t) xorshift (s);
}

/* Random bytes with zero runs of every interesting length (a few bytes,
 * about a window, pages), the way memory looks. */
static uint8_t *
make_mixed (size_t n, uint64_t seed)
{
  static const size_t runs[] = { 3, 63, 64, 65, 200, 4096, 20000, 70000 };
  uint8_t *p = malloc (n ? n : 1);
  uint64_t s = seed;

  cr_assert_not_null (p);
  fill_random (p, n, &s);
  for (size_t off = 0; off < n;) {
    size_t len = runs[xorshift (&s) % 8];
    if (len > n - off)
      len = n - off;
    memset (p + off, 0, len);
    off += len + xorshift (&s) % 30000;
  }
  return p;
}

/* ---- the chunker --------------------------------------------------------- */

static uint64_t
splitmix64 (uint64_t *state)
{
  uint64_t z = (*state += UINT64_C (0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C (0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C (0x94d049bb133111eb);
  return z ^ (z >> 31);
}

/* The cut rule of section 7.2, byte by byte: the length of the first
 * chunk of the N bytes at P (all that is left of the stream). */
static size_t
ref_chunk (const uint8_t *p, size_t n, uint32_t min, uint32_t avg, uint32_t max)
{
  static uint64_t gear[256];
  unsigned bits = (unsigned) __builtin_ctz (avg);
  uint64_t ms = ~UINT64_C (0) << (64 - (bits + 1)), ml = ~UINT64_C (0) << (64 - (bits - 1));
  uint64_t hz = 0, h = 0, s = UINT64_C (0x564d445243444331);

  for (int i = 0; i < 256; i++)
    gear[i] = splitmix64 (&s);
  for (int i = 0; i < 64; i++)
    hz = (hz << 1) + gear[0];
  for (size_t j = 0; j < n; j++) {
    size_t len = j + 1;
    h = (h << 1) + gear[p[j]];
    if (len == max)
      return len;
    if (len < min)
      continue;
    if (h != hz && (h & (len <= avg ? ms : ml)) == 0)
      return len;
    if (h == hz && j + 1 < n && p[j + 1] != 0)
      return len;
  }
  return n;
}

/* Cut N bytes feeding pieces of the sizes in STEPS (cycled; 0 = all at
 * once); the chunk ends go to CUTS.  Returns how many. */
static size_t
cut_all (const uint8_t *p, size_t n, uint32_t min, uint32_t avg, uint32_t max,
         const size_t *steps, size_t nsteps, size_t *cuts)
{
  struct vmdr_cdc c;
  size_t off = 0, held = 0, k = 0, si = 0, ncuts = 0;

  cr_assert_eq (vmdr_cdc_init (&c, min, avg, max), 0);
  while (off < n) {
    size_t piece = steps[si++ % nsteps];
    if (piece == 0 || piece > n - off)
      piece = n - off;
    /* Feed the piece until it is used up, as a writer does. */
    for (size_t used = 0; used < piece;) {
      bool cut;
      k = vmdr_cdc_feed (&c, p + off + used, piece - used, &cut);
      used += k;
      held += k;
      if (cut) {
        cr_assert_gt (held, 0, "an empty chunk");
        cuts[ncuts++] = off + used;
        held = 0;
      }
    }
    off += piece;
  }
  if (held)
    cuts[ncuts++] = n;
  return ncuts;
}

TestSuite (cdc);

Test (cdc, gear_table_is_the_format)
{
  uint64_t s = VMDR_CDC_GEAR_SEED;

  for (unsigned i = 0; i < 256; i++)
    cr_assert_eq (vmdr_cdc_gear (i), splitmix64 (&s), "gear[%u] changed", i);
  /* Pinned: the table decides every chunk boundary in every repository. */
  cr_assert_eq (vmdr_cdc_gear (0), UINT64_C (0x93b88a5d507a02a7));
  cr_assert_eq (vmdr_cdc_gear (1), UINT64_C (0xbc618d6a90d5e871));
  cr_assert_eq (vmdr_cdc_gear (128), UINT64_C (0xa8299317e1b6fa5d));
  cr_assert_eq (vmdr_cdc_gear (255), UINT64_C (0x99d147e3062a3073));
}

Test (cdc, init_checks_parameters)
{
  struct vmdr_cdc c;

  cr_assert_eq (vmdr_cdc_init (&c, 2048, 8192, 32768), 0);
  cr_assert_eq (vmdr_cdc_init (&c, 2048, 6000, 32768), -EINVAL, "avg not a power of two");
  cr_assert_eq (vmdr_cdc_init (&c, 9000, 8192, 32768), -EINVAL, "min > avg");
  cr_assert_eq (vmdr_cdc_init (&c, 2048, 8192, 4096), -EINVAL, "avg > max");
  cr_assert_eq (vmdr_cdc_init (&c, 32, 64, 128), -EINVAL, "min below the window");
  cr_assert_eq (vmdr_cdc_init (&c, 4096, 16384, 32u << 20), -EINVAL, "max above a blob");
  cr_assert_eq (vmdr_cdc_init (&c, 64, 64, 64), 0, "fixed size is allowed");
}

/* Cut points of a fixed input, pinned: a change to the rule, the masks or
 * the table moves them and fails here. */
Test (cdc, cut_points_pinned)
{
  static const size_t expect[] = {
    4096, 25338, 35780, 44631, 47439, 61961, 67433, 81264, 83402, 85462,
    118230, 150998,
  };
  size_t n = 1u << 20, *cuts = malloc (n / 64 * sizeof *cuts), whole = 0;
  uint8_t *p = make_mixed (n, 42);
  uint64_t sum = 0;
  size_t ncuts = cut_all (p, n, CDC_MIN, CDC_AVG, CDC_MAX, &whole, 1, cuts);

  for (size_t i = 0; i < ncuts; i++)
    sum = sum * 31 + cuts[i];
  cr_assert_eq (ncuts, 81);
  cr_assert_eq (sum, UINT64_C (0x302d6930414a8134));
  for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++)
    cr_assert_eq (cuts[i], expect[i], "cut %zu at %zu, not %zu", i, cuts[i], expect[i]);
  free (cuts);
  free (p);
}

/* The fast chunker follows the byte-by-byte rule exactly, for several
 * geometries, including the degenerate ones. */
Test (cdc, matches_reference_rule)
{
  static const uint32_t geo[][3] = {
    { CDC_MIN, CDC_AVG, CDC_MAX }, { 4096, 16384, 65536 }, { 64, 64, 64 },
    { 64, 128, 4096 }, { 1024, 1024, 1024 }, { 1000, 1024, 3000 },
  };
  size_t n = 3u << 20, whole = 0, *cuts = malloc (n * sizeof *cuts);

  for (int kind = 0; kind < 3; kind++) {
    uint8_t *p = make_mixed (n, 7 + (uint64_t) kind);
    if (kind == 1)
      memset (p, 0, n / 2);                     /* a long zero run first */
    if (kind == 2)
      for (size_t i = 0; i < n; i++)
        p[i] = i % 5000 < 4000 ? 0 : p[i];      /* zero runs everywhere */
    for (size_t g = 0; g < sizeof geo / sizeof geo[0]; g++) {
      size_t ncuts = cut_all (p, n, geo[g][0], geo[g][1], geo[g][2], &whole, 1, cuts);
      size_t off = 0, i = 0;
      while (off < n) {
        size_t len = ref_chunk (p + off, n - off, geo[g][0], geo[g][1], geo[g][2]);
        cr_assert_lt (i, ncuts);
        cr_assert_eq (cuts[i], off + len, "kind %d geometry %zu: cut %zu at %zu, rule says %zu",
                      kind, g, i, cuts[i], off + len);
        cr_assert (len <= geo[g][2] && (len >= geo[g][0] || off + len == n),
                   "chunk length %zu out of bounds", len);
        off += len;
        i++;
      }
      cr_assert_eq (i, ncuts);
    }
    free (p);
  }
  free (cuts);
}

/* The same cuts however the input is split: single bytes, odd sizes,
 * sizes that end buffers inside and exactly at the end of zero runs. */
Test (cdc, cuts_do_not_depend_on_buffers)
{
  static const size_t one[] = { 1 }, odd[] = { 7, 4093, 1, 65536, 3, 100003 },
                      pages[] = { 4096 }, ragged[] = { 63, 64, 65, 2047, 2048, 2049 };
  static const struct { const size_t *s; size_t n; } splits[] = {
    { one, 1 }, { odd, 6 }, { pages, 1 }, { ragged, 6 },
  };
  size_t n = 2u << 20, whole = 0;
  size_t *ref = malloc (n * sizeof *ref), *cuts = malloc (n * sizeof *cuts);
  uint8_t *p = make_mixed (n, 99);
  size_t nref = cut_all (p, n, CDC_MIN, CDC_AVG, CDC_MAX, &whole, 1, ref);

  /* Buffers that end right where zero runs end. */
  size_t *at_runs = malloc (n * sizeof *at_runs), nr = 0, last = 0;
  for (size_t i = 1; i < n; i++)
    if (p[i - 1] == 0 && p[i] != 0) {
      at_runs[nr++] = i - last;
      last = i;
    }
  cr_assert_gt (nr, 10);
  for (size_t k = 0; k <= sizeof splits / sizeof splits[0]; k++) {
    const size_t *s = k < 4 ? splits[k].s : at_runs;
    size_t ns = k < 4 ? splits[k].n : nr;
    size_t ncuts = cut_all (p, n, CDC_MIN, CDC_AVG, CDC_MAX, s, ns, cuts);
    cr_assert_eq (ncuts, nref, "split %zu: %zu chunks, not %zu", k, ncuts, nref);
    cr_assert_eq (memcmp (cuts, ref, nref * sizeof *ref), 0, "split %zu moved a cut", k);
  }
  free (at_runs);
  free (p);
  free (cuts);
  free (ref);
}

Test (cdc, zero_runs)
{
  size_t n = 1u << 20, whole = 0, *cuts = malloc (n / 64 * sizeof *cuts);
  size_t *first = malloc (n / 64 * sizeof *first), nfirst = 0;
  uint8_t *p = calloc (1, n);
  uint64_t s = 5;
  size_t ncuts = cut_all (p, n, CDC_MIN, CDC_AVG, CDC_MAX, &whole, 1, cuts);

  /* All zero: maximal chunks, not one per window or per minimum. */
  cr_assert_eq (ncuts, n / CDC_MAX);
  for (size_t i = 0; i < ncuts; i++)
    cr_assert_eq (cuts[i], (i + 1) * CDC_MAX);

  /* Data after a zero run starts a chunk at its first byte, whatever came
   * before the run: the cuts that follow are the same. */
  fill_random (p + 10000, 200000, &s);
  for (size_t lead = 1; lead < CDC_MIN - 64; lead += 997) {
    fill_random (p, lead, &s);
    ncuts = cut_all (p, n, CDC_MIN, CDC_AVG, CDC_MAX, &whole, 1, cuts);
    cr_assert_gt (ncuts, 2);
    cr_assert_eq (cuts[0], 10000, "lead %zu: the first chunk ends at %zu", lead, cuts[0]);
    if (nfirst == 0) {
      nfirst = ncuts;
      memcpy (first, cuts, ncuts * sizeof *cuts);
    }
    cr_assert_eq (ncuts, nfirst);
    cr_assert_eq (memcmp (cuts, first, ncuts * sizeof *cuts), 0);
  }
  free (first);
  free (cuts);
  free (p);
}

/* ---- a repository ----------------------------------------------------------- */

static uint32_t fanout_wanted;

static void
tune (struct vmdr_repo_config *c)
{
  c->fanout = fanout_wanted;
  c->cdc_min = CDC_MIN;
  c->cdc_avg = CDC_AVG;
  c->cdc_max = CDC_MAX;
  c->pack_size = 4u << 20;      /* several packs */
}

static struct vmdr_repo *
make_repo (uint32_t fanout)
{
  fanout_wanted = fanout;
  return scratch_repo (tune);
}

/* Write N bytes at P as a stream, fed in pieces of STEP bytes. */
static void
write_stream (struct vmdr_repo *r, const uint8_t *p, size_t n, size_t step,
              unsigned threads, struct vmdr_stream_tree *t,
              struct vmdr_stream_write_stats *st)
{
  struct vmdr_stream_writer *w;

  cr_assert_eq (vmdr_stream_writer_new (r, threads, &w), 0);
  for (size_t off = 0; off < n; off += step)
    cr_assert_eq (vmdr_stream_writer_feed (w, p + off, n - off < step ? n - off : step), 0);
  cr_assert_eq (vmdr_stream_writer_finish (w, t, st), 0);
  vmdr_stream_writer_free (w);
  cr_assert_eq (vmdr_repo_flush (r), 0);
  cr_assert_eq (t->size, n);
}

static int
open_file (const char *name, int flags)
{
  char path[160];
  int fd;

  snprintf (path, sizeof path, "%s/%s", dir, name);
  fd = open (path, flags | O_CREAT, 0644);
  cr_assert_geq (fd, 0);
  return fd;
}

static void
assert_file_is (int fd, const uint8_t *p, size_t n)
{
  struct stat st;
  uint8_t *back = malloc (n ? n : 1);

  cr_assert_eq (fstat (fd, &st), 0);
  cr_assert_eq ((uint64_t) st.st_size, n, "restored size %lld, not %zu",
                (long long) st.st_size, n);
  cr_assert_eq (pread (fd, back, n, 0), (ssize_t) n);
  cr_assert_eq (memcmp (back, p, n), 0, "restored bytes differ");
  free (back);
}

struct sink {
  int fd;
  uint8_t *buf;
  size_t cap, len;
};

static void *
drain_pipe (void *opaque)
{
  struct sink *s = opaque;
  ssize_t n;

  while ((n = read (s->fd, s->buf + s->len, s->cap - s->len + 1)) > 0)
    s->len += (size_t) n;
  return NULL;
}

/* Restore T into a pipe (no seeking, no holes) and compare. */
static void
assert_pipe_restore (struct vmdr_repo *r, const struct vmdr_stream_tree *t,
                     const uint8_t *p, size_t n, unsigned threads)
{
  struct sink s = { .cap = n, .buf = malloc (n + 1) };
  pthread_t tid;
  int fds[2];

  cr_assert_eq (pipe (fds), 0);
  s.fd = fds[0];
  pthread_create (&tid, NULL, drain_pipe, &s);
  cr_assert_eq (vmdr_stream_restore (r, t, fds[1], threads, NULL, NULL), 0);
  close (fds[1]);
  pthread_join (tid, NULL);
  close (fds[0]);
  cr_assert_eq (s.len, n, "piped %zu bytes, not %zu", s.len, n);
  cr_assert_eq (memcmp (s.buf, p, n), 0);
  free (s.buf);
}

struct walk_check {
  uint64_t next;                /* offset the next leaf must start at */
  uint64_t chunks, zero_entries;
};

static int
check_leaf (void *opaque, uint64_t off, const struct vmdr_stream_entry *e, size_t n)
{
  static const struct vmdr_digest z;
  struct walk_check *c = opaque;

  cr_assert_eq (off, c->next, "leaf at %llu, expected %llu",
                (unsigned long long) off, (unsigned long long) c->next);
  for (size_t i = 0; i < n; i++) {
    c->next += e[i].len;
    c->chunks++;
    c->zero_entries += memcmp (&e[i].d, &z, sizeof z) == 0;
  }
  return 0;
}

TestSuite (stream, .init = setup, .fini = teardown);

Test (stream, sizes_round_trip)
{
  static const size_t sizes[] = {
    0, 1, CDC_MIN - 1, CDC_MIN, CDC_MAX, CDC_MAX + 1, 3 * CDC_MAX,
    (5u << 20) + 12345, (9u << 20) + 1,
  };
  struct vmdr_repo *r = make_repo (16);
  struct vmdr_zctx *z;

  cr_assert_eq (vmdr_zctx_new (1, &z), 0);
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = sizes[i];
    uint8_t *p = make_mixed (n, i + 1);
    for (unsigned threads = 1; threads <= 3; threads += 2) {
      struct vmdr_stream_tree t;
      struct vmdr_stream_write_stats st;
      struct vmdr_stream_read_stats rs;
      struct walk_check wc = { 0 };
      write_stream (r, p, n, 1000003, threads, &t, &st);
      cr_assert_eq (st.bytes, n);
      cr_assert_eq (t.fanout, 16);
      cr_assert_eq (t.depth == 0, n == 0);
      cr_assert_eq (vmdr_stream_tree_walk (r, z, &t, check_leaf, &wc), 0);
      cr_assert_eq (wc.next, n, "the leaves cover the stream");

      int fd = open_file ("out", O_RDWR | O_TRUNC);
      cr_assert_eq (vmdr_stream_restore (r, &t, fd, threads, &rs, NULL), 0,
                    "size %zu", n);
      cr_assert_eq (rs.bytes + rs.bytes_zero, n);
      assert_file_is (fd, p, n);
      close (fd);
      assert_pipe_restore (r, &t, p, n, threads);
      cr_assert_eq (vmdr_stream_restore (r, &t, -1, threads, NULL, NULL), 0, "verify only");
    }
    free (p);
  }
  vmdr_zctx_free (z);
  vmdr_repo_close (r);
}

Test (stream, zero_stream_stores_nothing)
{
  struct vmdr_repo *r = make_repo (16);
  size_t n = (3u << 20) + 5;
  uint8_t *p = calloc (1, n);
  struct vmdr_stream_tree t;
  struct vmdr_stream_write_stats st;
  static const struct vmdr_digest zero;

  write_stream (r, p, n, 65536, 2, &t, &st);
  cr_assert_eq (vmdr_repo_chunk_count (r), 0, "no chunk, no node");
  cr_assert_eq (st.chunks, st.chunks_zero);
  cr_assert_eq (memcmp (&t.root, &zero, sizeof zero), 0);
  cr_assert_geq (t.depth, 2, "%llu chunks need two levels", (unsigned long long) st.chunks);

  int fd = open_file ("out", O_RDWR | O_TRUNC);
  cr_assert_eq (vmdr_stream_restore (r, &t, fd, 2, NULL, NULL), 0);
  assert_file_is (fd, p, n);
  close (fd);
  assert_pipe_restore (r, &t, p, n, 1);

  /* Over old contents zeros are written, not holes left. */
  fd = open_file ("old", O_RDWR | O_TRUNC);
  uint8_t *ff = malloc (n + 100);
  memset (ff, 0xff, n + 100);
  cr_assert_eq (write (fd, ff, n + 100), (ssize_t) n + 100);
  cr_assert_eq (lseek (fd, 0, SEEK_SET), 0);
  cr_assert_eq (vmdr_stream_restore (r, &t, fd, 2, NULL, NULL), 0);
  cr_assert_eq (pread (fd, ff, n + 100, 0), (ssize_t) n + 100);
  cr_assert_eq (memcmp (ff, p, n), 0);
  cr_assert_eq (ff[n], 0xff, "bytes past the stream are left alone");
  close (fd);
  free (ff);
  free (p);
  vmdr_repo_close (r);
}

/* Equal streams give equal trees, however they are fed; a second copy
 * stores nothing; a deep tree (fanout 16) reads back. */
Test (stream, deterministic_and_deduplicated)
{
  struct vmdr_repo *r = make_repo (16);
  size_t n = 12u << 20;
  uint8_t *p = make_mixed (n, 1234);
  struct vmdr_stream_tree a, b;
  struct vmdr_stream_write_stats sa, sb;

  write_stream (r, p, n, 4096, 2, &a, &sa);
  write_stream (r, p, n, 777777, 1, &b, &sb);
  cr_assert_eq (memcmp (&a, &b, sizeof a), 0, "same stream, same tree");
  cr_assert_geq (a.depth, 3);
  cr_assert_gt (sa.chunks_new, 0);
  cr_assert_gt (sa.nodes_new, 0);
  cr_assert_eq (sb.chunks_new, 0);
  cr_assert_eq (sb.nodes_new, 0);
  cr_assert_eq (sb.bytes_new, 0);

  int fd = open_file ("out", O_RDWR | O_TRUNC);
  cr_assert_eq (vmdr_stream_restore (r, &a, fd, 3, NULL, NULL), 0);
  assert_file_is (fd, p, n);
  close (fd);
  free (p);
  vmdr_repo_close (r);
}

Test (stream, from_a_file_descriptor)
{
  struct vmdr_repo *r = make_repo (64);
  size_t n = (4u << 20) + 333;
  uint8_t *p = make_mixed (n, 77);
  struct vmdr_stream_tree t, u;
  struct vmdr_stream_write_stats st;
  int fd = open_file ("in", O_RDWR | O_TRUNC);

  cr_assert_eq (write (fd, p, n), (ssize_t) n);
  cr_assert_eq (lseek (fd, 0, SEEK_SET), 0);
  cr_assert_eq (vmdr_stream_write_fd (r, fd, 2, NULL, NULL, &t, &st), 0);
  cr_assert_eq (vmdr_repo_flush (r), 0);
  close (fd);
  write_stream (r, p, n, 65536, 1, &u, &st);
  cr_assert_eq (memcmp (&t, &u, sizeof t), 0);

  /* Appending to a file that already holds a header. */
  fd = open_file ("out", O_RDWR | O_TRUNC);
  cr_assert_eq (write (fd, "HDR", 3), 3);
  cr_assert_eq (vmdr_stream_restore (r, &t, fd, 2, NULL, NULL), 0);
  uint8_t *back = malloc (n + 3);
  cr_assert_eq (pread (fd, back, n + 3, 0), (ssize_t) n + 3);
  cr_assert_eq (memcmp (back, "HDR", 3), 0);
  cr_assert_eq (memcmp (back + 3, p, n), 0);
  free (back);
  close (fd);
  free (p);
  vmdr_repo_close (r);
}

Test (stream, misuse)
{
  struct vmdr_repo *r = make_repo (16);
  struct vmdr_stream_writer *w = NULL;
  struct vmdr_stream_tree t = { .fanout = 16 };

  cr_assert_eq (vmdr_stream_writer_new (r, 0, &w), -EINVAL);
  cr_assert_eq (vmdr_stream_writer_new (r, VMDR_MAX_THREADS + 1, &w), -EINVAL);
  cr_assert_null (w, "output untouched on error");
  cr_assert_eq (vmdr_stream_restore (r, &t, -1, 0, NULL, NULL), -EINVAL);
  cr_assert_eq (vmdr_stream_writer_new (r, 2, &w), 0);
  cr_assert_eq (vmdr_stream_writer_feed (w, "abc", 3), 0);
  cr_assert_eq (vmdr_stream_writer_finish (w, &t, NULL), 0);
  cr_assert_eq (vmdr_stream_writer_finish (w, &t, NULL), -EINVAL, "finish twice");
  cr_assert_eq (vmdr_stream_writer_feed (w, "abc", 3), -EINVAL, "feed after finish");
  vmdr_stream_writer_free (w);
  vmdr_stream_writer_free (NULL);

  /* Freed half-way: the workers stop, nothing leaks. */
  uint8_t *p = make_mixed (3u << 20, 3);
  cr_assert_eq (vmdr_stream_writer_new (r, 3, &w), 0);
  cr_assert_eq (vmdr_stream_writer_feed (w, p, 3u << 20), 0);
  vmdr_stream_writer_free (w);
  free (p);
  vmdr_repo_close (r);
}

/* ---- two captures of a changing memory ------------------------------------- */

#define PAGE 4096

/* Runs of 1 .. 64 pages, each run zero pages (3 in 10), pages repeated
 * from a pool of 16 (1 in 10) or random pages: roughly what a guest's RAM
 * holds (free memory, common pages, data). */
static void
make_memory (uint8_t *p, size_t npages, uint64_t *s)
{
  static uint8_t pool[16][PAGE];

  for (int i = 0; i < 16; i++)
    fill_random (pool[i], PAGE, s);
  for (size_t pg = 0; pg < npages;) {
    size_t run = 1 + xorshift (s) % 64;
    unsigned kind = (unsigned) (xorshift (s) % 10);
    for (size_t j = 0; j < run && pg < npages; j++, pg++) {
      uint8_t *q = p + pg * PAGE;
      if (kind < 3)
        memset (q, 0, PAGE);
      else if (kind < 4)
        memcpy (q, pool[xorshift (s) % 16], PAGE);
      else
        fill_random (q, PAGE, s);
    }
  }
}

/* Give 5 % of the pages new random contents: single pages at random
 * (CLUSTER 1) or runs of CLUSTER pages at random places. */
static void
change_pages (uint8_t *p, size_t npages, size_t cluster, uint64_t *s)
{
  bool *done = calloc (npages, 1);
  size_t want = npages / 20, changed = 0;

  while (changed < want) {
    size_t first = xorshift (s) % npages;
    for (size_t j = first; j < first + cluster && j < npages && changed < want; j++)
      if (!done[j]) {
        done[j] = true;
        changed++;
        fill_random (p + j * PAGE, PAGE, s);
      }
  }
  free (done);
}

struct digests {
  struct vmdr_digest *d;
  size_t n, cap;
};

static int
collect_chunks (void *opaque, uint64_t off, const struct vmdr_stream_entry *e, size_t n)
{
  static const struct vmdr_digest z;
  struct digests *ds = opaque;

  (void) off;
  for (size_t i = 0; i < n; i++) {
    if (memcmp (&e[i].d, &z, sizeof z) == 0)
      continue;                 /* zero chunks are not stored */
    if (ds->n == ds->cap) {
      ds->cap = ds->cap ? 2 * ds->cap : 1024;
      ds->d = realloc (ds->d, ds->cap * sizeof *ds->d);
    }
    ds->d[ds->n++] = e[i].d;
  }
  return 0;
}

static int
cmp_digest (const void *a, const void *b)
{
  return memcmp (a, b, sizeof (struct vmdr_digest));
}

/* The distinct chunks of stream T, sorted. */
static struct digests
chunks_of (struct vmdr_repo *r, const struct vmdr_stream_tree *t)
{
  struct digests ds = { 0 };
  struct vmdr_zctx *z;
  size_t u = 0;

  cr_assert_eq (vmdr_zctx_new (1, &z), 0);
  cr_assert_eq (vmdr_stream_tree_walk (r, z, t, collect_chunks, &ds), 0);
  vmdr_zctx_free (z);
  qsort (ds.d, ds.n, sizeof *ds.d, cmp_digest);
  for (size_t i = 0; i < ds.n; i++)
    if (u == 0 || memcmp (&ds.d[u - 1], &ds.d[i], sizeof *ds.d) != 0)
      ds.d[u++] = ds.d[i];
  ds.n = u;
  return ds;
}

Test (stream, captures_share_chunks)
{
  struct vmdr_repo *r = make_repo (256);
  size_t npages = 16384, n = npages * PAGE;     /* 64 MiB */
  uint8_t *a = malloc (n), *b = malloc (n);
  struct vmdr_stream_tree ta, tb;
  struct vmdr_stream_write_stats sa, sb;
  uint64_t s = 20261127;

  make_memory (a, npages, &s);
  write_stream (r, a, n, 1u << 20, 2, &ta, &sa);
  struct digests da = chunks_of (r, &ta);
  for (size_t cluster = 1; cluster <= 16; cluster += 15) {
    memcpy (b, a, n);
    change_pages (b, npages, cluster, &s);
    write_stream (r, b, n, 1u << 20, 2, &tb, &sb);
    struct digests db = chunks_of (r, &tb);
    size_t shared = 0;
    for (size_t i = 0; i < db.n; i++)
      shared += bsearch (&db.d[i], da.d, da.n, sizeof *da.d, cmp_digest) != NULL;
    double of_first = (double) shared / (double) da.n;
    double of_second = (double) shared / (double) db.n;
    fprintf (stderr, "# cdc %u/%u/%u, 5%% of 4 KiB pages changed %s: "
             "%.1f%% of the first capture's %zu chunks are in the second, "
             "%.1f%% of the second's %zu were there; stored %llu chunks, "
             "%.1f MiB (changed: %.1f MiB)\n",
             CDC_MIN, CDC_AVG, CDC_MAX, cluster == 1 ? "uniformly" : "in runs of 16",
             100 * of_first, da.n, 100 * of_second, db.n,
             (unsigned long long) sb.chunks_new, (double) sb.bytes_new / (1 << 20),
             (double) (npages / 20 * PAGE) / (1 << 20));
    cr_expect_geq (of_first, 0.80, "only %.1f%% shared", 100 * of_first);
    cr_expect_geq (of_second, cluster == 1 ? 0.75 : 0.85);
    free (db.d);
  }
  free (da.d);
  free (a);
  free (b);
  vmdr_repo_close (r);
}

/* ---- damage ------------------------------------------------------------------ */

static void
flip_byte (struct vmdr_repo *r, const struct vmdr_digest *d, uint32_t at)
{
  struct vmdr_digest pack;
  uint32_t off, slen;
  char key[VMDR_PACK_KEY_LEN], path[200];
  uint8_t byte;

  cr_assert_eq (vmdr_repo_locate (r, d, &pack, &off, &slen), 0);
  vmdr_pack_key (&pack, key);
  snprintf (path, sizeof path, "%s/repo/%s", dir, key);
  int fd = open (path, O_RDWR);
  cr_assert_geq (fd, 0);
  cr_assert_eq (pread (fd, &byte, 1, off + at), 1);
  byte ^= 0x40;
  cr_assert_eq (pwrite (fd, &byte, 1, off + at), 1);
  close (fd);
}

struct nth_chunk {
  size_t want, seen;
  uint64_t off;
  struct vmdr_digest d;
};

static int
find_nth (void *opaque, uint64_t off, const struct vmdr_stream_entry *e, size_t n)
{
  static const struct vmdr_digest z;
  struct nth_chunk *c = opaque;

  for (size_t i = 0; i < n; off += e[i].len, i++)
    if (memcmp (&e[i].d, &z, sizeof z) != 0 && c->seen++ == c->want) {
      c->off = off;
      c->d = e[i].d;
    }
  return 0;
}

Test (stream, damaged_chunk_or_node)
{
  struct vmdr_repo *r = make_repo (16);
  size_t n = 3u << 20;
  uint8_t *p = make_mixed (n, 8);
  struct vmdr_stream_tree t;
  struct vmdr_stream_write_stats st;
  struct vmdr_restore_error err;
  struct vmdr_zctx *z;
  struct nth_chunk c = { .want = 100 };
  struct walk_check wc = { 0 };

  cr_assert_eq (vmdr_zctx_new (1, &z), 0);
  write_stream (r, p, n, 65536, 2, &t, &st);
  cr_assert_eq (vmdr_stream_tree_walk (r, z, &t, find_nth, &c), 0);
  cr_assert_gt (c.seen, c.want);

  /* A chunk: the restore stops there and says where. */
  flip_byte (r, &c.d, VMDR_BLOB_HEADER_LEN + 10);
  for (unsigned threads = 1; threads <= 4; threads += 3) {
    int fd = open_file ("out", O_RDWR | O_TRUNC);
    memset (&err, 0, sizeof err);
    cr_assert_eq (vmdr_stream_restore (r, &t, fd, threads, NULL, &err), -EBADMSG);
    cr_assert_eq (err.offset, c.off);
    cr_assert_eq (memcmp (&err.digest, &c.d, sizeof c.d), 0);
    close (fd);
  }
  cr_assert_eq (vmdr_stream_restore (r, &t, -1, 2, NULL, NULL), -EBADMSG, "verify finds it");
  cr_assert_eq (vmdr_stream_tree_walk (r, z, &t, check_leaf, &wc), 0, "the index is whole");

  /* The root node. */
  flip_byte (r, &t.root, VMDR_BLOB_HEADER_LEN + 20);
  cr_assert_eq (vmdr_stream_tree_walk (r, z, &t, check_leaf, &wc), -EBADMSG);
  memset (&err, 0xff, sizeof err);
  cr_assert_eq (vmdr_stream_restore (r, &t, -1, 2, NULL, &err), -EBADMSG);
  cr_assert_eq (err.offset, 0);
  cr_assert_eq (memcmp (&err.digest, &t.root, sizeof t.root), 0);

  /* A root that is not there. */
  memset (&t.root, 0x5a, sizeof t.root);
  cr_assert_eq (vmdr_stream_tree_walk (r, z, &t, check_leaf, &wc), -ENOENT);
  cr_assert_eq (vmdr_stream_restore (r, &t, -1, 1, NULL, NULL), -ENOENT);
  vmdr_zctx_free (z);
  free (p);
  vmdr_repo_close (r);
}

/* ---- hand-made nodes: every check of the reader --------------------------- */

static struct vmdr_repo *nrepo;
static struct vmdr_zctx *nz;

static struct vmdr_digest
put_blob (enum vmdr_blob_kind kind, const void *p, size_t len)
{
  struct vmdr_digest d;

  cr_assert_eq (vmdr_digest (vmdr_repo_config (nrepo)->hash, p, len, &d), 0);
  cr_assert_eq (vmdr_repo_put_chunk (nrepo, nz, kind, &d, p, len, NULL), 0);
  return d;
}

/* A node with magic MAGIC, LEVEL, count field COUNT and the N entries E. */
static struct vmdr_digest
put_node (const char *magic, unsigned level, uint32_t count,
          const struct vmdr_stream_entry *e, size_t n)
{
  uint8_t buf[16 + 20 * 40] = { 0 };

  memcpy (buf, magic, 4);
  buf[4] = (uint8_t) level;
  put_le32 (buf + 8, count);
  for (size_t i = 0; i < n; i++) {
    memcpy (buf + 16 + 40 * i, &e[i].d, 32);
    put_le64 (buf + 16 + 40 * i + 32, e[i].len);
  }
  return put_blob (VMDR_BLOB_STREAM_NODE, buf, 16 + 40 * n);
}

static int
walk_and_restore (const struct vmdr_stream_tree *t)
{
  struct walk_check wc = { 0 };
  int a = vmdr_stream_tree_walk (nrepo, nz, t, check_leaf, &wc);
  int b = vmdr_stream_restore (nrepo, t, -1, 2, NULL, NULL);

  cr_assert_eq (a < 0 ? a : b, b, "walk %d, restore %d", a, b);
  return b;
}

Test (stream, malformed_nodes)
{
  static uint8_t da[1000], db[500];
  struct vmdr_stream_entry e[20];
  struct vmdr_digest leaf, bad;
  uint64_t s = 1;

  nrepo = make_repo (16);
  cr_assert_eq (vmdr_zctx_new (1, &nz), 0);
  fill_random (da, sizeof da, &s);
  fill_random (db, sizeof db, &s);
  e[0] = (struct vmdr_stream_entry) { put_blob (VMDR_BLOB_DATA, da, sizeof da), sizeof da };
  e[1] = (struct vmdr_stream_entry) { put_blob (VMDR_BLOB_DATA, db, sizeof db), sizeof db };

  /* The well-formed leaf first. */
  leaf = put_node ("VMS1", 0, 2, e, 2);
  struct vmdr_stream_tree t = { .size = 1500, .fanout = 16, .depth = 1, .root = leaf };
  cr_assert_eq (walk_and_restore (&t), 0);

  t.root = put_node ("VMX1", 0, 2, e, 2);
  cr_assert_eq (walk_and_restore (&t), -EBADMSG, "magic");
  t.root = put_node ("VMS1", 1, 2, e, 2);
  cr_assert_eq (walk_and_restore (&t), -EBADMSG, "level");
  t.root = put_node ("VMS1", 0, 3, e, 2);
  cr_assert_eq (walk_and_restore (&t), -EBADMSG, "count beyond the entries");
  t.root = put_node ("VMS1", 0, 0, e, 0);
  cr_assert_eq (walk_and_restore (&t), -EBADMSG, "no entries");
  t.root = leaf;
  t.size = 1501;
  cr_assert_eq (walk_and_restore (&t), -EBADMSG, "lengths do not add up");
  t.size = 1500;

  struct vmdr_stream_entry w[2] = { e[0], e[1] };
  w[1].len = 0;
  w[0].len = 1500;
  t.root = put_node ("VMS1", 0, 2, w, 2);
  cr_assert_eq (walk_and_restore (&t), -EBADMSG, "an empty entry");
  w[0] = e[0];
  w[1] = (struct vmdr_stream_entry) { .len = CDC_MAX + 1 };
  t.root = put_node ("VMS1", 0, 2, w, 2);
  t.size = 1000 + CDC_MAX + 1;
  cr_assert_eq (walk_and_restore (&t), -EBADMSG, "a chunk longer than cdc.max");
  w[1] = e[1];
  w[1].len = 499;
  t.root = put_node ("VMS1", 0, 2, w, 2);
  t.size = 1499;
  cr_assert_eq (walk_and_restore (&t), -EBADMSG, "a chunk of another length");
  t.size = 1500;

  uint8_t raw[16 + 80] = { 'V', 'M', 'S', '1', 0, 0, 1, 0, 2 };
  memcpy (raw + 16, &e[0].d, 32);
  put_le64 (raw + 48, 1000);
  memcpy (raw + 56, &e[1].d, 32);
  put_le64 (raw + 88, 500);
  t.root = put_blob (VMDR_BLOB_STREAM_NODE, raw, sizeof raw);
  cr_assert_eq (walk_and_restore (&t), -EBADMSG, "a reserved byte set");

  t.root = e[0].d;
  cr_assert_eq (walk_and_restore (&t), -EBADMSG, "a data chunk as a node");

  /* Stored under a digest that is not its own. */
  uint8_t good[16 + 80];
  memcpy (good, raw, sizeof good);
  good[6] = 0;
  memset (&bad, 0x77, sizeof bad);
  cr_assert_eq (vmdr_repo_put_chunk (nrepo, nz, VMDR_BLOB_STREAM_NODE, &bad, good,
                                     sizeof good, NULL), 0);
  t.root = bad;
  cr_assert_eq (walk_and_restore (&t), -EILSEQ, "a node that is not what it is named");

  /* Interior nodes: a root of one entry is not the smallest tree, and
   * only the last node of a level may be short. */
  struct vmdr_stream_entry up[2] = { { leaf, 1500 }, { leaf, 1500 } };
  t = (struct vmdr_stream_tree) { .size = 1500, .fanout = 16, .depth = 2,
                                  .root = put_node ("VMS1", 1, 1, up, 1) };
  cr_assert_eq (walk_and_restore (&t), -EBADMSG, "a root of one entry");
  t.size = 3000;
  t.root = put_node ("VMS1", 1, 2, up, 2);
  cr_assert_eq (walk_and_restore (&t), -EBADMSG, "a short node that is not last");

  for (int i = 0; i < 16; i++)
    e[i] = (struct vmdr_stream_entry) { e[i % 2].d, i % 2 ? 500 : 1000 };
  up[0] = (struct vmdr_stream_entry) { put_node ("VMS1", 0, 16, e, 16), 8 * 1500 };
  t.size = 8 * 1500 + 1500;
  t.root = put_node ("VMS1", 1, 2, up, 2);
  cr_assert_eq (walk_and_restore (&t), 0, "full, then short: well formed");
  up[1].len = 1499;
  t.size--;
  t.root = put_node ("VMS1", 1, 2, up, 2);
  cr_assert_eq (walk_and_restore (&t), -EBADMSG, "a child shorter than its entry");

  /* The tree's own numbers. */
  struct vmdr_stream_tree g = { .size = 5, .fanout = 16, .depth = 0 };
  cr_assert_eq (walk_and_restore (&g), -EBADMSG, "bytes in an empty tree");
  g = (struct vmdr_stream_tree) { .size = 5, .fanout = 24, .depth = 1, .root = leaf };
  cr_assert_eq (walk_and_restore (&g), -EBADMSG, "fanout");
  g.fanout = 16;
  g.depth = VMDR_STREAM_MAX_DEPTH + 1;
  cr_assert_eq (walk_and_restore (&g), -EBADMSG, "depth");
  g = (struct vmdr_stream_tree) { .size = 0, .fanout = 16, .depth = 0 };
  cr_assert_eq (walk_and_restore (&g), 0, "the empty stream");

  vmdr_zctx_free (nz);
  vmdr_repo_close (nrepo);
}
