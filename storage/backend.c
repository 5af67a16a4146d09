#include <config.h>

#include <errno.h>
#include <string.h>

#include "backend.h"

static const struct {
  const char *scheme;           /* with "://" */
  const struct vmdr_backend_ops *ops;
} schemes[] = {
  { "file://", &vmdr_backend_local },
};

int
vmdr_backend_open (const char *address, struct vmdr_backend **out)
{
  const char *sep = strstr (address, "://");

  if (sep == NULL)              /* a plain path */
    return vmdr_backend_local.open (address, out);
  for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
    size_t n = strlen (schemes[i].scheme);
    if (strncmp (address, schemes[i].scheme, n) == 0)
      return schemes[i].ops->open (address + n, out);
  }
  return -EAFNOSUPPORT;
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
