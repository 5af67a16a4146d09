#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
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

#define PAGE_ALIGN 4096u        /* O_DIRECT's alignment on any device */

/* A batch buffer and the chunks it holds. */
struct slot {
  uint8_t *buf;
  uint64_t index, count;        /* its chunks */
  uint64_t low;                 /* lowest not yet recorded; UINT64_MAX: free */
};

#define SLOTS_MAX (2 * VMDR_MAX_THREADS)

struct writer {
  struct vmdr_repo *repo;
  const struct vmdr_disk_source *src;
  uint32_t chunk;
  uint64_t nchunks;
  uint64_t per;                 /* chunks a slot holds: a group's worth */
  unsigned threads;

  pthread_mutex_t lock;         /* everything below */
  size_t range;                 /* cursor: ranges[range], chunk next */
  uint64_t next;
  /* Read-ahead: readers fill slots, hashers empty them, so that hashing
   * never waits for a read (the source's latency, e.g. QEMU reading the
   * image from disk, hides behind the CPU work). */
  struct slot slots[SLOTS_MAX];
  unsigned nslots;
  unsigned ready[SLOTS_MAX];    /* filled slots, a FIFO ring */
  unsigned ready_head, ready_n;
  unsigned readers_left;        /* readers still running */
  pthread_cond_t slot_free, slot_ready;
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
  unsigned no;                  /* a reader's source slot */
};

/* Consecutive chunks a worker reads at once: a group's worth, or about
 * 1 MiB, so that readers (files, NBD) see large requests. */
static uint64_t
batch_chunks (const struct vmdr_repo_config *cfg)
{
  uint32_t want = cfg->group_size > (1u << 20) ? cfg->group_size : 1u << 20;

  return cfg->chunk_size >= want ? 1 : want / cfg->chunk_size;
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
  /* Runs on the grid of batches: a group holds chunks that a restore
   * reads in one batch (BATCH_BYTES apart), never two. */
  uint64_t grid = w->per - w->next % w->per;
  *count = end - w->next < grid ? end - w->next : grid;
  w->next += *count;
  return true;
}

/* Chunks below the lowest one still being worked on are final. */
static int
seal_done (struct writer *w)
{
  uint64_t low = w->next;

  for (unsigned i = 0; i < w->nslots; i++)
    if (w->slots[i].low < low)
      low = w->slots[i].low;
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

/* Hash, store and record the chunks of slot SL: a group repository stores
 * the new ones together (the slot is one aligned group's worth). */
static int
do_slot (struct writer *w, struct slot *sl, struct vmdr_zctx *z)
{
  const struct vmdr_repo_config *cfg = vmdr_repo_config (w->repo);
  struct vmdr_digest d[VMDR_GROUP_MAX] = { 0 };
  struct vmdr_blob_member m[VMDR_GROUP_MAX];
  size_t stored[VMDR_GROUP_MAX];
  uint8_t at[VMDR_GROUP_MAX];   /* member k is chunk at[k] of the slot */
  size_t n = 0;
  int r = 0;

  for (uint64_t i = 0; r == 0 && i < sl->count; i++) {
    const uint8_t *buf = sl->buf + i * w->chunk;
    size_t len = chunk_len (w->src->virtual_size, w->chunk, sl->index + i);
    if (all_zero (buf, len))
      continue;
    r = vmdr_digest (cfg->hash, buf, len, &d[i]);
    m[n] = (struct vmdr_blob_member) { d[i], buf, (uint32_t) len };
    at[n++] = (uint8_t) i;
  }
  if (r == 0)
    r = vmdr_repo_put_chunks (w->repo, z, VMDR_BLOB_DATA, m, n, stored);
  pthread_mutex_lock (&w->lock);
  for (uint64_t i = 0, k = 0; r == 0 && w->err == 0 && i < sl->count; i++) {
    size_t len = chunk_len (w->src->virtual_size, w->chunk, sl->index + i);
    bool zero = k == n || at[k] != i;
    size_t bytes = zero ? 0 : stored[k++];
    sl->low = sl->index + i + 1;
    r = finish_chunk (w, sl->index + i, &d[i], len, bytes, zero);
  }
  if (r == 0)
    r = w->err;
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

/* Record the first error and wake everyone.  Under the lock. */
static void
fail_locked (struct writer *w, int r)
{
  if (r < 0 && w->err == 0)
    w->err = r;
  pthread_cond_broadcast (&w->slot_free);
  pthread_cond_broadcast (&w->slot_ready);
}

/* A free slot, or NULL when there is an error.  Under the lock. */
static struct slot *
free_slot_locked (struct writer *w)
{
  for (;;) {
    if (w->err)
      return NULL;
    for (unsigned i = 0; i < w->nslots; i++)
      if (w->slots[i].low == UINT64_MAX)
        return &w->slots[i];
    pthread_cond_wait (&w->slot_free, &w->lock);
  }
}

/* A reader takes the next run of chunks into a free slot, reads it and
 * queues it for the hashers. */
static void *
read_worker (void *opaque)
{
  struct worker_arg *a = opaque;
  struct writer *w = a->w;
  struct slot *sl;

  pthread_mutex_lock (&w->lock);
  while ((sl = free_slot_locked (w)) != NULL &&
         take (w, &sl->index, &sl->count)) {
    sl->low = sl->index;        /* held from now: sealing stops below it */
    pthread_mutex_unlock (&w->lock);
    int r = read_batch (w, a->no, sl->buf, sl->index, sl->count);
    pthread_mutex_lock (&w->lock);
    if (r < 0) {
      fail_locked (w, r);
      break;
    }
    w->ready[(w->ready_head + w->ready_n++) % SLOTS_MAX] = (unsigned) (sl - w->slots);
    pthread_cond_signal (&w->slot_ready);
  }
  if (--w->readers_left == 0)
    pthread_cond_broadcast (&w->slot_ready);
  pthread_mutex_unlock (&w->lock);
  return NULL;
}

/* The next filled slot, or NULL at the end or on an error.  Under the lock. */
static struct slot *
ready_slot_locked (struct writer *w)
{
  while (w->err == 0 && w->ready_n == 0 && w->readers_left > 0)
    pthread_cond_wait (&w->slot_ready, &w->lock);
  if (w->err || w->ready_n == 0)
    return NULL;
  unsigned i = w->ready[w->ready_head];
  w->ready_head = (w->ready_head + 1) % SLOTS_MAX;
  w->ready_n--;
  return &w->slots[i];
}

/* A hasher digests, stores and records the chunks of filled slots. */
static void *
hash_worker (void *opaque)
{
  struct writer *w = opaque;
  struct vmdr_zctx *z = NULL;
  struct slot *sl;
  int r = vmdr_zctx_new (vmdr_repo_config (w->repo)->zstd_level, &z);

  pthread_mutex_lock (&w->lock);
  while (r == 0 && (sl = ready_slot_locked (w)) != NULL) {
    pthread_mutex_unlock (&w->lock);
    r = do_slot (w, sl, z);
    pthread_mutex_lock (&w->lock);
    sl->low = UINT64_MAX;
    pthread_cond_signal (&w->slot_free);
  }
  fail_locked (w, r);
  pthread_mutex_unlock (&w->lock);
  vmdr_zctx_free (z);
  return NULL;
}

/* Start W's readers, then its hashers (W->threads of each), into TIDS;
 * the number started.  If one cannot start, the others stop at once. */
static unsigned
start_workers (struct writer *w, struct worker_arg *args, pthread_t *tids)
{
  unsigned started = 0, n = w->threads;
  bool ok = w->err == 0;        /* w->err: read under the lock once threads run */

  w->readers_left = n;
  for (; ok && started < n; started++) {
    args[started] = (struct worker_arg) { .w = w, .no = started };
    if (pthread_create (&tids[started], NULL, read_worker, &args[started]) != 0) {
      pthread_mutex_lock (&w->lock);
      w->readers_left -= n - started;
      fail_locked (w, -EAGAIN);
      pthread_mutex_unlock (&w->lock);
      ok = false;
      break;
    }
  }
  for (unsigned i = 0; ok && i < n; i++, started++)
    if (pthread_create (&tids[started], NULL, hash_worker, w) != 0) {
      pthread_mutex_lock (&w->lock);
      fail_locked (w, -EAGAIN);
      pthread_mutex_unlock (&w->lock);
      break;
    }
  return started;
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
  pthread_t tids[2 * VMDR_MAX_THREADS];
  struct vmdr_zctx *z = NULL;
  unsigned started = 0;
  int r;

  if (threads < 1 || threads > VMDR_MAX_THREADS)
    return -EINVAL;
  w.nchunks = vmdr_disk_chunks (src->virtual_size, w.chunk);
  w.total = src_total (src, w.chunk);
  w.per = batch_chunks (cfg);
  if ((r = vmdr_zctx_new (cfg->zstd_level, &z)) < 0)
    return r;
  r = vmdr_disk_builder_new (repo, z, src->virtual_size, w.chunk, cfg->fanout,
                             parent, &w.builder);
  if (r < 0) {
    vmdr_zctx_free (z);
    return r;
  }
  /* Two slots per hasher: one being hashed, one read meanwhile. */
  w.nslots = 2 * threads;
  for (unsigned i = 0; i < w.nslots; i++) {
    w.slots[i].low = UINT64_MAX;
    /* Sources may read into them with O_DIRECT. */
    w.slots[i].buf = vmdr_buf_alloc ((size_t) w.per * w.chunk);
    if (w.slots[i].buf == NULL)
      w.err = -ENOMEM;
  }
  pthread_mutex_init (&w.lock, NULL);
  pthread_cond_init (&w.slot_free, NULL);
  pthread_cond_init (&w.slot_ready, NULL);
  started = start_workers (&w, args, tids);
  for (unsigned i = 0; i < started; i++)
    pthread_join (tids[i], NULL);
  r = w.err ? w.err : vmdr_disk_builder_finish (w.builder, out);
  for (unsigned i = 0; i < w.nslots; i++)
    free (w.slots[i].buf);
  pthread_cond_destroy (&w.slot_free);
  pthread_cond_destroy (&w.slot_ready);
  pthread_mutex_destroy (&w.lock);
  vmdr_disk_builder_free (w.builder);
  vmdr_zctx_free (z);
  if (r == 0 && st)
    *st = w.st;
  return r;
}

static bool
page_aligned (const void *buf, size_t len, uint64_t off)
{
  return ((uintptr_t) buf | len | off) % PAGE_ALIGN == 0;
}

void
vmdr_file_source_init (struct vmdr_file_source *s, int fd)
{
  char path[64];

  s->fd = fd;
  snprintf (path, sizeof path, "/proc/self/fd/%d", fd);
  s->direct = open (path, O_RDONLY | O_DIRECT | O_CLOEXEC);
}

void
vmdr_file_source_fini (struct vmdr_file_source *s)
{
  if (s->direct >= 0)
    close (s->direct);
  s->direct = -1;
}

int
vmdr_file_source_read (void *opaque, unsigned worker, void *buf, size_t len,
                       uint64_t off)
{
  struct vmdr_file_source *s = opaque;
  size_t got = 0;

  (void) worker;                /* pread shares one descriptor safely */
  while (got < len) {
    char *p = (char *) buf + got;
    bool direct = s->direct >= 0 && page_aligned (p, len - got, off + got);
    ssize_t n = pread (direct ? s->direct : s->fd, p, len - got, (off_t) (off + got));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno == EINVAL && direct) {
      n = pread (s->fd, p, len - got, (off_t) (off + got));     /* refused */
      if (n < 0 && errno == EINTR)
        continue;
    }
    if (n < 0)
      return -errno;
    if (n == 0) {               /* past the end: reads as zeros */
      memset (p, 0, len - got);
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

/* A worker takes up to BATCH_BYTES of consecutive chunks at once: one
 * vmdr_repo_get_chunks call (a few large pack reads, as a full backup's
 * chunks lie in pack order) and one write per run of chunks without a
 * hole between them, instead of a read and a write per chunk. */
#define BATCH_BYTES (8u << 20)   /* VMDR_GROUP_SIZE_MAX: a group per batch */
#define BATCH_MAX (BATCH_BYTES / VMDR_CHUNK_MIN)
#define QUEUE_MAX 32            /* batches waiting for a worker */

_Static_assert (BATCH_MAX <= VMDR_GET_CHUNKS_MAX && BATCH_MAX <= 256,
                "a batch fits one vmdr_repo_get_chunks call and uint8_t rel");

struct batch {
  uint64_t seq;                 /* its place in the disk order: 0, 1, ... */
  uint64_t first;               /* chunk index of rel 0 */
  uint32_t n;
  uint8_t rel[BATCH_MAX];       /* chunk index - first, increasing */
  struct vmdr_digest d[BATCH_MAX];
};

struct reader {
  struct vmdr_repo *repo;
  const struct vmdr_disk_tree *t;
  const struct vmdr_read_opts *o;
  int fd;
  int dfd;                      /* fd reopened with O_DIRECT, or -1 */
  uint32_t per;                 /* chunks a batch spans at most */
  int damage_err;               /* first damage reported to o->damage */

  pthread_mutex_t lock;
  pthread_cond_t not_empty, not_full;
  struct batch cur;             /* being filled by the tree walk */
  struct batch q[QUEUE_MAX];
  size_t head, count;
  bool closed;                  /* no more batches will come */
  uint64_t pushed;              /* batches queued so far: the next seq */
  uint64_t turn;                /* o->ordered: the seq whose runs go out next */
  pthread_cond_t turned;        /* turn moved on, or err was set */
  int err;
  struct vmdr_restore_error where;
  struct vmdr_disk_read_stats st;
  vmdr_progress_fn progress;
  void *popaque;
};

/* One chunk, for errors. */
struct job {
  uint64_t index;
  struct vmdr_digest d;
};

static bool
is_damage (int err)
{
  return err == -EBADMSG || err == -EILSEQ || err == -ENOENT;
}

/* Under the lock. */
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
  pthread_cond_broadcast (&r->turned);
}

static int
pwrite_all (int fd, const uint8_t *buf, size_t len, uint64_t off)
{
  size_t done = 0;

  while (done < len) {
    ssize_t n = pwrite (fd, buf + done, len - done, (off_t) (off + done));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -errno;
    done += (size_t) n;
  }
  return 0;
}

/* Writes to a file or block device bypass the page cache where they can:
 * a buffered write of a restored disk costs a copy into fresh page-cache
 * pages (more CPU than the verification of those bytes on a small
 * machine), serialises the writers on the inode lock, and leaves the
 * whole disk to be written back by the fsync at the end.  Direct writes
 * go from our buffers to the device while the workers decode.  -1 when
 * the file system has no O_DIRECT (tmpfs) or /proc is missing: then
 * everything goes through FD. */
#define DIRECT_ALIGN 4096u

static int
open_direct (int fd)
{
  char path[64];
  struct stat st;
  int fl = fcntl (fd, F_GETFL);

  if (fl < 0 || (fl & O_ACCMODE) == O_RDONLY || fstat (fd, &st) < 0 ||
      !(S_ISREG (st.st_mode) || S_ISBLK (st.st_mode)))
    return -1;
  snprintf (path, sizeof path, "/proc/self/fd/%d", fd);
  return open (path, O_WRONLY | O_DIRECT | O_CLOEXEC);
}

/* LEN bytes at OFF of FD: directly where alignment allows. */
static int
write_file (struct reader *r, const uint8_t *buf, size_t len, uint64_t off)
{
  if (r->dfd >= 0 && ((uintptr_t) buf | len | off) % DIRECT_ALIGN == 0) {
    int e = pwrite_all (r->dfd, buf, len, off);
    if (e != -EINVAL)
      return e;
    /* A device with larger blocks: through the page cache after all. */
  }
  return pwrite_all (r->fd, buf, len, off);
}

/* The layout's extent holding disk byte OFF, or NULL. */
static const struct vmdr_out_extent *
find_extent (const struct vmdr_read_opts *o, uint64_t off)
{
  size_t lo = 0, hi = o->nlayout;

  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    const struct vmdr_out_extent *x = &o->layout[mid];
    if (off < x->start)
      hi = mid;
    else if (off - x->start >= x->len)
      lo = mid + 1;
    else
      return x;
  }
  return NULL;
}

/* LEN bytes of restored chunks at byte OFF of the disk. */
static int
write_out (struct reader *r, unsigned no, const uint8_t *buf, size_t len, uint64_t off)
{
  if (r->o->sink)
    return r->o->sink (r->o->sopaque, no, buf, len, off);
  if (r->fd < 0)
    return 0;                   /* verify only */
  if (r->o->layout == NULL)
    return write_file (r, buf, len, off);
  while (len > 0) {
    const struct vmdr_out_extent *x = find_extent (r->o, off);
    if (x == NULL)
      return -ERANGE;
    size_t n = x->start + x->len - off < len ? (size_t) (x->start + x->len - off) : len;
    int e = write_file (r, buf, n, x->host + (off - x->start));
    if (e < 0)
      return e;
    buf += n;
    off += n;
    len -= n;
  }
  return 0;
}

/* A run of verified chunks without a hole between them: LEN bytes at POS
 * in the buffer, for the disk at AT's chunk. */
struct span {
  size_t pos, len;
  uint32_t chunks;
  struct job at;                /* its first chunk, for a write error */
};

/* A batch verified: its chunks in BUF (r->per chunks' room) and its runs. */
struct output {
  uint64_t seq;                 /* the batch's */
  uint8_t *buf;
  size_t n;
  struct span span[BATCH_MAX];
};

/* Read and verify batch B into OUT.  Damage is reported (or stops the read)
 * in disk order; false when the read is to stop. */
static bool
verify_batch (struct reader *r, struct vmdr_repo_reader *rd,
              struct vmdr_chunk_get *req, const struct batch *b, struct output *out)
{
  const uint32_t chunk = r->t->chunk_size;
  size_t k, j;
  int e;

  out->n = 0;
  out->seq = b->seq;
  for (k = 0; k < b->n; k++)
    req[k] = (struct vmdr_chunk_get) { .d = b->d[k], .cap = chunk,
                                       .buf = out->buf + (size_t) b->rel[k] * chunk };
  e = vmdr_repo_get_chunks (r->repo, rd, req, b->n);
  for (k = 0; k < b->n; k++) {
    size_t want = chunk_len (r->t->virtual_size, chunk, b->first + b->rel[k]);
    if (e < 0)
      req[k].err = e;
    else if (req[k].err == -ENOBUFS || (req[k].err == 0 && req[k].len != want))
      req[k].err = -EBADMSG;    /* a chunk of the wrong size is damage */
  }
  for (k = 0; k < b->n; k = j) {
    struct span *sp = &out->span[out->n];
    bool stop;

    sp->at = (struct job) { b->first + b->rel[k], b->d[k] };
    if (req[k].err < 0) {
      pthread_mutex_lock (&r->lock);
      fail (r, req[k].err, &sp->at);
      stop = r->err != 0;
      pthread_mutex_unlock (&r->lock);
      if (stop)
        return false;
      j = k + 1;
      continue;
    }
    /* Only the disk's last chunk is short: a run's bytes are contiguous. */
    sp->pos = (size_t) b->rel[k] * chunk;
    sp->len = req[k].len;
    for (j = k + 1; j < b->n && req[j].err == 0 && b->rel[j] == b->rel[j - 1] + 1; j++)
      sp->len += req[j].len;
    sp->chunks = (uint32_t) (j - k);
    out->n++;
  }
  return true;
}

/* Write OUT's runs (worker NO's), then count them.  In an ordered read,
 * first wait until every batch before it is out: the batch holding the
 * next turn is always in a worker's hands (verified, handed to its writer
 * or being written), as workers take batches in order, so the wait ends;
 * an error anywhere ends it too. */
static void
write_output (struct reader *r, unsigned no, const struct output *out)
{
  uint64_t chunks = 0, bytes = 0;
  bool stop;

  pthread_mutex_lock (&r->lock);
  while (r->o->ordered && r->turn != out->seq && r->err == 0)
    pthread_cond_wait (&r->turned, &r->lock);
  stop = r->err != 0;           /* another worker failed: no point */
  pthread_mutex_unlock (&r->lock);
  for (size_t k = 0; k < out->n && !stop; k++) {
    const struct span *sp = &out->span[k];
    int e = write_out (r, no, out->buf + sp->pos, sp->len, sp->at.index * r->t->chunk_size);
    if (e < 0) {
      pthread_mutex_lock (&r->lock);
      fail (r, e, &sp->at);
      pthread_mutex_unlock (&r->lock);
      return;
    }
    chunks += sp->chunks;
    bytes += sp->len;
  }
  pthread_mutex_lock (&r->lock);
  r->st.chunks += chunks;
  r->st.bytes += bytes;
  if (r->progress && chunks)
    r->progress (r->popaque, r->st.bytes, 0);
  r->turn++;
  pthread_cond_broadcast (&r->turned);
  pthread_mutex_unlock (&r->lock);
}

/* A worker takes batches, reads and verifies them, and hands each to its
 * writer thread, which writes it while the worker verifies the next one
 * into its second buffer: the cores keep verifying while the writes wait
 * for the disk (or for qemu-nbd).  Without a writer (it could not start,
 * or there is nothing to write) the worker writes itself. */
struct worker {
  struct reader *r;
  unsigned no;
  struct output out[2];
  pthread_t writer;
  bool has_writer;
  pthread_mutex_t lock;         /* pending and quit */
  pthread_cond_t cond;          /* either changed */
  const struct output *pending; /* handed over, not written yet */
  bool quit;
};

static void *
writer_main (void *opaque)
{
  struct worker *w = opaque;

  pthread_mutex_lock (&w->lock);
  for (;;) {
    while (w->pending == NULL && !w->quit)
      pthread_cond_wait (&w->cond, &w->lock);
    if (w->pending == NULL)
      break;
    pthread_mutex_unlock (&w->lock);
    write_output (w->r, w->no, w->pending);
    pthread_mutex_lock (&w->lock);
    w->pending = NULL;          /* its buffer is free again */
    pthread_cond_broadcast (&w->cond);
  }
  pthread_mutex_unlock (&w->lock);
  return NULL;
}

/* Give OUT to the writer once it has written the one before. */
static void
hand_off (struct worker *w, const struct output *out)
{
  pthread_mutex_lock (&w->lock);
  while (w->pending)
    pthread_cond_wait (&w->cond, &w->lock);
  w->pending = out;
  pthread_cond_broadcast (&w->cond);
  pthread_mutex_unlock (&w->lock);
}

static void
stop_writer (struct worker *w)
{
  if (!w->has_writer)
    return;
  pthread_mutex_lock (&w->lock);
  while (w->pending)
    pthread_cond_wait (&w->cond, &w->lock);
  w->quit = true;
  pthread_cond_broadcast (&w->cond);
  pthread_mutex_unlock (&w->lock);
  pthread_join (w->writer, NULL);
  w->has_writer = false;
}

static void *
restore_worker (void *opaque)
{
  struct worker *w = opaque;
  struct reader *r = w->r;
  struct vmdr_repo_reader *rd = NULL;
  struct vmdr_chunk_get req[BATCH_MAX];
  const size_t len = (size_t) r->per * r->t->chunk_size;
  bool output = r->fd >= 0 || r->o->sink;
  unsigned cur = 0;
  struct batch b;
  int e = 0;

  w->out[0].buf = vmdr_buf_alloc (len);
  w->out[1].buf = output ? vmdr_buf_alloc (len) : NULL;
  if (w->out[0].buf == NULL || (output && w->out[1].buf == NULL) ||
      (e = vmdr_repo_reader_new (r->repo, &rd)) < 0)
    e = -ENOMEM;
  if (e == 0 && output)
    w->has_writer = pthread_create (&w->writer, NULL, writer_main, w) == 0;

  pthread_mutex_lock (&r->lock);
  if (e < 0)
    fail (r, e, NULL);
  while (r->err == 0) {
    if (r->count == 0) {
      if (r->closed)
        break;
      pthread_cond_wait (&r->not_empty, &r->lock);
      continue;
    }
    b = r->q[r->head];
    r->head = (r->head + 1) % QUEUE_MAX;
    r->count--;
    pthread_cond_signal (&r->not_full);
    pthread_mutex_unlock (&r->lock);
    if (verify_batch (r, rd, req, &b, &w->out[cur])) {
      if (w->has_writer) {
        hand_off (w, &w->out[cur]);
        cur ^= 1;
      }
      else
        write_output (r, w->no, &w->out[cur]);
    }
    pthread_mutex_lock (&r->lock);
  }
  pthread_mutex_unlock (&r->lock);
  stop_writer (w);
  vmdr_repo_reader_free (rd);
  free (w->out[0].buf);
  free (w->out[1].buf);
  return NULL;
}

/* Queue the batch being filled, waiting for room.  Under the lock. */
static void
push_locked (struct reader *r)
{
  while (r->count == QUEUE_MAX && r->err == 0)
    pthread_cond_wait (&r->not_full, &r->lock);
  if (r->err == 0 && r->cur.n > 0) {
    r->cur.seq = r->pushed++;
    r->q[(r->head + r->count) % QUEUE_MAX] = r->cur;
    r->count++;
    pthread_cond_signal (&r->not_empty);
  }
  r->cur.n = 0;
}

/* Tree walk callback: batch every non-zero chunk of a leaf. */
static int
queue_leaf (void *opaque, uint64_t first, uint64_t count,
            const struct vmdr_digest *digests)
{
  struct reader *r = opaque;
  struct batch *c = &r->cur;
  int e = 0;

  if (digests == NULL)
    return 0;                   /* a zero run stays a hole */
  pthread_mutex_lock (&r->lock);
  for (uint64_t i = 0; i < count && r->err == 0; i++) {
    uint64_t index = first + i;
    if (vmdr_digest_is_zero (&digests[i]) ||
        (r->o->filter && !r->o->filter (r->o->fopaque, index, &digests[i])))
      continue;
    if (c->n > 0 && index - c->first >= r->per) {
      /* Only this thread touches the batch being filled: the advice goes
       * out without the lock, a queue's length ahead of the workers. */
      pthread_mutex_unlock (&r->lock);
      vmdr_repo_prefetch (r->repo, c->d, c->n);
      pthread_mutex_lock (&r->lock);
      push_locked (r);
    }
    /* Batches on a grid of r->per chunks, as the writer's groups are:
     * each group is decompressed by one batch, once. */
    if (c->n == 0)
      c->first = index - index % r->per;
    c->rel[c->n] = (uint8_t) (index - c->first);
    c->d[c->n++] = digests[i];
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
  _cleanup_free_ struct worker *ws = NULL;
  pthread_t tids[VMDR_MAX_THREADS];
  struct vmdr_zctx *z = NULL;
  unsigned started = 0;
  int e;

  if (o->threads < 1 || o->threads > VMDR_MAX_THREADS)
    return -EINVAL;
  if (r == NULL || (ws = calloc (o->threads, sizeof *ws)) == NULL)
    return -ENOMEM;
  if (tree->chunk_size < VMDR_CHUNK_MIN || tree->chunk_size > VMDR_CHUNK_MAX) {
    if (err)                    /* the tree walk would refuse it too */
      *err = (struct vmdr_restore_error) { .chunk = false };
    return -EBADMSG;
  }
  if ((e = vmdr_zctx_new (1, &z)) < 0)
    return e;
  *r = (struct reader) { .repo = repo, .t = tree, .o = o, .fd = o->fd,
                         .progress = o->progress, .popaque = o->popaque };
  r->per = BATCH_BYTES / tree->chunk_size ? BATCH_BYTES / tree->chunk_size : 1;
  r->dfd = o->fd >= 0 && o->sink == NULL ? open_direct (o->fd) : -1;
  pthread_mutex_init (&r->lock, NULL);
  pthread_cond_init (&r->not_empty, NULL);
  pthread_cond_init (&r->not_full, NULL);
  pthread_cond_init (&r->turned, NULL);
  for (; started < o->threads; started++) {
    ws[started] = (struct worker) { .r = r, .no = started };
    pthread_mutex_init (&ws[started].lock, NULL);
    pthread_cond_init (&ws[started].cond, NULL);
    if (pthread_create (&tids[started], NULL, restore_worker, &ws[started]) != 0) {
      pthread_cond_destroy (&ws[started].cond);
      pthread_mutex_destroy (&ws[started].lock);
      break;
    }
  }
  if (started == 0)
    e = -EAGAIN;
  else
    e = vmdr_disk_tree_walk (repo, z, tree, queue_leaf, r);
  pthread_mutex_lock (&r->lock);
  if (e < 0)
    fail (r, e, NULL);
  else
    push_locked (r);            /* the last, partly filled batch */
  r->closed = true;
  pthread_cond_broadcast (&r->not_empty);
  pthread_mutex_unlock (&r->lock);
  for (unsigned i = 0; i < started; i++) {
    pthread_join (tids[i], NULL);
    pthread_cond_destroy (&ws[i].cond);
    pthread_mutex_destroy (&ws[i].lock);
  }
  e = r->err ? r->err : r->damage_err;
  if (r->dfd >= 0)
    close (r->dfd);
  if (e == 0 && r->fd >= 0 && fsync (r->fd) < 0 && errno != EINVAL)
    e = -errno;
  if (e < 0 && err)
    *err = r->where;
  if (st)
    *st = r->st;
  pthread_cond_destroy (&r->not_empty);
  pthread_cond_destroy (&r->not_full);
  pthread_cond_destroy (&r->turned);
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
