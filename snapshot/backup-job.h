/* libvirt's backup API in pull mode, and the checkpoints vmdr keeps.
 *
 * A job exports every selected disk over NBD on a unix socket, frozen at the
 * moment the job began (writes after it go to scratch files); with a
 * checkpoint name, the same moment starts a new dirty bitmap per disk.
 * Errors are -errno; libvirt's message of the last failure is kept for the
 * caller (vmdr_virt_error).
 */
#ifndef VMDR_BACKUP_JOB_H
#define VMDR_BACKUP_JOB_H

#include <stdbool.h>
#include <stddef.h>

#include <libvirt/libvirt.h>

#include "domain-xml.h"

#define VMDR_CHECKPOINT_PREFIX "vmdr-"

struct vmdr_backup_spec {
  const char *socket;           /* NBD unix socket to create */
  const char *scratch_dir;      /* scratch files go here, one per disk */
  const struct vmdr_domain_info *domain;
  const bool *selected;         /* per domain disk: back it up */
  const bool *incremental;      /* per domain disk: since INCREMENTAL_FROM */
  const char *incremental_from; /* checkpoint name, or NULL: all full */
  const char *checkpoint;       /* new checkpoint for the selected qcow2 disks */
};

/* Begin the job.  0, -EBUSY (a job is running), -EINVAL, -EIO. */
int vmdr_backup_begin (virDomainPtr dom, const struct vmdr_backup_spec *s);

/* End the pull job (libvirt removes its scratch files).  Also the way to
 * clear a job a killed run left behind.  0 or -EIO. */
int vmdr_backup_end (virDomainPtr dom);

/* Whether a backup job is running on DOM: 1, 0 or -EIO. */
int vmdr_backup_running (virDomainPtr dom);

/* Checkpoint NAME: 1 if libvirt has it, 0 if not, -EIO. */
int vmdr_checkpoint_exists (virDomainPtr dom, const char *name);

/* Its XML with the sizes (VIR_DOMAIN_CHECKPOINT_XML_SIZE): what REDEFINE
 * needs later.  *xml is malloc'd. */
int vmdr_checkpoint_xml (virDomainPtr dom, const char *name, char **xml);

/* Give libvirt back a checkpoint it lost (re-defined domain, restarted
 * transient domain, wiped state), validated against the disks' bitmaps.
 * -ESTALE when the bitmaps do not match (a full backup is needed). */
int vmdr_checkpoint_redefine (virDomainPtr dom, const char *xml);

/* Delete the checkpoints named VMDR_CHECKPOINT_PREFIX... other than KEEP
 * (whose bitmaps slow the guest down); never anyone else's.  *deleted counts
 * them (may be NULL). */
int vmdr_checkpoints_prune (virDomainPtr dom, const char *keep, size_t *deleted);

/* libvirt's message for the last failure on this thread. */
const char *vmdr_virt_error (void);

#endif
