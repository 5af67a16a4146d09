#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "digest.h"

static void
check_hex (enum vmdr_hash h, const char *msg, const char *want)
{
  struct vmdr_digest d;
  char hex[VMDR_DIGEST_HEX_LEN + 1];

  cr_assert_eq (vmdr_digest (h, msg, strlen (msg), &d), 0);
  vmdr_digest_to_hex (&d, hex);
  cr_assert_str_eq (hex, want);
}

Test (digest, sha256_vectors)
{
  check_hex (VMDR_HASH_SHA256, "abc",
             "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  check_hex (VMDR_HASH_SHA256, "",
             "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

Test (digest, blake2b256_vectors)
{
  check_hex (VMDR_HASH_BLAKE2B256, "abc",
             "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319");
  check_hex (VMDR_HASH_BLAKE2B256, "",
             "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8");
}

Test (digest, unknown_algorithm)
{
  struct vmdr_digest d;
  enum vmdr_hash h;

  cr_assert_eq (vmdr_digest ((enum vmdr_hash) 99, "x", 1, &d), -EINVAL);
  cr_assert_eq (vmdr_hash_from_name ("md5", &h), -EINVAL);
  cr_assert_eq (vmdr_hash_from_name ("SHA256", &h), -EINVAL);
  cr_assert_null (vmdr_hash_name ((enum vmdr_hash) 0));
}

Test (digest, names_round_trip)
{
  enum vmdr_hash hs[] = { VMDR_HASH_SHA256, VMDR_HASH_BLAKE2B256 };

  for (size_t i = 0; i < 2; i++) {
    enum vmdr_hash h;
    cr_assert_eq (vmdr_hash_from_name (vmdr_hash_name (hs[i]), &h), 0);
    cr_assert_eq (h, hs[i]);
  }
}

Test (digest, default_follows_cpu)
{
  enum vmdr_hash want = vmdr_cpu_has_sha_ext () ? VMDR_HASH_SHA256
                                                : VMDR_HASH_BLAKE2B256;
  cr_assert_eq (vmdr_hash_default (), want);
}

Test (digest, hex_round_trip_and_rejects)
{
  struct vmdr_digest d, back;
  char hex[VMDR_DIGEST_HEX_LEN + 1];

  for (size_t i = 0; i < VMDR_DIGEST_LEN; i++)
    d.b[i] = (uint8_t) (i * 37 + 1);
  vmdr_digest_to_hex (&d, hex);
  cr_assert_eq (vmdr_digest_from_hex (hex, &back), 0);
  cr_assert_eq (memcmp (&d, &back, sizeof d), 0);

  memset (&back, 0x5a, sizeof back);
  hex[10] = 'G';
  cr_assert_eq (vmdr_digest_from_hex (hex, &back), -EINVAL);
  hex[10] = 'A';              /* upper case is not canonical */
  cr_assert_eq (vmdr_digest_from_hex (hex, &back), -EINVAL);
  cr_assert_eq (vmdr_digest_from_hex ("abcd", &back), -EINVAL);
  cr_assert_eq (back.b[0], 0x5a, "output untouched on error");

  vmdr_digest_to_hex (&d, hex);
  char longer[VMDR_DIGEST_HEX_LEN + 3];
  snprintf (longer, sizeof longer, "%s00", hex);
  cr_assert_eq (vmdr_digest_from_hex (longer, &back), -EINVAL);
}
