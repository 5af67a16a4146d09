/* What rbd-replica.c and rbd-source.c share: the connection behind
 * struct vmdr_rbd.  Not for callers outside the RBD library. */
#ifndef VMDR_RBD_INTERNAL_H
#define VMDR_RBD_INTERNAL_H

#include "ceph-lib.h"
#include "rbd-replica.h"

struct vmdr_rbd {
  rados_t cluster;
  rados_ioctx_t io;             /* the address's pool */
  char pool[128];
  char prefix[128];
  char id[128];
  char *conf;                   /* NULL: librados's default search */
  char cookie[160];             /* this process's lock cookie: vmdr:HOST:PID:BOOT-ID */
};

#endif
