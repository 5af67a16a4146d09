/* Failover: the newest snapshot of a domain that is whole, restored into
 * the DR site's storage and brought up there (resumed from memory when the
 * snapshot has it), in one call, reporting RPO and RTO.
 *
 * Restoring verifies every chunk, so the restore itself is the check: a
 * snapshot found damaged (or already marked so by vmdr-verify) is skipped
 * with a warning and the one before it is tried.
 */
#ifndef VMDR_FAILOVER_H
#define VMDR_FAILOVER_H

#include "bringup.h"

#define VMDR_FAILOVER_MAX_WARNINGS 16

/* Each step as it starts, for the operator's log. */
typedef void (*vmdr_step_fn) (void *opaque, const char *what);

struct vmdr_failover_opts {
  const char *at;               /* newest at or before this time; NULL: newest */
  const char *storage;          /* where the images go */
  const char *format;           /* "qcow2" or "raw" */
  bool test;                    /* test-lab mode */
  bool force;                   /* replace a domain in the way on the target */
  unsigned threads;
  unsigned wait_seconds;        /* for the guest to be running */
  int agent_wait;               /* vmdr_bringup_opts.agent_wait */
  vmdr_progress_fn progress;
  void *popaque;
  vmdr_step_fn step;
  void *sopaque;
};

struct vmdr_failover_report {
  char snapshot[VMDR_SNAPSHOT_ID_MAX];   /* the one used */
  double rpo_seconds;           /* from its point in time to now */
  double rto_seconds;           /* how long the failover took */
  struct vmdr_restore_result files;
  struct vmdr_bringup_result guest;
  char warnings[VMDR_FAILOVER_MAX_WARNINGS][256];
  size_t nwarnings;
  char error[768];
};

/* Fail DOMAIN over from REPO to CONN.  0, -ENOENT (no usable snapshot),
 * -EEXIST (a guest in the way), -EBUSY (another failover of it runs), or
 * another -errno; rep->error says what.  Clear rep->files afterwards with
 * vmdr_restore_result_clear. */
int vmdr_failover (virConnectPtr conn, struct vmdr_repo *repo, const char *domain,
                   const struct vmdr_failover_opts *o, struct vmdr_failover_report *rep);

/* ---- from a warm RBD replica (replicate/rbd-replica.h) ------------------
 *
 * No copy: each disk of the newest snapshot that is whole on the replica
 * (every disk's image has its vmdr-TIME snapshot) becomes a copy-on-write
 * clone of that snapshot, [PREFIX-]NAME-TARGET.failover (NAME the guest's
 * name on the target), and the guest is defined on libvirt network disks
 * (protocol rbd) with the user's cephx key in a libvirt secret, and
 * booted (a replica holds no memory image).  A clone left by an earlier
 * failover of the same guest that did not finish is replaced; one a
 * running guest uses is refused unless o->force.  o->storage, o->format
 * and o->threads do not apply; rep->files lists the clones as
 * "rbd:POOL/IMAGE" paths.  Errors as vmdr_failover's. */
struct vmdr_rbd;
int vmdr_failover_rbd (virConnectPtr conn, struct vmdr_rbd *rbd, const char *domain,
                       const struct vmdr_failover_opts *o, struct vmdr_failover_report *rep);

#endif
