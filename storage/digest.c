#include <config.h>

#include <cpuid.h>
#include <errno.h>
#include <string.h>

#include <blake2.h>
#include <openssl/evp.h>

#include "digest.h"

static const struct {
  enum vmdr_hash h;
  const char *name;
} hashes[] = {
  { VMDR_HASH_SHA256, "sha256" },
  { VMDR_HASH_BLAKE2B256, "blake2b-256" },
};

int
vmdr_hash_from_name (const char *name, enum vmdr_hash *out)
{
  for (size_t i = 0; i < sizeof hashes / sizeof hashes[0]; i++)
    if (strcmp (name, hashes[i].name) == 0) {
      *out = hashes[i].h;
      return 0;
    }
  return -EINVAL;
}

const char *
vmdr_hash_name (enum vmdr_hash h)
{
  for (size_t i = 0; i < sizeof hashes / sizeof hashes[0]; i++)
    if (hashes[i].h == h)
      return hashes[i].name;
  return NULL;
}

bool
vmdr_cpu_has_sha_ext (void)
{
  unsigned eax, ebx, ecx, edx;

  if (!__get_cpuid_count (7, 0, &eax, &ebx, &ecx, &edx))
    return false;
  return (ebx >> 29) & 1;
}

enum vmdr_hash
vmdr_hash_default (void)
{
  return vmdr_cpu_has_sha_ext () ? VMDR_HASH_SHA256 : VMDR_HASH_BLAKE2B256;
}

static int
sha256 (const void *data, size_t len, struct vmdr_digest *out)
{
  unsigned int n = 0;

  /* EVP_Digest picks OpenSSL's fastest implementation for this CPU. */
  if (!EVP_Digest (data, len, out->b, &n, EVP_sha256 (), NULL) ||
      n != VMDR_DIGEST_LEN)
    return -ENOMEM;
  return 0;
}

int
vmdr_digest (enum vmdr_hash h, const void *data, size_t len,
             struct vmdr_digest *out)
{
  switch (h) {
  case VMDR_HASH_SHA256:
    return sha256 (data, len, out);
  case VMDR_HASH_BLAKE2B256:
    if (blake2b (out->b, data, NULL, VMDR_DIGEST_LEN, len, 0) != 0)
      return -EINVAL;
    return 0;
  }
  return -EINVAL;
}

void
vmdr_digest_to_hex (const struct vmdr_digest *d, char *out)
{
  static const char hex[] = "0123456789abcdef";

  for (size_t i = 0; i < VMDR_DIGEST_LEN; i++) {
    out[2 * i] = hex[d->b[i] >> 4];
    out[2 * i + 1] = hex[d->b[i] & 15];
  }
  out[VMDR_DIGEST_HEX_LEN] = '\0';
}

static int
hexval (char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;                    /* upper case is not canonical: refuse it */
}

int
vmdr_digest_from_hex (const char *hex, struct vmdr_digest *out)
{
  struct vmdr_digest d;

  for (size_t i = 0; i < VMDR_DIGEST_LEN; i++) {
    int hi = hexval (hex[2 * i]), lo = hi < 0 ? -1 : hexval (hex[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return -EINVAL;
    d.b[i] = (uint8_t) (hi << 4 | lo);
  }
  if (hex[VMDR_DIGEST_HEX_LEN] != '\0')
    return -EINVAL;
  *out = d;
  return 0;
}
