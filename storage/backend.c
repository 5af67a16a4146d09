#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"

static const struct {
  const char *scheme;           /* with "://" */
  const struct vmdr_backend_ops *ops;
} schemes[] = {
  { "file://", &vmdr_backend_local },
  { "s3://", &vmdr_backend_s3 },
};

int
vmdr_backend_open (const char *address, struct vmdr_backend **out)
{
  const char *sep = strstr (address, "://");

  vmdr_backend_set_error (NULL);
  if (sep == NULL)              /* a plain path */
    return vmdr_backend_local.open (address, out);
  for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
    size_t n = strlen (schemes[i].scheme);
    if (strncmp (address, schemes[i].scheme, n) == 0)
      return schemes[i].ops->open (address + n, out);
  }
  return -EAFNOSUPPORT;
}

int
vmdr_backend_read (struct vmdr_backend *b, const char *key, uint64_t offset,
                   size_t len, void *buf)
{
  void *data;
  size_t got;
  int r;

  if (len == 0 || len > VMDR_READ_MAX)
    return -EINVAL;
  if (b->ops->read)
    return b->ops->read (b, key, offset, len, buf);
  if ((r = b->ops->get (b, key, offset, len, len, &data, &got)) < 0)
    return r;
  if (got == len)
    memcpy (buf, data, len);
  free (data);
  return got == len ? 0 : -ERANGE;
}

int
vmdr_backend_put_sha256 (struct vmdr_backend *b, const char *key, const void *data,
                         size_t len, unsigned flags, const uint8_t sha256[32])
{
  if (b->ops->put_sha256)
    return b->ops->put_sha256 (b, key, data, len, flags, sha256);
  return b->ops->put (b, key, data, len, flags);
}

bool
vmdr_key_valid (const char *key)
{
  size_t len = strlen (key);
  const char *c;

  if (len == 0 || len > VMDR_KEY_MAX || key[0] == '/' || key[len - 1] == '/')
    return false;
  if (strspn (key, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                   "0123456789._%-/") != len)
    return false;
  /* No empty, "." or ".." components: a key never leaves the repository. */
  for (c = key; c; c = strchr (c, '/')) {
    if (*c == '/')
      c++;
    if (*c == '/' || strncmp (c, "./", 2) == 0 || strcmp (c, ".") == 0 ||
        strncmp (c, "../", 3) == 0 || strcmp (c, "..") == 0)
      return false;
  }
  return true;
}

/* Per thread: a failed call's words stay with the thread that made it. */
static __thread char error_text[512];

const char *
vmdr_backend_error (void)
{
  return error_text[0] ? error_text : NULL;
}

void
vmdr_backend_set_error (const char *fmt, ...)
{
  va_list ap;

  if (fmt == NULL) {
    error_text[0] = '\0';
    return;
  }
  va_start (ap, fmt);
  vsnprintf (error_text, sizeof error_text, fmt, ap);
  va_end (ap);
}
