#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "blob.h"
#include "cleanup.h"
#include "disk-index.h"
#include "image-archive.h"
#include "nbd-reader.h"
#include "qemu-img.h"
#include "qemu-nbd.h"
#include "restore.h"
#include "verify.h"

bool
vmdr_restore_format_valid (const char *format)
{
  return strcmp (format, "raw") == 0 || strcmp (format, "qcow2") == 0;
}

static bool
is_damage (int e)
{
  return e == -EBADMSG || e == -EILSEQ || e == -ENOENT;
}

/* An existing PATH may be replaced only with force, and only if it is a
 * regular file: renaming over a device node or a directory is never what
 * the user meant. */
static int
check_target (const char *path, bool force)
{
  struct stat sb;

  if (lstat (path, &sb) < 0)
    return errno == ENOENT ? 0 : -errno;
  if (!force)
    return -EEXIST;
  return S_ISREG (sb.st_mode) ? 0 : -EISDIR;
}

/* A temporary file in PATH's directory: ".NAME.vmdr-XXXXXX", locked for
 * as long as its writer lives (see sweep_stale). */
static int
make_temp (const char *path, char *tmp, size_t size)
{
  char copy[PATH_MAX], copy2[PATH_MAX];
  int fd;

  if (strlen (path) >= sizeof copy)
    return -ENAMETOOLONG;
  strcpy (copy, path);
  strcpy (copy2, path);
  if ((size_t) snprintf (tmp, size, "%s/.%s.vmdr-XXXXXX", dirname (copy),
                         basename (copy2)) >= size)
    return -ENAMETOOLONG;
  fd = mkostemp (tmp, O_CLOEXEC);
  if (fd < 0)
    return -errno;
  if (flock (fd, LOCK_EX | LOCK_NB) < 0) {
    int e = -errno;
    close (fd);
    unlink (tmp);
    return e;
  }
  return fd;
}

/* Remove the temporary files of PATH that a killed restore left: those
 * whose lock nobody holds (a live writer holds its own).  How many. */
static size_t
sweep_stale (const char *path)
{
  char dcopy[PATH_MAX], bcopy[PATH_MAX], prefix[NAME_MAX + 16];
  size_t removed = 0;
  struct dirent *e;
  DIR *d;

  if (strlen (path) >= sizeof dcopy)
    return 0;
  strcpy (dcopy, path);
  strcpy (bcopy, path);
  if ((size_t) snprintf (prefix, sizeof prefix, ".%s.vmdr-", basename (bcopy)) >= sizeof prefix ||
      (d = opendir (dirname (dcopy))) == NULL)
    return 0;
  while ((e = readdir (d)) != NULL) {
    if (strncmp (e->d_name, prefix, strlen (prefix)) != 0)
      continue;
    int fd = openat (dirfd (d), e->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0 && flock (fd, LOCK_EX | LOCK_NB) == 0 &&
        unlinkat (dirfd (d), e->d_name, 0) == 0)
      removed++;
    if (fd >= 0)
      close (fd);
  }
  closedir (d);
  return removed;
}

static int
sync_dir (const char *path)
{
  char copy[PATH_MAX];
  _cleanup_close_ int fd = -1;

  strcpy (copy, path);          /* callers checked the length */
  fd = open (dirname (copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || fsync (fd) < 0)
    return -errno;
  return 0;
}

/* Move the complete TMP to PATH; without FORCE never over a file that
 * appeared meanwhile. */
static int
place (const char *tmp, const char *path, bool force)
{
  if (force) {
    if (rename (tmp, path) < 0)
      return -errno;
  }
  else if (renameat2 (AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) < 0) {
    if (errno != EINVAL && errno != ENOSYS)
      return -errno;
    if (link (tmp, path) < 0)   /* a file system without NOREPLACE */
      return -errno;
    unlink (tmp);
  }
  return sync_dir (path);
}

/* ---- qcow2 through qemu-nbd ----------------------------------------------- */

struct nbd_sink {
  struct vmdr_nbd *conn[VMDR_MAX_THREADS];
  unsigned n;
};

static int
nbd_sink_write (void *opaque, unsigned worker, const void *buf, size_t len,
                uint64_t off)
{
  struct nbd_sink *s = opaque;

  return vmdr_nbd_pwrite (s->conn[worker], buf, len, off);
}

/* Close the connections, the first one flushing: qemu-nbd serves one
 * block backend, so one flush makes every connection's writes durable. */
static int
nbd_sink_close (struct nbd_sink *s, bool flush)
{
  int r = 0;

  if (flush && s->n > 0)
    r = vmdr_nbd_flush (s->conn[0]);
  for (unsigned i = 0; i < s->n; i++)
    vmdr_nbd_close (s->conn[i]);
  s->n = 0;
  return r;
}

/* A fresh directory DIR for the unix socket SOCK of a qemu-nbd (both
 * PATH_MAX bytes). */
static int
socket_path (const struct vmdr_restore_opts *o, char *dir, char *sock)
{
  const char *base = o->scratch_dir ? o->scratch_dir : getenv ("TMPDIR");

  if (base == NULL || *base == '\0')
    base = "/tmp";
  /* A unix socket path has 108 bytes; keep room for "/nbd.sock". */
  if ((size_t) snprintf (dir, PATH_MAX, "%s/vmdr-restore-XXXXXX", base) >= PATH_MAX ||
      strlen (dir) > 90)
    return -ENAMETOOLONG;
  if (mkdtemp (dir) == NULL)
    return -errno;
  if ((size_t) snprintf (sock, PATH_MAX, "%s/nbd.sock", dir) >= PATH_MAX) {
    rmdir (dir);
    return -ENAMETOOLONG;
  }
  return 0;
}

static int
write_qcow2_nbd (struct vmdr_repo *repo, const struct vmdr_disk_tree *t,
             const char *tmp, const struct vmdr_restore_opts *o,
             struct vmdr_disk_read_stats *st, struct vmdr_restore_failure *f)
{
  char size[32], dir[PATH_MAX], sock[PATH_MAX];
  const char *create[] = { "qemu-img", "create", "-q", "-f", "qcow2", tmp, size, NULL };
  struct vmdr_qemu_nbd q = { 0 };
  struct nbd_sink sink = { .n = 0 };
  struct vmdr_read_opts ro = { .fd = -1, .sink = nbd_sink_write, .sopaque = &sink,
                               .threads = o->threads, .progress = o->progress,
                               .popaque = o->popaque };
  int r, r2;

  snprintf (size, sizeof size, "%llu", (unsigned long long) t->virtual_size);
  if ((r = vmdr_run_quiet (create)) < 0 || (r = socket_path (o, dir, sock)) < 0)
    return r;
  r = vmdr_qemu_nbd_start_writable (tmp, "qcow2", "restore", sock, o->threads, &q);
  while (r == 0 && sink.n < o->threads)
    if ((r = vmdr_nbd_open_unix (sock, "restore", NULL, &sink.conn[sink.n])) == 0)
      sink.n++;
  if (r == 0) {
    r = vmdr_disk_read (repo, t, &ro, st, &f->where);
    f->damage = is_damage (r);
  }
  r2 = nbd_sink_close (&sink, r == 0);
  if (r == 0)
    r = r2;
  r2 = vmdr_qemu_nbd_stop (&q);
  if (r == 0)
    r = r2;
  unlink (sock);
  rmdir (dir);
  return r;
}

/* ---- qcow2, its data clusters written directly ----------------------------- */

/* The zero chunks of a disk, trimmed through qemu-nbd in runs. */
struct holes {
  struct vmdr_nbd *conn;
  uint64_t chunk, size;
  uint64_t start, len;          /* the run being gathered */
};

static int
trim_run (struct holes *h)
{
  int r = 0;

  while (r == 0 && h->len > 0) {
    uint64_t n = h->len < VMDR_NBD_MAX_TRIM ? h->len : VMDR_NBD_MAX_TRIM;
    r = vmdr_nbd_trim (h->conn, n, h->start);
    h->start += n;
    h->len -= n;
  }
  return r;
}

static int
add_hole (struct holes *h, uint64_t off, uint64_t len)
{
  int r = 0;

  if (len > h->size - off)
    len = h->size - off;        /* the last chunk may be short */
  if (h->len > 0 && h->start + h->len != off)
    r = trim_run (h);
  if (h->len == 0)
    h->start = off;
  h->len += len;
  return r;
}

/* Tree walk callback: each zero chunk (or zero subtree) is a hole. */
static int
hole_leaf (void *opaque, uint64_t first, uint64_t count, const struct vmdr_digest *d)
{
  struct holes *h = opaque;
  int r = 0;

  if (d == NULL)
    return add_hole (h, first * h->chunk, count * h->chunk);
  for (uint64_t i = 0; i < count && r == 0; i++)
    if (vmdr_digest_is_zero (&d[i]))
      r = add_hole (h, (first + i) * h->chunk, h->chunk);
  return r;
}

/* Make the disk's holes zero clusters of the new image TMP (whose
 * clusters are all preallocated), through qemu-nbd. */
static int
mark_holes (struct vmdr_repo *repo, const struct vmdr_disk_tree *t, const char *tmp,
            const struct vmdr_restore_opts *o)
{
  char dir[PATH_MAX], sock[PATH_MAX];
  struct vmdr_qemu_nbd q = { 0 };
  struct holes h = { .chunk = t->chunk_size, .size = t->virtual_size };
  struct vmdr_zctx *z = NULL;
  int r, r2;

  if ((r = socket_path (o, dir, sock)) < 0)
    return r;
  r = vmdr_qemu_nbd_start_writable (tmp, "qcow2", "restore", sock, 1, &q);
  if (r == 0)
    r = vmdr_nbd_open_unix (sock, "restore", NULL, &h.conn);
  if (r == 0 && (r = vmdr_zctx_new (1, &z)) == 0)
    r = vmdr_disk_tree_walk (repo, z, t, hole_leaf, &h);
  if (r == 0)
    r = trim_run (&h);
  if (r == 0)
    r = vmdr_nbd_flush (h.conn);
  vmdr_zctx_free (z);
  vmdr_nbd_close (h.conn);
  r2 = vmdr_qemu_nbd_stop (&q);
  unlink (sock);
  rmdir (dir);
  return r < 0 ? r : r2;
}

/* A qcow2 image made by qemu-img with its metadata preallocated, the
 * holes made zero clusters, and the data written straight into the data
 * clusters `qemu-img map` reports, as a raw restore writes: through
 * qemu-nbd, the bytes cost two more copies and half the speed.  1 when
 * qemu-img's map is not plain (then write through qemu-nbd instead). */
static int
write_qcow2_direct (struct vmdr_repo *repo, const struct vmdr_disk_tree *t,
                    const char *tmp, const struct vmdr_restore_opts *o,
                    struct vmdr_disk_read_stats *st, struct vmdr_restore_failure *f)
{
  char size[32];
  const char *create[] = { "qemu-img", "create", "-q", "-f", "qcow2",
                           "-o", "preallocation=metadata", tmp, size, NULL };
  _cleanup_free_ struct vmdr_out_extent *layout = NULL;
  _cleanup_close_ int fd = -1;
  size_t n = 0;
  int r;

  snprintf (size, sizeof size, "%llu", (unsigned long long) t->virtual_size);
  if ((r = vmdr_run_quiet (create)) < 0 || (r = mark_holes (repo, t, tmp, o)) < 0)
    return r;
  r = vmdr_qemu_img_layout (tmp, t->virtual_size, &layout, &n);
  if (r == -ENOTSUP || r == -EBADMSG || r == -E2BIG)
    return 1;
  if (r < 0)
    return r;
  if ((fd = open (tmp, O_RDWR | O_CLOEXEC)) < 0)
    return -errno;
  struct vmdr_read_opts ro = { .fd = fd, .layout = layout, .nlayout = n,
                               .threads = o->threads, .progress = o->progress,
                               .popaque = o->popaque };
  r = vmdr_disk_read (repo, t, &ro, st, &f->where);   /* fsyncs */
  f->damage = is_damage (r);
  return r;
}

static int
write_qcow2 (struct vmdr_repo *repo, const struct vmdr_disk_tree *t,
             const char *tmp, const struct vmdr_restore_opts *o,
             struct vmdr_disk_read_stats *st, struct vmdr_restore_failure *f)
{
  int r = write_qcow2_direct (repo, t, tmp, o, st, f);

  return r == 1 ? write_qcow2_nbd (repo, t, tmp, o, st, f) : r;
}

/* ---- the outputs ---------------------------------------------------------- */

/* Check PATH may be written and make its temporary file: the fd, or -errno. */
static int
begin_output (const char *path, bool force, char *tmp, size_t size)
{
  int r = check_target (path, force);

  return r < 0 ? r : make_temp (path, tmp, size);
}

/* Move the temporary file into place after success R == 0, else remove it. */
static int
end_output (const char *tmp, const char *path, bool force, int r)
{
  if (r == 0)
    r = place (tmp, path, force);
  if (r < 0)
    unlink (tmp);
  return r;
}

int
vmdr_restore_disk_file (struct vmdr_repo *repo, const struct vmdr_manifest_disk *d,
                        const char *path, const char *format,
                        const struct vmdr_restore_opts *o,
                        struct vmdr_disk_read_stats *st,
                        struct vmdr_restore_failure *f)
{
  struct vmdr_disk_tree t;
  char tmp[PATH_MAX];
  _cleanup_close_ int fd = -1;
  int r;

  memset (f, 0, sizeof *f);
  if (!vmdr_restore_format_valid (format) || o->threads < 1 ||
      o->threads > VMDR_MAX_THREADS)
    return -EINVAL;
  if ((fd = begin_output (path, o->force, tmp, sizeof tmp)) < 0)
    return fd;
  vmdr_manifest_disk_tree (d, &t);
  if (strcmp (format, "qcow2") == 0)
    r = write_qcow2 (repo, &t, tmp, o, st, f);
  else if (ftruncate (fd, (off_t) t.virtual_size) < 0)
    r = -errno;
  else {
    struct vmdr_read_opts ro = { .fd = fd, .threads = o->threads,
                                 .progress = o->progress, .popaque = o->popaque };
    r = vmdr_disk_read (repo, &t, &ro, st, &f->where);   /* fsyncs */
    f->damage = is_damage (r);
  }
  return end_output (tmp, path, o->force, r);
}

int
vmdr_restore_memory_file (struct vmdr_repo *repo,
                          const struct vmdr_manifest_memory *mem,
                          const char *path, const struct vmdr_restore_opts *o,
                          struct vmdr_restore_failure *f)
{
  struct vmdr_stream_tree t;
  char tmp[PATH_MAX];
  _cleanup_close_ int fd = -1;
  int r;

  memset (f, 0, sizeof *f);
  if (!mem->present)
    return -EINVAL;
  if ((fd = begin_output (path, o->force, tmp, sizeof tmp)) < 0)
    return fd;
  vmdr_manifest_memory_tree (mem, &t);
  r = vmdr_stream_restore (repo, &t, fd, o->threads, NULL, &f->where);
  f->damage = is_damage (r);
  if (r == 0 && fsync (fd) < 0)
    r = -errno;
  return end_output (tmp, path, o->force, r);
}

/* ---- a whole snapshot ----------------------------------------------------- */

static int __attribute__((format (printf, 3, 4)))
fail (struct vmdr_restore_result *res, int r, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (res->error, sizeof res->error, fmt, ap);
  va_end (ap);
  return r;
}

void
vmdr_restore_result_clear (struct vmdr_restore_result *res)
{
  for (size_t i = 0; res->disks && i < res->ndisks; i++)
    free (res->disks[i].path);
  free (res->disks);
  free (res->memory_path);
  memset (res, 0, sizeof *res);
}

static bool
selected (const struct vmdr_restore_files_opts *o, const char *target)
{
  if (o->disks == NULL)
    return true;
  for (size_t i = 0; i < o->ndisks; i++)
    if (strcmp (o->disks[i], target) == 0)
      return true;
  return false;
}

/* Decide every output's name and check none is in the way; for an
 * ARCHIVE, the names of its entries (raw images), nothing to check. */
static int
plan (const struct vmdr_manifest *m, const struct vmdr_restore_files_opts *o,
      bool archive, struct vmdr_restore_result *res)
{
  const char *name = o->name ? o->name : m->domain;
  int r;

  for (size_t i = 0; i < o->ndisks; i++) {
    size_t k = 0;
    while (k < m->ndisks && strcmp (m->disks[k].target, o->disks[i]) != 0)
      k++;
    if (k == m->ndisks)
      return fail (res, -ENOENT, "snapshot '%s' has no disk '%s'", m->id, o->disks[i]);
  }
  if (o->memory && !m->memory.present)
    return fail (res, -ENOENT, "snapshot '%s' has no memory image", m->id);
  if ((res->disks = calloc (m->ndisks, sizeof *res->disks)) == NULL)
    return fail (res, -ENOMEM, "out of memory");
  for (size_t i = 0; i < m->ndisks; i++) {
    const struct vmdr_manifest_disk *d = &m->disks[i];
    struct vmdr_restored_disk *out = &res->disks[res->ndisks];
    const char *fmt = archive ? "raw" : o->format ? o->format
      : vmdr_restore_format_valid (d->format) ? d->format : "raw";

    if (!selected (o, d->target))
      continue;
    snprintf (out->target, sizeof out->target, "%s", d->target);
    snprintf (out->format, sizeof out->format, "%s", fmt);
    out->virtual_size = d->virtual_size;
    if ((archive ? asprintf (&out->path, "%s-%s.raw", name, d->target)
         : asprintf (&out->path, "%s/%s-%s.%s", o->dir, name, d->target, fmt)) < 0) {
      out->path = NULL;         /* undefined after a failure */
      return fail (res, -ENOMEM, "out of memory");
    }
    res->ndisks++;
    if (archive)
      continue;
    res->stale_removed += sweep_stale (out->path);
    if ((r = check_target (out->path, o->io.force)) < 0)
      return fail (res, r, r == -EEXIST ? "'%s' exists (use --force to replace it)"
                   : "cannot replace '%s': %s", out->path, strerror (-r));
  }
  if (o->memory) {
    if ((archive ? asprintf (&res->memory_path, "%s.save", name)
         : asprintf (&res->memory_path, "%s/%s.save", o->dir, name)) < 0) {
      res->memory_path = NULL;
      return fail (res, -ENOMEM, "out of memory");
    }
    if (archive)
      return 0;
    res->stale_removed += sweep_stale (res->memory_path);
    if ((r = check_target (res->memory_path, o->io.force)) < 0)
      return fail (res, r, r == -EEXIST ? "'%s' exists (use --force to replace it)"
                   : "cannot replace '%s': %s", res->memory_path, strerror (-r));
  }
  return 0;
}

static int
failed_output (struct vmdr_restore_result *res, int r, const char *id, const char *what,
               const char *path, const struct vmdr_restore_failure *f)
{
  char hex[VMDR_DIGEST_HEX_LEN + 1];

  if (!f->damage)
    return fail (res, r, "cannot write '%s': %s", path, strerror (-r));
  if (!f->where.chunk)
    return fail (res, r, "snapshot '%s' %s: index damaged: %s", id, what,
                 vmdr_damage_text (r));
  vmdr_digest_to_hex (&f->where.digest, hex);
  return fail (res, r, "snapshot '%s' %s: chunk %s at offset %llu: %s", id, what, hex,
               (unsigned long long) f->where.offset, vmdr_damage_text (r));
}

int
vmdr_restore_snapshot_files (struct vmdr_repo *repo, const struct vmdr_manifest *m,
                             const struct vmdr_restore_files_opts *o,
                             struct vmdr_restore_result *res)
{
  struct vmdr_restore_failure f;
  size_t done = 0, k = 0;
  char what[64];
  int r;

  memset (res, 0, sizeof *res);
  if ((r = plan (m, o, false, res)) < 0)
    return r;
  for (size_t i = 0; i < m->ndisks && r == 0; i++) {
    struct vmdr_disk_read_stats st = { 0 };
    struct vmdr_restored_disk *out = &res->disks[k];
    if (k == res->ndisks || strcmp (m->disks[i].target, out->target) != 0)
      continue;
    r = vmdr_restore_disk_file (repo, &m->disks[i], out->path, out->format, &o->io, &st, &f);
    snprintf (what, sizeof what, "disk %s", out->target);
    if (r < 0)
      failed_output (res, r, m->id, what, out->path, &f);
    else {
      out->bytes = st.bytes;
      res->bytes += st.bytes;
      done = ++k;
    }
  }
  if (r == 0 && o->memory &&
      (r = vmdr_restore_memory_file (repo, &m->memory, res->memory_path, &o->io, &f)) < 0)
    failed_output (res, r, m->id, "memory image", res->memory_path, &f);
  if (r < 0)                    /* all or nothing: no half a guest */
    for (size_t i = 0; i < done; i++)
      unlink (res->disks[i].path);
  return r;
}

/* ---- a whole snapshot as a tar archive ----------------------------------- */

/* Every entry's time: the snapshot's, so that one snapshot always makes
 * the same archive. */
static time_t
snapshot_time (const struct vmdr_manifest *m)
{
  struct tm tm = { 0 };
  const char *end = strptime (m->created, "%Y-%m-%dT%H:%M:%S", &tm);

  return end ? timegm (&tm) : time (NULL);
}

/* failed_output for an archive at PATH, or on standard output (NULL). */
static int
archive_failed (struct vmdr_restore_result *res, int r, const char *id, const char *what,
                const char *path, const struct vmdr_restore_failure *f)
{
  if (path == NULL && !f->damage)
    return fail (res, r, "cannot write to standard output: %s", strerror (-r));
  return failed_output (res, r, id, what, path, f);
}

/* Write the entries of M planned in RES to AR, which goes to PATH (NULL:
 * standard output, for messages). */
static int
write_entries (struct vmdr_repo *repo, const struct vmdr_manifest *m,
               const struct vmdr_restore_files_opts *o, struct vmdr_image_archive *ar,
               const char *path, struct vmdr_restore_result *res)
{
  const char *name = o->name ? o->name : m->domain;
  struct vmdr_restore_failure f = { 0 };
  _cleanup_free_ char *xml = NULL;
  char what[64];
  size_t k = 0;
  int r = 0;

  if (m->domain_xml) {
    if (asprintf (&xml, "%s.xml", name) < 0) {
      xml = NULL;
      return fail (res, -ENOMEM, "out of memory");
    }
    if ((r = vmdr_image_archive_put_file (ar, xml, m->domain_xml, strlen (m->domain_xml))) < 0)
      return archive_failed (res, r, m->id, "domain XML", path, &f);
  }
  for (size_t i = 0; i < m->ndisks && r == 0; i++) {
    struct vmdr_disk_read_stats st = { 0 };
    struct vmdr_restored_disk *d = &res->disks[k];
    struct vmdr_disk_tree t;
    if (k == res->ndisks || strcmp (m->disks[i].target, d->target) != 0)
      continue;
    vmdr_manifest_disk_tree (&m->disks[i], &t);
    r = vmdr_image_archive_put_disk (ar, repo, d->path, &t, &o->io, &st, &f);
    snprintf (what, sizeof what, "disk %s", d->target);
    if (r < 0)
      return archive_failed (res, r, m->id, what, path, &f);
    d->bytes = st.bytes;
    res->bytes += st.bytes;
    k++;
  }
  if (o->memory) {
    struct vmdr_stream_tree t;
    vmdr_manifest_memory_tree (&m->memory, &t);
    if ((r = vmdr_image_archive_put_stream (ar, repo, res->memory_path, &t, &o->io, &f)) < 0)
      return archive_failed (res, r, m->id, "memory image", path, &f);
  }
  if ((r = vmdr_image_archive_close (ar)) < 0)
    return archive_failed (res, r, m->id, "", path, &f);
  res->archive_bytes = vmdr_image_archive_bytes (ar);
  return 0;
}

int
vmdr_restore_snapshot_archive (struct vmdr_repo *repo, const struct vmdr_manifest *m,
                               const struct vmdr_restore_files_opts *o,
                               const char *path, int fd,
                               struct vmdr_restore_result *res)
{
  struct vmdr_image_archive *ar = NULL;
  _cleanup_close_ int tfd = -1;
  char tmp[PATH_MAX];
  int r;

  memset (res, 0, sizeof *res);
  if ((o->format && strcmp (o->format, "raw") != 0) || (path == NULL && fd < 0) ||
      o->io.threads < 1 || o->io.threads > VMDR_MAX_THREADS)
    return fail (res, -EINVAL, "invalid arguments");
  if ((r = plan (m, o, true, res)) < 0)
    return r;
  if (path) {
    res->stale_removed += sweep_stale (path);
    if ((r = check_target (path, o->io.force)) < 0)
      return fail (res, r, r == -EEXIST ? "'%s' exists (use --force to replace it)"
                   : "cannot replace '%s': %s", path, strerror (-r));
    if ((tfd = make_temp (path, tmp, sizeof tmp)) < 0)
      return fail (res, tfd, "cannot write '%s': %s", path, strerror (-tfd));
    fd = tfd;
  }
  if ((r = vmdr_image_archive_new (fd, snapshot_time (m), &ar)) < 0)
    fail (res, r, "out of memory");
  else
    r = write_entries (repo, m, o, ar, path, res);
  vmdr_image_archive_free (ar);
  if (path) {
    if (r == 0 && fsync (tfd) < 0)
      r = fail (res, -errno, "cannot write '%s': %s", path, strerror (errno));
    if ((r = end_output (tmp, path, o->io.force, r)) < 0 && res->error[0] == '\0')
      fail (res, r, "cannot write '%s': %s", path, strerror (-r));
  }
  return r;
}
