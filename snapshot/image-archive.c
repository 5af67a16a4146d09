#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "cleanup.h"
#include "image-archive.h"

/* Zeros are handed to libarchive in pieces of this size: for a hole it
 * only counts them, for zeros inside a data extent it copies them. */
#define ZERO_LEN (1u << 20)
/* libarchive's output block: large writes, and a multiple of the 10 KiB
 * record tar readers expect (the last block is padded to one). */
#define RECORD 10240
#define BLOCK_BYTES (100 * RECORD)
#define PIPE_BUF_LEN (1u << 20)

struct vmdr_image_archive {
  struct archive *a;
  struct archive_entry *e;
  int fd;
  time_t mtime;
  uint64_t bytes;
  int werr;                     /* errno of a failed write(2) */
  bool dead;                    /* being freed unclosed: write nothing more */
  uint8_t *zeros;               /* ZERO_LEN zero bytes */
};

static la_ssize_t
write_cb (struct archive *a, void *opaque, const void *buf, size_t len)
{
  struct vmdr_image_archive *ar = opaque;
  size_t done = 0;

  if (ar->dead) {
    archive_set_error (a, ECANCELED, "abandoned");
    return -1;
  }
  while (done < len) {
    ssize_t n = write (ar->fd, (const char *) buf + done, len - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      ar->werr = n < 0 ? errno : EIO;
      archive_set_error (a, ar->werr, "%s", strerror (ar->werr));
      return -1;
    }
    done += (size_t) n;
  }
  ar->bytes += len;
  return (la_ssize_t) len;
}

/* The -errno of a libarchive failure: the output's, else -ENOMEM or -EIO
 * (never one of the damage codes, whatever libarchive's errno is). */
static int
ar_error (const struct vmdr_image_archive *ar)
{
  if (ar->werr)
    return -ar->werr;
  return archive_errno (ar->a) == ENOMEM ? -ENOMEM : -EIO;
}

int
vmdr_image_archive_new (int fd, time_t mtime, struct vmdr_image_archive **out)
{
  struct vmdr_image_archive *ar = calloc (1, sizeof *ar);

  if (ar == NULL)
    return -ENOMEM;
  ar->fd = fd;
  ar->mtime = mtime;
  if ((ar->zeros = calloc (1, ZERO_LEN)) == NULL || (ar->a = archive_write_new ()) == NULL ||
      (ar->e = archive_entry_new ()) == NULL ||
      archive_write_set_format_pax_restricted (ar->a) != ARCHIVE_OK ||
      archive_write_set_bytes_per_block (ar->a, BLOCK_BYTES) != ARCHIVE_OK ||
      archive_write_set_bytes_in_last_block (ar->a, RECORD) != ARCHIVE_OK ||
      archive_write_open (ar->a, ar, NULL, write_cb, NULL) != ARCHIVE_OK) {
    vmdr_image_archive_free (ar);
    return -ENOMEM;
  }
  *out = ar;
  return 0;
}

void
vmdr_image_archive_free (struct vmdr_image_archive *ar)
{
  if (ar == NULL)
    return;
  ar->dead = true;              /* archive_write_free would end the archive */
  if (ar->a)
    archive_write_free (ar->a);
  archive_entry_free (ar->e);
  free (ar->zeros);
  free (ar);
}

int
vmdr_image_archive_close (struct vmdr_image_archive *ar)
{
  return archive_write_close (ar->a) == ARCHIVE_OK ? 0 : ar_error (ar);
}

uint64_t
vmdr_image_archive_bytes (const struct vmdr_image_archive *ar)
{
  return ar->bytes;
}

/* ---- the sparse map ------------------------------------------------------- */

struct extent {
  uint64_t off, len;
};

/* An entry's data extents, from its data segments in order.
 *
 * Extents are whole 512-byte tar blocks (but where the file ends): GNU tar
 * reads each extent's data from a block boundary of the archive, while
 * libarchive writes (and reads) them back to back; with whole blocks the
 * two agree.  The zeros that fill the blocks are data.
 *
 * A hole between two extents shorter than MERGE_BELOW is taken into the
 * data (written as zeros): that bounds the map. */
#define TAR_BLOCK 512u

struct extents {
  struct extent *v;
  size_t n, cap;
  uint64_t size;                /* the entry's */
  uint64_t merge_below;         /* 1: only adjacent extents merge */
  uint64_t seg_end;             /* of the last segment */
  uint64_t end;                 /* of the last extent */
  uint64_t runs;                /* extents there would be without the cap */
  uint64_t hist[64];            /* holes between segments, by log2 of their length */
};

static int
ext_add (struct extents *x, uint64_t off, uint64_t len)
{
  if (len == 0)
    return 0;
  if (off > x->size || len > x->size - off || off < x->seg_end)
    return -EBADMSG;            /* a checked index cannot say this */
  x->seg_end = off + len;
  len = off + len > x->size - x->size % TAR_BLOCK ? x->size - off   /* to whole blocks */
    : (off + len + TAR_BLOCK - 1) / TAR_BLOCK * TAR_BLOCK - off;
  len += off % TAR_BLOCK;
  off -= off % TAR_BLOCK;
  if (x->runs && off < x->end) {        /* in the last extent's block */
    len -= x->end - off;
    off = x->end;
  }
  if (x->runs) {
    uint64_t gap = off - x->end;
    if (gap)
      x->hist[63 - __builtin_clzll (gap)]++;
    if (gap < x->merge_below) {
      x->end = off + len;
      if (x->n == x->runs)      /* else the list is cut off: no use */
        x->v[x->n - 1].len = x->end - x->v[x->n - 1].off;
      return 0;
    }
  }
  x->runs++;
  x->end = off + len;
  if (x->n + 1 < x->runs || x->n == VMDR_ARCHIVE_MAX_EXTENTS)
    return 0;                   /* over the cap: only counting now */
  if (x->n == x->cap) {
    size_t c = x->cap ? 2 * x->cap : 256;
    void *p = reallocarray (x->v, c, sizeof *x->v);
    if (p == NULL)
      return -ENOMEM;
    x->v = p;
    x->cap = c;
  }
  x->v[x->n++] = (struct extent) { off, len };
  return 0;
}

static void
ext_reset (struct extents *x, uint64_t merge_below)
{
  x->n = 0;
  x->seg_end = x->end = x->runs = 0;
  memset (x->hist, 0, sizeof x->hist);
  x->merge_below = merge_below;
}

/* After a pass that found more than the cap: the shortest holes that must
 * become data to fit, as a MERGE_BELOW for the next pass. */
static uint64_t
ext_threshold (const struct extents *x)
{
  uint64_t runs = x->runs;

  for (unsigned k = 0; k < 63; k++) {
    runs -= x->hist[k];         /* holes in [2^k, 2^(k+1)) merged */
    if (runs <= VMDR_ARCHIVE_MAX_EXTENTS)
      return (uint64_t) 2 << k;
  }
  return UINT64_MAX;
}

/* Make X's map with WALK (which feeds ext_add), twice if the first pass
 * finds more extents than the cap. */
static int
ext_build (struct extents *x, uint64_t size, int (*walk) (void *), void *opaque)
{
  int r;

  x->size = size;
  ext_reset (x, 1);
  if ((r = walk (opaque)) < 0)
    return r;
  if (x->runs <= VMDR_ARCHIVE_MAX_EXTENTS)
    return 0;
  ext_reset (x, ext_threshold (x));
  if ((r = walk (opaque)) < 0)
    return r;
  return x->runs <= VMDR_ARCHIVE_MAX_EXTENTS ? 0 : -EIO;   /* the index changed? */
}

/* ---- writing an entry ------------------------------------------------------ */

/* Start entry NAME of SIZE bytes; sparse, with X's map, unless X is NULL. */
static int
begin_entry (struct vmdr_image_archive *ar, const char *name, uint64_t size,
             const struct extents *x)
{
  archive_entry_clear (ar->e);
  archive_entry_sparse_clear (ar->e);
  archive_entry_set_pathname (ar->e, name);
  archive_entry_set_filetype (ar->e, AE_IFREG);
  archive_entry_set_perm (ar->e, 0600);
  archive_entry_set_size (ar->e, (la_int64_t) size);   /* before the map: it is checked against it */
  archive_entry_set_mtime (ar->e, ar->mtime, 0);
  if (x) {
    for (size_t i = 0; i < x->n; i++)
      archive_entry_sparse_add_entry (ar->e, (la_int64_t) x->v[i].off, (la_int64_t) x->v[i].len);
    if (x->n == 0 && size > 0)  /* all hole: without a map it would be all data */
      archive_entry_sparse_add_entry (ar->e, (la_int64_t) size, 0);
  }
  return archive_write_header (ar->a, ar->e) < ARCHIVE_WARN ? ar_error (ar) : 0;
}

int
vmdr_image_archive_put_file (struct vmdr_image_archive *ar, const char *name,
                             const void *data, size_t len)
{
  int r = begin_entry (ar, name, len, NULL);

  if (r == 0 && len && archive_write_data (ar->a, data, len) != (la_ssize_t) len)
    r = ar_error (ar);
  return r;
}

/* A sparse entry being written: where it is, and where in its map. */
struct entry_out {
  struct vmdr_image_archive *ar;
  const struct extents *x;
  size_t cur;                   /* the first extent not wholly before pos */
  uint64_t pos;
};

static bool
all_zero (const uint8_t *p, size_t len)
{
  return len == 0 || (p[0] == 0 && memcmp (p, p + 1, len - 1) == 0);
}

/* LEN bytes of the entry from its position on: BUF's, or zeros when BUF
 * is NULL.  Each archive_write_data call stays within one extent or one
 * hole (libarchive's pax writer needs that: it skips a hole's bytes).
 * BUF's bytes in a hole must be zero; with DATA_ONLY they must lie in
 * extents.  -EIO when they do not (the map and the data disagree). */
static int
put (struct entry_out *o, const uint8_t *buf, uint64_t len, bool data_only)
{
  const struct extents *x = o->x;

  while (len > 0) {
    bool in_data;
    uint64_t end, n;

    while (o->cur < x->n && x->v[o->cur].off + x->v[o->cur].len <= o->pos)
      o->cur++;
    in_data = o->cur < x->n && x->v[o->cur].off <= o->pos;
    end = in_data ? x->v[o->cur].off + x->v[o->cur].len
      : o->cur < x->n ? x->v[o->cur].off : x->size;
    if (end <= o->pos)
      return -EIO;              /* past the end of the entry */
    n = len < end - o->pos ? len : end - o->pos;
    if (buf && !in_data && (data_only || !all_zero (buf, (size_t) n)))
      return -EIO;
    if (buf && in_data) {
      if (archive_write_data (o->ar->a, buf, (size_t) n) != (la_ssize_t) n)
        return ar_error (o->ar);
    }
    else
      for (uint64_t left = n; left > 0;) {
        size_t k = left < ZERO_LEN ? (size_t) left : ZERO_LEN;
        if (archive_write_data (o->ar->a, o->ar->zeros, k) != (la_ssize_t) k)
          return ar_error (o->ar);
        left -= k;
      }
    o->pos += n;
    len -= n;
    if (buf)
      buf += n;
  }
  return 0;
}

/* ---- disks ---------------------------------------------------------------- */

struct disk_map {
  struct vmdr_repo *repo;
  const struct vmdr_disk_tree *t;
  struct extents *x;
};

static int
disk_leaf (void *opaque, uint64_t first, uint64_t count, const struct vmdr_digest *d)
{
  struct disk_map *m = opaque;
  const uint64_t chunk = m->t->chunk_size, size = m->t->virtual_size;
  int r;

  if (d == NULL)
    return 0;                   /* zero chunks: a hole */
  for (uint64_t i = 0; i < count; i++) {
    uint64_t off = (first + i) * chunk;
    if (vmdr_digest_is_zero (&d[i]))
      continue;
    if (off >= size)
      return -EBADMSG;
    if ((r = ext_add (m->x, off, size - off < chunk ? size - off : chunk)) < 0)
      return r;
  }
  return 0;
}

static int
disk_walk (void *opaque)
{
  struct disk_map *m = opaque;
  struct vmdr_zctx *z = NULL;
  int r = vmdr_zctx_new (1, &z);

  if (r == 0)
    r = vmdr_disk_tree_walk (m->repo, z, m->t, disk_leaf, m);
  vmdr_zctx_free (z);
  return r;
}

/* The read path's sink: verified runs of chunks, in disk order. */
static int
disk_sink (void *opaque, unsigned worker, const void *buf, size_t len, uint64_t off)
{
  struct entry_out *o = opaque;
  int r;

  (void) worker;                /* an ordered read: one call at a time */
  if (off < o->pos)
    return -EIO;
  if ((r = put (o, NULL, off - o->pos, false)) < 0)
    return r;
  return put (o, buf, len, true);
}

static bool
is_damage (int e)
{
  return e == -EBADMSG || e == -EILSEQ || e == -ENOENT;
}

int
vmdr_image_archive_put_disk (struct vmdr_image_archive *ar, struct vmdr_repo *repo,
                             const char *name, const struct vmdr_disk_tree *tree,
                             const struct vmdr_restore_opts *o,
                             struct vmdr_disk_read_stats *st,
                             struct vmdr_restore_failure *f)
{
  struct extents x = { 0 };
  struct disk_map dm = { repo, tree, &x };
  struct entry_out out = { .ar = ar, .x = &x };
  struct vmdr_read_opts ro = { .fd = -1, .sink = disk_sink, .sopaque = &out, .ordered = true,
                               .threads = o->threads, .progress = o->progress,
                               .popaque = o->popaque };
  int r;

  memset (f, 0, sizeof *f);
  if (o->threads < 1 || o->threads > VMDR_MAX_THREADS)
    return -EINVAL;
  if ((r = ext_build (&x, tree->virtual_size, disk_walk, &dm)) < 0) {
    f->damage = is_damage (r);  /* the index: where.chunk stays false */
    goto out;
  }
  if ((r = begin_entry (ar, name, tree->virtual_size, &x)) < 0)
    goto out;
  r = vmdr_disk_read (repo, tree, &ro, st, &f->where);
  f->damage = is_damage (r);
  if (r == 0)
    r = put (&out, NULL, tree->virtual_size - out.pos, false);   /* a trailing hole */
 out:
  free (x.v);
  return r;
}

/* ---- memory images ------------------------------------------------------------ */

struct stream_map {
  struct vmdr_repo *repo;
  const struct vmdr_stream_tree *t;
  struct extents *x;
};

static int
stream_leaf (void *opaque, uint64_t off, const struct vmdr_stream_entry *e, size_t n)
{
  struct stream_map *m = opaque;
  int r;

  for (size_t i = 0; i < n; off += e[i].len, i++)
    if (!vmdr_digest_is_zero (&e[i].d) && (r = ext_add (m->x, off, e[i].len)) < 0)
      return r;
  return 0;
}

static int
stream_walk (void *opaque)
{
  struct stream_map *m = opaque;
  struct vmdr_zctx *z = NULL;
  int r = vmdr_zctx_new (1, &z);

  if (r == 0)
    r = vmdr_stream_tree_walk (m->repo, z, m->t, stream_leaf, m);
  vmdr_zctx_free (z);
  return r;
}

/* vmdr_stream_restore writes in stream order to a descriptor: a pipe into
 * this thread's hands.  It runs in a thread of its own with SIGPIPE
 * blocked, so that a reader that gave up makes its write fail with EPIPE
 * instead of killing the process (the pending signal goes with the
 * thread). */
struct stream_job {
  struct vmdr_repo *repo;
  const struct vmdr_stream_tree *t;
  int fd;                       /* the pipe's write end; the job closes it */
  unsigned threads;
  int r;
  struct vmdr_restore_error where;
};

static void *
stream_main (void *opaque)
{
  struct stream_job *j = opaque;
  sigset_t set;

  sigemptyset (&set);
  sigaddset (&set, SIGPIPE);
  pthread_sigmask (SIG_BLOCK, &set, NULL);
  j->r = vmdr_stream_restore (j->repo, j->t, j->fd, j->threads, NULL, &j->where);
  close (j->fd);
  return NULL;
}

/* Feed everything read from FD into OUT.  0 or -errno. */
static int
drain_pipe (int fd, struct entry_out *out)
{
  _cleanup_free_ uint8_t *buf = malloc (PIPE_BUF_LEN);
  int r = 0;

  if (buf == NULL)
    return -ENOMEM;
  for (;;) {
    ssize_t n = read (fd, buf, PIPE_BUF_LEN);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return n < 0 ? -errno : 0;
    if ((r = put (out, buf, (uint64_t) n, false)) < 0)
      return r;
  }
}

int
vmdr_image_archive_put_stream (struct vmdr_image_archive *ar, struct vmdr_repo *repo,
                               const char *name, const struct vmdr_stream_tree *tree,
                               const struct vmdr_restore_opts *o,
                               struct vmdr_restore_failure *f)
{
  struct extents x = { 0 };
  struct stream_map sm = { repo, tree, &x };
  struct entry_out out = { .ar = ar, .x = &x };
  struct stream_job job = { .repo = repo, .t = tree, .threads = o->threads };
  pthread_t tid;
  int p[2], r;

  memset (f, 0, sizeof *f);
  if (o->threads < 1 || o->threads > VMDR_MAX_THREADS)
    return -EINVAL;
  if ((r = ext_build (&x, tree->size, stream_walk, &sm)) < 0) {
    f->damage = is_damage (r);
    goto out;
  }
  if ((r = begin_entry (ar, name, tree->size, &x)) < 0)
    goto out;
  if (pipe2 (p, O_CLOEXEC) < 0) {
    r = -errno;
    goto out;
  }
  fcntl (p[1], F_SETPIPE_SZ, PIPE_BUF_LEN);    /* fewer switches; fine if refused */
  job.fd = p[1];
  if (pthread_create (&tid, NULL, stream_main, &job) != 0) {
    close (p[0]);
    close (p[1]);
    r = -EAGAIN;
    goto out;
  }
  r = drain_pipe (p[0], &out);
  close (p[0]);                 /* a writer still at it gets EPIPE */
  pthread_join (tid, NULL);
  /* The stream's own failure is the cause, unless it only saw us go. */
  if (job.r < 0 && (r == 0 || job.r != -EPIPE)) {
    r = job.r;
    f->damage = is_damage (r);
    f->where = job.where;
  }
  if (r == 0 && out.pos != tree->size)
    r = -EIO;                   /* a short stream without an error */
 out:
  free (x.v);
  return r;
}
