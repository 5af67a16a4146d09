/* Verifying snapshots: every node and chunk a snapshot references is read
 * and checked (checksum, then digest), or a random sample of the chunks.
 * Damaged snapshots get a mark (damaged/DOMAIN/TIME) so that no tool uses
 * them as a base; a later full verify that finds them whole removes it.
 */
#ifndef VMDR_VERIFY_H
#define VMDR_VERIFY_H

#include <stdbool.h>
#include <stdint.h>

#include "disk-io.h"
#include "manifest.h"
#include "snapshot.h"

/* A set of digests: chunks already verified in this run, so that a chunk
 * shared by a hundred snapshots is read once.  Not thread-safe. */
struct vmdr_digest_set;
int vmdr_digest_set_new (struct vmdr_digest_set **out);
void vmdr_digest_set_free (struct vmdr_digest_set *s);     /* NULL is fine */
/* Add D: 1 if it was new, 0 if it was there, -ENOMEM. */
int vmdr_digest_set_add (struct vmdr_digest_set *s, const struct vmdr_digest *d);
size_t vmdr_digest_set_count (const struct vmdr_digest_set *s);
bool vmdr_digest_set_contains (const struct vmdr_digest_set *s, const struct vmdr_digest *d);

struct vmdr_verify_damage {
  size_t disk;                  /* index into the manifest's disks; ndisks: memory */
  uint64_t offset;              /* byte offset of the chunk in the disk */
  struct vmdr_digest digest;
  int err;                      /* -EBADMSG, -EILSEQ, -ENOENT */
};

#define VMDR_VERIFY_MAX_REPORTED 1000

struct vmdr_verify_result {
  uint64_t chunks, bytes;       /* read and checked in this snapshot */
  uint64_t damaged_chunks;      /* all of them ... */
  struct vmdr_verify_damage *damage;   /* ... the first VMDR_VERIFY_MAX_REPORTED */
  size_t ndamage;
  int tree_err;                 /* a disk's index itself is damaged: 0 or -errno */
  size_t tree_disk;
};

void vmdr_verify_result_clear (struct vmdr_verify_result *r);

struct vmdr_verify_opts {
  unsigned threads;
  unsigned sample_permille;     /* 1000: every chunk */
  uint64_t seed;                /* which sample */
  struct vmdr_digest_set *seen; /* may be NULL */
};

/* Verify snapshot M.  0 when it is whole, -EBADMSG when damage was found
 * (described in *res), or another -errno when verifying itself failed (an
 * unreadable backend).  The caller clears *res. */
int vmdr_verify_snapshot (struct vmdr_repo *repo, const struct vmdr_manifest *m,
                          const struct vmdr_verify_opts *o,
                          struct vmdr_verify_result *res);

/* Damage marks.  mark: WHY is a one-line description.  is_marked: 1, 0 or
 * -errno. */
int vmdr_damage_mark (struct vmdr_repo *repo, const char *id, const char *why);
int vmdr_damage_clear (struct vmdr_repo *repo, const char *id);
int vmdr_damage_is_marked (struct vmdr_repo *repo, const char *id);

/* What a damage error of a chunk or index read (-EBADMSG, -EILSEQ,
 * -ENOENT) means, for messages; other errors as strerror. */
const char *vmdr_damage_text (int err);

#endif
