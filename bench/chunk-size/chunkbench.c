/* chunkbench: the measurements behind the repository's chunk geometry.
 *
 * Over a raw disk image, for each fixed chunk size: how many chunks are not
 * all zero, how many of those are unique, what the unique ones cost stored
 * with zstd at each level (one frame per chunk, raw where zstd does not
 * shrink it), and how fast BLAKE2b-256, SHA-256, XXH3-64 and zstd run on
 * them.  Then the "CPU limit" of a full backup (digest and zstd of every
 * non-zero chunk, over 1 and N threads), small chunks compressed one by one
 * against the same chunks batched into larger frames, and, given a changed
 * copy of the image, what an incremental costs: chunks that differ, the
 * bytes their new contents store, and the index nodes it rewrites
 * (docs/repository-format.md, sections 4 to 7).
 *
 * "chunkbench mutate" makes that changed copy: COUNT writes of BLOCK bytes
 * of the image's own data (from random unaligned offsets) onto distinct
 * BLOCK-aligned blocks that are not all zero.
 *
 * MB = 10^6 bytes.  Single-thread speeds are MB of chunk input per CPU
 * second of the measuring thread, so that other load on the machine does not
 * skew them; the multi-thread figures are per wall-clock second.
 *
 * Build: cc -O2 -Wall -Wextra -o chunkbench chunkbench.c \
 *            -lzstd -lb2 -lxxhash -lcrypto -lpthread
 * run.sh in this directory makes the test data and runs everything.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <blake2.h>
#include <openssl/evp.h>
#include <xxhash.h>
#include <zstd.h>

#define MAX_LIST 16             /* entries in -s, -l, -m, -F lists */
#define MIN_CHUNK 4096
#define MAX_CHUNK (64u << 20)
#define MAX_GROUP 256
#define MAX_THREADS 64
#define DIGEST_LEN 32
/* Per stored blob beyond its payload (docs/repository-format.md): the
 * 56-byte blob header and its 48-byte pack index entry, written twice (the
 * index object and the copy at the end of the pack). */
#define BLOB_META (56 + 48 + 48)
#define NODE_HEADER 16

static const char *progname = "chunkbench";

static void die (const char *fmt, ...)
  __attribute__((noreturn, format (printf, 1, 2)));

static void
die (const char *fmt, ...)
{
  va_list ap;

  fprintf (stderr, "%s: ", progname);
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fputc ('\n', stderr);
  exit (1);
}

static void usage (int status) __attribute__((noreturn));

static void
usage (int status)
{
  fprintf (status ? stderr : stdout,
           "usage: %s [-j THREADS] [-s SIZES] [-l LEVELS] [-m SIZES] "
           "[-b SIZE] [-g GROUP] [-F FANOUTS] IMAGE [CHANGED]\n"
           "       %s mutate [-n COUNT] [-b BLOCK] [-S SEED] IMAGE CHANGED\n"
           "  -s  fixed chunk sizes (default 64K,128K,256K,512K,1M,4M)\n"
           "  -l  zstd levels (default -1,1,3)\n"
           "  -j  threads for the full-backup CPU limit (default 2)\n"
           "  -m  chunk sizes for that test (default 64K,1M)\n"
           "  -b  chunk size batched into frames of -g chunks "
           "(default 64K, 16)\n"
           "  -F  index fanouts whose metadata cost is reported "
           "(default 64,256,1024)\n"
           "mutate writes COUNT (200) blocks of BLOCK (64K) bytes of IMAGE's "
           "data, from\nrandom offsets, onto distinct non-zero BLOCK-aligned "
           "blocks of CHANGED (a copy\nof IMAGE); SEED (1) makes it "
           "repeatable.\n",
           progname, progname);
  exit (status);
}

static void *
xmalloc (size_t n)
{
  void *p = malloc (n ? n : 1);

  if (!p)
    die ("out of memory (%zu bytes)", n);
  return p;
}

static void *
xcalloc (size_t n, size_t size)
{
  void *p = calloc (n ? n : 1, size ? size : 1);

  if (!p)
    die ("out of memory (%zu x %zu bytes)", n, size);
  return p;
}

/* ---- parsing ---------------------------------------------------------- */

static uint64_t
parse_size (const char *s)
{
  char *end;
  unsigned long long v;

  errno = 0;
  v = strtoull (s, &end, 10);
  if (errno || end == s || *s == '-')
    die ("bad size: %s", s);
  switch (*end) {
  case 'k': case 'K': v <<= 10; end++; break;
  case 'm': case 'M': v <<= 20; end++; break;
  case 'g': case 'G': v <<= 30; end++; break;
  default: break;
  }
  if (*end)
    die ("bad size: %s", s);
  return v;
}

static long
parse_long (const char *s, long min, long max)
{
  char *end;
  long v;

  errno = 0;
  v = strtol (s, &end, 10);
  if (errno || end == s || *end || v < min || v > max)
    die ("bad number (want %ld .. %ld): %s", min, max, s);
  return v;
}

/* Comma-separated list into OUT (at most MAX_LIST); returns the count.
 * SIZES: sizes with K/M/G suffixes, else plain integers. */
static size_t
parse_list (const char *arg, long *out, bool sizes, long min, long max)
{
  char buf[256];
  size_t n = 0;
  char *save = NULL;

  if (strlen (arg) >= sizeof buf)
    die ("list too long: %s", arg);
  strcpy (buf, arg);
  for (char *t = strtok_r (buf, ",", &save); t;
       t = strtok_r (NULL, ",", &save)) {
    long v;

    if (n == MAX_LIST)
      die ("at most %d entries in a list: %s", MAX_LIST, arg);
    if (sizes) {
      uint64_t u = parse_size (t);
      if (u < (uint64_t) min || u > (uint64_t) max)
        die ("size out of range (%ld .. %ld): %s", min, max, t);
      v = (long) u;
    }
    else
      v = parse_long (t, min, max);
    out[n++] = v;
  }
  if (n == 0)
    die ("empty list");
  return n;
}

static const char *
size_name (size_t s, char *buf, size_t len)
{
  if (s % (1u << 20) == 0)
    snprintf (buf, len, "%zuM", s >> 20);
  else if (s % 1024 == 0)
    snprintf (buf, len, "%zuK", s >> 10);
  else
    snprintf (buf, len, "%zu", s);
  return buf;
}

/* ---- time --------------------------------------------------------------- */

static double
now (clockid_t id)
{
  struct timespec t;

  clock_gettime (id, &t);
  return (double) t.tv_sec + (double) t.tv_nsec * 1e-9;
}

struct stopwatch {
  clockid_t cpu_clock;
  double wall, cpu;
};

/* Wall and CPU time of all single-thread measurements: their ratio shows
 * how much other load there was. */
static double total_wall, total_cpu;

static void
sw_start (struct stopwatch *sw, clockid_t cpu_clock)
{
  sw->cpu_clock = cpu_clock;
  sw->cpu = now (cpu_clock);
  sw->wall = now (CLOCK_MONOTONIC);
}

static void
sw_stop (struct stopwatch *sw)
{
  sw->wall = now (CLOCK_MONOTONIC) - sw->wall;
  sw->cpu = now (sw->cpu_clock) - sw->cpu;
  if (sw->cpu_clock == CLOCK_THREAD_CPUTIME_ID) {
    total_wall += sw->wall;
    total_cpu += sw->cpu;
  }
}

/* MB per CPU second of the thread that measured. */
static double
mbs (uint64_t bytes, const struct stopwatch *sw)
{
  return sw->cpu > 0 ? (double) bytes / 1e6 / sw->cpu : 0;
}

/* ---- images ------------------------------------------------------------- */

struct image {
  const char *path;
  const uint8_t *p;
  size_t len;
};

static void
map_image (const char *path, struct image *im)
{
  struct stat st;
  int fd = open (path, O_RDONLY | O_CLOEXEC);

  if (fd < 0)
    die ("%s: %s", path, strerror (errno));
  if (fstat (fd, &st) < 0)
    die ("%s: %s", path, strerror (errno));
  if (!S_ISREG (st.st_mode) || st.st_size <= 0)
    die ("%s: not a non-empty regular file", path);
  im->path = path;
  im->len = (size_t) st.st_size;
  /* MAP_POPULATE: no page faults inside the timed loops. */
  im->p = mmap (NULL, im->len, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
  if (im->p == MAP_FAILED)
    die ("%s: mmap: %s", path, strerror (errno));
  close (fd);
}

static void
unmap_image (struct image *im)
{
  munmap ((void *) im->p, im->len);
  im->p = NULL;
}

static size_t
nchunks (const struct image *im, size_t cs)
{
  return (im->len + cs - 1) / cs;
}

static size_t
chunk_len (const struct image *im, size_t cs, uint64_t i)
{
  size_t off = (size_t) i * cs;

  return im->len - off < cs ? im->len - off : cs;
}

static const uint8_t *
chunk_ptr (const struct image *im, size_t cs, uint64_t i)
{
  return im->p + (size_t) i * cs;
}

static bool
is_zero (const uint8_t *p, size_t len)
{
  return len == 0 || (p[0] == 0 && memcmp (p, p + 1, len - 1) == 0);
}

/* ---- digests and a set of them ------------------------------------------ */

static void
digest_b2 (const uint8_t *p, size_t len, uint8_t out[DIGEST_LEN])
{
  if (blake2b (out, p, NULL, DIGEST_LEN, len, 0) != 0)
    die ("blake2b failed");
}

/* Open addressing over 32-byte digests; the all-zero digest marks an empty
 * slot and is kept aside. */
struct dset {
  uint8_t (*slot)[DIGEST_LEN];
  size_t mask, n;
  bool has_zero;
};

static void
dset_init (struct dset *s, size_t expect)
{
  size_t cap = 16;

  while (cap < 2 * expect + 16)
    cap *= 2;
  s->slot = xcalloc (cap, DIGEST_LEN);
  s->mask = cap - 1;
  s->n = 0;
  s->has_zero = false;
}

static void
dset_free (struct dset *s)
{
  free (s->slot);
  s->slot = NULL;
}

/* True if D was not in the set (it is now). */
static bool
dset_add (struct dset *s, const uint8_t d[DIGEST_LEN])
{
  static const uint8_t zero[DIGEST_LEN];
  uint64_t h;

  if (memcmp (d, zero, DIGEST_LEN) == 0) {
    bool added = !s->has_zero;
    s->has_zero = true;
    return added;
  }
  if (s->n + 1 > (s->mask + 1) / 2) {   /* keep the load under 1/2 */
    struct dset bigger;
    dset_init (&bigger, s->mask + 1);
    for (size_t i = 0; i <= s->mask; i++)
      if (memcmp (s->slot[i], zero, DIGEST_LEN) != 0)
        dset_add (&bigger, s->slot[i]);
    bigger.has_zero = s->has_zero;
    dset_free (s);
    *s = bigger;
  }
  memcpy (&h, d, sizeof h);
  for (size_t i = h & s->mask;; i = (i + 1) & s->mask) {
    if (memcmp (s->slot[i], d, DIGEST_LEN) == 0)
      return false;
    if (memcmp (s->slot[i], zero, DIGEST_LEN) == 0) {
      memcpy (s->slot[i], d, DIGEST_LEN);
      s->n++;
      return true;
    }
  }
}

/* ---- zstd over "units": GROUP consecutive chunks of a list per frame ----- */

struct zrun {
  const struct image *im;
  const uint64_t *idx;          /* chunk numbers */
  size_t n;                     /* entries in idx */
  size_t cs;                    /* chunk size */
  size_t group;                 /* chunks per frame */
  size_t nunits;
  uint64_t raw;                 /* input bytes */
  uint8_t *arena;               /* the frames, back to back */
  size_t arena_len;
  uint32_t *stored;             /* per unit: frame length, or raw length */
  uint8_t *stage, *out;         /* group * cs each */
  ZSTD_CCtx *cctx;
  ZSTD_DCtx *dctx;
};

static size_t
unit_len (const struct zrun *z, size_t u)
{
  size_t len = 0;

  for (size_t k = u * z->group; k < z->n && k < (u + 1) * z->group; k++)
    len += chunk_len (z->im, z->cs, z->idx[k]);
  return len;
}

static void
zrun_init (struct zrun *z, const struct image *im, const uint64_t *idx,
           size_t n, size_t cs, size_t group)
{
  memset (z, 0, sizeof *z);
  z->im = im;
  z->idx = idx;
  z->n = n;
  z->cs = cs;
  z->group = group;
  z->nunits = (n + group - 1) / group;
  for (size_t u = 0; u < z->nunits; u++) {
    size_t len = unit_len (z, u);
    z->raw += len;
    z->arena_len += ZSTD_compressBound (len);
  }
  /* Room for every frame at its bound, so no frame can overflow it. */
  z->arena = xmalloc (z->arena_len);
  /* Fault it in now, not inside the first timed compression. */
  memset (z->arena, 0, z->arena_len);
  z->stored = xcalloc (z->nunits, sizeof *z->stored);
  z->stage = xmalloc (group * cs);
  z->out = xmalloc (group * cs);
  z->cctx = ZSTD_createCCtx ();
  z->dctx = ZSTD_createDCtx ();
  if (!z->cctx || !z->dctx)
    die ("cannot create zstd contexts");
}

static void
zrun_free (struct zrun *z)
{
  free (z->arena);
  free (z->stored);
  free (z->stage);
  free (z->out);
  ZSTD_freeCCtx (z->cctx);
  ZSTD_freeDCtx (z->dctx);
}

/* The bytes of unit U: in place for a single chunk, else gathered into
 * z->stage (that copy is part of the cost of batching). */
static const uint8_t *
unit_src (struct zrun *z, size_t u, size_t *lenp)
{
  size_t first = u * z->group, len = 0;

  if (z->group == 1) {
    *lenp = chunk_len (z->im, z->cs, z->idx[first]);
    return chunk_ptr (z->im, z->cs, z->idx[first]);
  }
  for (size_t k = first; k < z->n && k < first + z->group; k++) {
    size_t l = chunk_len (z->im, z->cs, z->idx[k]);
    memcpy (z->stage + len, chunk_ptr (z->im, z->cs, z->idx[k]), l);
    len += l;
  }
  *lenp = len;
  return z->stage;
}

/* Compress every unit at LEVEL into the arena; returns the stored bytes. */
static uint64_t
zrun_compress (struct zrun *z, int level, struct stopwatch *sw)
{
  uint64_t total = 0;
  size_t pos = 0;

  if (ZSTD_isError (ZSTD_CCtx_reset (z->cctx,
                                     ZSTD_reset_session_and_parameters))
      || ZSTD_isError (ZSTD_CCtx_setParameter (z->cctx,
                                               ZSTD_c_compressionLevel,
                                               level)))
    die ("zstd: cannot set level %d", level);
  sw_start (sw, CLOCK_THREAD_CPUTIME_ID);
  for (size_t u = 0; u < z->nunits; u++) {
    size_t len, c;
    const uint8_t *src = unit_src (z, u, &len);

    c = ZSTD_compress2 (z->cctx, z->arena + pos, z->arena_len - pos, src, len);
    if (ZSTD_isError (c))
      die ("zstd: %s", ZSTD_getErrorName (c));
    if (c < len)
      pos += c;
    else
      c = len;                  /* stored raw */
    z->stored[u] = (uint32_t) c;
    total += c;
  }
  sw_stop (sw);
  return total;
}

/* Decompress every unit (raw units are copied) into z->out; with VERIFY,
 * compare with the image. */
static void
zrun_decompress (struct zrun *z, bool verify, struct stopwatch *sw)
{
  size_t pos = 0;

  sw_start (sw, CLOCK_THREAD_CPUTIME_ID);
  for (size_t u = 0; u < z->nunits; u++) {
    size_t len, d;
    const uint8_t *src;

    if (z->group == 1) {
      len = chunk_len (z->im, z->cs, z->idx[u]);
      src = chunk_ptr (z->im, z->cs, z->idx[u]);
    }
    else {
      len = unit_len (z, u);
      src = NULL;
    }
    if (z->stored[u] == len) {
      if (!src)
        src = unit_src (z, u, &len);
      memcpy (z->out, src, len);
    }
    else {
      d = ZSTD_decompressDCtx (z->dctx, z->out, z->group * z->cs,
                               z->arena + pos, z->stored[u]);
      if (ZSTD_isError (d) || d != len)
        die ("zstd: decompressing unit %zu: %s", u,
             ZSTD_isError (d) ? ZSTD_getErrorName (d) : "wrong length");
      pos += z->stored[u];
    }
    if (verify) {
      size_t off = 0;
      for (size_t k = u * z->group; k < z->n && k < (u + 1) * z->group; k++) {
        size_t l = chunk_len (z->im, z->cs, z->idx[k]);
        if (memcmp (z->out + off, chunk_ptr (z->im, z->cs, z->idx[k]), l))
          die ("zstd: round trip of chunk %" PRIu64 " differs", z->idx[k]);
        off += l;
      }
    }
  }
  sw_stop (sw);
}

/* ---- index metadata (docs/repository-format.md, section 7.1) ------------ */

struct meta {
  unsigned depth;
  uint64_t full_nodes, full_bytes;      /* every node, every stored chunk */
  uint64_t inc_nodes, inc_bytes;        /* nodes an incremental rewrites */
};

static uint64_t
node_bytes (uint64_t entries)
{
  return NODE_HEADER + DIGEST_LEN * entries + BLOB_META;
}

/* Index cost for NCH chunks at FANOUT, of which CHANGED (ascending, N of
 * them) differ from the parent snapshot; STORED chunks pay BLOB_META. */
static void
index_meta (uint64_t nch, uint64_t fanout, const uint64_t *changed, size_t n,
            uint64_t stored_full, uint64_t stored_inc, struct meta *m)
{
  uint64_t items = nch, div = 1;

  memset (m, 0, sizeof *m);
  m->full_bytes = stored_full * BLOB_META;
  m->inc_bytes = stored_inc * BLOB_META;
  do {
    uint64_t nodes = (items + fanout - 1) / fanout;
    uint64_t last_entries = items - (nodes - 1) * fanout;
    uint64_t prev = UINT64_MAX;

    div *= fanout;
    m->depth++;
    m->full_nodes += nodes;
    m->full_bytes += (nodes - 1) * node_bytes (fanout)
      + node_bytes (last_entries);
    for (size_t k = 0; k < n; k++) {
      uint64_t node = changed[k] / div;
      if (node != prev) {
        m->inc_nodes++;
        m->inc_bytes += node == nodes - 1 ? node_bytes (last_entries)
                                          : node_bytes (fanout);
        prev = node;
      }
    }
    items = nodes;
  } while (items > 1);
}

/* ---- the full-backup CPU limit: BLAKE2b + zstd over N threads ----------- */

struct worker {
  pthread_t tid;
  const struct image *im;
  const uint64_t *idx;
  size_t n, cs;
  int level;
  unsigned t, nt;
  uint64_t stored;
};

static void *
worker_main (void *arg)
{
  struct worker *w = arg;
  ZSTD_CCtx *cctx = ZSTD_createCCtx ();
  size_t cap = ZSTD_compressBound (w->cs);
  uint8_t *buf = xmalloc (cap);
  uint8_t d[DIGEST_LEN];

  if (!cctx || ZSTD_isError (ZSTD_CCtx_setParameter (cctx,
                                                     ZSTD_c_compressionLevel,
                                                     w->level)))
    die ("zstd: cannot set up level %d", w->level);
  for (size_t k = w->t; k < w->n; k += w->nt) {
    const uint8_t *p = chunk_ptr (w->im, w->cs, w->idx[k]);
    size_t len = chunk_len (w->im, w->cs, w->idx[k]);
    size_t c;

    digest_b2 (p, len, d);
    c = ZSTD_compress2 (cctx, buf, cap, p, len);
    if (ZSTD_isError (c))
      die ("zstd: %s", ZSTD_getErrorName (c));
    w->stored += c < len ? c : len;
  }
  free (buf);
  ZSTD_freeCCtx (cctx);
  return NULL;
}

/* Wall-clock MB/s of digest + zstd at LEVEL over NT threads; *CPU_PCT is the
 * process CPU time over the wall time. */
static double
cpu_limit (const struct image *im, const uint64_t *idx, size_t n, size_t cs,
           uint64_t bytes, int level, unsigned nt, double *cpu_pct)
{
  struct worker w[MAX_THREADS];
  struct stopwatch sw;
  int err;

  sw_start (&sw, CLOCK_PROCESS_CPUTIME_ID);
  for (unsigned t = 0; t < nt; t++) {
    w[t] = (struct worker) { .im = im, .idx = idx, .n = n, .cs = cs,
                             .level = level, .t = t, .nt = nt };
    err = pthread_create (&w[t].tid, NULL, worker_main, &w[t]);
    if (err)
      die ("pthread_create: %s", strerror (err));
  }
  for (unsigned t = 0; t < nt; t++)
    pthread_join (w[t].tid, NULL);
  sw_stop (&sw);
  *cpu_pct = sw.wall > 0 ? 100 * sw.cpu / sw.wall : 0;
  return sw.wall > 0 ? (double) bytes / 1e6 / sw.wall : 0;
}

/* ---- the benchmark ------------------------------------------------------ */

struct row {
  size_t cs;
  uint64_t chunks, nonzero, unique, nz_bytes, uniq_bytes;
  double zero_mbs, b2_mbs, sha_mbs, xxh_mbs;
  uint64_t stored[MAX_LIST];
  double c_mbs[MAX_LIST], d_mbs[MAX_LIST];
  /* against the changed copy */
  uint64_t differ, became_zero, newc, new_bytes, inc_stored[MAX_LIST];
  struct meta meta[MAX_LIST];
};

struct opts {
  long sizes[MAX_LIST], levels[MAX_LIST], mt_sizes[MAX_LIST];
  long fanouts[MAX_LIST];
  size_t nsizes, nlevels, nmt, nfanouts;
  unsigned threads;
  size_t batch_cs, group;
};

static volatile uint64_t sink;  /* keeps the hash loops from vanishing */

static double
mb (uint64_t bytes)
{
  return (double) bytes / 1e6;
}

static void
measure_size (const struct opts *o, const struct image *im,
              const struct image *ch, size_t cs, struct row *r)
{
  size_t n = nchunks (im, cs), nz = 0, nu = 0;
  uint64_t *nzidx = xcalloc (n, sizeof *nzidx);
  uint64_t *uidx = xcalloc (n, sizeof *uidx);
  uint8_t (*dig)[DIGEST_LEN];
  struct stopwatch sw;
  struct dset set;
  EVP_MD *sha = EVP_MD_fetch (NULL, "SHA256", NULL);
  EVP_MD_CTX *mdctx = EVP_MD_CTX_new ();
  uint8_t md[EVP_MAX_MD_SIZE];
  unsigned mdlen;
  uint64_t acc = 0;

  if (!sha || !mdctx)
    die ("OpenSSL: no SHA-256");
  memset (r, 0, sizeof *r);
  r->cs = cs;
  r->chunks = n;

  /* Zero detection, then digests of the rest, then dedup. */
  sw_start (&sw, CLOCK_THREAD_CPUTIME_ID);
  for (size_t i = 0; i < n; i++)
    if (!is_zero (chunk_ptr (im, cs, i), chunk_len (im, cs, i)))
      nzidx[nz++] = i;
  sw_stop (&sw);
  r->zero_mbs = mbs (im->len, &sw);
  r->nonzero = nz;
  for (size_t k = 0; k < nz; k++)
    r->nz_bytes += chunk_len (im, cs, nzidx[k]);

  dig = xcalloc (nz, DIGEST_LEN);
  sw_start (&sw, CLOCK_THREAD_CPUTIME_ID);
  for (size_t k = 0; k < nz; k++)
    digest_b2 (chunk_ptr (im, cs, nzidx[k]), chunk_len (im, cs, nzidx[k]),
               dig[k]);
  sw_stop (&sw);
  r->b2_mbs = mbs (r->nz_bytes, &sw);

  dset_init (&set, nz);
  for (size_t k = 0; k < nz; k++)
    if (dset_add (&set, dig[k])) {
      uidx[nu++] = nzidx[k];
      r->uniq_bytes += chunk_len (im, cs, nzidx[k]);
    }
  r->unique = nu;
  free (dig);

  sw_start (&sw, CLOCK_THREAD_CPUTIME_ID);
  for (size_t k = 0; k < nz; k++) {
    if (EVP_DigestInit_ex (mdctx, sha, NULL) != 1
        || EVP_DigestUpdate (mdctx, chunk_ptr (im, cs, nzidx[k]),
                             chunk_len (im, cs, nzidx[k])) != 1
        || EVP_DigestFinal_ex (mdctx, md, &mdlen) != 1)
      die ("OpenSSL: SHA-256 failed");
    acc += md[0];
  }
  sw_stop (&sw);
  r->sha_mbs = mbs (r->nz_bytes, &sw);

  sw_start (&sw, CLOCK_THREAD_CPUTIME_ID);
  for (size_t k = 0; k < nz; k++)
    acc += XXH3_64bits (chunk_ptr (im, cs, nzidx[k]),
                        chunk_len (im, cs, nzidx[k]));
  sw_stop (&sw);
  r->xxh_mbs = mbs (r->nz_bytes, &sw);
  sink = acc;
  EVP_MD_CTX_free (mdctx);
  EVP_MD_free (sha);

  /* zstd, one frame per unique chunk. */
  {
    struct zrun z;

    zrun_init (&z, im, uidx, nu, cs, 1);
    for (size_t l = 0; l < o->nlevels; l++) {
      fprintf (stderr, "  zstd %ld\n", o->levels[l]);
      r->stored[l] = zrun_compress (&z, (int) o->levels[l], &sw);
      r->c_mbs[l] = mbs (z.raw, &sw);
      zrun_decompress (&z, true, &sw);
      zrun_decompress (&z, false, &sw);
      r->d_mbs[l] = mbs (z.raw, &sw);
    }
    zrun_free (&z);
  }

  /* The incremental: chunks that differ, the new ones among them. */
  if (ch) {
    uint64_t *diff = xcalloc (n, sizeof *diff);
    uint64_t *newidx = xcalloc (n, sizeof *newidx);
    size_t nd = 0, nn = 0;
    uint8_t d[DIGEST_LEN];

    for (size_t i = 0; i < n; i++) {
      const uint8_t *a = chunk_ptr (im, cs, i), *b = chunk_ptr (ch, cs, i);
      size_t len = chunk_len (im, cs, i);

      if (memcmp (a, b, len) == 0)
        continue;
      diff[nd++] = i;
      if (is_zero (b, len)) {
        r->became_zero++;
        continue;
      }
      digest_b2 (b, len, d);
      if (dset_add (&set, d)) {
        newidx[nn++] = i;
        r->new_bytes += len;
      }
    }
    r->differ = nd;
    r->newc = nn;
    if (nn) {
      struct zrun z;

      zrun_init (&z, ch, newidx, nn, cs, 1);
      for (size_t l = 0; l < o->nlevels; l++) {
        r->inc_stored[l] = zrun_compress (&z, (int) o->levels[l], &sw);
        zrun_decompress (&z, true, &sw);
      }
      zrun_free (&z);
    }
    for (size_t f = 0; f < o->nfanouts; f++)
      index_meta (n, (uint64_t) o->fanouts[f], diff, nd, nu, nn,
                  &r->meta[f]);
    free (diff);
    free (newidx);
  }
  else
    for (size_t f = 0; f < o->nfanouts; f++)
      index_meta (n, (uint64_t) o->fanouts[f], NULL, 0, nu, 0, &r->meta[f]);

  dset_free (&set);
  free (nzidx);
  free (uidx);
}

static void
print_tables (const struct opts *o, const struct row *rows, bool changed)
{
  char sb[32];

  printf ("\n## Full image: chunks, dedup, stored bytes (unique non-zero "
          "chunks, one zstd frame each)\n");
  printf ("%-5s %8s %8s %8s %9s", "size", "chunks", "nonzero", "unique",
          "unique_MB");
  for (size_t l = 0; l < o->nlevels; l++) {
    snprintf (sb, sizeof sb, "zstd%ld_MB", o->levels[l]);
    printf ("  %10s ratio", sb);
  }
  printf ("\n");
  for (size_t s = 0; s < o->nsizes; s++) {
    const struct row *r = &rows[s];
    printf ("%-5s %8" PRIu64 " %8" PRIu64 " %8" PRIu64 " %9.1f",
            size_name (r->cs, sb, sizeof sb), r->chunks, r->nonzero,
            r->unique, mb (r->uniq_bytes));
    for (size_t l = 0; l < o->nlevels; l++)
      printf ("  %10.1f %5.2f", mb (r->stored[l]),
              r->stored[l] ? (double) r->uniq_bytes / (double) r->stored[l]
                           : 0);
    printf ("\n");
  }

  printf ("\n## Single-thread speed, MB/s of input per CPU second "
          "(zero scan over the whole image;\n## digests over non-zero "
          "chunks; zstd compress/decompress over unique chunks)\n");
  printf ("%-5s %8s %8s %8s %8s", "size", "zeroscan", "blake2b", "sha256",
          "xxh3");
  for (size_t l = 0; l < o->nlevels; l++) {
    snprintf (sb, sizeof sb, "zstd%ld c/d", o->levels[l]);
    printf ("  %12s", sb);
  }
  printf ("\n");
  for (size_t s = 0; s < o->nsizes; s++) {
    const struct row *r = &rows[s];
    printf ("%-5s %8.0f %8.0f %8.0f %8.0f", size_name (r->cs, sb, sizeof sb),
            r->zero_mbs, r->b2_mbs, r->sha_mbs, r->xxh_mbs);
    for (size_t l = 0; l < o->nlevels; l++)
      printf ("  %5.0f/%-6.0f", r->c_mbs[l], r->d_mbs[l]);
    printf ("\n");
  }

  if (changed) {
    printf ("\n## Incremental against the changed copy (new = differs and "
            "not already stored)\n");
    printf ("%-5s %7s %7s %8s", "size", "differ", "new", "new_MB");
    for (size_t l = 0; l < o->nlevels; l++) {
      snprintf (sb, sizeof sb, "zstd%ld_MB", o->levels[l]);
      printf ("  %10s", sb);
    }
    printf ("\n");
    for (size_t s = 0; s < o->nsizes; s++) {
      const struct row *r = &rows[s];
      printf ("%-5s %7" PRIu64 " %7" PRIu64 " %8.2f",
              size_name (r->cs, sb, sizeof sb), r->differ, r->newc,
              mb (r->new_bytes));
      for (size_t l = 0; l < o->nlevels; l++)
        printf ("  %10.2f", mb (r->inc_stored[l]));
      if (r->became_zero)
        printf ("  (%" PRIu64 " became all-zero)", r->became_zero);
      printf ("\n");
    }
  }

  printf ("\n## Repository metadata: index nodes (uncompressed) + %d bytes "
          "per stored blob\n", BLOB_META);
  printf ("%-5s %6s %5s %10s %9s%s\n", "size", "fanout", "depth", "full_nodes",
          "full_MB", changed ? "  incr_nodes  incr_KB" : "");
  for (size_t s = 0; s < o->nsizes; s++)
    for (size_t f = 0; f < o->nfanouts; f++) {
      const struct meta *m = &rows[s].meta[f];
      printf ("%-5s %6ld %5u %10" PRIu64 " %9.2f",
              size_name (rows[s].cs, sb, sizeof sb), o->fanouts[f], m->depth,
              m->full_nodes, mb (m->full_bytes));
      if (changed)
        printf ("  %10" PRIu64 " %8.1f", m->inc_nodes,
                (double) m->inc_bytes / 1e3);
      printf ("\n");
    }
}

/* 64K chunks one frame each against GROUP of them per frame, and the CPU
 * limit; both printed as they are measured. */
static void
measure_batch (const struct opts *o, const struct image *im)
{
  size_t cs = o->batch_cs, n = nchunks (im, cs), nu = 0;
  uint64_t *uidx = xcalloc (n, sizeof *uidx);
  struct dset set;
  uint8_t d[DIGEST_LEN];
  char sb[32];

  dset_init (&set, n);
  for (size_t i = 0; i < n; i++) {
    const uint8_t *p = chunk_ptr (im, cs, i);
    size_t len = chunk_len (im, cs, i);

    if (is_zero (p, len))
      continue;
    digest_b2 (p, len, d);
    if (dset_add (&set, d))
      uidx[nu++] = i;
  }
  dset_free (&set);

  printf ("\n## Batching: unique %s chunks, one frame each vs %zu "
          "consecutive ones per frame\n", size_name (cs, sb, sizeof sb),
          o->group);
  printf ("%-6s %5s %10s %6s %9s %9s\n", "frame", "level", "stored_MB",
          "ratio", "comp_MB/s", "decomp_MB/s");
  for (size_t l = 0; l < o->nlevels; l++)
    for (int pass = 0; pass < 2; pass++) {
      size_t g = pass ? o->group : 1;
      struct zrun z;
      struct stopwatch c, dc;
      uint64_t stored;

      fprintf (stderr, "  batch x%zu zstd %ld\n", g, o->levels[l]);
      zrun_init (&z, im, uidx, nu, cs, g);
      stored = zrun_compress (&z, (int) o->levels[l], &c);
      zrun_decompress (&z, true, &dc);
      zrun_decompress (&z, false, &dc);
      printf ("%-6s %5ld %10.1f %6.3f %9.0f %9.0f\n",
              size_name (g * cs, sb, sizeof sb), o->levels[l], mb (stored),
              stored ? (double) z.raw / (double) stored : 0, mbs (z.raw, &c),
              mbs (z.raw, &dc));
      fflush (stdout);
      zrun_free (&z);
    }
  free (uidx);
}

static void
measure_cpu_limit (const struct opts *o, const struct image *im)
{
  char sb[32];

  printf ("\n## Full-backup CPU limit: BLAKE2b-256 + zstd of every non-zero "
          "chunk, thread t takes\n## chunks t, t+N, ...; MB/s of input per "
          "wall second (CPU%% = process CPU / wall)\n");
  printf ("%-5s %5s %11s %6s %11s %6s\n", "size", "level", "1thr_MB/s",
          "CPU%", "Nthr_MB/s", "CPU%");
  for (size_t m = 0; m < o->nmt; m++) {
    size_t cs = (size_t) o->mt_sizes[m], n = nchunks (im, cs), nz = 0;
    uint64_t *nzidx = xcalloc (n, sizeof *nzidx), bytes = 0;

    for (size_t i = 0; i < n; i++)
      if (!is_zero (chunk_ptr (im, cs, i), chunk_len (im, cs, i))) {
        nzidx[nz++] = i;
        bytes += chunk_len (im, cs, i);
      }
    for (size_t l = 0; l < o->nlevels; l++) {
      double p1, pn, s1, sn;

      fprintf (stderr, "  cpu limit %zu zstd %ld\n", cs, o->levels[l]);
      s1 = cpu_limit (im, nzidx, nz, cs, bytes, (int) o->levels[l], 1, &p1);
      sn = cpu_limit (im, nzidx, nz, cs, bytes, (int) o->levels[l],
                      o->threads, &pn);
      printf ("%-5s %5ld %11.0f %6.0f %11.0f %6.0f   (N = %u)\n",
              size_name (cs, sb, sizeof sb), o->levels[l], s1, p1, sn, pn,
              o->threads);
      fflush (stdout);
    }
    free (nzidx);
  }
}

static int
cmd_bench (int argc, char **argv)
{
  struct opts o = {
    .sizes = { 64 << 10, 128 << 10, 256 << 10, 512 << 10, 1 << 20, 4 << 20 },
    .nsizes = 6,
    .levels = { -1, 1, 3 }, .nlevels = 3,
    .mt_sizes = { 64 << 10, 1 << 20 }, .nmt = 2,
    .fanouts = { 64, 256, 1024 }, .nfanouts = 3,
    .threads = 2, .batch_cs = 64 << 10, .group = 16,
  };
  struct image im, ch = { 0 };
  struct row *rows;
  double load[3] = { 0, 0, 0 };
  int c;

  while ((c = getopt (argc, argv, "hj:s:l:m:b:g:F:")) != -1)
    switch (c) {
    case 'j': o.threads = (unsigned) parse_long (optarg, 1, MAX_THREADS); break;
    case 's':
      o.nsizes = parse_list (optarg, o.sizes, true, MIN_CHUNK, MAX_CHUNK);
      break;
    case 'l':
      o.nlevels = parse_list (optarg, o.levels, false, ZSTD_minCLevel (),
                              ZSTD_maxCLevel ());
      break;
    case 'm':
      o.nmt = parse_list (optarg, o.mt_sizes, true, MIN_CHUNK, MAX_CHUNK);
      break;
    case 'b':
      {
        long v[MAX_LIST];
        if (parse_list (optarg, v, true, MIN_CHUNK, MAX_CHUNK) != 1)
          die ("-b takes one size");
        o.batch_cs = (size_t) v[0];
      }
      break;
    case 'g': o.group = (size_t) parse_long (optarg, 1, MAX_GROUP); break;
    case 'F':
      o.nfanouts = parse_list (optarg, o.fanouts, false, 2, 1 << 20);
      break;
    case 'h': usage (0);
    default: usage (2);
    }
  if (argc - optind < 1 || argc - optind > 2)
    usage (2);
  if ((uint64_t) o.batch_cs * o.group > 16u << 20)
    die ("-b times -g is more than a blob's 16 MiB");

  map_image (argv[optind], &im);
  if (argc - optind == 2) {
    map_image (argv[optind + 1], &ch);
    if (ch.len != im.len)
      die ("%s and %s differ in size", im.path, ch.path);
  }
  getloadavg (load, 3);
  printf ("# chunkbench: %s (%zu bytes)%s%s\n", im.path, im.len,
          argc - optind == 2 ? ", changed copy " : "",
          argc - optind == 2 ? ch.path : "");
  printf ("# zstd %s, OpenSSL %s, load average before: %.2f %.2f %.2f\n",
          ZSTD_versionString (), OpenSSL_version (OPENSSL_VERSION),
          load[0], load[1], load[2]);
  fflush (stdout);

  rows = xcalloc (o.nsizes, sizeof *rows);
  for (size_t s = 0; s < o.nsizes; s++) {
    fprintf (stderr, "%s: chunk size %ld\n", progname, o.sizes[s]);
    measure_size (&o, &im, argc - optind == 2 ? &ch : NULL,
                  (size_t) o.sizes[s], &rows[s]);
  }
  print_tables (&o, rows, argc - optind == 2);
  fflush (stdout);
  free (rows);

  fprintf (stderr, "%s: batching\n", progname);
  measure_batch (&o, &im);
  fprintf (stderr, "%s: CPU limit\n", progname);
  measure_cpu_limit (&o, &im);

  getloadavg (load, 3);
  printf ("\n# single-thread measurements: wall %.1f s, CPU %.1f s "
          "(wall/CPU %.3f); load average after: %.2f %.2f %.2f\n",
          total_wall, total_cpu, total_cpu > 0 ? total_wall / total_cpu : 0,
          load[0], load[1], load[2]);
  unmap_image (&im);
  if (argc - optind == 2)
    unmap_image (&ch);
  return 0;
}

/* ---- mutate ------------------------------------------------------------ */

static uint64_t
splitmix64 (uint64_t *s)
{
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static int
cmp_u64 (const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

  return x < y ? -1 : x > y;
}

static int
cmd_mutate (int argc, char **argv)
{
  size_t count = 200, block = 64 << 10, nblocks, nnz = 0;
  uint64_t seed = 1, rng, *nzb;
  struct image im;
  struct stat st;
  int c, fd;

  while ((c = getopt (argc, argv, "hn:b:S:")) != -1)
    switch (c) {
    case 'n': count = (size_t) parse_long (optarg, 1, 1 << 24); break;
    case 'b': block = (size_t) parse_size (optarg); break;
    case 'S': seed = (uint64_t) parse_long (optarg, 0, LONG_MAX); break;
    case 'h': usage (0);
    default: usage (2);
    }
  if (argc - optind != 2)
    usage (2);
  if (block < 512 || block > MAX_CHUNK)
    die ("-b: block out of range");

  map_image (argv[optind], &im);
  fd = open (argv[optind + 1], O_RDWR | O_CLOEXEC);
  if (fd < 0 || fstat (fd, &st) < 0)
    die ("%s: %s", argv[optind + 1], strerror (errno));
  {
    struct stat ist;
    if (stat (im.path, &ist) == 0 && ist.st_dev == st.st_dev
        && ist.st_ino == st.st_ino)
      die ("%s and %s are the same file", im.path, argv[optind + 1]);
  }
  if ((size_t) st.st_size != im.len)
    die ("%s is not the size of %s", argv[optind + 1], im.path);
  if (im.len < 2 * block)
    die ("%s is too small", im.path);

  nblocks = im.len / block;
  nzb = xcalloc (nblocks, sizeof *nzb);
  for (size_t i = 0; i < nblocks; i++)
    if (!is_zero (im.p + i * block, block))
      nzb[nnz++] = i;
  if (nnz < count)
    die ("only %zu non-zero blocks, %zu writes asked for", nnz, count);

  /* COUNT distinct destinations: a partial Fisher-Yates shuffle. */
  rng = seed;
  for (size_t k = 0; k < count; k++) {
    size_t j = k + (size_t) (splitmix64 (&rng) % (nnz - k));
    uint64_t t = nzb[k];
    nzb[k] = nzb[j];
    nzb[j] = t;
  }
  qsort (nzb, count, sizeof *nzb, cmp_u64);

  for (size_t k = 0; k < count; k++) {
    size_t dst = (size_t) nzb[k] * block, src = 0, done = 0;
    int tries;

    /* Real data from an unaligned offset: not all zero, not what is there
     * already, and (unaligned) not a copy of some existing chunk. */
    for (tries = 0; tries < 1000000; tries++) {
      src = (size_t) (splitmix64 (&rng) % (im.len - block + 1));
      if (src % block != 0 && !is_zero (im.p + src, block)
          && memcmp (im.p + src, im.p + dst, block) != 0)
        break;
    }
    if (tries == 1000000)
      die ("cannot find source data");
    while (done < block) {
      ssize_t w = pwrite (fd, im.p + src + done, block - done,
                          (off_t) (dst + done));
      if (w < 0 && errno == EINTR)
        continue;
      if (w <= 0)
        die ("%s: write: %s", argv[optind + 1],
             w < 0 ? strerror (errno) : "short write");
      done += (size_t) w;
    }
  }
  if (close (fd) < 0)
    die ("%s: %s", argv[optind + 1], strerror (errno));
  printf ("mutate: %zu writes of %zu bytes (%.2f MiB) onto %zu non-zero "
          "blocks of %zu, seed %" PRIu64 "\n", count, block,
          (double) (count * block) / (1 << 20), nnz, nblocks, seed);
  free (nzb);
  unmap_image (&im);
  return 0;
}

int
main (int argc, char **argv)
{
  if (argc > 1 && strcmp (argv[1], "mutate") == 0)
    return cmd_mutate (argc - 1, argv + 1);
  return cmd_bench (argc, argv);
}
