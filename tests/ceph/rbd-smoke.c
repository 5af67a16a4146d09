/* rbd-smoke: librbd steps for tests/ceph/test-rbd.sh, one step per run so
 * that each is one TAP line.
 *
 *   rbd-smoke create IMAGE fast-diff|plain   64 MiB, 4 MiB objects; fast-diff
 *                                            has the object map, plain only
 *                                            layering (diff walks the objects)
 *   rbd-smoke write-base IMAGE       the writes before the snapshot
 *   rbd-smoke snap IMAGE             snapshot "vmdr-s1"
 *   rbd-smoke write-more IMAGE       the writes (and a discard) after it
 *   rbd-smoke diff IMAGE             rbd_diff_iterate2 from the snapshot covers
 *                                    every later change and no untouched object
 *   rbd-smoke verify IMAGE           the head reads back as the model says
 *   rbd-smoke verify-snap IMAGE      the snapshot still reads as before
 *   rbd-smoke remove IMAGE           remove snapshot and image, check it is gone
 *
 * The expected content comes from a model: the same write table applied to
 * a buffer, compared byte for byte with the whole image.  Connection: client
 * "admin" with the ceph.conf in $CEPH_CONF, pool $CEPH_POOL (default "rbd").
 * Exit 0 on success, 1 with a message on stderr otherwise, 2 for usage. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rados/librados.h>
#include <rbd/librbd.h>

#include "cleanup.h"

#define MiB        (1024 * 1024ULL)
#define IMAGE_SIZE (64 * MiB)
#define ORDER      22                 /* 4 MiB objects */
#define OBJ        (1ULL << ORDER)
#define SNAP       "vmdr-s1"

static const char *prog = "rbd-smoke";

struct conn;
static void conn_close (struct conn *c);
/* The open connection, closed by die(): a process that exits with the image
 * open leaves its watch behind for 30 s, and rbd_remove refuses (EBUSY) an
 * image that has watchers. */
static struct conn *live_conn;

struct op {
  uint64_t off, len;
  uint8_t seed;                       /* 0: discard */
};

/* Before the snapshot. */
static const struct op base_ops[] = {
  { 0, 64 * 1024, 0xa1 },                       /* start of object 0 */
  { 4 * MiB - 4096, 8192, 0xa2 },               /* across objects 0 and 1 */
  { 20 * MiB + 512, 1 * MiB, 0xa3 },            /* object 5, discarded later */
  { 40 * MiB + 100, 3000, 0xa4 },               /* object 10, never touched again */
  { 60 * MiB, 4 * MiB, 0xa5 },                  /* the whole last object */
};

/* After the snapshot. */
static const struct op new_ops[] = {
  { 16 * 1024, 4096, 0xb1 },                    /* inside the first base write */
  { 4 * MiB - 1024, 2048, 0xb2 },               /* across the object boundary */
  { 8 * MiB + 12345, 77777, 0xb3 },             /* object 2, new */
  { 20 * MiB, 4 * MiB, 0 },                     /* discard all of object 5 */
  { 64 * MiB - 513, 513, 0xb4 },                /* the image's last bytes */
  { 33 * MiB + 1, 1, 0xb5 },                    /* one byte in object 8 */
};

/* Objects the diff must not mention: written only before the snapshot
 * (object 10) or never (object 12). */
static const uint64_t untouched_objects[] = { 10, 12 };

#define N(a) (sizeof (a) / sizeof ((a)[0]))

static void die (const char *fmt, ...) __attribute__((noreturn, format (printf, 1, 2)));

static void
die (const char *fmt, ...)
{
  va_list ap;

  fprintf (stderr, "%s: ", prog);
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fputc ('\n', stderr);
  if (live_conn)
    conn_close (live_conn);
  exit (1);
}

/* Position-dependent bytes: a write that lands at the wrong offset, or a
 * read from the wrong place, does not compare equal by accident. */
static uint8_t
pattern (uint8_t seed, uint64_t pos)
{
  return (uint8_t) (seed ^ (pos * 131) ^ (pos >> 9));
}

static void
fill (uint8_t *buf, const struct op *op)
{
  for (uint64_t i = 0; i < op->len; i++)
    buf[i] = op->seed ? pattern (op->seed, op->off + i) : 0;
}

static void
apply (uint8_t *model, const struct op *ops, size_t n)
{
  for (size_t i = 0; i < n; i++)
    fill (model + ops[i].off, &ops[i]);
}

/* The image content as it should be: after the base writes only (snapshot),
 * or after all of them (head). */
static uint8_t *
model (bool head)
{
  uint8_t *m = calloc (1, IMAGE_SIZE);

  if (!m)
    die ("out of memory");
  apply (m, base_ops, N (base_ops));
  if (head)
    apply (m, new_ops, N (new_ops));
  return m;
}

/* ---- connection --------------------------------------------------------- */

struct conn {
  rados_t cluster;
  rados_ioctx_t io;
  rbd_image_t image;
};

static void
conn_close (struct conn *c)
{
  if (c->image)
    rbd_close (c->image);
  if (c->io)
    rados_ioctx_destroy (c->io);
  if (c->cluster)
    rados_shutdown (c->cluster);
  memset (c, 0, sizeof *c);
  live_conn = NULL;
}

static void
connect_pool (struct conn *c)
{
  const char *conf = getenv ("CEPH_CONF");
  const char *pool = getenv ("CEPH_POOL");
  int r;

  if (!conf || !conf[0])
    die ("CEPH_CONF is not set");
  if (!pool || !pool[0])
    pool = "rbd";
  live_conn = c;
  if ((r = rados_create (&c->cluster, "admin")) < 0)
    die ("rados_create: %s", strerror (-r));
  if ((r = rados_conf_read_file (c->cluster, conf)) < 0)
    die ("cannot read '%s': %s", conf, strerror (-r));
  /* a dead cluster must fail the test, not hang it */
  rados_conf_set (c->cluster, "client_mount_timeout", "30");
  rados_conf_set (c->cluster, "rados_mon_op_timeout", "30");
  rados_conf_set (c->cluster, "rados_osd_op_timeout", "30");
  if ((r = rados_connect (c->cluster)) < 0)
    die ("cannot connect to the cluster of '%s': %s", conf, strerror (-r));
  if ((r = rados_ioctx_create (c->cluster, pool, &c->io)) < 0)
    die ("cannot open pool '%s': %s", pool, strerror (-r));
}

/* Open the image, at the snapshot when snap is not NULL (read-only). */
static void
open_image (struct conn *c, const char *name, const char *snap)
{
  int r;

  connect_pool (c);
  r = snap ? rbd_open_read_only (c->io, name, &c->image, snap)
           : rbd_open (c->io, name, &c->image, NULL);
  if (r < 0)
    die ("cannot open image '%s%s%s': %s", name, snap ? "@" : "", snap ? snap : "",
         strerror (-r));
}

/* ---- steps -------------------------------------------------------------- */

static void
do_create (const char *name, const char *kind)
{
  __attribute__((cleanup (conn_close))) struct conn c = { 0 };
  uint64_t want, got;
  int order = ORDER, r;

  if (strcmp (kind, "fast-diff") == 0)
    want = RBD_FEATURE_LAYERING | RBD_FEATURE_EXCLUSIVE_LOCK |
           RBD_FEATURE_OBJECT_MAP | RBD_FEATURE_FAST_DIFF;
  else if (strcmp (kind, "plain") == 0)
    want = RBD_FEATURE_LAYERING;
  else
    die ("unknown image kind '%s'", kind);
  connect_pool (&c);
  if ((r = rbd_create2 (c.io, name, IMAGE_SIZE, want, &order)) < 0)
    die ("cannot create image '%s': %s", name, strerror (-r));
  if ((r = rbd_open (c.io, name, &c.image, NULL)) < 0)
    die ("cannot open new image '%s': %s", name, strerror (-r));
  if ((r = rbd_get_features (c.image, &got)) < 0 || got != want)
    die ("image '%s' has features 0x%" PRIx64 ", want 0x%" PRIx64, name, got, want);
}

static void
do_writes (const char *name, const struct op *ops, size_t n)
{
  __attribute__((cleanup (conn_close))) struct conn c = { 0 };
  _cleanup_free_ uint8_t *buf = malloc (4 * MiB);

  if (!buf)
    die ("out of memory");
  open_image (&c, name, NULL);
  for (size_t i = 0; i < n; i++) {
    const struct op *op = &ops[i];
    ssize_t w;
    int r;

    if (!op->seed) {
      if ((r = rbd_discard (c.image, op->off, op->len)) < 0)
        die ("discard %" PRIu64 "+%" PRIu64 ": %s", op->off, op->len, strerror (-r));
      continue;
    }
    fill (buf, op);
    w = rbd_write (c.image, op->off, op->len, (const char *) buf);
    if (w < 0 || (uint64_t) w != op->len)
      die ("write %" PRIu64 "+%" PRIu64 ": %s", op->off, op->len,
           w < 0 ? strerror (-w) : "short write");
  }
  if (rbd_flush (c.image) < 0)
    die ("flush failed");
}

static void
do_snap (const char *name)
{
  __attribute__((cleanup (conn_close))) struct conn c = { 0 };
  int r;

  open_image (&c, name, NULL);
  if ((r = rbd_snap_create (c.image, SNAP)) < 0)
    die ("cannot snapshot '%s': %s", name, strerror (-r));
}

/* Compare the whole image (or snapshot) with the model. */
static void
do_verify (const char *name, bool head)
{
  __attribute__((cleanup (conn_close))) struct conn c = { 0 };
  _cleanup_free_ uint8_t *want = model (head);
  _cleanup_free_ uint8_t *buf = malloc (4 * MiB);
  uint64_t size;

  if (!buf)
    die ("out of memory");
  open_image (&c, name, head ? NULL : SNAP);
  if (rbd_get_size (c.image, &size) < 0 || size != IMAGE_SIZE)
    die ("image size %" PRIu64 ", want %llu", size, IMAGE_SIZE);
  for (uint64_t off = 0; off < IMAGE_SIZE; off += 4 * MiB) {
    ssize_t n = rbd_read (c.image, off, 4 * MiB, (char *) buf);
    if (n != (ssize_t) (4 * MiB))
      die ("read at %" PRIu64 ": %s", off, n < 0 ? strerror (-n) : "short read");
    for (uint64_t i = 0; i < 4 * MiB; i++)
      if (buf[i] != want[off + i])
        die ("%s: byte %" PRIu64 " is 0x%02x, want 0x%02x", head ? "head" : SNAP,
             off + i, buf[i], want[off + i]);
  }
}

struct extent {
  uint64_t off, len;
  bool exists;
};

struct extents {
  struct extent *v;
  size_t n, cap;
};

static int
diff_cb (uint64_t off, size_t len, int exists, void *opaque)
{
  struct extents *e = opaque;

  if (e->n == e->cap) {
    size_t cap = e->cap ? e->cap * 2 : 64;
    struct extent *v = reallocarray (e->v, cap, sizeof *v);
    if (!v)
      return -ENOMEM;
    e->v = v;
    e->cap = cap;
  }
  e->v[e->n++] = (struct extent) { off, len, exists != 0 };
  return 0;
}

/* Is [off, off+len) covered by the union of the extents (with `exists`
 * equal to want_exists unless any is true)? */
static bool
covered (const struct extents *e, uint64_t off, uint64_t len, bool any, bool want_exists)
{
  uint64_t pos = off, end = off + len;
  bool progress = true;

  while (pos < end && progress) {     /* extents arrive in any order: rescan */
    progress = false;
    for (size_t i = 0; i < e->n; i++) {
      const struct extent *x = &e->v[i];
      if ((any || x->exists == want_exists) && x->off <= pos && pos < x->off + x->len) {
        pos = x->off + x->len;
        progress = true;
      }
    }
  }
  return pos >= end;
}

/* Check one diff against the models: every byte that differs between
 * snapshot and head lies in a reported extent, every later write is reported
 * as data, and no extent touches an object left alone since the snapshot.
 * rbd reports supersets (whole objects, grown tails), so nothing more exact. */
static void
check_diff (const struct extents *e, const uint8_t *snap, const uint8_t *head,
            const char *mode)
{
  for (uint64_t i = 0; i < IMAGE_SIZE; i++) {
    uint64_t j = i;
    if (snap[i] == head[i])
      continue;
    while (j < IMAGE_SIZE && snap[j] != head[j])
      j++;
    if (!covered (e, i, j - i, true, true))
      die ("%s diff misses changed bytes %" PRIu64 "+%" PRIu64, mode, i, j - i);
    i = j;
  }
  for (size_t i = 0; i < N (new_ops); i++) {
    const struct op *op = &new_ops[i];
    if (op->seed && !covered (e, op->off, op->len, false, true))
      die ("%s diff does not report the write at %" PRIu64 "+%" PRIu64 " as data",
           mode, op->off, op->len);
  }
  for (size_t i = 0; i < N (untouched_objects); i++) {
    uint64_t lo = untouched_objects[i] * OBJ, hi = lo + OBJ;
    for (size_t j = 0; j < e->n; j++)
      if (e->v[j].off < hi && e->v[j].off + e->v[j].len > lo)
        die ("%s diff reports %" PRIu64 "+%" PRIu64 " in object %" PRIu64
             ", untouched since the snapshot", mode, e->v[j].off, e->v[j].len,
             untouched_objects[i]);
  }
}

/* Both granularities: whole_object=1 is where the object map (fast-diff)
 * is used; whole_object=0 lists the objects' snapshots. */
static void
do_diff (const char *name)
{
  __attribute__((cleanup (conn_close))) struct conn c = { 0 };
  _cleanup_free_ uint8_t *snap = model (false);
  _cleanup_free_ uint8_t *head = model (true);

  open_image (&c, name, NULL);
  for (int whole = 0; whole <= 1; whole++) {
    const char *mode = whole ? "whole-object" : "fine-grained";
    struct extents e = { 0 };
    uint64_t total = 0;
    int r;

    r = rbd_diff_iterate2 (c.image, SNAP, 0, IMAGE_SIZE, 0, whole, diff_cb, &e);
    if (r < 0)
      die ("rbd_diff_iterate2 (%s) from '%s': %s", mode, SNAP, strerror (-r));
    for (size_t i = 0; i < e.n; i++)
      total += e.v[i].len;
    fprintf (stderr, "%s: %s diff: %zu extents, %" PRIu64 " bytes\n", prog, mode, e.n, total);
    check_diff (&e, snap, head, mode);
    free (e.v);
  }
}

static void
do_remove (const char *name)
{
  __attribute__((cleanup (conn_close))) struct conn c = { 0 };
  rbd_image_t img;
  int r;

  open_image (&c, name, NULL);
  if ((r = rbd_snap_remove (c.image, SNAP)) < 0)
    die ("cannot remove snapshot '%s': %s", SNAP, strerror (-r));
  rbd_close (c.image);
  c.image = NULL;
  if ((r = rbd_remove (c.io, name)) < 0)
    die ("cannot remove image '%s': %s", name, strerror (-r));
  r = rbd_open_read_only (c.io, name, &img, NULL);
  if (r == 0) {
    rbd_close (img);
    die ("image '%s' still opens after removal", name);
  }
  if (r != -ENOENT)
    die ("opening the removed image gives %s, want ENOENT", strerror (-r));
}

static void
usage (void)
{
  fprintf (stderr, "usage: %s create IMAGE fast-diff|plain | write-base|snap|write-more|"
           "diff|verify|verify-snap|remove IMAGE\n", prog);
  exit (2);
}

int
main (int argc, char **argv)
{
  const char *cmd, *img;

  if (argc < 3)
    usage ();
  cmd = argv[1];
  img = argv[2];
  if (strcmp (cmd, "create") == 0 && argc == 4)
    do_create (img, argv[3]);
  else if (argc != 3)
    usage ();
  else if (strcmp (cmd, "write-base") == 0)
    do_writes (img, base_ops, N (base_ops));
  else if (strcmp (cmd, "snap") == 0)
    do_snap (img);
  else if (strcmp (cmd, "write-more") == 0)
    do_writes (img, new_ops, N (new_ops));
  else if (strcmp (cmd, "diff") == 0)
    do_diff (img);
  else if (strcmp (cmd, "verify") == 0)
    do_verify (img, true);
  else if (strcmp (cmd, "verify-snap") == 0)
    do_verify (img, false);
  else if (strcmp (cmd, "remove") == 0)
    do_remove (img);
  else
    usage ();
  return 0;
}
