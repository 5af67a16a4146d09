/* Snapshot manifests (docs/repository-format.md section 8): what a snapshot
 * is, written last and atomically, so that a snapshot without its manifest
 * does not exist.
 *
 * Snapshot ids are "DOMAIN/YYYYMMDDTHHMMSS.mmmZ" (UTC); the manifest lives at
 * "snapshots/ESCAPED-DOMAIN/TIME.json".
 */
#ifndef VMDR_MANIFEST_H
#define VMDR_MANIFEST_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "repo.h"

#define VMDR_MANIFEST_MAX (16u << 20)
#define VMDR_DOMAIN_NAME_MAX 200      /* libvirt allows more; keys must fit */
#define VMDR_TIME_LEN 20              /* "YYYYMMDDTHHMMSS.mmmZ" */
#define VMDR_SNAPSHOT_ID_MAX (VMDR_DOMAIN_NAME_MAX + 1 + VMDR_TIME_LEN + 1)
#define VMDR_MAX_DISKS 64

enum vmdr_snapshot_kind { VMDR_KIND_FULL, VMDR_KIND_INCREMENTAL };
enum vmdr_consistency { VMDR_CRASH, VMDR_QUIESCED, VMDR_WITH_MEMORY };

struct vmdr_disk_tree;          /* replicate/disk-index.h; same layout here */

struct vmdr_manifest_disk {
  char target[32];              /* "vda" */
  char format[16];              /* "qcow2", "raw" */
  uint64_t virtual_size;
  uint32_t chunk_size, fanout, depth;
  struct vmdr_digest root;
  uint64_t bytes_read, bytes_new;
  char *checkpoint_name;        /* NULL: none */
  char *checkpoint_xml;         /* NULL: none */
};

/* A memory image (or another byte stream) stored with the snapshot. */
struct vmdr_manifest_memory {
  bool present;
  uint64_t size;
  uint32_t fanout, depth;
  struct vmdr_digest root;
  uint64_t bytes_new;
};

struct vmdr_manifest {
  char id[VMDR_SNAPSHOT_ID_MAX];
  char domain[VMDR_DOMAIN_NAME_MAX + 1];
  char uuid[37];                /* "" when unknown */
  char created[32];             /* ISO 8601 UTC with milliseconds */
  char parent[VMDR_SNAPSHOT_ID_MAX];  /* "" for none */
  enum vmdr_snapshot_kind kind;
  enum vmdr_consistency consistency;
  char tool[64];
  struct vmdr_manifest_disk *disks;
  size_t ndisks;
  char *domain_xml;             /* NULL: none */
  struct vmdr_manifest_memory memory;
};

/* Free the members and zero *m.  NULL is fine. */
void vmdr_manifest_clear (struct vmdr_manifest *m);

/* Set id, domain, created and tool for a new snapshot of DOMAIN taken at
 * WHEN (seconds and milliseconds).  -EINVAL for a bad domain name. */
int vmdr_manifest_start (struct vmdr_manifest *m, const char *domain,
                         time_t when, unsigned msec);

/* JSON <-> manifest.  parse: -EBADMSG (not a manifest, bad member, bounds),
 * -EPROTONOSUPPORT (newer version). */
int vmdr_manifest_format (const struct vmdr_manifest *m, char **json);
int vmdr_manifest_parse (const char *json, size_t len, struct vmdr_manifest *m);

/* A domain name vmdr can store: 1..VMDR_DOMAIN_NAME_MAX bytes, no '/', no
 * control characters. */
bool vmdr_domain_name_valid (const char *name);

/* The length of the domain part of snapshot id ID ("DOMAIN/TIME"). */
size_t vmdr_id_domain_len (const char *id);

/* The snapshot time ("YYYYMMDDTHHMMSS.mmmZ", OUT holds VMDR_TIME_LEN + 1)
 * of WHEN: such a time itself, or ISO 8601 "YYYY-MM-DDTHH:MM:SS[Z]" (UTC),
 * to compare with ids' times.  0 or -EINVAL. */
int vmdr_time_key (const char *when, char *out);

/* The object key of snapshot ID.  -EINVAL for a malformed id. */
int vmdr_manifest_key (const char *id, char *key, size_t size);

/* "DIR/ESCAPED-DOMAIN/TIME" + SUFFIX: where per-snapshot objects live. */
int vmdr_snapshot_key (const char *dir, const char *id, const char *suffix,
                       char *key, size_t size);

/* DOMAIN with every byte outside [A-Za-z0-9._-] as %XX, for object keys.
 * SIZE must be at least 3 * strlen (domain) + 1.  0 or -EINVAL. */
int vmdr_domain_escape (const char *domain, char *out, size_t size);

/* Store M (its id decides the key); refuses to replace a manifest (-EEXIST). */
int vmdr_manifest_put (struct vmdr_repo *repo, const struct vmdr_manifest *m);

/* Read snapshot ID.  -ENOENT when there is no such snapshot. */
int vmdr_manifest_get (struct vmdr_repo *repo, const char *id,
                       struct vmdr_manifest *m);

/* Remove snapshot ID's manifest (the chunks stay until GC). */
int vmdr_manifest_delete (struct vmdr_repo *repo, const char *id);

/* All snapshot ids of DOMAIN (NULL: of every domain), sorted by domain then
 * time: *ids is a malloc'd array of malloc'd strings; free with
 * vmdr_strv_free.  0 or -errno. */
int vmdr_snapshot_list (struct vmdr_repo *repo, const char *domain,
                        char ***ids, size_t *n);
void vmdr_strv_free (char **v, size_t n);

/* Resolve a user's snapshot selector: an id, "DOMAIN@latest", or
 * "DOMAIN@TIME" (the newest at or before TIME, TIME as in ids or ISO 8601
 * "YYYY-MM-DDTHH:MM:SS[Z]").  ID holds VMDR_SNAPSHOT_ID_MAX bytes.
 * -ENOENT when nothing matches, -EINVAL for a malformed selector. */
int vmdr_snapshot_resolve (struct vmdr_repo *repo, const char *selector, char *id);

/* Where a snapshot stands in its chain of incrementals. */
struct vmdr_chain {
  char base[VMDR_SNAPSHOT_ID_MAX];  /* the full the chain grows from */
  uint64_t length;              /* snapshots from BASE to this one, both counted: a full is 1 */
  bool complete;                /* false: retention removed a link (every snapshot is
                                 * self-contained), BASE is the oldest one left and
                                 * LENGTH counts only what is left */
};

/* M's place in its chain, from the parent links of the manifests: one read
 * per link, so the cost grows with the chain.  *chain is untouched on
 * failure.  0, -EBADMSG (a parent that is not an older snapshot of the same
 * domain: a damaged manifest), or the errors of vmdr_manifest_get other
 * than -ENOENT (a pruned link ends the walk). */
int vmdr_manifest_chain (struct vmdr_repo *repo, const struct vmdr_manifest *m,
                         struct vmdr_chain *chain);

const char *vmdr_kind_name (enum vmdr_snapshot_kind k);
const char *vmdr_consistency_name (enum vmdr_consistency c);

#endif
