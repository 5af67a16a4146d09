/* libFuzzer targets for every parser of untrusted bytes: the repository
 * config, snapshot manifests, pack indexes, blobs, S3 list/error answers,
 * domain XML (a snapshot's, rewritten for another host) and bundles.  One source, one target per FUZZ_TARGET value (meson builds each).
 * The property: any input returns an error or a valid result, never a
 * crash, a leak or undefined behaviour (ASan + UBSan are on). */
#include <config.h>

#include <errno.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blob.h"
#include "bundle.h"
#include "domain-xml.h"
#include "manifest.h"
#include "pack.h"
#include "repo.h"
#include "s3-internal.h"
#include "verify.h"

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

static void __attribute__((unused))
fuzz_domain_xml (const uint8_t *data, size_t size)
{
  static const struct vmdr_xml_disk_map disks[] = {
    { "vda", "/restore/vda.qcow2", "qcow2" }, { "vdb", "/restore/vdb.raw", "raw" },
  };
  const char *xml = (const char *) data;
  struct vmdr_domain_info info;

  if (vmdr_domain_info_parse (xml, size, &info) == 0)
    vmdr_domain_info_clear (&info);
  vmdr_domain_xml_uses_network (xml, size, "default");
  for (size_t mode = 0; mode < 3; mode++) {
    struct vmdr_xml_rewrite o = {
      .name = mode ? "fuzz-lab" : NULL, .new_identity = mode == 1, .disks = disks, .ndisks = mode,
      .network = mode ? "vmdr-lab" : NULL, .strict = mode == 2, .snapshot_id = "s1", .lab = mode == 1,
    };
    struct vmdr_xml_warnings w;
    char *out, **images, snap[8];
    size_t n;
    bool lab;

    if (vmdr_domain_xml_rewrite (xml, size, &o, &out, &w) != 0)
      continue;
    /* What was written must say where it came from, and say it right. */
    if (vmdr_domain_xml_restore_info (out, strlen (out), &lab, &images, &n, snap, sizeof snap) != 0 ||
        lab != o.lab || n != o.ndisks || strcmp (snap, "s1") != 0)
      abort ();
    vmdr_strv_free (images, n);
    free (out);
  }
  {
    char **images, snap[64];
    size_t n;
    bool lab;
    if (vmdr_domain_xml_restore_info (xml, size, &lab, &images, &n, snap, sizeof snap) == 0)
      vmdr_strv_free (images, n);
  }
}

/* Bundles, imported into a scratch repository on tmpfs (made from the
 * first bundle whose header reads, removed at exit).  An import that
 * fails says why; one that succeeds leaves snapshots that verify. */
static char bundle_scratch[256];

static int
remove_one (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  (void) st, (void) flag, (void) ftw;
  return remove (path);
}

static void
remove_scratch (void)
{
  nftw (bundle_scratch, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void __attribute__((unused))
fuzz_bundle (const uint8_t *data, size_t size)
{
  static bool have_repo;
  struct vmdr_bundle_import_opts o = { .threads = 0 };
  const struct vmdr_bundle_info *in;
  struct vmdr_bundle_reader *rd;
  struct vmdr_repo *repo;
  int r;

  if (bundle_scratch[0] == '\0') {
    const char *dir = getenv ("VMDR_FUZZ_SCRATCH");
    snprintf (bundle_scratch, sizeof bundle_scratch, "%s/vmdr-fuzz-bundle.XXXXXX",
              dir && *dir ? dir : "/dev/shm");
    if (mkdtemp (bundle_scratch) == NULL)
      abort ();
    atexit (remove_scratch);
  }
  if (vmdr_bundle_reader_open_memory (data, size, &rd) < 0)
    abort ();
  if (vmdr_bundle_read_header (rd, &in) < 0) {
    if (vmdr_bundle_reader_error (rd)[0] == '\0')
      abort ();                 /* a refusal always says why */
    vmdr_bundle_reader_free (rd);
    return;
  }
  if (!have_repo) {
    struct vmdr_repo_config cfg;
    if (vmdr_repo_config_default (&cfg) < 0)
      abort ();
    cfg.hash = in->config.hash, cfg.chunk_size = in->config.chunk_size;
    cfg.fanout = in->config.fanout, cfg.cdc_min = in->config.cdc_min;
    cfg.cdc_avg = in->config.cdc_avg, cfg.cdc_max = in->config.cdc_max;
    cfg.pack_size = 1u << 20;
    if (vmdr_repo_init (bundle_scratch, &cfg) < 0)
      abort ();
    have_repo = true;
  }
  if (vmdr_repo_open (bundle_scratch, &repo) < 0)
    abort ();
  r = vmdr_bundle_import (rd, repo, &o, NULL);
  if (r == -EBADMSG && vmdr_bundle_reader_error (rd)[0] == '\0')
    abort ();
  for (size_t i = 0; r == 0 && i < in->nsnapshots; i++) {
    struct vmdr_verify_opts vo = { .threads = 1, .sample_permille = 1000 };
    struct vmdr_verify_result res = { 0 };
    struct vmdr_manifest m;
    if (vmdr_manifest_get (repo, in->snapshots[i], &m) != 0 ||
        vmdr_verify_snapshot (repo, &m, &vo, &res) != 0)
      abort ();                 /* imported, yet not whole */
    vmdr_verify_result_clear (&res);
    vmdr_manifest_clear (&m);
  }
  vmdr_repo_close (repo);
  vmdr_bundle_reader_free (rd);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  FUZZ_TARGET (data, size);
  return 0;
}
