/* cpulimit: the CPU limit of a vmdr full backup of a raw image, no I/O.
 *
 * The image is mapped and faulted in before anything is timed.  Then, over
 * THREADS threads that take 64 KiB chunks (or -s SIZE) from a shared
 * counter, two workloads are timed:
 *
 *   plain   the repository digest and zstd of every non-zero chunk of the
 *           image's data regions (bench/chunk-size/chunkbench's "CPU limit",
 *           with the digest the repository uses);
 *   vmdr    what vmdr's writer computes for the same chunks: the zero test,
 *           the digest of every non-zero chunk, and, for the first copy of
 *           each distinct chunk only (duplicates are found by digest and not
 *           compressed; which copies those are is worked out before timing),
 *           zstd into at most len - 1 bytes (raw if that fails), the blob's
 *           XXH3-64 and the XXH3-128 of the stored bytes (a local pack is
 *           named by the digest of its XXH3-128 and index).
 *
 * Data regions are found with SEEK_DATA/SEEK_HOLE and rounded out to whole
 * chunks, as vmdr does (replicate/disk-io.c, vmdr_file_data_ranges).  zstd
 * is set up as in storage/blob.c: the repository's level, content size in
 * the frame, no zstd checksum.
 *
 * Output: a table, then one "CPULIMIT workload threads wall_s cpu_s
 * region_bytes nonzero_bytes unique_bytes stored_bytes" line per run, for
 * scripts.
 *
 * Build: cc -O2 -Wall -Wextra -o cpulimit cpulimit.c \
 *            -lzstd -lb2 -lxxhash -lcrypto -lpthread
 * With -g GROUP (format version 2's group_size), a worker takes the chunks
 * of one aligned GROUP run at a time and compresses those it stores as one
 * frame, as the writer does.
 *
 * Usage: cpulimit [-H sha256|blake2b-256] [-l LEVEL] [-s CHUNK] [-g GROUP] [-j THREADS]
 *                 [-r REPEAT] IMAGE
 */
#include "../cpulimit-common.h"

static void *
xcalloc (size_t n, size_t size)
{
  void *p = calloc (n ? n : 1, size ? size : 1);

  if (!p)
    die ("out of memory");
  return p;
}

/* ---- the image and its chunks -------------------------------------------- */

static uint8_t *unique;         /* per entry of chunks: first copy, non-zero */

/* Open addressing over digests, to find the first copy of each chunk. */
static bool
seen_add (uint8_t (*set)[DIGEST_LEN], size_t mask, const uint8_t *d)
{
  static const uint8_t zero[DIGEST_LEN];
  uint64_t h;

  memcpy (&h, d, sizeof h);
  for (size_t i = h & mask;; i = (i + 1) & mask) {
    if (memcmp (set[i], d, DIGEST_LEN) == 0)
      return false;
    if (memcmp (set[i], zero, DIGEST_LEN) == 0) {
      memcpy (set[i], d, DIGEST_LEN);
      return true;
    }
  }
}

/* ---- the timed work -------------------------------------------------------- */

struct work {
  bool vmdr;                    /* the vmdr workload, else plain */
  atomic_size_t next;
};

struct worker {
  pthread_t tid;
  struct work *wk;
  uint64_t nonzero, uniq, stored;
  uint64_t sink;
};

static ZSTD_CCtx *
new_cctx (void)
{
  ZSTD_CCtx *c = ZSTD_createCCtx ();

  if (!c || ZSTD_isError (ZSTD_CCtx_setParameter (c, ZSTD_c_compressionLevel, level))
      || ZSTD_isError (ZSTD_CCtx_setParameter (c, ZSTD_c_contentSizeFlag, 1))
      || ZSTD_isError (ZSTD_CCtx_setParameter (c, ZSTD_c_checksumFlag, 0))
      /* Groups: a window over the whole group, as storage/blob.c sets. */
      || (gs > cs && ZSTD_isError (ZSTD_CCtx_setParameter (c, ZSTD_c_windowLog, 23))))
    die ("zstd: cannot set up level %d", level);
  return c;
}

/* Compress the N pieces (P[i], L[i] bytes) as one frame into OUT (CAP
 * bytes at most: raw when it does not fit), as storage/blob.c does for a
 * blob or a group: in place when they lie side by side, else through a
 * copy (zstd's streaming window copies them too).  The bytes stored. */
static size_t
compress_pieces (ZSTD_CCtx *cctx, const uint8_t **p, const size_t *l, size_t n,
                 uint8_t *scratch, uint8_t *out, size_t total)
{
  const uint8_t *src = p[0];
  size_t c;

  for (size_t i = 1; i < n && src != scratch; i++)
    if (p[i - 1] + l[i - 1] != p[i]) {
      size_t at = 0;
      for (size_t k = 0; k < n; at += l[k++])
        memcpy (scratch + at, p[k], l[k]);
      src = scratch;
    }
  c = ZSTD_compress2 (cctx, out, total - 1, src, total);
  if (ZSTD_isError (c)) {
    if (ZSTD_getErrorCode (c) != ZSTD_error_dstSize_tooSmall)
      die ("zstd: %s", ZSTD_getErrorName (c));
    memcpy (out, src, total);
    c = total;
  }
  return c;
}

static void *
worker_main (void *arg)
{
  struct worker *w = arg;
  ZSTD_CCtx *cctx = new_cctx ();
  size_t cap = BLOB_HEADER + ZSTD_compressBound (gs), stored;
  uint8_t *blob = xcalloc (1, cap), *scratch = xcalloc (1, gs), d[DIGEST_LEN];
  const uint8_t **p = xcalloc (gs / cs, sizeof *p);
  size_t *l = xcalloc (gs / cs, sizeof *l);

  for (;;) {
    size_t g = atomic_fetch_add (&w->wk->next, 1), n = 0, total = 0;

    if (g >= ngroups)
      break;
    /* A group: the chunks of one aligned GS run, compressed together. */
    for (size_t k = group_start[g]; k < group_start[g + 1]; k++) {
      const uint8_t *q = img + (size_t) chunks[k] * cs;
      size_t len = chunk_len (chunks[k]);

      if (is_zero (q, len))
        continue;
      w->nonzero += len;
      digest (q, len, d);
      w->sink += d[0];
      if (w->wk->vmdr && !unique[k])
        continue;
      p[n] = q;
      l[n++] = len;
      total += len;
    }
    if (n == 0)
      continue;
    stored = compress_pieces (cctx, p, l, n, scratch, blob + BLOB_HEADER, total);
    w->stored += stored;
    if (w->wk->vmdr) {
      w->uniq += total;
      w->sink += XXH3_64bits (blob + BLOB_HEADER, stored);
      /* The pack name's share: a local pack is named by its XXH3-128. */
      w->sink += XXH3_128bits (blob, BLOB_HEADER + stored).low64;
    }
  }
  ZSTD_freeCCtx (cctx);
  free (blob);
  free (scratch);
  free (p);
  free (l);
  return NULL;
}

static volatile uint64_t sink;

static void
run (bool vmdr, unsigned nt, uint64_t region)
{
  struct worker w[MAX_THREADS];
  struct work wk = { .vmdr = vmdr };
  double wall, cpu;
  uint64_t nz = 0, un = 0, st = 0;
  int err;

  atomic_init (&wk.next, 0);
  wall = now (CLOCK_MONOTONIC);
  cpu = now (CLOCK_PROCESS_CPUTIME_ID);
  for (unsigned t = 0; t < nt; t++) {
    w[t] = (struct worker) { .wk = &wk };
    if ((err = pthread_create (&w[t].tid, NULL, worker_main, &w[t])) != 0)
      die ("pthread_create: %s", strerror (err));
  }
  for (unsigned t = 0; t < nt; t++) {
    pthread_join (w[t].tid, NULL);
    nz += w[t].nonzero;
    un += w[t].uniq;
    st += w[t].stored;
    sink += w[t].sink;
  }
  wall = now (CLOCK_MONOTONIC) - wall;
  cpu = now (CLOCK_PROCESS_CPUTIME_ID) - cpu;
  printf ("%-6s %7u %8.2f %8.2f %5.0f%% %10.0f %10.0f %10.1f\n",
          vmdr ? "vmdr" : "plain", nt, wall, cpu, 100 * cpu / wall,
          (double) region / 1e6 / wall, (double) nz / 1e6 / wall,
          (double) st / 1e6);
  fprintf (stderr, "CPULIMIT %s %u %.4f %.4f %" PRIu64 " %" PRIu64 " %"
           PRIu64 " %" PRIu64 "\n", vmdr ? "vmdr" : "plain", nt, wall, cpu,
           region, nz, vmdr ? un : nz, st);
  fflush (stdout);
}

int
main (int argc, char **argv)
{
  const char *hash = "sha256";
  unsigned threads = 2, repeat = 1;
  struct stat stt;
  uint64_t region = 0, nonzero = 0, uniq = 0;
  size_t mask;
  uint8_t (*set)[DIGEST_LEN];
  int c, fd;

  cs = 64 << 10;
  level = 1;
  while ((c = getopt (argc, argv, "H:l:s:g:j:r:")) != -1)
    switch (c) {
    case 'H': hash = optarg; break;
    case 'l': level = atoi (optarg); break;
    case 's': cs = (size_t) strtoul (optarg, NULL, 10); break;
    case 'g': gs = (size_t) strtoul (optarg, NULL, 10); break;
    case 'j': threads = (unsigned) atoi (optarg); break;
    case 'r': repeat = (unsigned) atoi (optarg); break;
    default:
      fprintf (stderr, "usage: cpulimit [-H sha256|blake2b-256] [-l LEVEL] "
               "[-s CHUNK_BYTES] [-j THREADS] [-r REPEAT] IMAGE\n");
      return 2;
    }
  if (argc - optind != 1)
    die ("one IMAGE expected");
  if (strcmp (hash, "sha256") == 0)
    use_sha = true;
  else if (strcmp (hash, "blake2b-256") != 0)
    die ("unknown hash %s", hash);
  if (gs == 0)
    gs = cs;
  if (cs < 4096 || (cs & (cs - 1)) || threads < 1 || threads > MAX_THREADS
      || level < ZSTD_minCLevel () || level > ZSTD_maxCLevel () || repeat < 1
      || gs < cs || (gs & (gs - 1)) || gs > (16u << 20))
    die ("bad option");

  fd = open (argv[optind], O_RDONLY | O_CLOEXEC);
  if (fd < 0 || fstat (fd, &stt) < 0)
    die ("%s: %s", argv[optind], strerror (errno));
  img_len = (size_t) stt.st_size;
  if (img_len == 0)
    die ("%s is empty", argv[optind]);
  find_chunks (fd);
  img = mmap (NULL, img_len, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
  if (img == MAP_FAILED)
    die ("mmap: %s", strerror (errno));
  close (fd);

  find_groups ();                /* untimed */

  /* Untimed: which chunks are the first copy of their contents. */
  unique = xcalloc (nchunks, 1);
  for (mask = 1024; mask < 2 * nchunks; mask *= 2)
    ;
  set = xcalloc (mask, DIGEST_LEN);
  mask--;
  for (size_t k = 0; k < nchunks; k++) {
    const uint8_t *p = img + (size_t) chunks[k] * cs;
    size_t len = chunk_len (chunks[k]);
    uint8_t d[DIGEST_LEN];

    region += len;
    if (is_zero (p, len))
      continue;
    nonzero += len;
    digest (p, len, d);
    if (seen_add (set, mask, d)) {
      unique[k] = 1;
      uniq += len;
    }
  }
  free (set);

  printf ("# cpulimit: %s, %zu bytes; %s, zstd %d (%s), %zu-byte chunks, %s\n",
          argv[optind], img_len, hash, level, ZSTD_versionString (), cs,
          OpenSSL_version (OPENSSL_VERSION));
  printf ("# data regions %.1f MB (%zu chunks), non-zero %.1f MB, "
          "distinct non-zero %.1f MB\n", (double) region / 1e6, nchunks,
          (double) nonzero / 1e6, (double) uniq / 1e6);
  printf ("# plain: digest + zstd of every non-zero chunk; vmdr: zero test, "
          "digest of all,\n# zstd + XXH3 + digest of the stored bytes for "
          "distinct chunks; MB/s per wall second\n");
  printf ("%-6s %7s %8s %8s %6s %10s %10s %10s\n", "work", "threads",
          "wall_s", "cpu_s", "CPU", "region/s", "nonzero/s", "stored_MB");
  for (unsigned r = 0; r < repeat; r++) {
    run (false, 1, region);
    if (threads > 1)
      run (false, threads, region);
    run (true, 1, region);
    if (threads > 1)
      run (true, threads, region);
  }
  munmap ((void *) img, img_len);
  free (chunks);
  free (unique);
  free (group_start);
  return 0;
}
