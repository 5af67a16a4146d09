#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "disk-index.h"
#include "endian-util.h"

#define NODE_HEADER 16
static const char node_magic[4] = { 'V', 'M', 'X', '1' };
static const struct vmdr_digest zero;

/* A leaf being changed: its entries, loaded from the parent on first use. */
struct open_leaf {
  uint64_t no;
  struct vmdr_digest *e;        /* fanout entries */
};

struct vmdr_disk_builder {
  struct vmdr_repo *repo;
  struct vmdr_zctx *z;
  struct vmdr_disk_tree t;      /* geometry of the new tree */
  uint64_t nchunks, nleaves;
  struct vmdr_digest *leaves;   /* digest of every leaf */
  uint64_t parent_chunks;       /* chunks the parent covers */
  struct open_leaf *open;
  size_t nopen, open_cap;
  uint8_t *node;                /* scratch: one encoded node */
};

/* Entries in leaf NO (the last leaf may be short). */
static uint32_t
leaf_entries (uint64_t nchunks, uint32_t fanout, uint64_t no)
{
  uint64_t left = nchunks - no * fanout;
  return left < fanout ? (uint32_t) left : fanout;
}

/* ---- node encoding ------------------------------------------------------- */

static size_t
encode_node (uint8_t *p, unsigned level, const struct vmdr_digest *e, uint32_t n)
{
  memcpy (p, node_magic, 4);
  p[4] = (uint8_t) level;
  p[5] = p[6] = p[7] = 0;
  put_le32 (p + 8, n);
  put_le32 (p + 12, 0);
  memcpy (p + NODE_HEADER, e, (size_t) n * VMDR_DIGEST_LEN);
  return NODE_HEADER + (size_t) n * VMDR_DIGEST_LEN;
}

/* Store a node (unless all its entries are zero) and return its digest. */
static int
put_node (struct vmdr_disk_builder *b, unsigned level,
          const struct vmdr_digest *e, uint32_t n, struct vmdr_digest *out)
{
  const struct vmdr_repo_config *cfg = vmdr_repo_config (b->repo);
  size_t len;
  uint32_t i;
  int r;

  for (i = 0; i < n && vmdr_digest_is_zero (&e[i]); i++)
    ;
  if (i == n) {                 /* all zero: no node, the zero digest */
    *out = zero;
    return 0;
  }
  len = encode_node (b->node, level, e, n);
  if ((r = vmdr_digest (cfg->hash, b->node, len, out)) < 0)
    return r;
  return vmdr_repo_put_chunk (b->repo, b->z, VMDR_BLOB_DISK_NODE, out,
                              b->node, len, NULL);
}

/* Read node D, expecting LEVEL and N entries, into E. */
static int
get_node (struct vmdr_repo *repo, struct vmdr_zctx *z, uint8_t *buf,
          uint32_t fanout, const struct vmdr_digest *d, unsigned level,
          uint32_t n, struct vmdr_digest *e)
{
  size_t len;
  int r;

  r = vmdr_repo_get_chunk (repo, z, d, buf, NODE_HEADER + (size_t) fanout * VMDR_DIGEST_LEN,
                           &len);
  if (r == -ENOBUFS)
    return -EBADMSG;
  if (r < 0)
    return r;
  if (len != NODE_HEADER + (size_t) n * VMDR_DIGEST_LEN ||
      memcmp (buf, node_magic, 4) != 0 || buf[4] != level ||
      get_le32 (buf + 8) != n)
    return -EBADMSG;
  memcpy (e, buf + NODE_HEADER, (size_t) n * VMDR_DIGEST_LEN);
  return 0;
}

/* ---- tree shape ----------------------------------------------------------- */

static uint32_t
depth_for (uint64_t nleaves, uint32_t fanout)
{
  uint32_t depth = nleaves ? 1 : 0;

  for (uint64_t n = nleaves; n > 1; n = (n + fanout - 1) / fanout)
    depth++;
  return depth;
}

/* Leaves covered by one entry of a node at LEVEL (level 1 entries are
 * leaves). */
static uint64_t
leaves_per_entry (uint32_t fanout, unsigned level)
{
  uint64_t n = 1;

  for (unsigned i = 1; i < level; i++)
    n *= fanout;
  return n;
}

/* Fill OUT[first ..] with the digests of the leaves under node D at LEVEL
 * (>= 1), NLEAVES of them. */
static int
collect_leaves (struct vmdr_repo *repo, struct vmdr_zctx *z, uint8_t *buf,
                uint32_t fanout, const struct vmdr_digest *d, unsigned level,
                uint64_t nleaves, struct vmdr_digest *out)
{
  uint64_t per = leaves_per_entry (fanout, level);
  uint32_t n = (uint32_t) ((nleaves + per - 1) / per);
  _cleanup_free_ struct vmdr_digest *e = NULL;
  int r;

  if (vmdr_digest_is_zero (d)) {
    memset (out, 0, nleaves * sizeof *out);
    return 0;
  }
  e = malloc ((size_t) n * sizeof *e);
  if (e == NULL)
    return -ENOMEM;
  if ((r = get_node (repo, z, buf, fanout, d, level, n, e)) < 0)
    return r;
  for (uint32_t i = 0; i < n; i++) {
    uint64_t cnt = i + 1 < n ? per : nleaves - per * i;
    if (level == 1)
      out[i] = e[i];
    else if ((r = collect_leaves (repo, z, buf, fanout, &e[i], level - 1, cnt,
                                  out + per * i)) < 0)
      return r;
  }
  return 0;
}

/* ---- building ------------------------------------------------------------ */

static int
load_parent (struct vmdr_disk_builder *b, const struct vmdr_disk_tree *p)
{
  uint64_t pleaves;
  _cleanup_free_ struct vmdr_digest *all = NULL;

  if (p->chunk_size != b->t.chunk_size || p->fanout != b->t.fanout ||
      p->depth > VMDR_DISK_MAX_DEPTH)
    return -EINVAL;
  b->parent_chunks = vmdr_disk_chunks (p->virtual_size, p->chunk_size);
  pleaves = (b->parent_chunks + p->fanout - 1) / p->fanout;
  if (p->depth != depth_for (pleaves, p->fanout))
    return -EBADMSG;
  if (pleaves == 0)
    return 0;
  all = calloc (pleaves, sizeof *all);
  if (all == NULL)
    return -ENOMEM;
  if (p->depth == 1)
    all[0] = p->root;
  else {
    int r = collect_leaves (b->repo, b->z, b->node, p->fanout, &p->root,
                            p->depth - 1, pleaves, all);
    if (r < 0)
      return r;
  }
  memcpy (b->leaves, all, (pleaves < b->nleaves ? pleaves : b->nleaves) * sizeof *all);
  return 0;
}

int
vmdr_disk_builder_new (struct vmdr_repo *repo, struct vmdr_zctx *z,
                       uint64_t virtual_size, uint32_t chunk_size,
                       uint32_t fanout, const struct vmdr_disk_tree *parent,
                       struct vmdr_disk_builder **out)
{
  struct vmdr_disk_builder *b;
  int r;

  if (chunk_size < VMDR_CHUNK_MIN || chunk_size > VMDR_CHUNK_MAX ||
      (chunk_size & (chunk_size - 1)) || fanout < 16 || fanout > 4096 ||
      (fanout & (fanout - 1)))
    return -EINVAL;
  b = calloc (1, sizeof *b);
  if (b == NULL)
    return -ENOMEM;
  b->repo = repo;
  b->z = z;
  b->t = (struct vmdr_disk_tree) { .virtual_size = virtual_size,
                                   .chunk_size = chunk_size, .fanout = fanout };
  b->nchunks = vmdr_disk_chunks (virtual_size, chunk_size);
  b->nleaves = (b->nchunks + fanout - 1) / fanout;
  b->t.depth = depth_for (b->nleaves, fanout);
  if (b->t.depth > VMDR_DISK_MAX_DEPTH) {
    free (b);
    return -EINVAL;
  }
  b->leaves = calloc (b->nleaves ? b->nleaves : 1, sizeof *b->leaves);
  b->node = malloc (NODE_HEADER + (size_t) fanout * VMDR_DIGEST_LEN);
  if (b->leaves == NULL || b->node == NULL) {
    vmdr_disk_builder_free (b);
    return -ENOMEM;
  }
  if (parent && (r = load_parent (b, parent)) < 0) {
    vmdr_disk_builder_free (b);
    return r;
  }
  *out = b;
  return 0;
}

void
vmdr_disk_builder_free (struct vmdr_disk_builder *b)
{
  if (b == NULL)
    return;
  for (size_t i = 0; i < b->nopen; i++)
    free (b->open[i].e);
  free (b->open);
  free (b->leaves);
  free (b->node);
  free (b);
}

/* The open leaf NO, loading it from the parent on first use.  A leaf the
 * parent only partly covered (the disk grew) keeps zeros past its end. */
static int
open_leaf (struct vmdr_disk_builder *b, uint64_t no, struct vmdr_digest **e)
{
  uint32_t fanout = b->t.fanout, n;
  struct open_leaf *l;
  int r;

  for (size_t i = b->nopen; i-- > 0;)
    if (b->open[i].no == no) {
      *e = b->open[i].e;
      return 0;
    }
  if (b->nopen == b->open_cap) {
    size_t cap = b->open_cap ? 2 * b->open_cap : 16;
    void *p = reallocarray (b->open, cap, sizeof *b->open);
    if (p == NULL)
      return -ENOMEM;
    b->open = p;
    b->open_cap = cap;
  }
  l = &b->open[b->nopen];
  l->no = no;
  l->e = calloc (fanout, sizeof *l->e);
  if (l->e == NULL)
    return -ENOMEM;
  if (!vmdr_digest_is_zero (&b->leaves[no])) {
    n = leaf_entries (b->parent_chunks, fanout, no);
    r = get_node (b->repo, b->z, b->node, fanout, &b->leaves[no], 0, n, l->e);
    if (r < 0) {
      free (l->e);
      return r;
    }
  }
  b->nopen++;
  *e = l->e;
  return 0;
}

int
vmdr_disk_builder_set (struct vmdr_disk_builder *b, uint64_t index,
                       const struct vmdr_digest *d)
{
  struct vmdr_digest *e;
  int r;

  if (index >= b->nchunks)
    return -ERANGE;
  if ((r = open_leaf (b, index / b->t.fanout, &e)) < 0)
    return r;
  e[index % b->t.fanout] = *d;
  return 0;
}

static int
seal (struct vmdr_disk_builder *b, size_t i)
{
  struct open_leaf *l = &b->open[i];
  uint32_t n = leaf_entries (b->nchunks, b->t.fanout, l->no);
  int r;

  r = put_node (b, 0, l->e, n, &b->leaves[l->no]);
  if (r < 0)
    return r;
  free (l->e);
  b->open[i] = b->open[--b->nopen];
  return 0;
}

int
vmdr_disk_builder_done_below (struct vmdr_disk_builder *b, uint64_t index)
{
  for (size_t i = b->nopen; i-- > 0;) {
    int r;
    if ((b->open[i].no + 1) * b->t.fanout <= index && (r = seal (b, i)) < 0)
      return r;
  }
  return 0;
}

/* When the disk shrank or grew, the parent's last leaf has the wrong entry
 * count for the new tree: rewrite it. */
static int
fix_boundary_leaf (struct vmdr_disk_builder *b)
{
  struct vmdr_digest *e;
  uint64_t last;

  if (b->parent_chunks == 0 || b->parent_chunks == b->nchunks || b->nleaves == 0)
    return 0;
  last = (b->parent_chunks < b->nchunks ? b->parent_chunks : b->nchunks) - 1;
  last /= b->t.fanout;
  if (leaf_entries (b->parent_chunks, b->t.fanout, last) ==
      leaf_entries (b->nchunks, b->t.fanout, last))
    return 0;
  return open_leaf (b, last, &e);
}

int
vmdr_disk_builder_finish (struct vmdr_disk_builder *b, struct vmdr_disk_tree *out)
{
  struct vmdr_digest *level = b->leaves;
  uint64_t n = b->nleaves;
  unsigned lv = 1;
  int r;

  if ((r = fix_boundary_leaf (b)) < 0)
    return r;
  while (b->nopen > 0)
    if ((r = seal (b, b->nopen - 1)) < 0)
      return r;
  /* Interior levels in place: each pass folds FANOUT digests into one. */
  while (n > 1) {
    uint64_t m = (n + b->t.fanout - 1) / b->t.fanout;
    for (uint64_t i = 0; i < m; i++) {
      uint64_t first = i * b->t.fanout;
      uint32_t cnt = (uint32_t) (n - first < b->t.fanout ? n - first : b->t.fanout);
      struct vmdr_digest d;
      if ((r = put_node (b, lv, level + first, cnt, &d)) < 0)
        return r;
      level[i] = d;
    }
    n = m;
    lv++;
  }
  b->t.root = b->nleaves ? level[0] : zero;
  *out = b->t;
  return 0;
}

/* ---- walking ------------------------------------------------------------- */

struct walk {
  struct vmdr_repo *repo;
  struct vmdr_zctx *z;
  const struct vmdr_disk_tree *t;
  uint64_t nchunks;
  uint8_t *buf;
  vmdr_disk_walk_fn fn;
  vmdr_disk_node_fn node_fn;
  void *opaque;
};

/* Node D at LEVEL covers chunks [first, first + count). */
static int
walk_node (struct walk *w, const struct vmdr_digest *d, unsigned level,
           uint64_t first, uint64_t count)
{
  uint32_t fanout = w->t->fanout;
  uint64_t per;                 /* chunks under one entry: fanout^level */
  _cleanup_free_ struct vmdr_digest *e = NULL;
  uint32_t n;
  int r;

  if (vmdr_digest_is_zero (d))
    return w->fn (w->opaque, first, count, NULL);
  if (w->node_fn && (r = w->node_fn (w->opaque, d)) != 0)
    return r > 0 ? 0 : r;
  per = level == 0 ? 1 : (uint64_t) fanout * leaves_per_entry (fanout, level);
  n = (uint32_t) ((count + per - 1) / per);
  e = malloc ((size_t) n * sizeof *e);
  if (e == NULL)
    return -ENOMEM;
  if ((r = get_node (w->repo, w->z, w->buf, fanout, d, level, n, e)) < 0)
    return r;
  if (level == 0)
    return w->fn (w->opaque, first, count, e);
  for (uint32_t i = 0; i < n; i++) {
    uint64_t cnt = i + 1 < n ? per : count - per * i;
    if ((r = walk_node (w, &e[i], level - 1, first + per * i, cnt)) < 0)
      return r;
  }
  return 0;
}

int
vmdr_disk_tree_walk (struct vmdr_repo *repo, struct vmdr_zctx *z,
                     const struct vmdr_disk_tree *t,
                     vmdr_disk_walk_fn fn, void *opaque)
{
  return vmdr_disk_tree_walk_nodes (repo, z, t, NULL, fn, opaque);
}

int
vmdr_disk_tree_walk_nodes (struct vmdr_repo *repo, struct vmdr_zctx *z,
                           const struct vmdr_disk_tree *t,
                           vmdr_disk_node_fn node_fn, vmdr_disk_walk_fn fn,
                           void *opaque)
{
  _cleanup_free_ uint8_t *buf = NULL;
  struct walk w = { .repo = repo, .z = z, .t = t, .fn = fn, .node_fn = node_fn,
                    .opaque = opaque };
  uint64_t nleaves;

  if (t->chunk_size < VMDR_CHUNK_MIN || t->chunk_size > VMDR_CHUNK_MAX ||
      t->fanout < 16 || t->fanout > 4096 || t->depth > VMDR_DISK_MAX_DEPTH)
    return -EBADMSG;
  w.nchunks = vmdr_disk_chunks (t->virtual_size, t->chunk_size);
  nleaves = (w.nchunks + t->fanout - 1) / t->fanout;
  if (t->depth != depth_for (nleaves, t->fanout))
    return -EBADMSG;
  if (w.nchunks == 0)
    return 0;
  buf = malloc (NODE_HEADER + (size_t) t->fanout * VMDR_DIGEST_LEN);
  if (buf == NULL)
    return -ENOMEM;
  w.buf = buf;
  return walk_node (&w, &t->root, t->depth - 1, 0, w.nchunks);
}
