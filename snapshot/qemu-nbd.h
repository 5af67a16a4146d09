/* qemu-nbd as the NBD server of a disk image nobody runs: the disks of a
 * shut-off domain, read-only, with a persistent dirty bitmap exported when
 * an incremental needs one; and a restore's new qcow2 image, writable. */
#ifndef VMDR_QEMU_NBD_H
#define VMDR_QEMU_NBD_H

#include <sys/types.h>

struct vmdr_qemu_nbd {
  pid_t pid;                    /* 0: not running */
};

/* Serve FILE (FORMAT "qcow2" or "raw") read-only as EXPORT on the unix
 * socket SOCKET for up to SHARED clients; with BITMAP (may be NULL), that
 * persistent bitmap as qemu:dirty-bitmap:BITMAP.  Returns once the server
 * answers an NBD handshake for EXPORT (10 s at most), so that an image or
 * bitmap it refuses is an error here, not a dead connection later.  The
 * server is our child: stop it with vmdr_qemu_nbd_stop.  0, -ENOENT (no
 * qemu-nbd, or no such bitmap or image), -EIO, -ETIMEDOUT. */
int vmdr_qemu_nbd_start (const char *file, const char *format, const char *export,
                         const char *bitmap, const char *socket, unsigned shared,
                         struct vmdr_qemu_nbd *out);

/* Serve FILE read-write, for restoring into an image: like
 * vmdr_qemu_nbd_start without bitmaps, but the server exits when its last
 * client disconnects (so open every connection before closing any).
 * Writes are cached by qemu-nbd: the clients flush before they disconnect. */
int vmdr_qemu_nbd_start_writable (const char *file, const char *format,
                                  const char *export, const char *socket,
                                  unsigned shared, struct vmdr_qemu_nbd *out);

/* Stop the server and wait for it.  A stopped one is fine.  0, or -EIO
 * when it did not exit cleanly (a writer must then distrust the image). */
int vmdr_qemu_nbd_stop (struct vmdr_qemu_nbd *q);

#endif
