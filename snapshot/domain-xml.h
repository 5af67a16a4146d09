/* What vmdr needs to know from a libvirt domain XML, parsed with libxml2:
 * its name, UUID and disks. */
#ifndef VMDR_DOMAIN_XML_H
#define VMDR_DOMAIN_XML_H

#include <stdbool.h>
#include <stddef.h>

#define VMDR_DOMAIN_XML_MAX (4u << 20)

struct vmdr_domain_disk {
  char target[32];              /* "vda" */
  char format[16];              /* driver type: "qcow2", "raw", "" if none */
  char source_type[16];         /* "file", "block", "network", "volume", "" */
  char *source;                 /* file or device path; NULL for network/none */
  char protocol[16];            /* network disks: "rbd", "nbd", ... */
  char *name;                   /* network disks: the source name ("POOL/IMAGE") */
  char auth_user[64];           /* network disks: <auth username> */
  bool is_disk;                 /* device='disk' (not a cdrom or floppy) */
  bool readonly, shareable;
};

struct vmdr_domain_info {
  char name[256];
  char uuid[37];
  struct vmdr_domain_disk *disks;
  size_t ndisks;
};

/* Parse XML (LEN bytes, at most VMDR_DOMAIN_XML_MAX).  0, -EBADMSG (not a
 * domain XML, or bounds exceeded), -ENOMEM.  Clear *out afterwards. */
int vmdr_domain_info_parse (const char *xml, size_t len, struct vmdr_domain_info *out);
void vmdr_domain_info_clear (struct vmdr_domain_info *info);

/* The disks a backup takes by default: real disks (not cdroms, not
 * read-only, not shareable) with a source. */
bool vmdr_disk_backed_up (const struct vmdr_domain_disk *d);

/* Is D an RBD image (<disk type='network'><source protocol='rbd'>)?  Then
 * its pool and image (IMAGE holds 256 bytes): 0, or -EINVAL for a name
 * vmdr cannot read (no pool, a namespace, too long). */
bool vmdr_disk_is_rbd (const struct vmdr_domain_disk *d);
int vmdr_disk_rbd_name (const struct vmdr_domain_disk *d, char pool[128], char image[256]);

/* ---- Rewriting a saved domain XML for another host ------------------------
 *
 * vmdr-restore defines a guest from the XML a snapshot saved: the live XML of
 * the running domain (virDomainGetXMLDesc, flags 0) or the XML in a memory
 * image.  On another host that XML must lose what only made sense where it
 * ran (runtime state, host devices, the old images) and may get a new name,
 * identity and network.  Nothing here talks to libvirt.
 */

/* vmdr's own namespace in <metadata>: where a restored guest came from. */
#define VMDR_XMLNS_RESTORE "https://vmdr.dev/xmlns/restore/1"
#define VMDR_XML_MAX_DISKS 256

/* A Ceph monitor as libvirt's <host> gives it to QEMU. */
struct vmdr_xml_host {
  const char *name;             /* an address or a host name */
  unsigned port;                /* 1 .. 65535 */
};

/* A disk on a Ceph RBD image (a libvirt network disk) instead of a file. */
#define VMDR_XML_MAX_HOSTS 16
struct vmdr_xml_rbd_disk {
  const char *name;             /* "POOL/IMAGE" */
  const struct vmdr_xml_host *hosts;    /* the monitors; may be NULL ... */
  size_t nhosts;                /* ... when 0 (at most VMDR_XML_MAX_HOSTS):
                                 * QEMU finds them in CONFIG */
  const char *config;           /* a ceph.conf on the target host, absolute;
                                 * NULL: none (<config file=...>) */
  const char *username;         /* cephx user without "client."; NULL: no <auth> */
  const char *secret_uuid;      /* with USERNAME: the libvirt secret (usage
                                 * type ceph) that holds the user's key */
};

struct vmdr_xml_disk_map {
  const char *target;           /* "vda" */
  const char *path;             /* the restored image, a local file; absolute
                                 * (ignored, may be NULL, with RBD) */
  const char *format;           /* "raw" or "qcow2" ("raw" with RBD) */
  const struct vmdr_xml_rbd_disk *rbd;  /* non-NULL: the disk becomes
                                         * <disk type='network'> on this
                                         * RBD image */
};

/* What was done instead of what the saved XML asked for, one sentence each,
 * in the order found.  Warnings beyond VMDR_XML_MAX_WARNINGS are counted in
 * MORE, not kept. */
#define VMDR_XML_MAX_WARNINGS 16
struct vmdr_xml_warnings {
  char w[VMDR_XML_MAX_WARNINGS][256];
  size_t n;
  size_t more;
};

struct vmdr_xml_rewrite {
  const char *name;             /* new domain name; NULL: keep */
  bool new_identity;            /* drop <uuid> and every interface's <mac> so
                                 * libvirt makes new ones (and the SMBIOS uuid
                                 * entry, which must match <uuid>) */
  const struct vmdr_xml_disk_map *disks;   /* the restored disks; others go */
  size_t ndisks;                /* at most VMDR_XML_MAX_DISKS */
  const char *network;          /* non-NULL (test lab): every interface becomes
                                 * type='network' on this network, and character
                                 * devices that reach the network become ptys */
  bool strict;                  /* a saved memory state will be resumed: the
                                 * guest's devices must all stay (dropping one
                                 * is -ENOTSUP); libvirt also refuses a new
                                 * name, UUID or MAC against a memory image
                                 * (checked with libvirt 9.0), so NAME and
                                 * NEW_IDENTITY are -ENOTSUP too */
  const char *snapshot_id;      /* recorded in <metadata>; NULL: not recorded */
  bool lab;                     /* recorded in <metadata>: a test-lab guest,
                                 * which vmdr_lab_cleanup() removes */
};

/* Rewrite XML (LEN bytes, at most VMDR_DOMAIN_XML_MAX; a domain XML as
 * virDomainGetXMLDesc of a running domain gave it, flags 0, or a memory
 * image's XML) for virDomainDefineXML, or for virDomainRestoreFlags' dxml
 * with O->strict, on another host:
 *
 *   - runtime state goes: <domain id>, dynamic <seclabel>s, <alias>es that
 *     are not user aliases ("ua-"), interface <target dev='vnetN'> and
 *     <actual>, network source portid/bridge, ttys and pty paths, channel
 *     socket paths libvirt generated, graphics ports with autoport (a
 *     websocket stays, on an automatic port), disk source indexes; a <genid>
 *     value (unless strict) so that the guest is told it was rolled back;
 *   - a new name or identity also drops the UEFI variable store's path
 *     (libvirt makes a new one from the template; a warning says so);
 *   - disks in O->disks become local files of their format (no backing
 *     chain, no network source, no encryption: the restored image is plain),
 *     or, mapped to RBD, raw network disks with protocol 'rbd', their
 *     monitors, conf file and cephx <auth>;
 *     other disks go with a warning; cdroms and floppies are ejected;
 *   - host devices (<hostdev>, <redirdev>, direct/hostdev/vdpa interfaces,
 *     TPM, input and smartcard passthrough) go with a warning; serial,
 *     console and parallel ports writing to a host file, device or pipe
 *     become ptys with a warning;
 *   - <metadata> gets <vmdr:restore snapshot= lab= domain=> (namespace
 *     VMDR_XMLNS_RESTORE) listing every restored image (<vmdr:image
 *     target= path=>, or rbd='POOL/IMAGE' for an RBD disk), replacing any
 *     earlier one.
 *
 * *OUT is malloc'd, NUL-terminated XML.  W may be NULL; it is reset first.
 * Returns 0, -EBADMSG (not a domain XML, a DTD, or bounds exceeded),
 * -EINVAL (bad options: a map entry without target, a relative path, a
 * format other than raw/qcow2, a name libvirt would refuse), -ENOTSUP
 * (strict, with the reason in w->w[w->n - 1]), -ENOMEM.  *OUT is untouched
 * on failure. */
int vmdr_domain_xml_rewrite (const char *xml, size_t len, const struct vmdr_xml_rewrite *o,
                             char **out, struct vmdr_xml_warnings *w);

/* Read back the metadata vmdr_domain_xml_rewrite() recorded: whether the
 * guest is a test-lab guest, the restored image files (*IMAGES and each of
 * its strings malloc'd; free with vmdr_strv_free; IMAGES may be NULL; RBD
 * images are not files and not listed), and the
 * snapshot id ("" if none; SNAPSHOT may be NULL).  0, -ENOENT (a domain
 * without vmdr metadata: not vmdr's), -EBADMSG (not a domain XML, or a value
 * does not fit), -ENOMEM.  Outputs are untouched on failure. */
int vmdr_domain_xml_restore_info (const char *xml, size_t len, bool *lab, char ***images,
                                  size_t *nimages, char *snapshot, size_t snapsize);

/* 1 when an interface of the domain XML is on libvirt network NETWORK, 0 when
 * none is, -EBADMSG (not a domain XML), -ENOMEM. */
int vmdr_domain_xml_uses_network (const char *xml, size_t len, const char *network);

#endif
