/* What the tools that talk to libvirt share. */
#ifndef VMDR_CMD_LIBVIRT_H
#define VMDR_CMD_LIBVIRT_H

#include <libvirt/libvirt.h>

/* Connect to URI (NULL: libvirt's default), with libvirt's own error
 * printing turned off: the tools report each failure once, in one line.
 * NULL after "PROG: cannot connect to libvirt at 'URI': ...". */
virConnectPtr cmd_libvirt_connect (const char *uri);

#endif
