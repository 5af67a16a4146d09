#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cdc.h"
#include "cleanup.h"
#include "endian-util.h"
#include "stream-index.h"

#define NODE_HEADER 16
#define ENTRY_LEN (VMDR_DIGEST_LEN + 8)
/* Chunks in flight may not pin more memory than this, whatever the
 * config's cdc.max (up to 4 MiB) and the thread count. */
#define PIPELINE_BYTES (64u << 20)

static const char node_magic[4] = { 'V', 'M', 'S', '1' };
static const struct vmdr_digest zero;

static bool
all_zero (const uint8_t *p, size_t len)
{
  /* p[0] == 0 and every byte equals its successor. */
  return len == 0 || (p[0] == 0 && memcmp (p, p + 1, len - 1) == 0);
}

/* The fanouts readers accept (the config's range). */
static bool
fanout_ok (uint32_t fanout)
{
  return fanout >= 16 && fanout <= 4096 && (fanout & (fanout - 1)) == 0;
}

static size_t
node_cap (uint32_t fanout)
{
  return NODE_HEADER + (size_t) fanout * ENTRY_LEN;
}

/* Pipeline depth: enough chunks to keep every worker busy while the feeding
 * thread cuts the next ones, within PIPELINE_BYTES. */
static size_t
pipeline_slots (unsigned threads, uint32_t max)
{
  size_t want = 4 * (size_t) threads, cap = PIPELINE_BYTES / max;

  if (cap < threads + 1)
    cap = threads + 1;
  return want < cap ? want : cap;
}

/* ---- node encoding ------------------------------------------------------- */

static size_t
encode_node (uint8_t *p, unsigned level, const struct vmdr_stream_entry *e,
             uint32_t n)
{
  memcpy (p, node_magic, 4);
  p[4] = (uint8_t) level;
  p[5] = p[6] = p[7] = 0;
  put_le32 (p + 8, n);
  put_le32 (p + 12, 0);
  for (uint32_t i = 0; i < n; i++) {
    uint8_t *q = p + NODE_HEADER + (size_t) i * ENTRY_LEN;
    memcpy (q, &e[i].d, VMDR_DIGEST_LEN);
    put_le64 (q + VMDR_DIGEST_LEN, e[i].len);
  }
  return node_cap (n);
}

/* Check the node of RAW_LEN bytes at P against what its parent says: LEVEL,
 * LEN bytes under it, full unless on the right spine (SPINE), at least two
 * entries when it is an interior root.  Entries go to E, their count to *n. */
static int
decode_node (const uint8_t *p, size_t raw_len, uint32_t fanout, uint32_t cdc_max,
             unsigned level, uint64_t len, bool spine, bool root,
             struct vmdr_stream_entry *e, uint32_t *n)
{
  uint64_t sum = 0;
  uint32_t cnt;

  if (raw_len < NODE_HEADER || memcmp (p, node_magic, 4) != 0 || p[4] != level ||
      p[5] || p[6] || p[7] || get_le32 (p + 12) != 0)
    return -EBADMSG;
  cnt = get_le32 (p + 8);
  if (cnt < 1 || cnt > fanout || raw_len != node_cap (cnt) ||
      (!spine && cnt != fanout) || (root && level > 0 && cnt < 2))
    return -EBADMSG;
  for (uint32_t i = 0; i < cnt; i++) {
    const uint8_t *q = p + NODE_HEADER + (size_t) i * ENTRY_LEN;
    memcpy (&e[i].d, q, VMDR_DIGEST_LEN);
    e[i].len = get_le64 (q + VMDR_DIGEST_LEN);
    if (e[i].len == 0 || (level == 0 && e[i].len > cdc_max) ||
        e[i].len > UINT64_MAX - sum)
      return -EBADMSG;
    sum += e[i].len;
  }
  if (sum != len)
    return -EBADMSG;
  *n = cnt;
  return 0;
}

/* ---- building the tree ----------------------------------------------------- */

/* The open node of each level: entries wait here until FANOUT of them make
 * a node, whose entry goes one level up. */
struct builder {
  struct vmdr_repo *repo;
  struct vmdr_zctx *z;
  uint32_t fanout;
  struct vmdr_stream_entry *lv[VMDR_STREAM_MAX_DEPTH + 1];
  uint32_t n[VMDR_STREAM_MAX_DEPTH + 1];
  uint8_t *node;                /* scratch: one encoded node */
  uint64_t nodes_new;
};

static void
builder_free (struct builder *b)
{
  for (unsigned k = 0; k <= VMDR_STREAM_MAX_DEPTH; k++)
    free (b->lv[k]);
  free (b->node);
}

/* Store the node of level K made of the open entries (unless all are zero:
 * then the subtree is the zero digest) and return its entry. */
static int
put_node (struct builder *b, unsigned k, struct vmdr_stream_entry *out)
{
  const struct vmdr_repo_config *cfg = vmdr_repo_config (b->repo);
  uint64_t sum = 0;
  bool zeros = true;
  size_t len, stored;
  int r;

  for (uint32_t i = 0; i < b->n[k]; i++) {
    sum += b->lv[k][i].len;
    zeros = zeros && vmdr_digest_is_zero (&b->lv[k][i].d);
  }
  out->len = sum;
  out->d = zero;
  if (zeros)
    return 0;
  len = encode_node (b->node, k, b->lv[k], b->n[k]);
  if ((r = vmdr_digest (cfg->hash, b->node, len, &out->d)) < 0 ||
      (r = vmdr_repo_put_chunk (b->repo, b->z, VMDR_BLOB_STREAM_NODE, &out->d,
                                b->node, len, &stored)) < 0)
    return r;
  b->nodes_new += stored != 0;
  return 0;
}

static int builder_add (struct builder *b, unsigned k,
                        const struct vmdr_stream_entry *e);

/* Close the open node of level K, handing its entry to level K + 1. */
static int
builder_emit (struct builder *b, unsigned k)
{
  struct vmdr_stream_entry up;
  int r;

  if (k + 1 > VMDR_STREAM_MAX_DEPTH)
    return -EFBIG;
  if ((r = put_node (b, k, &up)) < 0)
    return r;
  b->n[k] = 0;
  return builder_add (b, k + 1, &up);
}

static int
builder_add (struct builder *b, unsigned k, const struct vmdr_stream_entry *e)
{
  if (b->lv[k] == NULL && (b->lv[k] = calloc (b->fanout, sizeof *e)) == NULL)
    return -ENOMEM;
  b->lv[k][b->n[k]++] = *e;
  return b->n[k] == b->fanout ? builder_emit (b, k) : 0;
}

static bool
open_above (const struct builder *b, unsigned k)
{
  for (unsigned j = k + 1; j <= VMDR_STREAM_MAX_DEPTH; j++)
    if (b->n[j] > 0)
      return true;
  return false;
}

/* Close the open nodes bottom up until one entry is left at the top: the
 * root.  Every node but the last of each level is full, and the depth is
 * the smallest that holds all chunks, so equal streams get equal roots. */
static int
builder_finish (struct builder *b, struct vmdr_stream_tree *t)
{
  int r;

  *t = (struct vmdr_stream_tree) { .fanout = b->fanout };
  for (unsigned k = 0; k <= VMDR_STREAM_MAX_DEPTH; k++) {
    bool above = open_above (b, k);
    if (!above && b->n[k] == 0)
      return 0;                 /* no chunks: the empty stream */
    if (!above && k >= 1 && b->n[k] == 1) {
      t->root = b->lv[k][0].d;
      t->size = b->lv[k][0].len;
      t->depth = k;
      return 0;
    }
    if (b->n[k] > 0 && (r = builder_emit (b, k)) < 0)
      return r;
  }
  return -EFBIG;
}

/* ---- writing ------------------------------------------------------------- */

/* A chunk in the pipeline.  The feeding thread fills it, a worker hashes
 * and stores it (done), the feeding thread collects it in stream order. */
struct slot {
  uint8_t *buf;                 /* cdc.max bytes, owned by the slot */
  size_t len;
  struct vmdr_digest d;         /* zero digest for an all-zero chunk */
  size_t stored;
  bool done;
};

struct vmdr_stream_writer {
  struct vmdr_repo *repo;
  struct vmdr_cdc cdc;
  uint8_t *cur;                 /* the chunk being cut */
  size_t cur_len;
  struct builder b;
  struct vmdr_stream_write_stats st;
  int failed;                   /* the feeding thread's first error */
  bool finished;

  pthread_mutex_t lock;         /* everything below */
  pthread_cond_t work, done;
  struct slot *ring;
  size_t nslots;
  uint64_t head, next, tail;    /* collected < head <= next (taken) <= tail (filled) */
  bool closing;                 /* no more chunks will come */
  int err;                      /* the first error anyone met: all stop */
  pthread_t tids[VMDR_MAX_THREADS];
  unsigned nthreads;
};

/* Under the lock. */
static void
set_err (struct vmdr_stream_writer *w, int r)
{
  if (w->err == 0)
    w->err = r;
  pthread_cond_broadcast (&w->work);
  pthread_cond_broadcast (&w->done);
}

static int
store_chunk (struct vmdr_repo *repo, struct vmdr_zctx *z, struct slot *s)
{
  int r;

  s->d = zero;
  s->stored = 0;
  if (all_zero (s->buf, s->len))
    return 0;
  if ((r = vmdr_digest (vmdr_repo_config (repo)->hash, s->buf, s->len, &s->d)) < 0)
    return r;
  return vmdr_repo_put_chunk (repo, z, VMDR_BLOB_DATA, &s->d, s->buf, s->len,
                              &s->stored);
}

static void *
write_worker (void *opaque)
{
  struct vmdr_stream_writer *w = opaque;
  struct vmdr_zctx *z = NULL;
  int r = vmdr_zctx_new (vmdr_repo_config (w->repo)->zstd_level, &z);

  pthread_mutex_lock (&w->lock);
  if (r < 0)
    set_err (w, r);
  while (w->err == 0) {
    if (w->next < w->tail) {
      struct slot *s = &w->ring[w->next++ % w->nslots];
      pthread_mutex_unlock (&w->lock);
      r = store_chunk (w->repo, z, s);
      pthread_mutex_lock (&w->lock);
      if (r < 0)
        set_err (w, r);
      s->done = true;
      pthread_cond_broadcast (&w->done);
    }
    else if (w->closing)
      break;
    else
      pthread_cond_wait (&w->work, &w->lock);
  }
  pthread_mutex_unlock (&w->lock);
  vmdr_zctx_free (z);
  return NULL;
}

/* Add the oldest chunk, done, to the index.  Called with the lock held;
 * drops it while the builder may write nodes. */
static int
collect_head (struct vmdr_stream_writer *w)
{
  struct slot *s = &w->ring[w->head % w->nslots];
  struct vmdr_stream_entry e = { s->d, s->len };
  int r;

  w->head++;
  w->st.chunks++;
  if (vmdr_digest_is_zero (&e.d))
    w->st.chunks_zero++;
  else if (s->stored) {
    w->st.chunks_new++;
    w->st.bytes_new += s->stored;
  }
  pthread_mutex_unlock (&w->lock);
  r = builder_add (&w->b, 0, &e);
  pthread_mutex_lock (&w->lock);
  if (r < 0)
    set_err (w, r);
  return r;
}

/* Hand the chunk being cut to the workers, collecting finished chunks and
 * waiting for a free slot as needed. */
static int
submit (struct vmdr_stream_writer *w)
{
  int r = 0;

  pthread_mutex_lock (&w->lock);
  for (;;) {
    if (w->err) {
      r = w->err;
      break;
    }
    if (w->head < w->tail && w->ring[w->head % w->nslots].done)
      collect_head (w);
    else if (w->tail - w->head < w->nslots) {
      struct slot *s = &w->ring[w->tail++ % w->nslots];
      uint8_t *buf = s->buf;    /* a collected slot's buffer is free */
      s->buf = w->cur;
      s->len = w->cur_len;
      s->done = false;
      w->cur = buf;
      w->cur_len = 0;
      pthread_cond_signal (&w->work);
      break;
    }
    else
      pthread_cond_wait (&w->done, &w->lock);
  }
  pthread_mutex_unlock (&w->lock);
  return r;
}

/* Collect every chunk handed over so far. */
static int
drain (struct vmdr_stream_writer *w)
{
  int r;

  pthread_mutex_lock (&w->lock);
  while (w->err == 0 && w->head < w->tail) {
    if (w->ring[w->head % w->nslots].done)
      collect_head (w);
    else
      pthread_cond_wait (&w->done, &w->lock);
  }
  r = w->err;
  pthread_mutex_unlock (&w->lock);
  return r;
}

static void
stop_workers (struct vmdr_stream_writer *w)
{
  pthread_mutex_lock (&w->lock);
  w->closing = true;
  pthread_cond_broadcast (&w->work);
  pthread_mutex_unlock (&w->lock);
  for (unsigned i = 0; i < w->nthreads; i++)
    pthread_join (w->tids[i], NULL);
  w->nthreads = 0;
}

static int
writer_alloc (struct vmdr_stream_writer *w, unsigned threads)
{
  const struct vmdr_repo_config *cfg = vmdr_repo_config (w->repo);
  int r;

  if ((r = vmdr_cdc_init (&w->cdc, cfg->cdc_min, cfg->cdc_avg, cfg->cdc_max)) < 0)
    return r;
  if (!fanout_ok (cfg->fanout))
    return -EINVAL;
  w->b = (struct builder) { .repo = w->repo, .fanout = cfg->fanout };
  if ((r = vmdr_zctx_new (cfg->zstd_level, &w->b.z)) < 0)
    return r;
  w->nslots = pipeline_slots (threads, cfg->cdc_max);
  w->ring = calloc (w->nslots, sizeof *w->ring);
  w->cur = malloc (cfg->cdc_max);
  w->b.node = malloc (node_cap (cfg->fanout));
  if (w->ring == NULL || w->cur == NULL || w->b.node == NULL)
    return -ENOMEM;
  for (size_t i = 0; i < w->nslots; i++)
    if ((w->ring[i].buf = malloc (cfg->cdc_max)) == NULL)
      return -ENOMEM;
  return 0;
}

int
vmdr_stream_writer_new (struct vmdr_repo *repo, unsigned threads,
                        struct vmdr_stream_writer **out)
{
  struct vmdr_stream_writer *w;
  int r;

  if (threads < 1 || threads > VMDR_MAX_THREADS)
    return -EINVAL;
  if ((w = calloc (1, sizeof *w)) == NULL)
    return -ENOMEM;
  w->repo = repo;
  pthread_mutex_init (&w->lock, NULL);
  pthread_cond_init (&w->work, NULL);
  pthread_cond_init (&w->done, NULL);
  if ((r = writer_alloc (w, threads)) < 0) {
    vmdr_stream_writer_free (w);
    return r;
  }
  for (; w->nthreads < threads; w->nthreads++)
    if (pthread_create (&w->tids[w->nthreads], NULL, write_worker, w) != 0)
      break;
  if (w->nthreads == 0) {
    vmdr_stream_writer_free (w);
    return -EAGAIN;
  }
  *out = w;
  return 0;
}

void
vmdr_stream_writer_free (struct vmdr_stream_writer *w)
{
  if (w == NULL)
    return;
  pthread_mutex_lock (&w->lock);
  set_err (w, -ECANCELED);      /* workers still running leave the rest */
  pthread_mutex_unlock (&w->lock);
  stop_workers (w);
  for (size_t i = 0; w->ring && i < w->nslots; i++)
    free (w->ring[i].buf);
  free (w->ring);
  free (w->cur);
  builder_free (&w->b);
  vmdr_zctx_free (w->b.z);
  pthread_cond_destroy (&w->work);
  pthread_cond_destroy (&w->done);
  pthread_mutex_destroy (&w->lock);
  free (w);
}

int
vmdr_stream_writer_feed (struct vmdr_stream_writer *w, const void *buf, size_t len)
{
  const uint8_t *p = buf;

  if (w->failed == 0 && w->finished)
    w->failed = -EINVAL;
  while (w->failed == 0 && len > 0) {
    bool cut;
    size_t n = vmdr_cdc_feed (&w->cdc, p, len, &cut);
    memcpy (w->cur + w->cur_len, p, n);
    w->cur_len += n;
    w->st.bytes += n;
    p += n;
    len -= n;
    if (cut && w->cur_len > 0)
      w->failed = submit (w);
  }
  return w->failed;
}

int
vmdr_stream_writer_finish (struct vmdr_stream_writer *w,
                           struct vmdr_stream_tree *tree,
                           struct vmdr_stream_write_stats *st)
{
  struct vmdr_stream_tree t;
  int r;

  if (w->failed)
    return w->failed;
  if (w->finished)
    return -EINVAL;
  w->finished = true;
  if ((w->cur_len > 0 && (r = submit (w)) < 0) || (r = drain (w)) < 0)
    return w->failed = r;
  stop_workers (w);
  if ((r = builder_finish (&w->b, &t)) < 0)
    return w->failed = r;
  if (t.size != w->st.bytes)
    return w->failed = -EIO;    /* cannot happen: the builder lost bytes */
  w->st.nodes_new = w->b.nodes_new;
  *tree = t;
  if (st)
    *st = w->st;
  return 0;
}

int
vmdr_stream_write_fd (struct vmdr_repo *repo, int fd, unsigned threads,
                      vmdr_progress_fn progress, void *popaque,
                      struct vmdr_stream_tree *tree,
                      struct vmdr_stream_write_stats *st)
{
  const size_t cap = 1u << 20;
  _cleanup_free_ uint8_t *buf = malloc (cap);
  struct vmdr_stream_writer *w = NULL;
  uint64_t total = 0;
  int r;

  if (buf == NULL)
    return -ENOMEM;
  if ((r = vmdr_stream_writer_new (repo, threads, &w)) < 0)
    return r;
  for (;;) {
    ssize_t n = read (fd, buf, cap);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      r = -errno;
      break;
    }
    if (n == 0) {
      r = vmdr_stream_writer_finish (w, tree, st);
      break;
    }
    if ((r = vmdr_stream_writer_feed (w, buf, (size_t) n)) < 0)
      break;
    total += (uint64_t) n;
    if (progress)
      progress (popaque, total, 0);
  }
  vmdr_stream_writer_free (w);
  return r;
}

/* ---- walking ------------------------------------------------------------- */

struct walk {
  struct vmdr_repo *repo;
  struct vmdr_zctx *z;
  const struct vmdr_stream_tree *t;
  uint32_t cdc_max;
  uint8_t *buf;                 /* one node's bytes */
  struct vmdr_stream_entry *e;  /* fanout entries per level */
  vmdr_stream_walk_fn fn;
  vmdr_stream_node_fn node_fn;  /* may be NULL */
  void *opaque;
  bool bad;                     /* a node was damaged: */
  struct vmdr_restore_error where;  /* the stream offset under it, its digest */
};

static int
read_node (struct walk *w, const struct vmdr_stream_entry *parent, unsigned level,
           bool spine, struct vmdr_stream_entry *e, uint32_t *n)
{
  uint32_t fanout = w->t->fanout;
  size_t len;
  int r;

  r = vmdr_repo_get_chunk (w->repo, w->z, &parent->d, w->buf, node_cap (fanout), &len);
  if (r == -ENOBUFS)
    return -EBADMSG;            /* bigger than any node of this fanout */
  if (r < 0)
    return r;
  return decode_node (w->buf, len, fanout, w->cdc_max, level, parent->len, spine,
                      level + 1 == w->t->depth, e, n);
}

/* The subtree of entry ENT, a node at LEVEL, covering the stream from OFF. */
static int
walk_node (struct walk *w, const struct vmdr_stream_entry *ent, unsigned level,
           bool spine, uint64_t off)
{
  struct vmdr_stream_entry *e = w->e + (size_t) level * w->t->fanout;
  uint32_t n;
  int r;

  if (vmdr_digest_is_zero (&ent->d))
    return w->fn (w->opaque, off, ent, 1);
  if (w->node_fn && (r = w->node_fn (w->opaque, &ent->d)) != 0)
    return r > 0 ? 0 : r;
  if ((r = read_node (w, ent, level, spine, e, &n)) < 0) {
    if (!w->bad) {
      w->bad = true;
      w->where = (struct vmdr_restore_error) { true, off, ent->d };
    }
    return r;
  }
  if (level == 0)
    return w->fn (w->opaque, off, e, n);
  for (uint32_t i = 0; i < n; i++) {
    if ((r = walk_node (w, &e[i], level - 1, spine && i + 1 == n, off)) < 0)
      return r;
    off += e[i].len;
  }
  return 0;
}

static int
walk_tree (struct walk *w)
{
  const struct vmdr_stream_tree *t = w->t;
  struct vmdr_stream_entry root = { t->root, t->size };
  _cleanup_free_ uint8_t *buf = NULL;
  _cleanup_free_ struct vmdr_stream_entry *e = NULL;

  if (!fanout_ok (t->fanout) || t->depth > VMDR_STREAM_MAX_DEPTH || (t->depth == 0) != (t->size == 0) ||
      (t->depth == 0 && !vmdr_digest_is_zero (&t->root)))
    return -EBADMSG;
  if (t->depth == 0)
    return 0;
  buf = malloc (node_cap (t->fanout));
  e = calloc ((size_t) t->depth * t->fanout, sizeof *e);
  if (buf == NULL || e == NULL)
    return -ENOMEM;
  w->cdc_max = vmdr_repo_config (w->repo)->cdc_max;
  w->buf = buf;
  w->e = e;
  return walk_node (w, &root, t->depth - 1, true, 0);
}

int
vmdr_stream_tree_walk (struct vmdr_repo *repo, struct vmdr_zctx *z,
                       const struct vmdr_stream_tree *tree,
                       vmdr_stream_walk_fn fn, void *opaque)
{
  return vmdr_stream_tree_walk_nodes (repo, z, tree, NULL, fn, opaque);
}

int
vmdr_stream_tree_walk_nodes (struct vmdr_repo *repo, struct vmdr_zctx *z,
                             const struct vmdr_stream_tree *tree,
                             vmdr_stream_node_fn node_fn, vmdr_stream_walk_fn fn,
                             void *opaque)
{
  struct walk w = { .repo = repo, .z = z, .t = tree, .fn = fn, .node_fn = node_fn,
                    .opaque = opaque };

  return walk_tree (&w);
}

/* ---- restoring ------------------------------------------------------------ */

/* A chunk on its way out: queued by the walk, fetched and verified by a
 * worker (zero entries need no fetch and are done at once), written in
 * order by the walking thread. */
struct rslot {
  struct vmdr_stream_entry e;
  uint64_t off;
  uint8_t *buf;                 /* cdc.max bytes */
  int err;
  bool done;
};

struct restorer {
  struct vmdr_repo *repo;
  int fd;
  bool holes;                   /* zero runs may be skipped with lseek */
  uint32_t cdc_max;
  struct vmdr_stream_read_stats st;
  bool bad;                     /* a chunk was damaged or missing: */
  struct vmdr_restore_error where;

  pthread_mutex_t lock;         /* everything below */
  pthread_cond_t work, done;
  struct rslot *ring;
  size_t nslots;
  uint64_t head, next, tail;    /* written < head; next: the next to fetch */
  bool closing;
  int err;                      /* a worker could not start */
};

static void *
restore_worker (void *opaque)
{
  struct restorer *r = opaque;
  struct vmdr_zctx *z = NULL;
  int e = vmdr_zctx_new (1, &z);

  pthread_mutex_lock (&r->lock);
  if (e < 0 && r->err == 0)
    r->err = e;
  while (r->err == 0) {
    struct rslot *s;
    size_t len;
    if (r->next < r->head)
      r->next = r->head;        /* those were written, zero ones unfetched */
    while (r->next < r->tail && r->ring[r->next % r->nslots].done)
      r->next++;
    if (r->next == r->tail) {
      if (r->closing)
        break;
      pthread_cond_wait (&r->work, &r->lock);
      continue;
    }
    s = &r->ring[r->next++ % r->nslots];
    pthread_mutex_unlock (&r->lock);
    e = vmdr_repo_get_chunk (r->repo, z, &s->e.d, s->buf, r->cdc_max, &len);
    if (e == -ENOBUFS || (e == 0 && len != s->e.len))
      e = -EBADMSG;             /* not the chunk its entry describes */
    pthread_mutex_lock (&r->lock);
    s->err = e;
    s->done = true;
    pthread_cond_broadcast (&r->done);
  }
  pthread_cond_broadcast (&r->done);
  pthread_mutex_unlock (&r->lock);
  vmdr_zctx_free (z);
  return NULL;
}

static int
write_all (int fd, const void *buf, size_t len)
{
  const uint8_t *p = buf;

  while (len > 0) {
    ssize_t n = write (fd, p, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -errno;
    p += n;
    len -= (size_t) n;
  }
  return 0;
}

static int
write_zeros (struct restorer *r, uint64_t len)
{
  static const uint8_t zeros[64 << 10];
  int e;

  if (r->holes)
    return lseek (r->fd, (off_t) len, SEEK_CUR) < 0 ? -errno : 0;
  while (len > 0) {
    size_t n = len < sizeof zeros ? (size_t) len : sizeof zeros;
    if ((e = write_all (r->fd, zeros, n)) < 0)
      return e;
    len -= n;
  }
  return 0;
}

/* Write out slot S, done.  Without the lock: S is the walking thread's. */
static int
emit_slot (struct restorer *r, const struct rslot *s)
{
  bool zero_run = vmdr_digest_is_zero (&s->e.d);
  int e = s->err;

  if (e < 0) {
    r->bad = true;
    r->where = (struct vmdr_restore_error) { true, s->off, s->e.d };
    return e;
  }
  if (r->fd >= 0)
    e = zero_run ? write_zeros (r, s->e.len) : write_all (r->fd, s->buf, s->e.len);
  if (e < 0)
    return e;
  if (zero_run)
    r->st.bytes_zero += s->e.len;
  else {
    r->st.chunks++;
    r->st.bytes += s->e.len;
  }
  return 0;
}

/* Write the oldest slot once it is done.  With the lock held; drops it
 * while writing.  Returns 1 when it waited instead. */
static int
emit_head (struct restorer *r)
{
  struct rslot *s = &r->ring[r->head % r->nslots];
  int e;

  if (r->err)
    return r->err;
  if (!s->done) {
    pthread_cond_wait (&r->done, &r->lock);
    return 1;
  }
  pthread_mutex_unlock (&r->lock);
  e = emit_slot (r, s);
  pthread_mutex_lock (&r->lock);
  r->head++;
  return e;
}

/* Walk callback: queue the entries of a leaf, writing out what is done to
 * make room. */
static int
queue_leaf (void *opaque, uint64_t off, const struct vmdr_stream_entry *e, size_t n)
{
  struct restorer *r = opaque;
  int ret = 0;

  pthread_mutex_lock (&r->lock);
  for (size_t i = 0; i < n && ret >= 0; i++) {
    struct rslot *s;
    while (ret >= 0 && r->tail - r->head == r->nslots)
      ret = emit_head (r);
    if (ret < 0)
      break;
    ret = 0;
    s = &r->ring[r->tail++ % r->nslots];
    s->e = e[i];
    s->off = off;
    s->err = 0;
    s->done = vmdr_digest_is_zero (&e[i].d);
    off += e[i].len;
    if (!s->done)
      pthread_cond_signal (&r->work);
  }
  pthread_mutex_unlock (&r->lock);
  return ret < 0 ? ret : 0;
}

static int
drain_restore (struct restorer *r)
{
  int e = 0;

  pthread_mutex_lock (&r->lock);
  while (e >= 0 && r->head < r->tail)
    e = emit_head (r);
  pthread_mutex_unlock (&r->lock);
  return e < 0 ? e : 0;
}

/* Zero runs become holes only where nothing is there to overwrite: a
 * regular file written at or past its end, and not in append mode. */
static bool
can_punch (int fd)
{
  struct stat st;
  off_t pos;
  int fl;

  if (fd < 0 || fstat (fd, &st) < 0 || !S_ISREG (st.st_mode) ||
      (fl = fcntl (fd, F_GETFL)) < 0 || (fl & O_APPEND) ||
      (pos = lseek (fd, 0, SEEK_CUR)) < 0)
    return false;
  return st.st_size <= pos;
}

/* The end of a file that ends in a hole is where the stream ends. */
static int
finish_file (struct restorer *r)
{
  struct stat st;
  off_t pos;

  if (r->fd < 0 || fstat (r->fd, &st) < 0 || !S_ISREG (st.st_mode))
    return 0;
  if (r->holes) {
    if ((pos = lseek (r->fd, 0, SEEK_CUR)) < 0)
      return -errno;
    if (st.st_size < pos && ftruncate (r->fd, pos) < 0)
      return -errno;
  }
  return fsync (r->fd) < 0 ? -errno : 0;
}

static int
restorer_start (struct restorer *r, unsigned threads, pthread_t *tids,
                unsigned *started)
{
  r->nslots = pipeline_slots (threads, r->cdc_max);
  if ((r->ring = calloc (r->nslots, sizeof *r->ring)) == NULL)
    return -ENOMEM;
  for (size_t i = 0; i < r->nslots; i++)
    if ((r->ring[i].buf = malloc (r->cdc_max)) == NULL)
      return -ENOMEM;
  for (*started = 0; *started < threads; (*started)++)
    if (pthread_create (&tids[*started], NULL, restore_worker, r) != 0)
      break;
  return *started ? 0 : -EAGAIN;
}

static void
restorer_stop (struct restorer *r, pthread_t *tids, unsigned started)
{
  pthread_mutex_lock (&r->lock);
  r->closing = true;
  if (r->err == 0)
    r->err = -ECANCELED;        /* only reached once every slot is out */
  pthread_cond_broadcast (&r->work);
  pthread_mutex_unlock (&r->lock);
  for (unsigned i = 0; i < started; i++)
    pthread_join (tids[i], NULL);
  for (size_t i = 0; r->ring && i < r->nslots; i++)
    free (r->ring[i].buf);
  free (r->ring);
}

int
vmdr_stream_restore (struct vmdr_repo *repo, const struct vmdr_stream_tree *tree,
                     int fd, unsigned threads, struct vmdr_stream_read_stats *st,
                     struct vmdr_restore_error *err)
{
  struct restorer r = { .repo = repo, .fd = fd, .holes = can_punch (fd),
                        .cdc_max = vmdr_repo_config (repo)->cdc_max };
  struct walk w = { .repo = repo, .t = tree, .fn = queue_leaf, .opaque = &r };
  pthread_t tids[VMDR_MAX_THREADS];
  unsigned started = 0;
  int e;

  if (threads < 1 || threads > VMDR_MAX_THREADS)
    return -EINVAL;
  if ((e = vmdr_zctx_new (1, &w.z)) < 0)
    return e;
  pthread_mutex_init (&r.lock, NULL);
  pthread_cond_init (&r.work, NULL);
  pthread_cond_init (&r.done, NULL);
  if ((e = restorer_start (&r, threads, tids, &started)) == 0 &&
      (e = walk_tree (&w)) == 0 && (e = drain_restore (&r)) == 0)
    e = finish_file (&r);
  restorer_stop (&r, tids, started);
  if (e < 0 && err && (r.bad || w.bad))
    *err = r.bad ? r.where : w.where;
  if (e == 0 && st)
    *st = r.st;
  pthread_cond_destroy (&r.work);
  pthread_cond_destroy (&r.done);
  pthread_mutex_destroy (&r.lock);
  vmdr_zctx_free (w.z);
  return e;
}
