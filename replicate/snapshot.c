#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "cleanup.h"
#include "lock.h"
#include "snapshot.h"

/* How long a writer waits for a running GC: 600 x 0.2 s. */
#define VMDR_GC_WAIT_TRIES 600

void
vmdr_manifest_disk_tree (const struct vmdr_manifest_disk *d, struct vmdr_disk_tree *t)
{
  *t = (struct vmdr_disk_tree) { .virtual_size = d->virtual_size,
                                 .chunk_size = d->chunk_size, .fanout = d->fanout,
                                 .depth = d->depth, .root = d->root };
}

void
vmdr_manifest_memory_tree (const struct vmdr_manifest_memory *mem, struct vmdr_stream_tree *t)
{
  *t = (struct vmdr_stream_tree) { .size = mem->size, .fanout = mem->fanout,
                                   .depth = mem->depth, .root = mem->root };
}

int
vmdr_snapshot_write_memory (struct vmdr_repo *repo, int fd, unsigned threads,
                            struct vmdr_manifest_memory *mem)
{
  struct vmdr_stream_write_stats st;
  struct vmdr_stream_tree t;
  int r;

  r = vmdr_stream_write_fd (repo, fd, threads, NULL, NULL, &t, &st);
  if (r < 0)
    return r;
  *mem = (struct vmdr_manifest_memory) { .present = true, .size = t.size, .fanout = t.fanout,
                                         .depth = t.depth, .root = t.root,
                                         .bytes_new = st.bytes_new };
  return 0;
}

static int
write_memory_file (struct vmdr_repo *repo, const char *path, unsigned threads,
                   struct vmdr_manifest_memory *mem)
{
  _cleanup_close_ int fd = open (path, O_RDONLY | O_CLOEXEC);

  if (fd < 0)
    return -errno;
  return vmdr_snapshot_write_memory (repo, fd, threads, mem);
}

static int
image_size (int fd, uint64_t *size)
{
  struct stat st;
  off_t end;

  if (fstat (fd, &st) < 0)
    return -errno;
  if (S_ISREG (st.st_mode)) {
    *size = (uint64_t) st.st_size;
    return 0;
  }
  end = lseek (fd, 0, SEEK_END);   /* block devices */
  if (end < 0)
    return -errno;
  *size = (uint64_t) end;
  return 0;
}

/* Store one image as disk entry D. */
static int
write_image (struct vmdr_repo *repo, const struct vmdr_image_disk *img,
             const struct vmdr_snapshot_opts *o, struct vmdr_manifest_disk *d)
{
  const struct vmdr_repo_config *cfg = vmdr_repo_config (repo);
  _cleanup_close_ int fd = open (img->path, O_RDONLY | O_CLOEXEC);
  _cleanup_free_ struct vmdr_chunk_range *ranges = NULL;
  struct vmdr_disk_write_stats st;
  struct vmdr_disk_tree t;
  size_t nranges;
  uint64_t size = 0;
  int r;

  if (fd < 0)
    return -errno;
  if ((r = image_size (fd, &size)) < 0)
    return r;
  /* Without a dirty bitmap, every data region is read; unchanged chunks are
   * found by their digests and not stored again. */
  if ((r = vmdr_file_data_ranges (fd, size, cfg->chunk_size, &ranges, &nranges)) < 0)
    return r;
  struct vmdr_file_source fs;
  vmdr_file_source_init (&fs, fd);
  struct vmdr_disk_source src = { .virtual_size = size, .read = vmdr_file_source_read,
                                  .opaque = &fs, .ranges = ranges, .nranges = nranges };
  r = vmdr_disk_write (repo, &src, NULL, o->threads, o->progress, o->popaque, &t, &st);
  vmdr_file_source_fini (&fs);
  if (r < 0)
    return r;
  snprintf (d->target, sizeof d->target, "%s", img->target);
  snprintf (d->format, sizeof d->format, "raw");
  d->virtual_size = t.virtual_size;
  d->chunk_size = t.chunk_size;
  d->fanout = t.fanout;
  d->depth = t.depth;
  d->root = t.root;
  d->bytes_read = st.bytes_read;
  d->bytes_new = st.bytes_new;
  return 0;
}

static int
fill_manifest (struct vmdr_repo *repo, const char *domain,
               const struct vmdr_image_disk *disks, size_t n,
               const struct vmdr_snapshot_opts *o, struct vmdr_manifest *m)
{
  struct timeval tv;
  int r;

  gettimeofday (&tv, NULL);
  if ((r = vmdr_manifest_start (m, domain, tv.tv_sec, (unsigned) (tv.tv_usec / 1000))) < 0)
    return r;
  m->kind = VMDR_KIND_FULL;
  m->consistency = o->consistency;
  snprintf (m->uuid, sizeof m->uuid, "%s", o->uuid ? o->uuid : "");
  if (o->domain_xml && (m->domain_xml = strdup (o->domain_xml)) == NULL)
    return -ENOMEM;
  m->disks = calloc (n, sizeof *m->disks);
  if (m->disks == NULL)
    return -ENOMEM;
  for (size_t i = 0; i < n; i++, m->ndisks++)
    if ((r = write_image (repo, &disks[i], o, &m->disks[i])) < 0)
      return r;
  if (o->memory && (r = write_memory_file (repo, o->memory, o->threads, &m->memory)) < 0)
    return r;
  /* The visibility rule: every chunk and node durable before the manifest. */
  return vmdr_repo_flush (repo);
}

/* Take the domain's writer lock, then make sure no GC runs: a GC that
 * started first sees our lock and stops soon, or we see its lock and wait
 * for it (a prune from cron should delay a backup, not fail it). */
int
vmdr_writer_lock (struct vmdr_repo *repo, const char *domain, struct vmdr_lock **out,
                  struct vmdr_lock_holder *holder, bool *took_over)
{
  char name[VMDR_KEY_MAX];
  struct vmdr_lock *lock;
  int r;

  if ((r = vmdr_lock_name_domain (domain, name, sizeof name)) < 0)
    return r;
  for (int tries = 0;; tries++) {
    if ((r = vmdr_lock_acquire (repo, name, &lock, holder, took_over)) < 0)
      return r;
    r = vmdr_lock_any (repo, "gc");
    /* Now no GC can run: an index read from here on stays true. */
    if (r == 0 && (r = vmdr_repo_load_index (repo, NULL)) == 0) {
      *out = lock;
      return 0;
    }
    vmdr_lock_release (lock);
    if (r < 0)
      return r;
    if (tries >= VMDR_GC_WAIT_TRIES)
      return -EBUSY;
    usleep (200 * 1000);
  }
}

int
vmdr_snapshot_write_images (struct vmdr_repo *repo, const char *domain,
                            const struct vmdr_image_disk *disks, size_t n,
                            const struct vmdr_snapshot_opts *o,
                            struct vmdr_manifest *out, struct vmdr_snapshot_stats *st)
{
  struct vmdr_manifest m = { 0 };
  struct vmdr_lock *lock;
  int r;

  if (n == 0 || n > VMDR_MAX_DISKS || !vmdr_domain_name_valid (domain))
    return -EINVAL;
  if ((r = vmdr_writer_lock (repo, domain, &lock, NULL, NULL)) < 0)
    return r;
  r = fill_manifest (repo, domain, disks, n, o, &m);
  if (r == 0)
    r = vmdr_manifest_put (repo, &m);
  vmdr_lock_release (lock);
  if (r == 0 && st) {
    *st = (struct vmdr_snapshot_stats) { 0 };
    for (size_t i = 0; i < m.ndisks; i++) {
      st->bytes_read += m.disks[i].bytes_read;
      st->bytes_new += m.disks[i].bytes_new;
    }
  }
  if (r == 0 && out)
    *out = m;
  else
    vmdr_manifest_clear (&m);
  return r;
}
