/* The local-directory backend: one file per object under the root, written
 * to tmp/ and renamed into place, so that a put is atomic. */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "cleanup.h"

/* Objects the read op keeps open: a restore reads thousands of blobs from
 * each pack, and an open and a close per blob cost as much as the read.
 * A few suffice (the workers read a handful of packs at a time); beyond
 * them a read opens and closes its own descriptor. */
#define OPEN_MAX 16

struct open_object {
  int fd;                       /* -1: a free slot */
  unsigned users;               /* reads using fd now: not closed meanwhile */
  bool stale;                   /* put or deleted since: close when unused */
  uint64_t last;                /* for least-recently-used eviction */
  char key[VMDR_KEY_MAX + 1];
};

struct local {
  struct vmdr_backend base;     /* first: the ops see a struct vmdr_backend */
  int dirfd;                    /* the root, for *at() calls */
  char *root;
  pthread_mutex_t lock;         /* the open objects */
  struct open_object open[OPEN_MAX];
  uint64_t clock;
};

static struct local *
to_local (struct vmdr_backend *b)
{
  return (struct local *) b;
}

static int
local_open (const char *location, struct vmdr_backend **out)
{
  struct local *l;
  struct stat st;
  int fd;

  if (*location == '\0')
    return -EINVAL;
  fd = open (location, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  if (fstat (fd, &st) < 0 || !S_ISDIR (st.st_mode)) {
    close (fd);
    return -ENOTDIR;
  }
  l = calloc (1, sizeof *l);
  if (l == NULL || (l->root = strdup (location)) == NULL) {
    free (l);
    close (fd);
    return -ENOMEM;
  }
  l->base.ops = &vmdr_backend_local;
  l->dirfd = fd;
  pthread_mutex_init (&l->lock, NULL);
  for (size_t i = 0; i < OPEN_MAX; i++)
    l->open[i].fd = -1;
  *out = &l->base;
  return 0;
}

static void
local_close (struct vmdr_backend *b)
{
  struct local *l = to_local (b);

  if (l == NULL)
    return;
  for (size_t i = 0; i < OPEN_MAX; i++)
    if (l->open[i].fd >= 0)
      close (l->open[i].fd);
  pthread_mutex_destroy (&l->lock);
  close (l->dirfd);
  free (l->root);
  free (l);
}

/* ---- descriptors kept open for read ------------------------------------- */

static struct open_object *
find_open (struct local *l, const char *key)
{
  for (size_t i = 0; i < OPEN_MAX; i++)
    if (l->open[i].fd >= 0 && !l->open[i].stale &&
        strcmp (l->open[i].key, key) == 0)
      return &l->open[i];
  return NULL;
}

/* KEY was replaced or deleted through this backend: forget its descriptor
 * (closed now, or by the last read still using it). */
static void
forget_open (struct local *l, const char *key)
{
  struct open_object *o;

  pthread_mutex_lock (&l->lock);
  if ((o = find_open (l, key)) != NULL) {
    if (o->users == 0) {
      close (o->fd);
      o->fd = -1;
    }
    else
      o->stale = true;
  }
  pthread_mutex_unlock (&l->lock);
}

/* A descriptor for reading KEY into *fd; *slot is the open object it
 * belongs to, or NULL when the caller must close it itself. */
static int
acquire_open (struct local *l, const char *key, int *fd, struct open_object **slot)
{
  struct open_object *o, *victim = NULL;
  struct stat st;
  int nfd, r = 0;

  pthread_mutex_lock (&l->lock);
  if ((o = find_open (l, key)) != NULL) {
    o->users++;
    o->last = ++l->clock;
    *fd = o->fd;
    *slot = o;
    pthread_mutex_unlock (&l->lock);
    return 0;
  }
  pthread_mutex_unlock (&l->lock);

  /* Open without the lock: other threads go on reading meanwhile. */
  nfd = openat (l->dirfd, key, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (nfd < 0)
    return -errno;
  if (fstat (nfd, &st) < 0)
    r = -errno;
  else if (!S_ISREG (st.st_mode))
    r = -EINVAL;
  if (r < 0) {
    close (nfd);
    return r;
  }

  pthread_mutex_lock (&l->lock);
  if ((o = find_open (l, key)) != NULL) {       /* another thread won */
    o->users++;
    o->last = ++l->clock;
    *fd = o->fd;
    *slot = o;
    pthread_mutex_unlock (&l->lock);
    close (nfd);
    return 0;
  }
  for (size_t i = 0; i < OPEN_MAX; i++) {
    struct open_object *c = &l->open[i];
    if (c->fd < 0) {
      victim = c;
      break;
    }
    if (c->users == 0 && (victim == NULL || c->last < victim->last))
      victim = c;
  }
  if (victim) {
    if (victim->fd >= 0)
      close (victim->fd);
    victim->fd = nfd;
    victim->users = 1;
    victim->stale = false;
    victim->last = ++l->clock;
    snprintf (victim->key, sizeof victim->key, "%s", key);
  }
  pthread_mutex_unlock (&l->lock);
  *fd = nfd;
  *slot = victim;
  return 0;
}

static void
release_open (struct local *l, int fd, struct open_object *o)
{
  if (o == NULL) {
    close (fd);
    return;
  }
  pthread_mutex_lock (&l->lock);
  if (--o->users == 0 && o->stale) {
    close (o->fd);
    o->fd = -1;
    o->stale = false;
  }
  pthread_mutex_unlock (&l->lock);
}

/* mkdir -p of the directories leading to KEY, relative to the root. */
static int
make_parents (int dirfd, const char *key)
{
  char path[VMDR_KEY_MAX + 1];
  char *slash;

  snprintf (path, sizeof path, "%s", key);
  for (slash = strchr (path, '/'); slash; slash = strchr (slash + 1, '/')) {
    *slash = '\0';
    if (mkdirat (dirfd, path, 0755) < 0 && errno != EEXIST)
      return -errno;
    *slash = '/';
  }
  return 0;
}

static int
fsync_parent (int dirfd, const char *key)
{
  char path[VMDR_KEY_MAX + 1];
  char *slash;
  int fd, r = 0;

  snprintf (path, sizeof path, "%s", key);
  slash = strrchr (path, '/');
  if (slash)
    *slash = '\0';
  fd = openat (dirfd, slash ? path : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  if (fsync (fd) < 0)
    r = -errno;
  close (fd);
  return r;
}

static int
write_all (int fd, const void *data, size_t len)
{
  const char *p = data;

  while (len > 0) {
    ssize_t n = write (fd, p, len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    p += n;
    len -= (size_t) n;
  }
  return 0;
}

/* Objects at least this large (packs) are written around the page cache. */
#define DIRECT_MIN (1u << 20)
#define DIRECT_ALIGN 4096u      /* covers every logical block size */
#define DIRECT_BOUNCE (1u << 20)

/* Write LEN bytes with O_DIRECT through an aligned bounce buffer, the
 * unaligned tail buffered.  A backup writes each pack once and seldom reads
 * it soon, and on a hypervisor host the page cache belongs to the guests:
 * a buffered backup of a large disk evicts their working sets and pays a
 * copy into the cache besides.  A file system without O_DIRECT (EINVAL)
 * gets buffered writes. */
static int
write_direct (int fd, const void *data, size_t len)
{
  const char *p = data;
  int fl = fcntl (fd, F_GETFL);
  bool aligned = (uintptr_t) p % DIRECT_ALIGN == 0;
  void *bounce = MAP_FAILED;
  size_t done = 0;
  int r = 0;

  if (fl < 0 || fcntl (fd, F_SETFL, fl | O_DIRECT) < 0)
    return write_all (fd, data, len);
  /* An aligned buffer (a pack writer's) goes out as it is; any other
   * through a bounce buffer, mapped, not malloc()ed: page-aligned, and gone
   * at once when unmapped (an aligned block in malloc's heap keeps freed
   * packs around it). */
  if (!aligned)
    bounce = mmap (NULL, DIRECT_BOUNCE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  while ((aligned || bounce != MAP_FAILED) && len - done >= DIRECT_ALIGN) {
    size_t n = (len - done) & ~(size_t) (DIRECT_ALIGN - 1);
    const char *src = p + done;
    if (!aligned) {
      n = n < DIRECT_BOUNCE ? n : DIRECT_BOUNCE;
      src = memcpy (bounce, p + done, n);
    }
    ssize_t w = write (fd, src, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0 && errno != EINVAL) {
      r = -errno;
      break;
    }
    if (w > 0)
      done += (size_t) w;
    if (w != (ssize_t) n)
      break;                    /* refused or short: the rest buffered */
  }
  if (bounce != MAP_FAILED)
    munmap (bounce, DIRECT_BOUNCE);
  if (r < 0)
    return r;
  if (fcntl (fd, F_SETFL, fl) < 0)
    return -errno;
  return write_all (fd, p + done, len - done);
}

/* Write a temporary file under tmp/ and return its name in TMP. */
static int
write_temp (struct local *l, const void *data, size_t len, char *tmp,
            size_t tmpsize)
{
  _cleanup_close_ int fd = -1;
  int r;

  if (mkdirat (l->dirfd, "tmp", 0755) < 0 && errno != EEXIST)
    return -errno;
  snprintf (tmp, tmpsize, "tmp/put.XXXXXX");
  /* mkstemp needs a path it can open: go through /proc/self/fd. */
  {
    char full[PATH_MAX];
    int n = snprintf (full, sizeof full, "%s/%s", l->root, tmp);
    if (n < 0 || (size_t) n >= sizeof full)
      return -ENAMETOOLONG;
    fd = mkostemp (full, O_CLOEXEC);
    if (fd < 0)
      return -errno;
    snprintf (tmp, tmpsize, "%s", full + strlen (l->root) + 1);
  }
  r = len >= DIRECT_MIN ? write_direct (fd, data, len) : write_all (fd, data, len);
  if (r == 0 && fsync (fd) < 0)
    r = -errno;
  if (r < 0)
    unlinkat (l->dirfd, tmp, 0);
  return r;
}

static int
local_put (struct vmdr_backend *b, const char *key, const void *data,
           size_t len, unsigned flags)
{
  struct local *l = to_local (b);
  char tmp[64];
  int r;

  if (!vmdr_key_valid (key))
    return -EINVAL;
  r = make_parents (l->dirfd, key);
  if (r < 0)
    return r;
  r = write_temp (l, data, len, tmp, sizeof tmp);
  if (r < 0)
    return r;
  /* link() fails if the name exists: that is the exclusive create. */
  if (flags & VMDR_PUT_EXCLUSIVE)
    r = linkat (l->dirfd, tmp, l->dirfd, key, 0) < 0 ? -errno : 0;
  else
    r = renameat (l->dirfd, tmp, l->dirfd, key) < 0 ? -errno : 0;
  if (r < 0 || (flags & VMDR_PUT_EXCLUSIVE))
    unlinkat (l->dirfd, tmp, 0);
  if (r < 0)
    return r;
  forget_open (l, key);
  return fsync_parent (l->dirfd, key);
}

static int
local_get (struct vmdr_backend *b, const char *key, uint64_t offset,
           size_t len, size_t max, void **data, size_t *len_out)
{
  struct local *l = to_local (b);
  _cleanup_close_ int fd = -1;
  _cleanup_free_ char *buf = NULL;
  struct stat st;
  size_t got = 0;

  if (!vmdr_key_valid (key))
    return -EINVAL;
  fd = openat (l->dirfd, key, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return -errno;
  if (fstat (fd, &st) < 0)
    return -errno;
  if (!S_ISREG (st.st_mode))
    return -EINVAL;
  if (offset > (uint64_t) st.st_size ||
      (len > 0 && len > (uint64_t) st.st_size - offset))
    return -ERANGE;
  if (len == 0)
    len = (size_t) ((uint64_t) st.st_size - offset);
  if (len > max)
    return -EFBIG;
  buf = malloc (len + 1);
  if (buf == NULL)
    return -ENOMEM;
  while (got < len) {
    ssize_t n = pread (fd, buf + got, len - got, (off_t) (offset + got));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -errno;
    if (n == 0)
      return -ERANGE;           /* truncated under us */
    got += (size_t) n;
  }
  buf[len] = '\0';
  *data = STEAL_PTR (buf);
  *len_out = len;
  return 0;
}

static int
local_read (struct vmdr_backend *b, const char *key, uint64_t offset,
            size_t len, void *buf)
{
  struct local *l = to_local (b);
  struct open_object *o = NULL;
  size_t got = 0;
  int fd = -1, r = 0;

  if (len == 0 || len > VMDR_READ_MAX || offset > (uint64_t) INT64_MAX - len ||
      !vmdr_key_valid (key))
    return -EINVAL;
  if ((r = acquire_open (l, key, &fd, &o)) < 0)
    return r;
  while (got < len) {
    ssize_t n = pread (fd, (char *) buf + got, len - got, (off_t) (offset + got));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      r = n < 0 ? -errno : -ERANGE;     /* 0: the object ends before */
      break;
    }
    got += (size_t) n;
  }
  release_open (l, fd, o);
  return r;
}

/* The kernel reads the range ahead, asynchronously: a restore's workers
 * then find the next runs of blobs in the page cache instead of waiting
 * for the disk between their CPU work. */
static void
local_prefetch (struct vmdr_backend *b, const char *key, uint64_t offset, size_t len)
{
  struct local *l = to_local (b);
  struct open_object *o = NULL;
  int fd = -1;

  if (len == 0 || offset > (uint64_t) INT64_MAX - len || !vmdr_key_valid (key) ||
      acquire_open (l, key, &fd, &o) < 0)
    return;
  (void) posix_fadvise (fd, (off_t) offset, (off_t) len, POSIX_FADV_WILLNEED);
  release_open (l, fd, o);
}

static int
local_stat (struct vmdr_backend *b, const char *key,
            struct vmdr_object_info *info)
{
  struct local *l = to_local (b);
  struct stat st;

  if (!vmdr_key_valid (key))
    return -EINVAL;
  if (fstatat (l->dirfd, key, &st, AT_SYMLINK_NOFOLLOW) < 0)
    return -errno;
  if (!S_ISREG (st.st_mode))
    return -ENOENT;
  info->size = (uint64_t) st.st_size;
  info->mtime = st.st_mtime;
  return 0;
}

/* Open directory PATH under the root for reading; *d stays NULL (and 0 is
 * returned) when it does not exist. */
static int
open_dir (struct local *l, const char *path, DIR **d)
{
  int fd = openat (l->dirfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

  *d = NULL;
  if (fd < 0)
    return errno == ENOENT ? 0 : -errno;
  *d = fdopendir (fd);
  if (*d == NULL) {
    int r = -errno;
    close (fd);
    return r;
  }
  return 0;
}

/* Depth-first walk of directory DIR (relative to the root). */
static int
walk (struct local *l, char *dir, size_t dirlen, const char *prefix,
      vmdr_list_fn fn, void *opaque, int depth)
{
  DIR *d;
  struct dirent *e;
  int r = 0;

  if (depth > 16)               /* keys are at most a few levels deep */
    return 0;
  if ((r = open_dir (l, dirlen ? dir : ".", &d)) < 0 || d == NULL)
    return r;
  while (r == 0 && (e = readdir (d)) != NULL) {
    size_t n = strlen (e->d_name), len, plen = strlen (prefix);
    struct vmdr_object_info info;
    struct stat st;

    /* Dot files are not objects; tmp/ holds unfinished puts. */
    if (e->d_name[0] == '.' || dirlen + n + 2 > VMDR_KEY_MAX ||
        (dirlen == 0 && strcmp (e->d_name, "tmp") == 0))
      continue;
    len = dirlen + n + (dirlen ? 1 : 0);
    snprintf (dir + dirlen, VMDR_KEY_MAX + 1 - dirlen, "%s%s",
              dirlen ? "/" : "", e->d_name);
    /* Prune subtrees that cannot match the prefix. */
    if (strncmp (dir, prefix, len < plen ? len : plen) == 0) {
      if (fstatat (l->dirfd, dir, &st, AT_SYMLINK_NOFOLLOW) < 0)
        r = errno == ENOENT ? 0 : -errno;
      else if (S_ISDIR (st.st_mode))
        r = walk (l, dir, len, prefix, fn, opaque, depth + 1);
      else if (S_ISREG (st.st_mode) && len >= plen) {
        info.size = (uint64_t) st.st_size;
        info.mtime = st.st_mtime;
        r = fn (opaque, dir, &info);
      }
    }
    dir[dirlen] = '\0';
  }
  closedir (d);
  return r;
}

static int
local_list (struct vmdr_backend *b, const char *prefix, vmdr_list_fn fn,
            void *opaque)
{
  char dir[VMDR_KEY_MAX + 1] = "";

  return walk (to_local (b), dir, 0, prefix, fn, opaque, 0);
}

static int
local_del (struct vmdr_backend *b, const char *key)
{
  struct local *l = to_local (b);

  if (!vmdr_key_valid (key))
    return -EINVAL;
  forget_open (l, key);
  if (unlinkat (l->dirfd, key, 0) < 0 && errno != ENOENT)
    return -errno;
  return 0;
}

static int
local_sweep_temp (struct vmdr_backend *b, time_t cutoff, uint64_t *removed)
{
  struct local *l = to_local (b);
  struct dirent *e;
  struct stat st;
  DIR *d;
  int fd, r = 0;

  *removed = 0;
  if ((r = open_dir (l, "tmp", &d)) < 0 || d == NULL)
    return r;
  fd = dirfd (d);
  while ((e = readdir (d)) != NULL) {
    if (strncmp (e->d_name, "put.", 4) != 0 ||
        fstatat (fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
        !S_ISREG (st.st_mode) || st.st_mtime > cutoff)
      continue;
    if (unlinkat (fd, e->d_name, 0) < 0 && errno != ENOENT) {
      r = -errno;
      break;
    }
    (*removed)++;
  }
  closedir (d);
  return r;
}

const struct vmdr_backend_ops vmdr_backend_local = {
  .name = "file",
  .atomic_put = true,
  .open = local_open,
  .close = local_close,
  .put = local_put,
  .get = local_get,
  .read = local_read,
  .prefetch = local_prefetch,
  .stat = local_stat,
  .list = local_list,
  .del = local_del,
  .sweep_temp = local_sweep_temp,
};
