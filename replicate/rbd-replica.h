/* A warm replica in Ceph RBD: one RBD image per disk of each domain, kept
 * up to date from a repository's snapshots, so that a DR site can start the
 * guests straight from those images (a copy-on-write clone, no copy).
 *
 * Address: rbd://POOL[/PREFIX][?conf=FILE][&id=NAME][&keyring=FILE]
 *   POOL     the RADOS pool (it must exist, with the rbd application)
 *   PREFIX   put before every name below, with a '-': several replicas
 *            share a pool ([A-Za-z0-9._]+, no '-' at either end)
 *   conf     the ceph.conf (default: librados's search, $CEPH_CONF first)
 *   id       the cephx user, without "client." (default "admin")
 *   keyring  a keyring file, when the conf does not name one
 * Credentials come only from those files: never from the address.
 *
 * What the replica holds, for domain DOMAIN (written %XX-escaped as in
 * repository keys, docs/repository-format.md section 8) and snapshot id
 * DOMAIN/TIME:
 *   image    [PREFIX-]DOMAIN-TARGET          a raw image per disk, sized to it
 *   snapshot vmdr-TIME on each image         the disk at that snapshot
 *   object   vmdr_replica.[PREFIX-]DOMAIN    the index: an omap key TIME for
 *                                            each snapshot replicated whole,
 *                                            and the domain's writer lock
 *   object   vmdr_replica.[PREFIX-]DOMAIN.TIME   that snapshot's manifest
 *
 * Order makes a run resumable.  A snapshot is applied to an image by
 * writing what differs between the index tree of the image's newest
 * vmdr-TIME snapshot and the new one (equal subtrees skipped, chunks that
 * became zero zeroed), then the RBD snapshot is taken, and only once every
 * disk has it are the manifest and its index key written.  While an image
 * is written its metadata "vmdr.applying" names the snapshot being
 * applied: a run killed half way leaves a head that the next run brings
 * to the same snapshot again (the same diff, written again), and a head
 * half way to another snapshot (one skipped since: damaged or pruned at
 * the source) is rolled back to its last snapshot first.  The images'
 * heads belong to vmdr; guests run on clones (vmdr_rbd_clone).
 */
#ifndef VMDR_RBD_REPLICA_H
#define VMDR_RBD_REPLICA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "disk-io.h"
#include "manifest.h"

#define VMDR_RBD_MAX_WARNINGS 16
#define VMDR_RBD_NAME_MAX 512         /* image and object names */
#define VMDR_RBD_SNAP_PREFIX "vmdr-"

struct vmdr_rbd;

/* Is ADDRESS an RBD replica address (rbd://...)? */
bool vmdr_rbd_address_is (const char *address);

/* Connect to the replica at ADDRESS.  ERROR (ERRLEN bytes) gets one line
 * saying what failed.  0, -EINVAL (a malformed address), -ENOENT (no such
 * conf or keyring file, or no such pool), -EACCES / -EPERM (refused by the
 * cluster), -ETIMEDOUT (no monitor answered within the time limits), or
 * librados's other errors.  Every cluster operation is bounded in time
 * (VMDR_RBD_TIMEOUT seconds). */
#define VMDR_RBD_TIMEOUT 30
int vmdr_rbd_open (const char *address, struct vmdr_rbd **out, char *error, size_t errlen);
void vmdr_rbd_close (struct vmdr_rbd *rbd);    /* NULL is fine */

/* The same for pool POOL as user ID (without "client."), with the Ceph
 * configuration CONF (NULL: librados's default search): a guest's RBD disk,
 * whose pool comes from its domain XML, not from an address. */
int vmdr_rbd_connect (const char *pool, const char *conf, const char *id, struct vmdr_rbd **out,
                      char *error, size_t errlen);

/* The pool, the cephx user (without "client.") and the conf file (NULL:
 * the default) of an open replica. */
const char *vmdr_rbd_pool (const struct vmdr_rbd *rbd);
const char *vmdr_rbd_user (const struct vmdr_rbd *rbd);
const char *vmdr_rbd_conf (const struct vmdr_rbd *rbd);

/* ---- replicating ----------------------------------------------------------- */

typedef void (*vmdr_rbd_step_fn) (void *opaque, const char *id, size_t no, size_t of);

struct vmdr_rbd_opts {
  const char *const *domains;   /* NULL: every domain */
  size_t ndomains;
  const char *since;            /* only snapshots at or after this time; NULL: all */
  uint64_t bwlimit;             /* bytes per second written; 0: none */
  unsigned threads;             /* 1 .. VMDR_MAX_THREADS */
  vmdr_rbd_step_fn step;        /* each snapshot as it starts; may be NULL */
  void *sopaque;
  vmdr_progress_fn progress;    /* bytes read from the repository; may be NULL */
  void *popaque;
};

struct vmdr_rbd_stats {
  size_t snapshots_applied;     /* made whole on the replica by this run */
  size_t snapshots_present;     /* already there */
  size_t snapshots_older;       /* older than what the replica has: not applied */
  size_t snapshots_failed;      /* damaged at the source: skipped */
  size_t images_created;
  size_t rollbacks;             /* heads rolled back (see above) */
  uint64_t chunks_written, bytes_written;   /* data chunks written to images */
  uint64_t bytes_zeroed;        /* ranges that became zero, zeroed */
  uint64_t bytes_read;          /* plaintext read (and verified) from the repository */
  char warnings[VMDR_RBD_MAX_WARNINGS][256];
  size_t nwarnings;
};

/* Bring the replica up to date with SRC: every wanted snapshot that the
 * replica lacks and that is newer than what it has, oldest first per
 * domain, under the domain's lock on the replica.  A snapshot that cannot
 * be read whole is skipped with a warning (its disks stay at their last
 * snapshot) and makes the result -EBADMSG.  0, -EINVAL (a bad SINCE),
 * -EBUSY (another run holds a domain), or the first other error (its
 * place in ST->warnings' last entry when known). */
int vmdr_rbd_replicate (struct vmdr_repo *src, struct vmdr_rbd *rbd,
                        const struct vmdr_rbd_opts *o, struct vmdr_rbd_stats *st);

/* ---- reading the replica, for a failover ----------------------------------- */

/* The snapshot times ("YYYYMMDDTHHMMSS.mmmZ") replicated whole for DOMAIN,
 * oldest first: *times and each string malloc'd (vmdr_strv_free).  0
 * (none: *n = 0), or -errno. */
int vmdr_rbd_snapshots (struct vmdr_rbd *rbd, const char *domain, char ***times, size_t *n);

/* The manifest of DOMAIN/TIME as replicated.  -ENOENT, -EBADMSG, -errno. */
int vmdr_rbd_manifest (struct vmdr_rbd *rbd, const char *domain, const char *time,
                       struct vmdr_manifest *m);

/* The replica image of DOMAIN's disk TARGET (NAME holds VMDR_RBD_NAME_MAX
 * bytes).  -ENAMETOOLONG, -EINVAL. */
int vmdr_rbd_image_name (const struct vmdr_rbd *rbd, const char *domain, const char *target,
                         char *name);

/* Does image NAME have the snapshot vmdr-TIME?  1, 0, or -errno. */
int vmdr_rbd_has_snapshot (struct vmdr_rbd *rbd, const char *name, const char *time);

/* Make CLONE, a copy-on-write clone of image PARENT at its snapshot
 * vmdr-TIME (protected first: clones of format 1 need it); a CLONE left
 * from before is removed first (-EBUSY if something has it open).
 * 0 or -errno. */
int vmdr_rbd_clone (struct vmdr_rbd *rbd, const char *parent, const char *time,
                    const char *clone);

/* Remove image NAME (no snapshots of its own).  0, -ENOENT, -EBUSY (open
 * somewhere), -errno. */
int vmdr_rbd_remove (struct vmdr_rbd *rbd, const char *name);

/* The cephx key of the replica's user (raw bytes, what a libvirt secret of
 * usage type ceph holds), from the conf's "key", "keyfile" or "keyring",
 * as librados finds it.  KEY holds VMDR_RBD_KEY_MAX bytes, *LEN gets its
 * length; wipe it with explicit_bzero after use.  0, -ENOENT (none found),
 * -EBADMSG (not base64), -errno. */
#define VMDR_RBD_KEY_MAX 96
int vmdr_rbd_key (struct vmdr_rbd *rbd, uint8_t *key, size_t *len);

/* The cluster's fsid (37 bytes). */
int vmdr_rbd_fsid (struct vmdr_rbd *rbd, char *fsid);

/* The monitors as QEMU (and libvirt's <host>) can reach them: an address
 * and port each, from the monmap.  A monitor that speaks only msgr2 on a
 * port other than 3300 cannot be given that way: then *n is 0 (use the
 * conf file).  HOSTS holds MAX entries of 64 bytes.  0 or -errno. */
#define VMDR_RBD_MAX_MONS 16
struct vmdr_rbd_mon {
  char host[64];
  unsigned port;
};
int vmdr_rbd_monitors (struct vmdr_rbd *rbd, struct vmdr_rbd_mon *mons, size_t max, size_t *n);

/* A lock on NAME (an object of the pool, created if missing) that expires
 * SECONDS after the last take unless renewed by taking it again.  A lock
 * whose holder was a process of this host that is gone (or ran before the
 * last boot) is taken over at once.  0, 1 (taken over from a dead
 * holder), -EBUSY (another client holds it), -errno.  Release with
 * vmdr_rbd_unlock. */
int vmdr_rbd_lock (struct vmdr_rbd *rbd, const char *name, unsigned seconds);
void vmdr_rbd_unlock (struct vmdr_rbd *rbd, const char *name);

#endif
