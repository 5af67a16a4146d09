/* What bench/repo/cpulimit.c and bench/restore/cpulimit.c share: the
 * image, its chunks inside data regions (SEEK_DATA/SEEK_HOLE, rounded out to
 * whole chunks as vmdr does), the repository's digest, and die/now.
 * Included by each (one translation unit per program; all static). */
#ifndef VMDR_BENCH_CPULIMIT_COMMON_H
#define VMDR_BENCH_CPULIMIT_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
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
#include <openssl/crypto.h>
#include <openssl/evp.h>
#define XXH_STATIC_LINKING_ONLY   /* XXH3_state_t on the stack, as blob.c */
#include <xxhash.h>
#include <zstd.h>
#include <zstd_errors.h>

#define DIGEST_LEN 32
#define BLOB_HEADER 56
#define MAX_THREADS 64

static void die (const char *fmt, ...)
  __attribute__((noreturn, format (printf, 1, 2)));

static void
die (const char *fmt, ...)
{
  va_list ap;

  fputs ("cpulimit: ", stderr);
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fputc ('\n', stderr);
  exit (1);
}

static double
now (clockid_t id)
{
  struct timespec t;

  clock_gettime (id, &t);
  return (double) t.tv_sec + (double) t.tv_nsec * 1e-9;
}

static const uint8_t *img;
static size_t img_len, cs;
static bool use_sha;
static int level;

static uint64_t *chunks;        /* chunk numbers inside data regions */
static size_t nchunks;

static size_t
chunk_len (uint64_t i)
{
  size_t off = (size_t) i * cs;

  return img_len - off < cs ? img_len - off : cs;
}

static bool
is_zero (const uint8_t *p, size_t len)
{
  return len == 0 || (p[0] == 0 && memcmp (p, p + 1, len - 1) == 0);
}

static void
digest (const void *p, size_t len, uint8_t out[DIGEST_LEN])
{
  unsigned n = 0;

  if (use_sha) {
    if (!EVP_Digest (p, len, out, &n, EVP_sha256 (), NULL) || n != DIGEST_LEN)
      die ("SHA-256 failed");
  }
  else if (blake2b (out, p, NULL, DIGEST_LEN, len, 0) != 0)
    die ("BLAKE2b failed");
}

static void
add_range (size_t *cap, uint64_t first, uint64_t last)
{
  if (nchunks && chunks[nchunks - 1] >= first)
    first = chunks[nchunks - 1] + 1;
  for (uint64_t i = first; i <= last; i++) {
    if (nchunks == *cap) {
      *cap = *cap ? 2 * *cap : 4096;
      chunks = realloc (chunks, *cap * sizeof *chunks);
      if (!chunks)
        die ("out of memory");
    }
    chunks[nchunks++] = i;
  }
}

static void
find_chunks (int fd)
{
  size_t cap = 0;
  off_t pos = 0;

  while ((size_t) pos < img_len) {
    off_t data = lseek (fd, pos, SEEK_DATA), hole;

    if (data < 0) {
      if (errno == ENXIO)
        break;
      die ("SEEK_DATA: %s", strerror (errno));
    }
    hole = lseek (fd, data, SEEK_HOLE);
    if (hole < 0)
      die ("SEEK_HOLE: %s", strerror (errno));
    if ((size_t) hole > img_len)
      hole = (off_t) img_len;
    if (hole > data)
      add_range (&cap, (uint64_t) data / cs, ((uint64_t) hole - 1) / cs);
    pos = hole;
  }
}

/* -g: format version 2's groups, the chunks of one aligned GS run (GS the
 * chunk size: a group per chunk). */
static size_t gs;
static size_t *group_start;     /* entries of chunks starting each group, and nchunks */
static size_t ngroups;

/* Where each group starts, after find_chunks (chunks lie in disk order). */
static void
find_groups (void)
{
  group_start = malloc ((nchunks + 1) * sizeof *group_start);
  if (!group_start)
    die ("out of memory");
  for (size_t k = 0; k < nchunks; k++)
    if (k == 0 || chunks[k] / (gs / cs) != chunks[k - 1] / (gs / cs))
      group_start[ngroups++] = k;
  group_start[ngroups] = nchunks;
}

#endif
