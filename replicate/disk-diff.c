#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "disk-diff.h"
#include "endian-util.h"

#define NODE_HEADER 16
static const char node_magic[4] = { 'V', 'M', 'X', '1' };
static const struct vmdr_digest zero;

static bool
same (const struct vmdr_digest *a, const struct vmdr_digest *b)
{
  return memcmp (a, b, sizeof *a) == 0;
}

/* What the old tree has at the place of a node of the new one. */
enum ref_kind {
  REF_ZERO,                     /* zeros: a zero subtree, or beyond the old end */
  REF_NODE,                     /* node D covering COUNT chunks */
  REF_ABOVE,                    /* above the old root (the new disk is larger):
                                 * entry 0 leads down to the old root, the
                                 * others are beyond the old end */
  REF_UNKNOWN,                  /* nothing known: everything differs */
};

struct ref {
  enum ref_kind kind;
  struct vmdr_digest d;
  uint64_t count;
};

struct diff {
  struct vmdr_repo *repo;
  struct vmdr_zctx *z;
  uint32_t fanout;
  struct ref old_root;
  unsigned old_root_level;
  uint8_t *buf;                 /* one node as read */
  vmdr_disk_diff_fn fn;
  void *opaque;
};

/* Chunks under one entry of a node at LEVEL: fanout^LEVEL (1 in a leaf).
 * Bounded by the trees' geometry checks: never beyond the chunk count. */
static uint64_t
per_entry (uint32_t fanout, unsigned level)
{
  uint64_t n = 1;

  for (unsigned i = 0; i < level; i++)
    n *= fanout;
  return n;
}

static uint32_t
depth_for (uint64_t nchunks, uint32_t fanout)
{
  uint64_t nleaves = (nchunks + fanout - 1) / fanout;
  uint32_t depth = nleaves ? 1 : 0;

  for (uint64_t n = nleaves; n > 1; n = (n + fanout - 1) / fanout)
    depth++;
  return depth;
}

static int
check_tree (const struct vmdr_disk_tree *t)
{
  if (t->chunk_size < VMDR_CHUNK_MIN || t->chunk_size > VMDR_CHUNK_MAX ||
      t->fanout < 16 || t->fanout > 4096 || t->depth > VMDR_DISK_MAX_DEPTH ||
      t->depth != depth_for (vmdr_disk_chunks (t->virtual_size, t->chunk_size), t->fanout))
    return -EBADMSG;
  return 0;
}

/* Read node D at LEVEL with N entries into E (N digests), verified. */
static int
read_node (struct diff *df, const struct vmdr_digest *d, unsigned level, uint32_t n,
           struct vmdr_digest *e)
{
  size_t len;
  int r = vmdr_repo_get_chunk (df->repo, df->z, d, df->buf,
                               NODE_HEADER + (size_t) df->fanout * VMDR_DIGEST_LEN, &len);

  if (r == -ENOBUFS)
    return -EBADMSG;
  if (r < 0)
    return r;
  if (len != NODE_HEADER + (size_t) n * VMDR_DIGEST_LEN ||
      memcmp (df->buf, node_magic, 4) != 0 || df->buf[4] != level ||
      get_le32 (df->buf + 8) != n)
    return -EBADMSG;
  memcpy (e, df->buf + NODE_HEADER, (size_t) n * VMDR_DIGEST_LEN);
  return 0;
}

static struct ref
node_ref (const struct vmdr_digest *d, uint64_t count)
{
  struct ref r = { .kind = vmdr_digest_is_zero (d) ? REF_ZERO : REF_NODE, .d = *d, .count = count };
  return r;
}

/* The old tree's child I of OLD, a node at LEVEL whose entries are OE
 * (ON of them, for REF_NODE). */
static struct ref
child_ref (const struct diff *df, const struct ref *old, unsigned level,
           const struct vmdr_digest *oe, uint32_t on, uint32_t i)
{
  uint64_t per = per_entry (df->fanout, level);
  struct ref r = { .kind = REF_ZERO };

  switch (old->kind) {
  case REF_ZERO:
    break;
  case REF_UNKNOWN:
    r.kind = REF_UNKNOWN;
    break;
  case REF_NODE:
    if (i < on)
      r = node_ref (&oe[i], old->count - per * i < per ? old->count - per * i : per);
    break;
  case REF_ABOVE:
    if (i == 0)
      r = level - 1 == df->old_root_level ? df->old_root : (struct ref) { .kind = REF_ABOVE };
    break;
  }
  return r;
}

/* Runs of entries of a leaf that differ, as callbacks. */
static int
diff_leaf (struct diff *df, uint64_t first, const struct vmdr_digest *e, uint32_t n,
           const struct ref *old, const struct vmdr_digest *oe, uint32_t on)
{
  uint32_t i = 0;
  int r;

  while (i < n) {
    uint32_t j = i;
    for (; j < n; j++) {
      const struct vmdr_digest *od = old->kind == REF_NODE && j < on ? &oe[j] : &zero;
      if (old->kind != REF_UNKNOWN && same (od, &e[j]))
        break;
    }
    if (j > i && (r = df->fn (df->opaque, first + i, j - i, &e[i])) < 0)
      return r;
    i = j + (j < n);
  }
  return 0;
}

/* The new tree's node ND at LEVEL covers chunks [first, first + count);
 * OLD is what the old tree has there. */
static int
diff_node (struct diff *df, unsigned level, uint64_t first, uint64_t count,
           const struct vmdr_digest *nd, const struct ref *old)
{
  uint64_t per = per_entry (df->fanout, level);
  uint32_t n = (uint32_t) ((count + per - 1) / per), on = 0;
  _cleanup_free_ struct vmdr_digest *e = NULL, *oe = NULL;
  int r;

  if (old->kind == REF_NODE && same (&old->d, nd))
    return 0;                   /* the same subtree */
  if (vmdr_digest_is_zero (nd))
    return old->kind == REF_ZERO ? 0 : df->fn (df->opaque, first, count, NULL);
  if ((e = malloc ((size_t) n * sizeof *e)) == NULL)
    return -ENOMEM;
  if ((r = read_node (df, nd, level, n, e)) < 0)
    return r;
  if (old->kind == REF_NODE) {
    on = (uint32_t) ((old->count + per - 1) / per);
    if ((oe = malloc ((size_t) on * sizeof *oe)) == NULL)
      return -ENOMEM;
    if ((r = read_node (df, &old->d, level, on, oe)) < 0)
      return r;
  }
  if (level == 0)
    return diff_leaf (df, first, e, n, old, oe, on);
  for (uint32_t i = 0; i < n; i++) {
    struct ref c = child_ref (df, old, level, oe, on, i);
    uint64_t cnt = i + 1 < n ? per : count - per * i;
    if ((r = diff_node (df, level - 1, first + per * i, cnt, &e[i], &c)) < 0)
      return r;
  }
  return 0;
}

/* What the old tree has at the place of the new root, a node at LEVEL
 * covering chunks [0, min (per_entry (LEVEL + 1), old chunks)). */
static int
old_at_level (struct diff *df, const struct vmdr_disk_tree *old, unsigned level,
              struct ref *out)
{
  uint64_t nchunks = vmdr_disk_chunks (old->virtual_size, old->chunk_size);
  _cleanup_free_ struct vmdr_digest *e = NULL;
  struct ref cur = df->old_root;

  if (old->depth == 0 || cur.kind == REF_ZERO) {
    *out = (struct ref) { .kind = REF_ZERO };
    return 0;
  }
  if (df->old_root_level < level) {
    *out = (struct ref) { .kind = REF_ABOVE };
    return 0;
  }
  /* The old disk is larger: walk down its first entries. */
  for (unsigned l = df->old_root_level; l > level && cur.kind == REF_NODE; l--) {
    uint64_t per = per_entry (df->fanout, l);
    uint32_t n = (uint32_t) ((cur.count + per - 1) / per);
    int r;
    free (e);
    if ((e = malloc ((size_t) n * sizeof *e)) == NULL)
      return -ENOMEM;
    if ((r = read_node (df, &cur.d, l, n, e)) < 0)
      return r;
    cur = node_ref (&e[0], nchunks < per ? nchunks : per);
  }
  *out = cur;
  return 0;
}

int
vmdr_disk_tree_diff (struct vmdr_repo *repo, struct vmdr_zctx *z,
                     const struct vmdr_disk_tree *old, const struct vmdr_disk_tree *new,
                     vmdr_disk_diff_fn fn, void *opaque)
{
  _cleanup_free_ uint8_t *buf = NULL;
  struct diff df = { .repo = repo, .z = z, .fanout = new->fanout, .fn = fn, .opaque = opaque };
  uint64_t nchunks = vmdr_disk_chunks (new->virtual_size, new->chunk_size);
  struct ref top = { .kind = REF_UNKNOWN };
  int r;

  if ((r = check_tree (new)) < 0 || (old && (r = check_tree (old)) < 0))
    return r;
  if (old && (old->chunk_size != new->chunk_size || old->fanout != new->fanout))
    return -EINVAL;
  if (new->depth == 0)
    return 0;
  if ((buf = malloc (NODE_HEADER + (size_t) new->fanout * VMDR_DIGEST_LEN)) == NULL)
    return -ENOMEM;
  df.buf = buf;
  if (old) {
    df.old_root = node_ref (&old->root, vmdr_disk_chunks (old->virtual_size, old->chunk_size));
    df.old_root_level = old->depth ? old->depth - 1 : 0;
    if ((r = old_at_level (&df, old, new->depth - 1, &top)) < 0)
      return r;
  }
  return diff_node (&df, new->depth - 1, 0, nchunks, &new->root, &top);
}

int
vmdr_disk_tree_lookup (struct vmdr_repo *repo, struct vmdr_zctx *z,
                       const struct vmdr_disk_tree *tree, const uint64_t *idx, size_t n,
                       struct vmdr_digest *out)
{
  _cleanup_free_ uint8_t *buf = NULL;
  _cleanup_free_ struct vmdr_digest *e = NULL;
  struct diff df = { .repo = repo, .z = z, .fanout = tree->fanout };
  uint64_t nchunks = vmdr_disk_chunks (tree->virtual_size, tree->chunk_size);
  int r;

  if ((r = check_tree (tree)) < 0)
    return r;
  for (size_t k = 0; k < n; k++)
    if (idx[k] >= nchunks)
      return -ERANGE;
  if ((buf = malloc (NODE_HEADER + (size_t) tree->fanout * VMDR_DIGEST_LEN)) == NULL ||
      (e = malloc ((size_t) tree->fanout * sizeof *e)) == NULL)
    return -ENOMEM;
  df.buf = buf;
  for (size_t k = 0; k < n; k++) {
    struct vmdr_digest d = tree->root;
    uint64_t first = 0, count = nchunks;
    for (unsigned level = tree->depth; level-- > 0 && !vmdr_digest_is_zero (&d);) {
      uint64_t per = per_entry (tree->fanout, level);
      uint32_t nent = (uint32_t) ((count + per - 1) / per), i = (uint32_t) ((idx[k] - first) / per);
      if ((r = read_node (&df, &d, level, nent, e)) < 0)
        return r;
      d = e[i];
      first += per * i;
      count = i + 1 < nent ? per : count - per * i;
    }
    out[k] = d;
  }
  return 0;
}
