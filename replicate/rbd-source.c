#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "cleanup.h"
#include "disk-diff.h"
#include "rbd-internal.h"
#include "rbd-source.h"

#define SAMPLE_MAX 4096

struct vmdr_rbd_source {
  struct vmdr_rbd *rbd;
  rbd_image_t image;
  char name[VMDR_RBD_NAME_MAX];
  char snap[64];                /* "" until taken */
  uint64_t size;                /* at the snapshot */
};

int
vmdr_rbd_source_open (struct vmdr_rbd *rbd, const char *image, struct vmdr_rbd_source **out)
{
  struct vmdr_rbd_source *s;
  int r;

  if (strlen (image) >= VMDR_RBD_NAME_MAX)
    return -ENAMETOOLONG;
  if ((s = calloc (1, sizeof *s)) == NULL)
    return -ENOMEM;
  s->rbd = rbd;
  strcpy (s->name, image);
  if ((r = rbd_open (rbd->io, image, &s->image, NULL)) < 0) {
    free (s);
    return r;
  }
  *out = s;
  return 0;
}

void
vmdr_rbd_source_close (struct vmdr_rbd_source *s)
{
  if (s == NULL)
    return;
  rbd_close (s->image);
  free (s);
}

int
vmdr_rbd_source_snap (struct vmdr_rbd_source *s, const char *time)
{
  char snap[64];
  int r;

  if (strlen (time) != VMDR_TIME_LEN)
    return -EINVAL;
  snprintf (snap, sizeof snap, VMDR_RBD_SNAP_PREFIX "%s", time);
  if ((r = rbd_snap_create (s->image, snap)) < 0)
    return r;
  strcpy (s->snap, snap);
  if ((r = rbd_snap_set (s->image, snap)) < 0 || (r = rbd_get_size (s->image, &s->size)) < 0)
    return r;
  return 0;
}

const char *
vmdr_rbd_source_base (const struct vmdr_rbd_source *s)
{
  return s->snap;
}

/* ---- what changed ---------------------------------------------------------- */

struct extents {
  struct vmdr_chunk_range *r;
  size_t n, cap;
  uint32_t chunk_size;
  uint64_t reported;
  bool drop;
};

static int
on_extent (uint64_t off, size_t len, int exists, void *arg)
{
  struct extents *x = arg;

  (void) exists;                /* a discarded extent changed too: it reads zero now */
  x->reported++;
  if (x->drop || len == 0)
    return 0;
  if (x->n == x->cap) {
    size_t cap = x->cap ? 2 * x->cap : 256;
    struct vmdr_chunk_range *v = realloc (x->r, cap * sizeof *v);
    if (v == NULL)
      return -ENOMEM;
    x->r = v;
    x->cap = cap;
  }
  uint64_t first = off / x->chunk_size, last = (off + len - 1) / x->chunk_size;
  x->r[x->n++] = (struct vmdr_chunk_range) { first, last - first + 1 };
  return 0;
}

static int
by_first (const void *a, const void *b)
{
  const struct vmdr_chunk_range *x = a, *y = b;
  return x->first < y->first ? -1 : x->first > y->first;
}

/* Sort and merge: the form vmdr_disk_write wants. */
static void
normalise (struct extents *x)
{
  size_t k = 0;

  if (x->n == 0)
    return;
  qsort (x->r, x->n, sizeof *x->r, by_first);
  for (size_t i = 1; i < x->n; i++) {
    struct vmdr_chunk_range *p = &x->r[k];
    if (x->r[i].first <= p->first + p->count) {
      uint64_t end = x->r[i].first + x->r[i].count;
      if (end > p->first + p->count)
        p->count = end - p->first;
    } else {
      x->r[++k] = x->r[i];
    }
  }
  x->n = k + 1;
}

static bool
covered (const struct extents *x, uint64_t idx)
{
  size_t lo = 0, hi = x->n;

  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (idx < x->r[mid].first)
      hi = mid;
    else if (idx >= x->r[mid].first + x->r[mid].count)
      lo = mid + 1;
    else
      return true;
  }
  return false;
}

/* ---- reading ------------------------------------------------------------------ */

static int
source_read (void *opaque, unsigned worker, void *buf, size_t len, uint64_t off)
{
  struct vmdr_rbd_source *s = opaque;
  ssize_t n;

  (void) worker;                /* librbd serves many threads on one image */
  n = rbd_read (s->image, off, len, buf);
  if (n < 0)
    return (int) n;
  return (size_t) n == len ? 0 : -EIO;
}

static bool
all_zero (const uint8_t *p, size_t len)
{
  return len == 0 || (p[0] == 0 && memcmp (p, p + 1, len - 1) == 0);
}

static uint64_t
rnd (uint64_t *state)
{
  uint64_t x = *state;          /* xorshift64* */

  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *state = x;
  return x * 0x2545f4914f6cdd1dull;
}

/* Up to o->sample chunks the diff calls unchanged, read and compared with
 * the parent's digests: 1 when one differs, 0 when all agree. */
static int
check_sample (struct vmdr_rbd_source *s, struct vmdr_repo *repo,
              const struct vmdr_rbd_source_opts *o, const struct extents *x,
              struct vmdr_rbd_source_stats *st)
{
  uint32_t cs = x->chunk_size;
  uint64_t limit = vmdr_disk_chunks (s->size, cs), pchunks, seed = 0, uncovered = 0;
  _cleanup_free_ uint64_t *idx = NULL;
  _cleanup_free_ struct vmdr_digest *want = NULL;
  _cleanup_free_ uint8_t *buf = NULL;
  struct vmdr_zctx *z = NULL;
  size_t n = 0, max = o->sample < SAMPLE_MAX ? o->sample : SAMPLE_MAX;
  int r = 0;

  pchunks = vmdr_disk_chunks (o->parent->virtual_size, o->parent->chunk_size);
  if (pchunks < limit)
    limit = pchunks;            /* beyond the parent: new, and read anyway */
  if (max == 0 || limit == 0)
    return 0;
  for (size_t i = 0; i < x->n; i++)
    if (x->r[i].first < limit)
      uncovered += (x->r[i].first + x->r[i].count > limit ? limit : x->r[i].first + x->r[i].count)
                   - x->r[i].first;
  uncovered = limit - uncovered;
  if ((idx = malloc (max * sizeof *idx)) == NULL || (want = malloc (max * sizeof *want)) == NULL ||
      (buf = malloc (cs)) == NULL)
    return -ENOMEM;
  if (uncovered <= max) {       /* all of them */
    for (uint64_t i = 0; i < limit && n < max; i++)
      if (!covered (x, i))
        idx[n++] = i;
  } else {
    if (getrandom (&seed, sizeof seed, 0) != sizeof seed || seed == 0)
      seed = 0x9e3779b97f4a7c15ull ^ (uint64_t) (uintptr_t) buf;
    for (uint64_t tries = 0; n < max && tries < 64 * (uint64_t) max; tries++) {
      uint64_t i = rnd (&seed) % limit;
      bool dup = covered (x, i);
      for (size_t k = 0; k < n && !dup; k++)
        dup = idx[k] == i;
      if (!dup)
        idx[n++] = i;
    }
  }
  if ((r = vmdr_zctx_new (1, &z)) < 0)
    return r;
  r = vmdr_disk_tree_lookup (repo, z, o->parent, idx, n, want);
  vmdr_zctx_free (z);
  if (r < 0)
    return r;
  for (size_t k = 0; k < n; k++) {
    static const struct vmdr_digest zero;
    uint64_t off = idx[k] * cs;
    size_t len = s->size - off < cs ? (size_t) (s->size - off) : cs;
    struct vmdr_digest d = zero;
    if ((r = source_read (s, 0, buf, len, off)) < 0)
      return r;
    if (!all_zero (buf, len) &&
        (r = vmdr_digest (vmdr_repo_config (repo)->hash, buf, len, &d)) < 0)
      return r;
    st->sampled++;
    if (memcmp (&d, &want[k], sizeof d) != 0)
      return 1;
  }
  return 0;
}

int
vmdr_rbd_source_write (struct vmdr_rbd_source *s, struct vmdr_repo *repo,
                       const struct vmdr_rbd_source_opts *o,
                       struct vmdr_disk_tree *out, struct vmdr_rbd_source_stats *st)
{
  uint32_t cs = vmdr_repo_config (repo)->chunk_size;
  struct extents x = { .chunk_size = cs, .drop = o->test_drop_hints };
  const struct vmdr_disk_tree *parent = o->base ? o->parent : NULL;
  struct vmdr_disk_source src = { 0 };
  int r;

  memset (st, 0, sizeof *st);
  if (s->snap[0] == '\0' || (o->base && o->parent == NULL))
    return -EINVAL;
  if (parent && (parent->chunk_size != cs || parent->fanout != vmdr_repo_config (repo)->fanout))
    parent = NULL;              /* other geometry: a full */
  /* Without a base the diff from the image's creation: its allocated
   * extents, so that holes are not read. */
  x.drop = o->test_drop_hints && parent;
  r = rbd_diff_iterate2 (s->image, parent ? o->base : NULL, 0, s->size, 1, 0, on_extent, &x);
  if (r < 0)
    goto out;
  st->extents = x.reported;
  st->full = parent == NULL;
  normalise (&x);
  src = (struct vmdr_disk_source) { .virtual_size = s->size, .read = source_read, .opaque = s,
                                    .ranges = x.r, .nranges = x.n };
  if (parent && (r = check_sample (s, repo, o, &x, st)) < 0)
    goto out;
  if (r == 1) {
    st->fell_back = st->full = true;
    src.all = true;
  }
  r = vmdr_disk_write (repo, &src, parent, o->threads, o->progress, o->popaque, out, &st->w);
 out:
  free (x.r);
  return r;
}

/* ---- keeping the image's snapshots few ----------------------------------- */

static int
remove_snaps (struct vmdr_rbd_source *s, bool keep_current)
{
  int max = 64, r, first = 0;
  rbd_snap_info_t *v = NULL;
  size_t plen = strlen (VMDR_RBD_SNAP_PREFIX);

  if ((r = rbd_snap_set (s->image, NULL)) < 0)
    return r;
  for (;;) {
    free (v);
    if ((v = calloc ((size_t) max, sizeof *v)) == NULL)
      return -ENOMEM;
    if ((r = rbd_snap_list (s->image, v, &max)) != -ERANGE)
      break;
  }
  for (int i = 0; r > 0 && i < r; i++) {
    int prot = 0, e;
    if (strncmp (v[i].name, VMDR_RBD_SNAP_PREFIX, plen) != 0 ||
        strlen (v[i].name + plen) != VMDR_TIME_LEN ||
        (keep_current && strcmp (v[i].name, s->snap) == 0) ||
        (!keep_current && strcmp (v[i].name, s->snap) != 0))
      continue;
    if (rbd_snap_is_protected (s->image, v[i].name, &prot) == 0 && prot)
      continue;                 /* clones hang on it */
    if ((e = rbd_snap_remove (s->image, v[i].name)) < 0 && first == 0)
      first = e;
  }
  if (r >= 0)
    rbd_snap_list_end (v);
  free (v);
  return r < 0 ? r : first;
}

int
vmdr_rbd_source_prune (struct vmdr_rbd_source *s)
{
  return remove_snaps (s, true);
}

int
vmdr_rbd_source_drop (struct vmdr_rbd_source *s)
{
  int r;

  if (s->snap[0] == '\0')
    return 0;
  r = remove_snaps (s, false);
  s->snap[0] = '\0';
  return r;
}
