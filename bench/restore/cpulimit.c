/* cpulimit: the CPU limit of a vmdr restore of a raw image, no I/O.
 *
 * What a restore computes for every non-zero chunk of the disk (every copy:
 * a restore decodes duplicates again, it has no plaintext cache), as
 * storage/blob.c's vmdr_blob_decode does it: the blob's XXH3-64 over its
 * header and stored bytes, zstd decompression into a buffer (a memcpy for a
 * chunk stored raw), the digest of the plaintext and its comparison with
 * the expected one.
 *
 * Untimed first: the image is mapped and faulted in, its data regions found
 * (SEEK_DATA/SEEK_HOLE, rounded out to whole chunks as vmdr does) and every
 * non-zero chunk digested and encoded as vmdr_blob_encode does (zstd at the
 * repository's level into at most len - 1 bytes, else raw; content size in
 * the frame, no zstd checksum), in memory.  Then THREADS threads take
 * chunks from a shared counter and decode them; the wall time of that is
 * the limit.
 *
 * Output: a table, then one "CPULIMIT restore threads wall_s cpu_s
 * nonzero_bytes stored_bytes" line per run on stderr, for scripts.
 *
 * Build: cc -O2 -Wall -Wextra -o cpulimit cpulimit.c \
 *            -lzstd -lb2 -lxxhash -lcrypto -lpthread
 * With -g GROUP (format version 2's group_size), the unit is the non-zero
 * chunks of one aligned GROUP run, encoded as one frame (an 8 MiB window),
 * decoded once, each member's digest checked and the member copied out.
 *
 * Usage: cpulimit [-H sha256|blake2b-256] [-l LEVEL] [-s CHUNK] [-g GROUP] [-j THREADS]
 *                 [-r REPEAT] IMAGE
 */
#include "../cpulimit-common.h"

static void *
xmalloc (size_t size)
{
  void *p = malloc (size ? size : 1);

  if (!p)
    die ("out of memory");
  return p;
}

/* One encoded unit: a non-zero chunk, or (-g) the non-zero chunks of one
 * aligned group compressed as one frame; header (as blob.c lays it out)
 * + payload. */
struct blob {
  uint8_t *p;
  uint32_t raw_len, stored_len;
  bool zstd;
  size_t n;                     /* members: 1 for a single blob */
  uint32_t *lens;
  uint8_t (*digests)[DIGEST_LEN];
};

static struct blob *blobs;      /* per group; p NULL: all zero */

/* XXH3-64 of the header without its checksum field, and the payload. */
static uint64_t
checksum (const uint8_t *blob, size_t stored)
{
  XXH3_state_t st;

  XXH3_64bits_reset (&st);
  XXH3_64bits_update (&st, blob, 16);
  XXH3_64bits_update (&st, blob + 24, BLOB_HEADER - 24);
  XXH3_64bits_update (&st, blob + BLOB_HEADER, stored);
  return XXH3_64bits_digest (&st);
}

/* ---- untimed: encoding ----------------------------------------------------- */

struct work {
  bool decode;                  /* the timed work, else the encoding */
  atomic_size_t next;
};

struct worker {
  pthread_t tid;
  struct work *wk;
  uint64_t nonzero, stored;
};

static void
encode_one (ZSTD_CCtx *c, size_t g, struct worker *w)
{
  struct blob *b = &blobs[g];
  size_t n, len, raw = 0, cap = gs / cs;
  uint8_t *plain = xmalloc (gs), *tmp;

  b->lens = xmalloc (cap * sizeof *b->lens);
  b->digests = xmalloc (cap * sizeof *b->digests);
  for (size_t k = group_start[g]; k < group_start[g + 1]; k++) {
    const uint8_t *p = img + (size_t) chunks[k] * cs;
    len = chunk_len (chunks[k]);
    if (is_zero (p, len))
      continue;
    digest (p, len, b->digests[b->n]);
    b->lens[b->n++] = (uint32_t) len;
    memcpy (plain + raw, p, len);
    raw += len;
  }
  if (b->n == 0) {
    free (plain);
    return;
  }
  /* A group's window spans it, as storage/blob.c sets. */
  if (ZSTD_isError (ZSTD_CCtx_reset (c, ZSTD_reset_session_only)) ||
      ZSTD_isError (ZSTD_CCtx_setParameter (c, ZSTD_c_windowLog, b->n > 1 ? 23 : 0)))
    die ("zstd: window");
  tmp = xmalloc (BLOB_HEADER + raw);
  n = ZSTD_compress2 (c, tmp + BLOB_HEADER, raw - 1, plain, raw);
  if (ZSTD_isError (n)) {
    if (ZSTD_getErrorCode (n) != ZSTD_error_dstSize_tooSmall)
      die ("zstd: %s", ZSTD_getErrorName (n));
    memcpy (tmp + BLOB_HEADER, plain, raw);
    n = raw;
  }
  else
    b->zstd = true;
  memset (tmp, 0, BLOB_HEADER);
  memcpy (tmp + 24, b->digests[0], DIGEST_LEN);
  b->raw_len = (uint32_t) raw;
  b->stored_len = (uint32_t) n;
  {
    uint64_t x = checksum (tmp, n);
    memcpy (tmp + 16, &x, sizeof x);
  }
  b->p = realloc (tmp, BLOB_HEADER + n);
  if (!b->p)
    die ("out of memory");
  free (plain);
  w->nonzero += raw;
  w->stored += n;
}

/* ---- timed: decoding ----------------------------------------------------------- */

/* A blob's XXH3, decompression (or a copy) into PLAIN, each member's digest
 * checked; a group's members then copied out to OUT, as repo.c's
 * get_members does (a single blob decodes into its output directly). */
static void
decode_one (ZSTD_DCtx *d, uint8_t *plain, uint8_t *out, size_t g, struct worker *w)
{
  const struct blob *b = &blobs[g];
  uint8_t got[DIGEST_LEN];
  size_t off = 0;
  uint64_t x;

  if (!b->p)
    return;
  memcpy (&x, b->p + 16, sizeof x);
  if (checksum (b->p, b->stored_len) != x)
    die ("checksum mismatch at group %zu", g);
  if (b->zstd) {
    size_t n = ZSTD_decompressDCtx (d, plain, b->raw_len, b->p + BLOB_HEADER, b->stored_len);
    if (ZSTD_isError (n) || n != b->raw_len)
      die ("zstd: cannot decode group %zu", g);
  }
  else
    memcpy (plain, b->p + BLOB_HEADER, b->raw_len);
  for (size_t i = 0; i < b->n; off += b->lens[i++]) {
    digest (plain + off, b->lens[i], got);
    if (memcmp (got, b->digests[i], DIGEST_LEN) != 0)
      die ("digest mismatch in group %zu", g);
    if (b->n > 1)
      memcpy (out, plain + off, b->lens[i]);
  }
  w->nonzero += b->raw_len;
  w->stored += b->stored_len;
}

static void *
worker_main (void *arg)
{
  struct worker *w = arg;
  ZSTD_CCtx *c = NULL;
  ZSTD_DCtx *d = NULL;
  uint8_t *plain = xmalloc (gs), *out = xmalloc (cs);
  const size_t batch = gs > cs ? 1 : 16;

  if (w->wk->decode) {
    if (!(d = ZSTD_createDCtx ()))
      die ("zstd: no context");
  }
  else if (!(c = ZSTD_createCCtx ()) ||
           ZSTD_isError (ZSTD_CCtx_setParameter (c, ZSTD_c_compressionLevel, level)) ||
           ZSTD_isError (ZSTD_CCtx_setParameter (c, ZSTD_c_contentSizeFlag, 1)) ||
           ZSTD_isError (ZSTD_CCtx_setParameter (c, ZSTD_c_checksumFlag, 0)))
    die ("zstd: cannot set up level %d", level);
  for (;;) {
    size_t first = atomic_fetch_add (&w->wk->next, batch);

    if (first >= ngroups)
      break;
    for (size_t g = first; g < first + batch && g < ngroups; g++) {
      if (d)
        decode_one (d, plain, out, g, w);
      else
        encode_one (c, g, w);
    }
  }
  ZSTD_freeCCtx (c);
  ZSTD_freeDCtx (d);
  free (plain);
  free (out);
  return NULL;
}

/* Run the work over NT threads; the wall and CPU seconds it took. */
static void
run (bool decode, unsigned nt, double *wall, double *cpu, uint64_t *nz, uint64_t *st)
{
  struct worker w[MAX_THREADS];
  struct work wk = { .decode = decode };
  int err;

  atomic_init (&wk.next, 0);
  *wall = now (CLOCK_MONOTONIC);
  *cpu = now (CLOCK_PROCESS_CPUTIME_ID);
  for (unsigned t = 0; t < nt; t++) {
    w[t] = (struct worker) { .wk = &wk };
    if ((err = pthread_create (&w[t].tid, NULL, worker_main, &w[t])) != 0)
      die ("pthread_create: %s", strerror (err));
  }
  *nz = *st = 0;
  for (unsigned t = 0; t < nt; t++) {
    pthread_join (w[t].tid, NULL);
    *nz += w[t].nonzero;
    *st += w[t].stored;
  }
  *wall = now (CLOCK_MONOTONIC) - *wall;
  *cpu = now (CLOCK_PROCESS_CPUTIME_ID) - *cpu;
}

static void
timed (unsigned nt)
{
  double wall, cpu;
  uint64_t nz, st;

  run (true, nt, &wall, &cpu, &nz, &st);
  printf ("%-7s %7u %8.2f %8.2f %5.0f%% %10.0f %10.1f\n", "restore", nt, wall,
          cpu, 100 * cpu / wall, (double) nz / 1e6 / wall, (double) st / 1e6);
  fprintf (stderr, "CPULIMIT restore %u %.4f %.4f %" PRIu64 " %" PRIu64 "\n",
           nt, wall, cpu, nz, st);
  fflush (stdout);
}

int
main (int argc, char **argv)
{
  const char *hash = "sha256";
  unsigned threads = 2, repeat = 1;
  struct stat stt;
  double wall, cpu;
  uint64_t nz, st;
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

  find_groups ();                /* on the grid of GS bytes, as the writer makes them */
  blobs = calloc (ngroups ? ngroups : 1, sizeof *blobs);
  if (!blobs)
    die ("out of memory");
  run (false, threads, &wall, &cpu, &nz, &st);     /* untimed: the blobs */
  munmap ((void *) img, img_len);

  printf ("# cpulimit (restore): %s, %zu bytes; %s, zstd %d (%s), %zu-byte chunks, %s\n",
          argv[optind], img_len, hash, level, ZSTD_versionString (), cs,
          OpenSSL_version (OPENSSL_VERSION));
  printf ("# non-zero %.1f MB in %zu chunks of the data regions, stored %.1f MB;"
          " encoded in %.1f s (untimed)\n", (double) nz / 1e6, nchunks,
          (double) st / 1e6, wall);
  printf ("# per chunk: XXH3-64 of the blob, zstd decompression (or a copy), digest"
          " and its check; MB/s of plaintext per wall second\n");
  printf ("%-7s %7s %8s %8s %6s %10s %10s\n", "work", "threads", "wall_s",
          "cpu_s", "CPU", "nonzero/s", "stored_MB");
  for (unsigned r = 0; r < repeat; r++) {
    timed (1);
    if (threads > 1)
      timed (threads);
  }
  for (size_t g = 0; g < ngroups; g++) {
    free (blobs[g].p);
    free (blobs[g].lens);
    free (blobs[g].digests);
  }
  free (blobs);
  free (group_start);
  free (chunks);
  return 0;
}
