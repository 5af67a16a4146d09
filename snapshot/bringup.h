/* Bringing a restored guest up on a libvirt host: the saved domain XML
 * rewritten to the restored images (and a new identity, or the test lab),
 * defined, and started or resumed from its memory image.
 *
 * A saved memory state resumes only into the same name, UUID and MAC
 * addresses (libvirt checks them against the save image, and the guest's
 * devices hold them), so a resume always keeps the guest's identity.
 */
#ifndef VMDR_BRINGUP_H
#define VMDR_BRINGUP_H

#include <stdbool.h>

#include <libvirt/libvirt.h>

#include "domain-xml.h"
#include "restore.h"

struct vmdr_bringup_opts {
  const char *name;             /* NULL: the domain's, "-lab" added in the lab */
  bool keep_identity;           /* keep UUID and MACs (a resume always does) */
  bool start;
  bool test_lab;                /* every NIC on the isolated VMDR_LAB_NETWORK */
  bool force;                   /* replace a domain of that name or UUID */
  bool memory;                  /* resume from the restored memory image */
  int agent_wait;               /* after a resume, seconds to wait for the
                                 * guest agent (see vmdr_bringup); 0: the
                                 * default, VMDR_AGENT_WAIT_S; < 0: no check */
};

#define VMDR_AGENT_WAIT_S 30

struct vmdr_bringup_result {
  char name[256];
  char uuid[37];
  bool defined, started, resumed;
  bool clock_synced;            /* resumed, and the agent set the guest's clock */
  struct vmdr_xml_warnings warnings;
  char error[768];
};

/* The name the guest gets on the target: O->name, or M's domain (with
 * "-lab" in the lab unless resuming).  NAME holds 256 bytes.  -EINVAL if
 * too long or the options cannot go together (a resume under a new name). */
int vmdr_bringup_name (const struct vmdr_manifest *m, const struct vmdr_bringup_opts *o,
                       char *name, char *error, size_t errlen);

/* Before any byte is restored: is a domain of that name (or, keeping the
 * identity, of M's UUID) in the way on CONN?  0, or -EEXIST (unless
 * o->force) with res->error saying which. */
int vmdr_bringup_check (virConnectPtr conn, const struct vmdr_manifest *m,
                        const struct vmdr_bringup_opts *o,
                        struct vmdr_bringup_result *res);

/* Define M's guest on CONN on top of the restored FILES (and start it, or
 * resume it from files->memory_path).  A domain in the way is replaced only
 * with o->force (destroyed if it runs).  On failure nothing this call
 * defined is left defined.  0 or -errno, res->error saying what failed.
 *
 * A resumed guest's clock stands at the snapshot point, and libvirt calls
 * a guest running whether or not it survived the restore.  So after a
 * resume, when the guest has an agent channel, its agent is asked (for up
 * to o->agent_wait seconds) to set the guest's clock from its RTC, which
 * QEMU keeps at the host's time (res->clock_synced).  An agent that does
 * not answer, or a clock still off by more than VMDR_CLOCK_SKEW_S, is a
 * warning in res->warnings: the guest runs, but may be hung. */
#define VMDR_CLOCK_SKEW_S 5
int vmdr_bringup (virConnectPtr conn, const struct vmdr_manifest *m,
                  const struct vmdr_restore_result *files,
                  const struct vmdr_bringup_opts *o, struct vmdr_bringup_result *res);

/* vmdr_bringup on disks given as a map (local files or RBD network
 * disks, see domain-xml.h) instead of restored files; no memory image
 * (o->memory must be false).  Same contract otherwise. */
int vmdr_bringup_disks (virConnectPtr conn, const struct vmdr_manifest *m,
                        const struct vmdr_xml_disk_map *map, size_t n,
                        const struct vmdr_bringup_opts *o, struct vmdr_bringup_result *res);

/* With o->force: destroy and undefine what is in the way of M's guest
 * now, before its disks are made (an RBD clone in use by a running guest
 * cannot be replaced).  Without: nothing.  0 or -errno, res->error saying
 * what failed. */
int vmdr_bringup_clear (virConnectPtr conn, const struct vmdr_manifest *m,
                        const struct vmdr_bringup_opts *o, struct vmdr_bringup_result *res);

/* The libvirt secret (usage type ceph, "vmdr client.USER@FSID") that holds
 * the cephx key KEY (KEYLEN raw bytes) on CONN: defined if missing, its
 * value set (the key may have changed), private (libvirt never shows it).
 * UUID gets its UUID (VIR_UUID_STRING_BUFLEN bytes).  0 or -errno, ERROR
 * saying what failed. */
int vmdr_bringup_ceph_secret (virConnectPtr conn, const char *user, const char *fsid,
                              const uint8_t *key, size_t keylen, char *uuid,
                              char *error, size_t errlen);

#endif
