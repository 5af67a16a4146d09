#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <libnbd.h>

#include "nbd-reader.h"

struct vmdr_nbd {
  struct nbd_handle *nbd;
  uint64_t size;
};

/* libnbd errno is 0 for some failures (protocol errors): never return 0. */
static int
nbd_errno (void)
{
  int e = nbd_get_errno ();
  return e > 0 ? -e : -EIO;
}

const char *
vmdr_nbd_last_error (void)
{
  const char *msg = nbd_get_error ();
  return msg ? msg : "unknown NBD error";
}

int
vmdr_nbd_open_unix (const char *socket, const char *export,
                    const char *const *contexts, struct vmdr_nbd **out)
{
  struct vmdr_nbd *r;
  int64_t size;
  int ret;

  r = calloc (1, sizeof *r);
  if (r == NULL)
    return -ENOMEM;
  r->nbd = nbd_create ();
  if (r->nbd == NULL)
    goto fail;
  if (nbd_set_export_name (r->nbd, export) == -1)
    goto fail;
  for (size_t i = 0; contexts && contexts[i]; i++)
    if (nbd_add_meta_context (r->nbd, contexts[i]) == -1)
      goto fail;
  if (nbd_connect_unix (r->nbd, socket) == -1)
    goto fail;
  size = nbd_get_size (r->nbd);
  if (size < 0)
    goto fail;
  r->size = (uint64_t) size;
  *out = r;
  return 0;

 fail:
  ret = nbd_errno ();
  vmdr_nbd_close (r);
  return ret;
}

void
vmdr_nbd_close (struct vmdr_nbd *r)
{
  if (r == NULL)
    return;
  if (r->nbd) {
    /* Not on a dead handle: its error would replace the one that killed it,
     * which the caller is about to report. */
    if (nbd_aio_is_ready (r->nbd) == 1 || nbd_aio_is_processing (r->nbd) == 1)
      nbd_shutdown (r->nbd, 0);
    nbd_close (r->nbd);
  }
  free (r);
}

uint64_t
vmdr_nbd_size (const struct vmdr_nbd *r)
{
  return r->size;
}

bool
vmdr_nbd_has_context (struct vmdr_nbd *r, const char *context)
{
  return nbd_can_meta_context (r->nbd, context) == 1;
}

/* State of one walk: a pending run not yet passed to the caller. */
struct walk {
  const char *context;
  vmdr_extent_fn fn;
  void *opaque;
  uint64_t end;                 /* of the requested range */
  uint64_t next;                /* first offset not yet described */
  uint64_t run_off, run_len;
  uint32_t run_flags;
  int cb_ret;
};

static int
flush_run (struct walk *w)
{
  int ret = 0;

  if (w->run_len > 0)
    ret = w->fn (w->opaque, w->run_off, w->run_len, w->run_flags);
  w->run_len = 0;
  return ret;
}

static int
add_extent (struct walk *w, uint64_t len, uint32_t flags)
{
  if (len > w->end - w->next)   /* servers may describe past the request */
    len = w->end - w->next;
  if (len == 0)
    return 0;
  if (w->run_len > 0 && w->run_flags == flags)
    w->run_len += len;
  else {
    int ret = flush_run (w);
    if (ret < 0)
      return ret;
    w->run_off = w->next;
    w->run_len = len;
    w->run_flags = flags;
  }
  w->next += len;
  return 0;
}

static int
extent_cb (void *opaque, const char *context, uint64_t offset,
           uint32_t *entries, size_t nr_entries, int *error)
{
  struct walk *w = opaque;
  (void) error;

  if (strcmp (context, w->context) != 0 || offset != w->next)
    return 0;
  for (size_t i = 0; i + 1 < nr_entries && w->next < w->end; i += 2) {
    int ret = add_extent (w, entries[i], entries[i + 1]);
    if (ret < 0) {
      w->cb_ret = ret;
      return -1;
    }
  }
  return 0;
}

int
vmdr_nbd_extents (struct vmdr_nbd *r, const char *context,
                  uint64_t offset, uint64_t length,
                  vmdr_extent_fn fn, void *opaque)
{
  struct walk w = { .context = context, .fn = fn, .opaque = opaque,
                    .next = offset };

  if (offset > r->size || length > r->size - offset)
    return -EINVAL;
  if (!vmdr_nbd_has_context (r, context))
    return -ENOTSUP;
  w.end = offset + length;
  while (w.next < w.end) {
    uint64_t before = w.next;
    uint64_t count = w.end - w.next;

    /* The protocol counts in 32 bits; ask for at most 1 GiB at a time. */
    if (count > (1u << 30))
      count = 1u << 30;
    if (nbd_block_status (r->nbd, count, w.next,
                          (nbd_extent_callback) { .callback = extent_cb,
                                                  .user_data = &w },
                          0) == -1)
      return w.cb_ret < 0 ? w.cb_ret : nbd_errno ();
    if (w.next == before)
      return -EPROTO;
  }
  return flush_run (&w);
}

int
vmdr_nbd_pread (struct vmdr_nbd *r, void *buf, size_t count, uint64_t offset)
{
  if (count > VMDR_NBD_MAX_REQUEST)
    return -EINVAL;
  if (nbd_pread (r->nbd, buf, count, offset, 0) == -1)
    return nbd_errno ();
  return 0;
}

int
vmdr_nbd_pwrite (struct vmdr_nbd *r, const void *buf, size_t count, uint64_t offset)
{
  if (count > VMDR_NBD_MAX_REQUEST)
    return -EINVAL;
  if (nbd_pwrite (r->nbd, buf, count, offset, 0) == -1)
    return nbd_errno ();
  return 0;
}

int
vmdr_nbd_trim (struct vmdr_nbd *r, uint64_t count, uint64_t offset)
{
  if (count > VMDR_NBD_MAX_TRIM)
    return -EINVAL;
  if (nbd_trim (r->nbd, count, offset, 0) == -1)
    return nbd_errno ();
  return 0;
}

int
vmdr_nbd_flush (struct vmdr_nbd *r)
{
  if (nbd_flush (r->nbd, 0) == -1)
    return nbd_errno ();
  return 0;
}
