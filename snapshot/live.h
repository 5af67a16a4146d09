/* A snapshot of a running domain: libvirt's pull-mode backup, read over
 * NBD into the repository, incremental when a valid chain exists.
 *
 * The chain's truth is the repository: each manifest records, per disk, the
 * checkpoint taken with it and that checkpoint's XML.  When libvirt lost the
 * checkpoint it is redefined from there; when the bitmaps cannot back an
 * incremental, a full backup is taken and the reason given.
 */
#ifndef VMDR_LIVE_H
#define VMDR_LIVE_H

#include <stdbool.h>
#include <stddef.h>

#include <libvirt/libvirt.h>

#include "manifest.h"
#include "snapshot.h"

#define VMDR_MAX_WARNINGS 8

struct vmdr_live_opts {
  bool full;                    /* never incremental */
  const char *const *disks;     /* targets to back up; NULL: all real disks */
  size_t ndisks;
  const char *scratch_dir;      /* scratch files, the NBD socket, the memory file;
                                 * absolute: libvirtd and QEMU resolve it too */
  bool quiesce;                 /* freeze file systems through the guest agent */
  bool require_quiesce;         /* ... and fail without an agent */
  bool memory;                  /* capture RAM at the same point as the disks */
  const char *ceph_conf;        /* RBD disks: the Ceph configuration (NULL: default) */
  const char *ceph_id;          /* ... and the cephx user (NULL: the disk's <auth>, else admin) */
  unsigned threads;
  vmdr_progress_fn progress;
  void *popaque;
};

struct vmdr_live_result {
  struct vmdr_manifest m;       /* the committed snapshot; clear it */
  bool incremental;
  char warnings[VMDR_MAX_WARNINGS][256];   /* what was done instead, and why */
  size_t nwarnings;
  uint64_t bytes_read, bytes_new;
  double pause_ms;              /* how long the guest was paused (--memory) */
  uint64_t memory_bytes;        /* size of the memory image */
  struct vmdr_chain chain;      /* the snapshot's place in its chain; length 0: unknown */
  /* On failure: what failed, for the tool's one-line message. */
  char error[512];
};

/* Snapshot DOMAIN on CONN into REPO.  0 (res->nwarnings says whether it
 * went as asked), -ENOENT (no such domain or disk), -ENOTSUP (a shut-off
 * domain's disk has no local image: read through qemu-nbd), -EBUSY (another
 * run holds the domain's lock, or a foreign backup job runs), -EINVAL (a
 * relative scratch_dir), or another -errno; res->error describes failures.
 * When libvirtd restarts mid-run, the run reconnects by itself for what it
 * still has to do (CONN stays closed: the caller reopens it for the next
 * domain); the caller must ignore SIGPIPE, as libvirt requires. */
int vmdr_snapshot_live (virConnectPtr conn, const char *domain,
                        struct vmdr_repo *repo, const struct vmdr_live_opts *o,
                        struct vmdr_live_result *res);

#endif
