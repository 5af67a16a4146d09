#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "disk-io.h"

static bool
all_zero (const uint8_t *p, size_t len)
{
  /* p[0] == 0 and every byte equals its successor. */
  return len == 0 || (p[0] == 0 && memcmp (p, p + 1, len - 1) == 0);
}

static size_t
chunk_len (uint64_t size, uint32_t chunk, uint64_t index)
{
  uint64_t off = index * chunk;
  return size - off < chunk ? (size_t) (size - off) : chunk;
}

/* ---- writing ------------------------------------------------------------- */

struct writer {
  struct vmdr_repo *repo;
  const struct vmdr_disk_source *src;
  uint32_t chunk;
  uint64_t nchunks;
  unsigned threads;

  pthread_mutex_t lock;         /* everything below */
  size_t range;                 /* cursor: ranges[range], chunk next */
  uint64_t next;
  uint64_t busy[VMDR_MAX_THREADS];  /* lowest chunk each worker holds, or UINT64_MAX */
  uint64_t busy_end[VMDR_MAX_THREADS];
  struct vmdr_disk_builder *builder;
  struct vmdr_disk_write_stats st;
  vmdr_progress_fn progress;
  void *popaque;
  uint64_t total;               /* bytes the ranges cover */
  uint64_t since_seal;
  int err;
};

struct worker_arg {
  struct writer *w;
  unsigned no;
};

/* Consecutive chunks a worker reads at once: about 1 MiB per read, so
 * that readers (files, NBD) see large requests. */
static uint64_t
batch_chunks (uint32_t chunk)
{
  return chunk >= (1u << 20) ? 1 : (1u << 20) / chunk;
}

/* Next run of chunks to read (*count of them from *index), or false at the
 * end.  Under the lock. */
static bool
take (struct writer *w, uint64_t *index, uint64_t *count)
{
  const struct vmdr_disk_source *s = w->src;
  uint64_t end = w->nchunks;

  if (!s->all) {
    for (;; w->range++) {
      if (w->range == s->nranges)
        return false;
      const struct vmdr_chunk_range *r = &s->ranges[w->range];
      if (w->next < r->first)
        w->next = r->first;
      if (w->next < r->first + r->count && w->next < w->nchunks) {
        end = r->first + r->count < end ? r->first + r->count : end;
        break;
      }
    }
  }
  if (w->next >= end)
    return false;
  *index = w->next;
  *count = end - w->next < batch_chunks (w->chunk) ? end - w->next : batch_chunks (w->chunk);
  w->next += *count;
  return true;
}

/* Chunks below the lowest one still being worked on are final. */
static int
seal_done (struct writer *w)
{
  uint64_t low = w->next;

  for (unsigned i = 0; i < w->threads; i++)
    if (w->busy[i] < low)
      low = w->busy[i];
  return vmdr_disk_builder_done_below (w->builder, low);
}

/* Record a finished chunk.  Under the lock. */
static int
finish_chunk (struct writer *w, uint64_t index,
              const struct vmdr_digest *d, size_t len, size_t stored, bool zero)
{
  int r;

  w->st.chunks_read++;
  w->st.bytes_read += len;
  if (zero)
    w->st.chunks_zero++;
  else if (stored) {
    w->st.chunks_new++;
    w->st.bytes_new += stored;
  }
  if (w->progress)
    w->progress (w->popaque, w->st.bytes_read, w->total);
  if ((r = vmdr_disk_builder_set (w->builder, index, d)) < 0)
    return r;
  /* Sealing walks the open leaves: do it now and then, not per chunk. */
  if (++w->since_seal >= 256) {
    w->since_seal = 0;
    return seal_done (w);
  }
  return 0;
}

/* Hash, store and record one chunk already read into BUF. */
static int
do_chunk (struct writer *w, unsigned no, struct vmdr_zctx *z, uint8_t *buf,
          uint64_t index)
{
  const struct vmdr_repo_config *cfg = vmdr_repo_config (w->repo);
  size_t len = chunk_len (w->src->virtual_size, w->chunk, index), stored = 0;
  struct vmdr_digest d = { 0 };
  bool zero;
  int r;

  zero = all_zero (buf, len);
  if (!zero) {
    if ((r = vmdr_digest (cfg->hash, buf, len, &d)) < 0 ||
        (r = vmdr_repo_put_chunk (w->repo, z, VMDR_BLOB_DATA, &d, buf, len,
                                  &stored)) < 0)
      return r;
  }
  pthread_mutex_lock (&w->lock);
  w->busy[no] = index + 1 < w->busy_end[no] ? index + 1 : UINT64_MAX;
  r = w->err ? w->err : finish_chunk (w, index, &d, len, stored, zero);
  if (r < 0 && w->err == 0)
    w->err = r;
  pthread_mutex_unlock (&w->lock);
  return r;
}

/* One read for COUNT chunks from INDEX (the last may be short). */
static int
read_batch (struct writer *w, unsigned no, uint8_t *buf, uint64_t index, uint64_t count)
{
  uint64_t off = index * w->chunk, end = (index + count) * w->chunk;

  if (end > w->src->virtual_size)
    end = w->src->virtual_size;
  return w->src->read (w->src->opaque, no, buf, (size_t) (end - off), off);
}

static void *
write_worker (void *opaque)
{
  struct worker_arg *a = opaque;
  struct writer *w = a->w;
  struct vmdr_zctx *z = NULL;
  uint8_t *buf = malloc ((size_t) batch_chunks (w->chunk) * w->chunk);
  uint64_t index, count;
  int r = buf ? vmdr_zctx_new (vmdr_repo_config (w->repo)->zstd_level, &z) : -ENOMEM;

  for (;;) {
    bool more;
    pthread_mutex_lock (&w->lock);
    if (r < 0 && w->err == 0)
      w->err = r;
    more = w->err == 0 && take (w, &index, &count);
    if (more) {
      w->busy[a->no] = index;
      w->busy_end[a->no] = index + count;
    }
    pthread_mutex_unlock (&w->lock);
    if (!more)
      break;
    r = read_batch (w, a->no, buf, index, count);
    for (uint64_t i = 0; r == 0 && i < count; i++)
      r = do_chunk (w, a->no, z, buf + i * w->chunk, index + i);
  }
  vmdr_zctx_free (z);
  free (buf);
  return NULL;
}

/* Bytes the source's ranges cover, for progress. */
static uint64_t
src_total (const struct vmdr_disk_source *s, uint32_t chunk)
{
  uint64_t n = 0;

  if (s->all)
    return s->virtual_size;
  for (size_t i = 0; i < s->nranges; i++)
    n += s->ranges[i].count * chunk;
  return n < s->virtual_size ? n : s->virtual_size;
}

int
vmdr_disk_write (struct vmdr_repo *repo, const struct vmdr_disk_source *src,
                 const struct vmdr_disk_tree *parent, unsigned threads,
                 vmdr_progress_fn progress, void *popaque,
                 struct vmdr_disk_tree *out, struct vmdr_disk_write_stats *st)
{
  const struct vmdr_repo_config *cfg = vmdr_repo_config (repo);
  struct writer w = { .repo = repo, .src = src, .chunk = cfg->chunk_size,
                      .threads = threads, .progress = progress,
                      .popaque = popaque };
  struct worker_arg args[VMDR_MAX_THREADS];
  pthread_t tids[VMDR_MAX_THREADS];
  struct vmdr_zctx *z = NULL;
  unsigned started = 0;
  int r;

  if (threads < 1 || threads > VMDR_MAX_THREADS)
    return -EINVAL;
  w.nchunks = vmdr_disk_chunks (src->virtual_size, w.chunk);
  w.total = src_total (src, w.chunk);
  if ((r = vmdr_zctx_new (cfg->zstd_level, &z)) < 0)
    return r;
  r = vmdr_disk_builder_new (repo, z, src->virtual_size, w.chunk, cfg->fanout,
                             parent, &w.builder);
  if (r < 0) {
    vmdr_zctx_free (z);
    return r;
  }
  for (unsigned i = 0; i < VMDR_MAX_THREADS; i++)
    w.busy[i] = UINT64_MAX;
  pthread_mutex_init (&w.lock, NULL);
  for (; started < threads; started++) {
    args[started] = (struct worker_arg) { .w = &w, .no = started };
    if (pthread_create (&tids[started], NULL, write_worker, &args[started]) != 0) {
      pthread_mutex_lock (&w.lock);
      w.err = -EAGAIN;
      pthread_mutex_unlock (&w.lock);
      break;
    }
  }
  for (unsigned i = 0; i < started; i++)
    pthread_join (tids[i], NULL);
  r = w.err ? w.err : vmdr_disk_builder_finish (w.builder, out);
  pthread_mutex_destroy (&w.lock);
  vmdr_disk_builder_free (w.builder);
  vmdr_zctx_free (z);
  if (r == 0 && st)
    *st = w.st;
  return r;
}

int
vmdr_file_source_read (void *opaque, unsigned worker, void *buf, size_t len,
                       uint64_t off)
{
  int fd = *(int *) opaque;
  size_t got = 0;

  (void) worker;                /* pread shares one descriptor safely */
  while (got < len) {
    ssize_t n = pread (fd, (char *) buf + got, len - got, (off_t) (off + got));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -errno;
    if (n == 0) {               /* past the end: reads as zeros */
      memset ((char *) buf + got, 0, len - got);
      break;
    }
    got += (size_t) n;
  }
  return 0;
}

static int
add_range (struct vmdr_chunk_range **v, size_t *n, size_t *cap,
           uint64_t first, uint64_t last)
{
  if (*n > 0 && (*v)[*n - 1].first + (*v)[*n - 1].count >= first) {
    struct vmdr_chunk_range *p = &(*v)[*n - 1];
    if (last + 1 > p->first + p->count)
      p->count = last + 1 - p->first;
    return 0;
  }
  if (*n == *cap) {
    size_t c = *cap ? 2 * *cap : 64;
    void *q = reallocarray (*v, c, sizeof **v);
    if (q == NULL)
      return -ENOMEM;
    *v = q;
    *cap = c;
  }
  (*v)[(*n)++] = (struct vmdr_chunk_range) { first, last - first + 1 };
  return 0;
}

int
vmdr_file_data_ranges (int fd, uint64_t size, uint32_t chunk,
                       struct vmdr_chunk_range **ranges, size_t *n)
{
  struct vmdr_chunk_range *v = NULL;
  size_t cnt = 0, cap = 0;
  off_t pos = 0;
  int r = 0;

  while ((uint64_t) pos < size) {
    off_t data = lseek (fd, pos, SEEK_DATA), hole;
    if (data < 0) {
      if (errno == ENXIO)       /* only a hole is left */
        break;
      r = -errno;
      break;
    }
    hole = lseek (fd, data, SEEK_HOLE);
    if (hole < 0) {
      r = -errno;
      break;
    }
    if ((uint64_t) hole > size)
      hole = (off_t) size;
    if (hole > data &&
        (r = add_range (&v, &cnt, &cap, (uint64_t) data / chunk,
                        ((uint64_t) hole - 1) / chunk)) < 0)
      break;
    pos = hole;
  }
  if (r < 0) {
    free (v);
    return r;
  }
  *ranges = v;
  *n = cnt;
  return 0;
}

/* ---- restoring ------------------------------------------------------------ */

#define QUEUE_MAX 1024

struct job {
  uint64_t index;
  struct vmdr_digest d;
};

struct reader {
  struct vmdr_repo *repo;
  const struct vmdr_disk_tree *t;
  const struct vmdr_read_opts *o;
  int fd;
  int damage_err;               /* first damage reported to o->damage */

  pthread_mutex_t lock;
  pthread_cond_t not_empty, not_full;
  struct job q[QUEUE_MAX];
  size_t head, count;
  bool closed;                  /* no more jobs will come */
  int err;
  struct vmdr_restore_error where;
  struct vmdr_disk_read_stats st;
  vmdr_progress_fn progress;
  void *popaque;
};

static bool
is_damage (int err)
{
  return err == -EBADMSG || err == -EILSEQ || err == -ENOENT;
}

static void
fail (struct reader *r, int err, const struct job *j)
{
  if (j && r->o->damage && is_damage (err)) {   /* report it and go on */
    struct vmdr_restore_error w = { true, j->index * r->t->chunk_size, j->d };
    r->o->damage (r->o->dopaque, &w, err);
    if (r->damage_err == 0) {
      r->damage_err = err;
      r->where = w;
    }
    return;
  }
  if (r->err == 0) {
    r->err = err;
    if (j) {
      r->where.chunk = true;
      r->where.offset = j->index * r->t->chunk_size;
      r->where.digest = j->d;
    }
  }
  pthread_cond_broadcast (&r->not_full);
  pthread_cond_broadcast (&r->not_empty);
}

static int
restore_one (struct reader *r, unsigned no, struct vmdr_zctx *z, uint8_t *buf,
             const struct job *j)
{
  size_t want = chunk_len (r->t->virtual_size, r->t->chunk_size, j->index), len;
  size_t done = 0;
  int e;

  e = vmdr_repo_get_chunk (r->repo, z, &j->d, buf, r->t->chunk_size, &len);
  if (e == -ENOBUFS || (e == 0 && len != want))
    e = -EBADMSG;               /* a chunk of the wrong size is damage */
  if (e < 0)
    return e;
  if (r->o->sink)
    return r->o->sink (r->o->sopaque, no, buf, len, j->index * r->t->chunk_size);
  while (r->fd >= 0 && done < len) {
    ssize_t n = pwrite (r->fd, buf + done, len - done,
                        (off_t) (j->index * r->t->chunk_size + done));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -errno;
    done += (size_t) n;
  }
  return 0;
}

struct worker {
  struct reader *r;
  unsigned no;
};

static void *
restore_worker (void *opaque)
{
  const struct worker *w = opaque;
  struct reader *r = w->r;
  struct vmdr_zctx *z = NULL;
  uint8_t *buf = malloc (r->t->chunk_size);
  int e = buf ? vmdr_zctx_new (1, &z) : -ENOMEM;

  pthread_mutex_lock (&r->lock);
  if (e < 0)
    fail (r, e, NULL);
  while (r->err == 0) {
    struct job j;
    if (r->count == 0) {
      if (r->closed)
        break;
      pthread_cond_wait (&r->not_empty, &r->lock);
      continue;
    }
    j = r->q[r->head];
    r->head = (r->head + 1) % QUEUE_MAX;
    r->count--;
    pthread_cond_signal (&r->not_full);
    pthread_mutex_unlock (&r->lock);
    e = restore_one (r, w->no, z, buf, &j);
    pthread_mutex_lock (&r->lock);
    if (e < 0)
      fail (r, e, &j);
    else {
      r->st.chunks++;
      r->st.bytes += chunk_len (r->t->virtual_size, r->t->chunk_size, j.index);
      if (r->progress)
        r->progress (r->popaque, r->st.bytes, 0);
    }
  }
  pthread_mutex_unlock (&r->lock);
  vmdr_zctx_free (z);
  free (buf);
  return NULL;
}

/* Tree walk callback: queue every non-zero chunk of a leaf. */
static int
queue_leaf (void *opaque, uint64_t first, uint64_t count,
            const struct vmdr_digest *digests)
{
  static const struct vmdr_digest zero;
  struct reader *r = opaque;
  int e = 0;

  if (digests == NULL)
    return 0;                   /* a zero run stays a hole */
  pthread_mutex_lock (&r->lock);
  for (uint64_t i = 0; i < count && r->err == 0; i++) {
    if (memcmp (&digests[i], &zero, sizeof zero) == 0 ||
        (r->o->filter && !r->o->filter (r->o->fopaque, first + i, &digests[i])))
      continue;
    while (r->count == QUEUE_MAX && r->err == 0)
      pthread_cond_wait (&r->not_full, &r->lock);
    if (r->err)
      break;
    r->q[(r->head + r->count) % QUEUE_MAX] = (struct job) { first + i, digests[i] };
    r->count++;
    pthread_cond_signal (&r->not_empty);
  }
  e = r->err;
  pthread_mutex_unlock (&r->lock);
  return e;
}

int
vmdr_disk_read (struct vmdr_repo *repo, const struct vmdr_disk_tree *tree,
                const struct vmdr_read_opts *o, struct vmdr_disk_read_stats *st,
                struct vmdr_restore_error *err)
{
  _cleanup_free_ struct reader *r = calloc (1, sizeof *r);
  pthread_t tids[VMDR_MAX_THREADS];
  struct worker ws[VMDR_MAX_THREADS];
  struct vmdr_zctx *z = NULL;
  unsigned started = 0;
  int e;

  if (r == NULL)
    return -ENOMEM;
  if (o->threads < 1 || o->threads > VMDR_MAX_THREADS)
    return -EINVAL;
  if ((e = vmdr_zctx_new (1, &z)) < 0)
    return e;
  *r = (struct reader) { .repo = repo, .t = tree, .o = o, .fd = o->fd,
                         .progress = o->progress, .popaque = o->popaque };
  pthread_mutex_init (&r->lock, NULL);
  pthread_cond_init (&r->not_empty, NULL);
  pthread_cond_init (&r->not_full, NULL);
  for (; started < o->threads; started++) {
    ws[started] = (struct worker) { r, started };
    if (pthread_create (&tids[started], NULL, restore_worker, &ws[started]) != 0)
      break;
  }
  if (started == 0)
    e = -EAGAIN;
  else
    e = vmdr_disk_tree_walk (repo, z, tree, queue_leaf, r);
  pthread_mutex_lock (&r->lock);
  if (e < 0)
    fail (r, e, NULL);
  r->closed = true;
  pthread_cond_broadcast (&r->not_empty);
  pthread_mutex_unlock (&r->lock);
  for (unsigned i = 0; i < started; i++)
    pthread_join (tids[i], NULL);
  e = r->err ? r->err : r->damage_err;
  if (e == 0 && r->fd >= 0 && fsync (r->fd) < 0 && errno != EINVAL)
    e = -errno;
  if (e < 0 && err)
    *err = r->where;
  if (st)
    *st = r->st;
  pthread_cond_destroy (&r->not_empty);
  pthread_cond_destroy (&r->not_full);
  pthread_mutex_destroy (&r->lock);
  vmdr_zctx_free (z);
  return e;
}

int
vmdr_disk_restore (struct vmdr_repo *repo, const struct vmdr_disk_tree *tree,
                   int fd, unsigned threads, vmdr_progress_fn progress,
                   void *popaque, struct vmdr_disk_read_stats *st,
                   struct vmdr_restore_error *err)
{
  struct vmdr_read_opts o = { .fd = fd, .threads = threads, .progress = progress,
                              .popaque = popaque };

  return vmdr_disk_read (repo, tree, &o, st, err);
}
