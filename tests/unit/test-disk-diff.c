/* vmdr_disk_tree_diff: what it reports, applied to a model of the old
 * disk's chunk digests, gives the new one's, for disks of equal size, grown
 * or shrunk (across tree depths), sparse ones, and an unknown old copy; and
 * it reports exactly the chunks that differ. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "disk-diff.h"
#include "scratch-repo.h"

#define CHUNK 65536u
#define FANOUT 16u

static void
tune (struct vmdr_repo_config *c)
{
  c->fanout = FANOUT;           /* small: deep trees from few chunks */
}

static struct vmdr_digest
fake (uint64_t seed)
{
  struct vmdr_digest d;

  for (size_t i = 0; i < sizeof d.b; i++) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    d.b[i] = (uint8_t) (seed >> 56);
  }
  d.b[0] |= 1;                  /* never the zero digest */
  return d;
}

/* A tree over N chunks whose digests are D (zero digests allowed). */
static void
build (struct vmdr_repo *repo, struct vmdr_zctx *z, const struct vmdr_digest *d, uint64_t n,
       struct vmdr_disk_tree *t)
{
  struct vmdr_disk_builder *b;

  cr_assert_eq (vmdr_disk_builder_new (repo, z, n * CHUNK, CHUNK, FANOUT, NULL, &b), 0);
  for (uint64_t i = 0; i < n; i++)
    cr_assert_eq (vmdr_disk_builder_set (b, i, &d[i]), 0);
  cr_assert_eq (vmdr_disk_builder_finish (b, t), 0);
  vmdr_disk_builder_free (b);
}

struct model {
  struct vmdr_digest *d;        /* the copy, as it evolves */
  const struct vmdr_digest *old;
  uint64_t n, old_n;
  uint64_t reported, zero_ranges;
  int64_t last;                 /* ranges come in order */
  bool unknown;
};

static int
apply (void *opaque, uint64_t first, uint64_t count, const struct vmdr_digest *d)
{
  struct model *m = opaque;
  static const struct vmdr_digest zero;

  cr_assert (first + count <= m->n, "range [%lu, +%lu) beyond %lu", first, count, m->n);
  cr_assert ((int64_t) first > m->last, "ranges out of order");
  m->last = (int64_t) (first + count - 1);
  for (uint64_t i = 0; i < count; i++) {
    m->d[first + i] = d ? d[i] : zero;
    if (d && !m->unknown) {
      const struct vmdr_digest *o = first + i < m->old_n ? &m->old[first + i] : &zero;
      cr_assert (memcmp (o, &d[i], sizeof zero) != 0, "chunk %lu reported but unchanged",
                 first + i);
    }
  }
  m->reported += d ? count : 0;
  m->zero_ranges += d == NULL;
  return 0;
}

/* Diff OLD (N_OLD chunks, or unknown) to NEW (N_NEW), check the result. */
static struct model
check (const struct vmdr_digest *old, uint64_t n_old, bool unknown,
       const struct vmdr_digest *new, uint64_t n_new)
{
  struct vmdr_repo *repo = scratch_repo (tune);
  struct vmdr_zctx *z;
  struct vmdr_disk_tree a, b;
  struct model m = { .n = n_new, .old = old, .old_n = n_old, .last = -1, .unknown = unknown };
  uint64_t differ = 0;
  static const struct vmdr_digest zero;

  cr_assert_eq (vmdr_zctx_new (1, &z), 0);
  build (repo, z, old, n_old, &a);
  build (repo, z, new, n_new, &b);
  cr_assert_eq (vmdr_repo_flush (repo), 0);
  m.d = calloc (n_new ? n_new : 1, sizeof *m.d);
  /* What the copy holds: the old disk, zeros beyond its end (grown), or
   * garbage when unknown. */
  for (uint64_t i = 0; i < n_new; i++) {
    m.d[i] = unknown ? fake (999 + i) : i < n_old ? old[i] : zero;
    if (memcmp (&m.d[i], &new[i], sizeof zero) != 0)
      differ++;
  }
  cr_assert_eq (vmdr_disk_tree_diff (repo, z, unknown ? NULL : &a, &b, apply, &m), 0);
  for (uint64_t i = 0; i < n_new; i++)
    cr_assert (memcmp (&m.d[i], &new[i], sizeof zero) == 0, "chunk %lu wrong after the diff", i);
  if (!unknown)
    cr_assert_leq (m.reported, differ);
  free (m.d);
  vmdr_zctx_free (z);
  vmdr_repo_close (repo);
  return m;
}

static struct vmdr_digest *
disk (uint64_t n, uint64_t seed, uint64_t zero_from, uint64_t zero_to)
{
  struct vmdr_digest *d = calloc (n ? n : 1, sizeof *d);

  for (uint64_t i = 0; i < n; i++)
    if (i < zero_from || i >= zero_to)
      d[i] = fake (seed + i);
  return d;
}

TestSuite (disk_diff, .init = setup, .fini = teardown);

Test (disk_diff, same_size_scattered_changes)
{
  uint64_t n = 1000;            /* 63 leaves: depth 3 */
  struct vmdr_digest *a = disk (n, 1, 300, 700), *b = disk (n, 1, 300, 700);

  b[5] = fake (77);
  b[6] = fake (78);
  b[500] = fake (79);           /* in the zero region */
  memset (&b[900], 0, sizeof b[900]);   /* became zero */
  struct model m = check (a, n, false, b, n);
  cr_assert_eq (m.reported, 4);
  free (a);
  free (b);
}

Test (disk_diff, equal_trees_report_nothing)
{
  struct vmdr_digest *a = disk (5000, 3, 10, 4000);
  struct model m = check (a, 5000, false, a, 5000);

  cr_assert_eq (m.reported + m.zero_ranges, 0);
  free (a);
}

Test (disk_diff, a_region_zeroed_is_one_range)
{
  uint64_t n = 4096;
  struct vmdr_digest *a = disk (n, 5, n, n), *b = disk (n, 5, 256, 512);
  struct model m = check (a, n, false, b, n);

  cr_assert_eq (m.reported, 0);
  cr_assert_eq (m.zero_ranges, 1, "a zero subtree is one range, got %lu", m.zero_ranges);
  free (a);
  free (b);
}

Test (disk_diff, grown_across_depths)
{
  uint64_t na = 200, nb = 5000;   /* depth 2 -> 4 */
  struct vmdr_digest *a = disk (na, 9, 50, 100), *b = disk (nb, 9, 50, 100);

  for (uint64_t i = 2000; i < 3000; i++)
    memset (&b[i], 0, sizeof b[i]);     /* a hole in the new part: not written */
  b[7] = fake (4242);
  struct model m = check (a, na, false, b, nb);
  cr_assert_eq (m.reported, 1 + (nb - na) - 1000);
  free (a);
  free (b);
}

Test (disk_diff, shrunk_across_depths)
{
  uint64_t na = 5000, nb = 100;
  struct vmdr_digest *a = disk (na, 11, 60, 70), *b = disk (nb, 11, 60, 70);

  b[99] = fake (1);
  struct model m = check (a, na, false, b, nb);
  cr_assert_eq (m.reported, 1);
  free (a);
  free (b);
}

Test (disk_diff, partial_last_leaf_grows)
{
  uint64_t na = 33, nb = 47;      /* the last leaf fills up */
  struct vmdr_digest *a = disk (na, 13, na, na), *b = disk (nb, 13, nb, nb);
  struct model m = check (a, na, false, b, nb);

  cr_assert_eq (m.reported, nb - na);
  free (a);
  free (b);
}

Test (disk_diff, from_nothing_writes_only_data)
{
  uint64_t nb = 3000;
  struct vmdr_digest *b = disk (nb, 17, 100, 2900);
  struct model m = check (NULL, 0, false, b, nb);

  cr_assert_eq (m.reported, 200);
  cr_assert_eq (m.zero_ranges, 0);
  free (b);
}

Test (disk_diff, unknown_copy_gets_everything)
{
  uint64_t nb = 3000;
  struct vmdr_digest *b = disk (nb, 19, 100, 2900);
  struct model m = check (NULL, 0, true, b, nb);

  cr_assert_geq (m.reported, 200);
  cr_assert_gt (m.zero_ranges, 0);
  free (b);
}

Test (disk_diff, other_geometry_refused)
{
  struct vmdr_repo *repo = scratch_repo (tune);
  struct vmdr_zctx *z;
  struct vmdr_disk_tree a = { .virtual_size = 0, .chunk_size = CHUNK * 2, .fanout = FANOUT },
    b = { .virtual_size = 0, .chunk_size = CHUNK, .fanout = FANOUT };

  cr_assert_eq (vmdr_zctx_new (1, &z), 0);
  cr_assert_eq (vmdr_disk_tree_diff (repo, z, &a, &b, apply, NULL), -EINVAL);
  b.depth = 3;                  /* wrong for its size */
  cr_assert_eq (vmdr_disk_tree_diff (repo, z, NULL, &b, apply, NULL), -EBADMSG);
  vmdr_zctx_free (z);
  vmdr_repo_close (repo);
}

Test (disk_diff, lookup_finds_each_chunk)
{
  struct vmdr_repo *repo = scratch_repo (tune);
  struct vmdr_zctx *z;
  struct vmdr_disk_tree t;
  uint64_t n = 5000, idx[] = { 0, 1, 15, 16, 255, 256, 2999, 3000, 4095, 4096, 4999 };
  struct vmdr_digest *d = disk (n, 23, 2500, 4090), got[sizeof idx / sizeof idx[0]];
  uint64_t beyond = n;

  cr_assert_eq (vmdr_zctx_new (1, &z), 0);
  build (repo, z, d, n, &t);
  cr_assert_eq (vmdr_repo_flush (repo), 0);
  cr_assert_eq (vmdr_disk_tree_lookup (repo, z, &t, idx, sizeof idx / sizeof idx[0], got), 0);
  for (size_t k = 0; k < sizeof idx / sizeof idx[0]; k++)
    cr_expect (memcmp (&got[k], &d[idx[k]], sizeof got[k]) == 0, "chunk %lu", idx[k]);
  cr_assert_eq (vmdr_disk_tree_lookup (repo, z, &t, &beyond, 1, got), -ERANGE);
  free (d);
  vmdr_zctx_free (z);
  vmdr_repo_close (repo);
}
