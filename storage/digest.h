/* Content digests: the 256-bit names of chunks.
 *
 * Two algorithms, recorded per repository: SHA-256 (OpenSSL; fast only on
 * CPUs with SHA extensions) and BLAKE2b-256 (libb2; about twice SHA-256's
 * speed on CPUs without them).  vmdr_hash_default() picks between them the
 * way vmdr-init does.
 */
#ifndef VMDR_DIGEST_H
#define VMDR_DIGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define VMDR_DIGEST_LEN 32
#define VMDR_DIGEST_HEX_LEN (2 * VMDR_DIGEST_LEN)

enum vmdr_hash {
  VMDR_HASH_SHA256 = 1,
  VMDR_HASH_BLAKE2B256 = 2,
};

struct vmdr_digest {
  uint8_t b[VMDR_DIGEST_LEN];
};

/* Is D the zero digest (32 zero bytes)?  It names an all-zero chunk or
 * subtree, which is never stored, and an empty slot in digest tables. */
static inline bool
vmdr_digest_is_zero (const struct vmdr_digest *d)
{
  static const struct vmdr_digest zero;

  return memcmp (d, &zero, sizeof zero) == 0;
}

/* "sha256" / "blake2b-256" <-> enum.  from_name: 0 or -EINVAL. */
int vmdr_hash_from_name (const char *name, enum vmdr_hash *out);
const char *vmdr_hash_name (enum vmdr_hash h);     /* NULL if unknown */

/* True when the CPU has the x86 SHA extensions (CPUID 7.0:EBX bit 29). */
bool vmdr_cpu_has_sha_ext (void);

/* SHA-256 where the CPU accelerates it, BLAKE2b-256 elsewhere. */
enum vmdr_hash vmdr_hash_default (void);

/* Digest of LEN bytes at DATA.  0, -EINVAL (unknown algorithm) or -ENOMEM. */
int vmdr_digest (enum vmdr_hash h, const void *data, size_t len,
                 struct vmdr_digest *out);

/* Lower-case hex with a terminating NUL: OUT holds VMDR_DIGEST_HEX_LEN + 1. */
void vmdr_digest_to_hex (const struct vmdr_digest *d, char *out);

/* Parse exactly VMDR_DIGEST_HEX_LEN hex digits.  0 or -EINVAL. */
int vmdr_digest_from_hex (const char *hex, struct vmdr_digest *out);

#endif
