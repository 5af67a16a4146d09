#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbd-source.h"

int
vmdr_nbd_source_read (void *opaque, unsigned worker, void *buf, size_t len,
                      uint64_t off)
{
  struct vmdr_nbd_source *s = opaque;
  int r;

  if (worker >= VMDR_MAX_THREADS)
    return -EINVAL;
  /* Each worker owns its slot: no lock needed. */
  if (s->conn[worker] == NULL &&
      (r = vmdr_nbd_open_unix (s->socket, s->export, NULL, &s->conn[worker])) < 0)
    return r;
  while (len > 0) {
    size_t n = len > VMDR_NBD_MAX_REQUEST ? VMDR_NBD_MAX_REQUEST : len;
    if ((r = vmdr_nbd_pread (s->conn[worker], buf, n, off)) < 0)
      return r;
    buf = (char *) buf + n;
    off += n;
    len -= n;
  }
  return 0;
}

void
vmdr_nbd_source_close (struct vmdr_nbd_source *s)
{
  for (size_t i = 0; i < VMDR_MAX_THREADS; i++) {
    vmdr_nbd_close (s->conn[i]);
    s->conn[i] = NULL;
  }
}

struct collect {
  uint32_t chunk;
  bool dirty;                   /* which flag means "read it" */
  struct vmdr_chunk_range *v;
  size_t n, cap;
};

static int
collect (void *opaque, uint64_t off, uint64_t len, uint32_t flags)
{
  struct collect *c = opaque;
  uint64_t first, last;
  bool want = c->dirty ? (flags & VMDR_NBD_STATE_DIRTY)
                       : !(flags & (VMDR_NBD_STATE_HOLE | VMDR_NBD_STATE_ZERO));

  if (!want || len == 0)
    return 0;
  first = off / c->chunk;
  last = (off + len - 1) / c->chunk;
  if (c->n > 0 && c->v[c->n - 1].first + c->v[c->n - 1].count >= first) {
    struct vmdr_chunk_range *p = &c->v[c->n - 1];
    if (last + 1 > p->first + p->count)
      p->count = last + 1 - p->first;
    return 0;
  }
  if (c->n == c->cap) {
    size_t cap = c->cap ? 2 * c->cap : 256;
    void *q = reallocarray (c->v, cap, sizeof *c->v);
    if (q == NULL)
      return -ENOMEM;
    c->v = q;
    c->cap = cap;
  }
  c->v[c->n++] = (struct vmdr_chunk_range) { first, last - first + 1 };
  return 0;
}

int
vmdr_nbd_chunk_ranges (const char *socket, const char *export,
                       const char *dirty_bitmap, uint32_t chunk,
                       uint64_t *size, struct vmdr_chunk_range **ranges, size_t *n)
{
  struct collect c = { .chunk = chunk, .dirty = dirty_bitmap != NULL };
  const char *ctx[2] = { NULL, NULL };
  char name[256];
  struct vmdr_nbd *h;
  int r;

  if (dirty_bitmap)
    snprintf (name, sizeof name, "%s%s", VMDR_NBD_CTX_DIRTY_PREFIX, dirty_bitmap);
  else
    snprintf (name, sizeof name, "%s", VMDR_NBD_CTX_ALLOCATION);
  ctx[0] = name;
  if ((r = vmdr_nbd_open_unix (socket, export, ctx, &h)) < 0)
    return r;
  r = vmdr_nbd_extents (h, name, 0, vmdr_nbd_size (h), collect, &c);
  if (r == 0) {
    *size = vmdr_nbd_size (h);
    *ranges = c.v;
    *n = c.n;
  }
  else
    free (c.v);
  vmdr_nbd_close (h);
  return r;
}
