/* nbd-probe: the tests' window on an NBD export, through snapshot/'s reader.
 *
 *   nbd-probe SOCKET EXPORT map CONTEXT    "OFFSET LENGTH FLAGS" per run
 *   nbd-probe SOCKET EXPORT dirty BITMAP   "OFFSET LENGTH" per dirty run of
 *                                          qemu:dirty-bitmap:BITMAP
 *   nbd-probe SOCKET EXPORT dump FILE      the export into a sparse raw FILE,
 *                                          reading only allocated data
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "nbd-reader.h"

static int
print_run (void *opaque, uint64_t off, uint64_t len, uint32_t flags)
{
  (void) opaque;
  printf ("%" PRIu64 " %" PRIu64 " %" PRIu32 "\n", off, len, flags);
  return 0;
}

static int
print_dirty (void *opaque, uint64_t off, uint64_t len, uint32_t flags)
{
  (void) opaque;
  if (flags & VMDR_NBD_STATE_DIRTY)
    printf ("%" PRIu64 " %" PRIu64 "\n", off, len);
  return 0;
}

/* Data runs collected first: reads cannot be issued from inside the walk. */
struct runs {
  size_t n, cap;
  uint64_t (*v)[2];
};

static int
collect_data (void *opaque, uint64_t off, uint64_t len, uint32_t flags)
{
  struct runs *rs = opaque;

  if (flags & (VMDR_NBD_STATE_HOLE | VMDR_NBD_STATE_ZERO))
    return 0;                   /* stays a hole in the output */
  if (rs->n == rs->cap) {
    size_t cap = rs->cap ? 2 * rs->cap : 64;
    void *v = reallocarray (rs->v, cap, sizeof rs->v[0]);
    if (v == NULL)
      return -ENOMEM;
    rs->v = v;
    rs->cap = cap;
  }
  rs->v[rs->n][0] = off;
  rs->v[rs->n][1] = len;
  rs->n++;
  return 0;
}

static int
copy_range (struct vmdr_nbd *r, int fd, char *buf, uint64_t off, uint64_t len)
{
  while (len > 0) {
    size_t n = len > VMDR_NBD_MAX_REQUEST ? VMDR_NBD_MAX_REQUEST : len;
    int ret = vmdr_nbd_pread (r, buf, n, off);
    if (ret < 0)
      return ret;
    if (pwrite (fd, buf, n, (off_t) off) != (ssize_t) n)
      return -errno;
    off += n;
    len -= n;
  }
  return 0;
}

static int
dump (struct vmdr_nbd *r, const char *file)
{
  _cleanup_close_ int fd = open (file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  _cleanup_free_ char *buf = malloc (VMDR_NBD_MAX_REQUEST);
  struct runs rs = { 0 };
  int ret;

  if (fd < 0 || buf == NULL)
    return -errno;
  if (ftruncate (fd, (off_t) vmdr_nbd_size (r)) < 0)
    return -errno;
  ret = vmdr_nbd_extents (r, VMDR_NBD_CTX_ALLOCATION, 0, vmdr_nbd_size (r),
                          collect_data, &rs);
  for (size_t i = 0; ret == 0 && i < rs.n; i++)
    ret = copy_range (r, fd, buf, rs.v[i][0], rs.v[i][1]);
  free (rs.v);
  if (ret == 0 && fsync (fd) < 0)
    ret = -errno;
  return ret;
}

int
main (int argc, char **argv)
{
  const char *contexts[2] = { NULL, NULL };
  char ctx[256];
  struct vmdr_nbd *r;
  int ret;

  if (argc != 5) {
    fprintf (stderr, "usage: nbd-probe SOCKET EXPORT map|dirty|dump ARG\n");
    return 2;
  }
  if (strcmp (argv[3], "dirty") == 0)
    snprintf (ctx, sizeof ctx, "%s%s", VMDR_NBD_CTX_DIRTY_PREFIX, argv[4]);
  else if (strcmp (argv[3], "map") == 0)
    snprintf (ctx, sizeof ctx, "%s", argv[4]);
  else
    snprintf (ctx, sizeof ctx, "%s", VMDR_NBD_CTX_ALLOCATION);
  contexts[0] = ctx;

  ret = vmdr_nbd_open_unix (argv[1], argv[2], contexts, &r);
  if (ret < 0) {
    fprintf (stderr, "nbd-probe: cannot connect to '%s': %s\n", argv[1],
             vmdr_nbd_last_error ());
    return 1;
  }
  if (strcmp (argv[3], "dump") == 0)
    ret = dump (r, argv[4]);
  else
    ret = vmdr_nbd_extents (r, ctx, 0, vmdr_nbd_size (r),
                            strcmp (argv[3], "dirty") == 0 ? print_dirty : print_run,
                            NULL);
  if (ret < 0)
    fprintf (stderr, "nbd-probe: %s: %s\n", argv[3],
             ret == -ENOTSUP ? "context not offered" : strerror (-ret));
  vmdr_nbd_close (r);
  return ret < 0 ? 1 : 0;
}
