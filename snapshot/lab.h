/* The test lab: restored guests on an isolated libvirt network, where they
 * reach each other and nothing else, and their removal.
 *
 * A lab guest is one whose domain XML carries vmdr's restore metadata with
 * lab="yes" (vmdr_domain_xml_rewrite with o->lab).  The lab network is
 * vmdr's when its XML carries <metadata><vmdr:lab xmlns:vmdr=VMDR_XMLNS_LAB/>:
 * only such a network is ever removed, and a network of that name that is
 * not isolated is never used or changed.
 */
#ifndef VMDR_LAB_H
#define VMDR_LAB_H

#include <stdbool.h>
#include <stddef.h>

#include <libvirt/libvirt.h>

#define VMDR_LAB_NETWORK "vmdr-lab"
#define VMDR_XMLNS_LAB "https://vmdr.dev/xmlns/lab/1"

/* Make sure the isolated test-lab network NAME exists and is active on CONN:
 * no <forward>, no <ip>, no <route> and no <virtualport>, so that guests on
 * it reach only each other, never the host's networks or the outside.  One
 * vmdr creates is persistent, marked as vmdr's and autostarted.  One that
 * exists and is isolated is reused (started if inactive; its autostart is
 * left alone unless it is vmdr's).  NAME: letters, digits, '.', '_', '-', at
 * most 64.  Returns 0, -EEXIST (a network of that name is not isolated:
 * vmdr never changes a network it did not create), -EINVAL (NAME), -EIO
 * (libvirt failed), -ENOMEM; ERR (may be NULL) gets a one-line reason. */
int vmdr_lab_network_ensure (virConnectPtr conn, const char *name, char *err, size_t errlen);

/* Remove every lab guest on CONN: destroy it, undefine it (with its managed
 * save, snapshot and checkpoint metadata, NVRAM and TPM state) and delete
 * the images its metadata records -- only those that are also its disks, and
 * never one that a definition that is not a lab guest's uses.  A guest
 * running a lab definition over a persistent definition that is not a lab
 * guest's (resumed from memory into an existing domain) is destroyed and
 * its definition kept.  Then, when every lab guest is gone, the network
 * NAME, if it is vmdr's and no guest left on CONN uses it.  Guests and
 * networks that are not vmdr's are never touched.
 *
 * *REMOVED (may be NULL) counts the guests removed, also on failure: a
 * failure on one guest does not stop the others.  Returns 0, -EBUSY (the
 * network is still used by a guest that is not a lab guest: kept), -EIO
 * (libvirt failed), or another -errno from deleting an image; ERR (may be
 * NULL) gets a one-line reason, for the first failure. */
int vmdr_lab_cleanup (virConnectPtr conn, const char *name, size_t *removed, char *err,
                      size_t errlen);

#endif
