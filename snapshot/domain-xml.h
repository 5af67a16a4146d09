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

#endif
