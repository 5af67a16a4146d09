/* libFuzzer targets for every parser of untrusted bytes: the repository
 * config, snapshot manifests, pack indexes, blobs and S3 list/error
 * answers.  One source, one target per FUZZ_TARGET value (meson builds each).
 * The property: any input returns an error or a valid result, never a
 * crash, a leak or undefined behaviour (ASan + UBSan are on). */
#include <config.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "blob.h"
#include "manifest.h"
#include "pack.h"
#include "repo.h"
#include "s3-internal.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void __attribute__((unused))
fuzz_config (const uint8_t *data, size_t size)
{
  struct vmdr_repo_config c;

  if (vmdr_repo_config_parse ((const char *) data, size, &c) == 0 &&
      vmdr_repo_config_check (&c) != 0)
    abort ();                   /* parse promised a checked config */
}

static void __attribute__((unused))
fuzz_manifest (const uint8_t *data, size_t size)
{
  struct vmdr_manifest m;
  char *json;

  if (vmdr_manifest_parse ((const char *) data, size, &m) != 0)
    return;
  /* What parses must format and parse again. */
  if (vmdr_manifest_format (&m, &json) == 0) {
    struct vmdr_manifest m2;
    if (vmdr_manifest_parse (json, strlen (json), &m2) != 0)
      abort ();
    vmdr_manifest_clear (&m2);
    free (json);
  }
  vmdr_manifest_clear (&m);
}

static void __attribute__((unused))
fuzz_pack_index (const uint8_t *data, size_t size)
{
  struct vmdr_pack_entry *e;
  size_t n;

  if (vmdr_pack_index_parse (data, size, &e, &n) == 0)
    free (e);
}

static void __attribute__((unused))
fuzz_blob (const uint8_t *data, size_t size)
{
  static struct vmdr_zctx *z;
  static uint8_t out[VMDR_BLOB_MAX_RAW];
  size_t len;

  if (z == NULL && vmdr_zctx_new (1, &z) < 0)
    abort ();
  vmdr_blob_decode (z, VMDR_HASH_BLAKE2B256, data, size, NULL, out, sizeof out, &len);
  vmdr_blob_decode (z, VMDR_HASH_SHA256, data, size, NULL, out, 4096, &len);
}

static void __attribute__((unused))
fuzz_s3_xml (const uint8_t *data, size_t size)
{
  struct vmdr_s3_list_page page;
  struct vmdr_s3_status st;

  if (s3_parse_list ((const char *) data, size, &page) == 0)
    vmdr_s3_list_page_clear (&page);
  s3_parse_error ((const char *) data, size, &st);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  FUZZ_TARGET (data, size);
  return 0;
}
